/// A buffered CSPRNG for bulk, per-cell randomness (relay-cell padding, stream IDs).
///
/// `SystemRandomNumberGenerator` costs one getrandom(2) call per 8 bytes: padding one relay cell took
/// ~62 syscalls. This generator draws a fresh AES-256 key from the system RNG, expands it as an AES-CTR
/// keystream into a 4 KiB buffer, and hands out words from the buffer. It rekeys from the system RNG
/// every `rekeyInterval` bytes (1 MiB by default), so a compromise of the in-memory key exposes at most
/// that much output, and refills never reuse a (key, counter) pair.
///
/// Not thread-safe: each circuit (or each event loop) owns its own instance. Copies of the struct share
/// one buffer, which is what `any RandomNumberGenerator` storage in the circuit state machines expects.
public struct FastRandomNumberGenerator: RandomNumberGenerator {
    private final class State {
        static let bufferSize = 4096
        let rekeyInterval: Int
        var cipher: AESCTRStream
        var buffer: [UInt8]
        var position: Int
        var sinceRekey = 0

        init(rekeyInterval: Int) {
            self.rekeyInterval = rekeyInterval
            self.cipher = State.freshCipher()
            self.buffer = [UInt8](repeating: 0, count: State.bufferSize)
            self.position = State.bufferSize  // empty: refilled on first use
        }

        static func freshCipher() -> AESCTRStream {
            // A 32-byte key is always valid for AESCTRStream; failure would mean OpenSSL is unusable.
            do { return try AESCTRStream(key: secureRandomBytes(32)) } catch {
                preconditionFailure("AES-CTR keystream unavailable: \(error)")
            }
        }

        @inline(__always)
        func refill() {
            if self.sinceRekey >= self.rekeyInterval {
                self.cipher = State.freshCipher()
                self.sinceRekey = 0
            }
            // The keystream XORed into zeros is the keystream itself.
            for i in self.buffer.indices { self.buffer[i] = 0 }
            self.buffer.withUnsafeMutableBytes { self.cipher.apply($0) }
            self.sinceRekey += self.buffer.count
            self.position = 0
        }
    }

    private let state: State

    /// - Parameter rekeyInterval: output bytes between fresh keys from the system RNG.
    public init(rekeyInterval: Int = 1 << 20) {
        self.state = State(rekeyInterval: max(State.bufferSize, rekeyInterval))
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let s = self.state
        if s.position + 8 > State.bufferSize { s.refill() }
        let value = s.buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: s.position, as: UInt64.self) }
        // Erase what was handed out so the buffer never holds past output.
        s.buffer.withUnsafeMutableBytes { $0.storeBytes(of: 0, toByteOffset: s.position, as: UInt64.self) }
        s.position += 8
        return value
    }
}
