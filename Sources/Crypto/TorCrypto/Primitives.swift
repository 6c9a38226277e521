import Crypto
import Foundation

/// An Ed25519 private key (identity, medium-term signing, or AUTHENTICATE key).
/// (@unchecked: swift-crypto's key is an immutable value that does not declare Sendable.)
public struct Ed25519SigningKey: @unchecked Sendable {
    let key: Curve25519.Signing.PrivateKey

    public init() { key = .init() }

    /// From the 32-byte seed.
    public init(seed: [UInt8]) throws {
        try requireLength(seed, 32, "Ed25519 seed")
        do { key = try .init(rawRepresentation: seed) } catch { throw TorCryptoError.badKey("Ed25519 seed") }
    }

    public var seed: [UInt8] { Array(key.rawRepresentation) }
    public var publicKey: Ed25519Identity { Ed25519Identity(key.publicKey) }

    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        do { return Array(try key.signature(for: message)) } catch { throw TorCryptoError.badKey("Ed25519 signing failed") }
    }
}

extension Ed25519Identity {
    /// Verifies an Ed25519 signature (e.g. an AUTHENTICATE cell's SIG under the type-6 key).
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        guard let pk = try? publicKey() else { return false }
        return pk.isValidSignature(signature, for: message)
    }
}

extension NtorSecretKey {
    /// A fresh onion key for `identity`.
    public static func generate(identity: RSAIdentity) -> NtorSecretKey {
        NtorSecretKey(identity: identity, privateKey: .init())
    }

    public init(identity: RSAIdentity, rawPrivateKey: [UInt8]) throws {
        try requireLength(rawPrivateKey, 32, "ntor private key")
        do { self.init(identity: identity, privateKey: try .init(rawRepresentation: rawPrivateKey)) } catch {
            throw TorCryptoError.badKey("Curve25519 private key")
        }
    }

    public var rawPrivateKey: [UInt8] { Array(privateKey.rawRepresentation) }
}

/// One-shot digests, so other modules need not link crypto libraries themselves.
public enum TorDigest {
    public static func sha1(_ data: [UInt8]) -> [UInt8] { Array(Insecure.SHA1.hash(data: data)) }
    public static func sha256(_ data: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: data)) }
    public static func hmacSHA256(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: key)))
    }
}

/// A running SHA-256 whose current value can be read at any point (AUTHENTICATE's SLOG/CLOG: the digest of
/// every byte each side has sent so far on the channel).
public struct RunningSHA256 {
    private var hasher = SHA256()
    public init() {}
    public mutating func update(_ bytes: [UInt8]) { hasher.update(data: bytes) }
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }
    /// Digest of everything so far; the running state continues.
    public var current: [UInt8] { Array(hasher.finalize()) }
}
