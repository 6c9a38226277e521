import COpenSSL
import Foundation

/// Offsets inside the 509-byte relay payload (tor-spec §6.1) that the tor1 layer reads or writes.
public enum RelayPayload {
    public static let length = 509
    static let recognizedOffset = 1  // 2 bytes, zero when the cell is meant for this hop
    static let digestOffset = 5      // 4 bytes, first bytes of the running SHA-1
}

/// A continuous AES-CTR keystream (IV 0). Relay cells are 509 bytes, so each cell starts mid-block and the
/// stream must never be reset: swift-crypto's one-shot `AES._CTR` cannot do this, OpenSSL EVP can.
public final class AESCTRStream {
    private let ctx: OpaquePointer

    /// `key` is 16 (AES-128, tor1) or 32 (AES-256) bytes; `iv` defaults to zero as in Tor.
    public init(key: [UInt8], iv: [UInt8] = [UInt8](repeating: 0, count: 16)) throws {
        guard key.count == 16 || key.count == 32 else {
            throw TorCryptoError.badLength(what: "AES key", expected: 16, actual: key.count)
        }
        try requireLength(iv, 16, "AES-CTR IV")
        guard let ctx = cossl_aes_ctr_new(key, key.count, iv) else { throw TorCryptoError.openSSL("AES-CTR init") }
        self.ctx = ctx
    }

    deinit { cossl_aes_ctr_free(ctx) }

    /// XORs the next `buffer.count` keystream bytes into `buffer`.
    @inline(__always)
    public func apply(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        // Only fails for lengths over 2 GiB, which callers never pass (cells are 509 bytes).
        _ = cossl_aes_ctr_xor(ctx, base.assumingMemoryBound(to: UInt8.self), buffer.count)
    }

    public func apply(_ bytes: inout [UInt8]) { bytes.withUnsafeMutableBytes { apply($0) } }
}

/// A running SHA-1 with a preallocated checkpoint slot, so that trying a cell and undoing it costs two
/// struct copies and no allocation. OpenSSL's SHA_CTX measured ~311 ns per checkpoint+509 B+peek against
/// ~376 ns for swift-crypto's copy-on-write Insecure.SHA1 (scripts/bench-relay-crypto).
public final class RunningSHA1 {
    private let state: OpaquePointer
    private let saved: OpaquePointer

    public init(seed: [UInt8]) throws {
        guard let s = cossl_sha1_new(), let c = cossl_sha1_new() else { throw TorCryptoError.openSSL("SHA-1 init") }
        state = s
        saved = c
        cossl_sha1_update(state, seed, seed.count)
    }

    deinit {
        cossl_sha1_free(state)
        cossl_sha1_free(saved)
    }

    @inline(__always) func update(_ p: UnsafeRawPointer, _ n: Int) {
        cossl_sha1_update(state, p.assumingMemoryBound(to: UInt8.self), n)
    }
    public func update(_ bytes: UnsafeRawBufferPointer) {
        if let base = bytes.baseAddress { update(base, bytes.count) }
    }
    /// Remembers the current state in the checkpoint slot (one struct copy); `restore` goes back to it.
    public func checkpoint() { cossl_sha1_copy(saved, state) }
    public func restore() { cossl_sha1_copy(state, saved) }
    /// First four digest bytes as they appear in a relay header, read without disturbing the state.
    @inline(__always) func peekPrefix() -> UInt32 {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { out in
            cossl_sha1_peek(state, out.baseAddress!)
            return UnsafeRawPointer(out.baseAddress!).loadUnaligned(as: UInt32.self)
        }
    }

    /// Lends the current 20-byte digest (stack storage, no allocation) without disturbing the state.
    public func withDigest<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { out in
            cossl_sha1_peek(state, out.baseAddress!)
            return try body(UnsafeRawBufferPointer(out))
        }
    }

    /// The full 20-byte digest of everything so far (the authenticated SENDME v1 value).
    public var digest: [UInt8] {
        var out = [UInt8](repeating: 0, count: 20)
        out.withUnsafeMutableBufferPointer { cossl_sha1_peek(state, $0.baseAddress!) }
        return out
    }
}

/// One direction of one hop's tor1 layer: AES-128-CTR keystream plus running digest.
public final class RelayLayer {
    public let cipher: AESCTRStream
    public let runningDigest: RunningSHA1

    public init(key: [UInt8], digestSeed: [UInt8]) throws {
        try requireLength(key, 16, "tor1 AES key")
        try requireLength(digestSeed, 20, "tor1 digest seed")
        cipher = try AESCTRStream(key: key)
        runningDigest = try RunningSHA1(seed: digestSeed)
    }

    /// Sender side: zero Recognized and Digest, absorb the whole payload, write the first 4 digest bytes.
    @inline(__always)
    func setDigest(_ p: UnsafeMutableRawPointer) {
        p.storeBytes(of: 0, toByteOffset: RelayPayload.recognizedOffset, as: UInt16.self)
        p.storeBytes(of: 0, toByteOffset: RelayPayload.digestOffset, as: UInt32.self)
        runningDigest.update(p, RelayPayload.length)
        p.storeBytes(of: runningDigest.peekPrefix(), toByteOffset: RelayPayload.digestOffset, as: UInt32.self)
    }

    /// Receiver side, after decryption: Recognized == 0 and the digest matches. On a mismatch the running
    /// digest is rolled back (the cell was for a later hop that happened to decrypt to Recognized == 0).
    /// The payload is left byte-for-byte as decrypted.
    @inline(__always)
    func isRecognized(_ p: UnsafeMutableRawPointer) -> Bool {
        guard p.loadUnaligned(fromByteOffset: RelayPayload.recognizedOffset, as: UInt16.self) == 0 else { return false }
        let received = p.loadUnaligned(fromByteOffset: RelayPayload.digestOffset, as: UInt32.self)
        runningDigest.checkpoint()
        p.storeBytes(of: 0, toByteOffset: RelayPayload.digestOffset, as: UInt32.self)
        runningDigest.update(p, RelayPayload.length)
        let computed = runningDigest.peekPrefix()
        p.storeBytes(of: received, toByteOffset: RelayPayload.digestOffset, as: UInt32.self)
        // A 4-byte integer compare does not leak where the bytes differ.
        if computed == received { return true }
        runningDigest.restore()
        return false
    }
}

@inline(__always)
private func cellPointer(_ payload: UnsafeMutableRawBufferPointer) throws -> UnsafeMutableRawPointer {
    guard payload.count == RelayPayload.length, let base = payload.baseAddress else {
        throw TorCryptoError.badLength(what: "relay payload", expected: RelayPayload.length, actual: payload.count)
    }
    return base
}

/// A hop's two tor1 layers, built from the handshake's key material.
public struct RelayLayerPair {
    public let forward: RelayLayer   // Kf / Df: client → relay
    public let backward: RelayLayer  // Kb / Db: relay → client

    public init(keys: CircuitKeys) throws {
        forward = try RelayLayer(key: keys.forwardKey, digestSeed: keys.forwardDigest)
        backward = try RelayLayer(key: keys.backwardKey, digestSeed: keys.backwardDigest)
    }
}

/// Relay-cell crypto at the circuit's origin (the client): one layer pair per hop, hop 0 first.
/// Not thread-safe: one circuit belongs to one event loop.
public final class ClientCircuitCrypto {
    public private(set) var hops: [RelayLayerPair] = []

    public init() {}

    public var hopCount: Int { hops.count }

    /// Adds the next hop after a successful CREATE(D)2 / EXTENDED2.
    public func addHop(_ keys: CircuitKeys) throws { hops.append(try RelayLayerPair(keys: keys)) }

    /// Drops hops after `count` (TRUNCATED).
    public func truncate(to count: Int) { if count >= 0 && count < hops.count { hops.removeLast(hops.count - count) } }

    /// Originates a cell to `hop`: sets its digest under that hop's Df, then onion-encrypts Kf_hop … Kf_0.
    public func encryptOutbound(_ payload: UnsafeMutableRawBufferPointer, toHop hop: Int) throws {
        let p = try cellPointer(payload)
        guard hop >= 0, hop < hops.count else { throw TorCryptoError.noSuchHop(hop) }
        hops[hop].forward.setDigest(p)
        for i in stride(from: hop, through: 0, by: -1) {
            hops[i].forward.cipher.apply(UnsafeMutableRawBufferPointer(start: p, count: RelayPayload.length))
        }
    }

    /// Peels layers Kb_0, Kb_1, … until a hop recognizes the cell; returns that hop, or nil if none did
    /// (a protocol violation: the circuit must be torn down).
    public func decryptInbound(_ payload: UnsafeMutableRawBufferPointer) throws -> Int? {
        let p = try cellPointer(payload)
        for (i, hop) in hops.enumerated() {
            hop.backward.cipher.apply(UnsafeMutableRawBufferPointer(start: p, count: RelayPayload.length))
            if hop.backward.isRecognized(p) { return i }
        }
        return nil
    }

    /// Full running digest after the last cell sent to `hop` (record it when that cell triggers a SENDME).
    public func outboundDigest(hop: Int) -> [UInt8]? { hop >= 0 && hop < hops.count ? hops[hop].forward.runningDigest.digest : nil }
    /// Full running digest after the last cell received from `hop` (echo it in an authenticated SENDME v1).
    public func inboundDigest(hop: Int) -> [UInt8]? { hop >= 0 && hop < hops.count ? hops[hop].backward.runningDigest.digest : nil }

    public func encryptOutbound(_ payload: inout [UInt8], toHop hop: Int) throws {
        try payload.withUnsafeMutableBytes { try encryptOutbound($0, toHop: hop) }
    }
    public func decryptInbound(_ payload: inout [UInt8]) throws -> Int? {
        try payload.withUnsafeMutableBytes { try decryptInbound($0) }
    }
}

/// Relay-cell crypto at a relay (one circuit, this hop's layer pair).
/// Not thread-safe: one circuit belongs to one event loop.
public final class RelayCircuitCrypto {
    public let layers: RelayLayerPair

    public init(keys: CircuitKeys) throws { layers = try RelayLayerPair(keys: keys) }

    /// Cell travelling away from the client: removes our Kf layer. True if the cell is for us (Recognized
    /// zero and digest matches); otherwise the caller forwards the decrypted payload to the next hop.
    public func decryptForward(_ payload: UnsafeMutableRawBufferPointer) throws -> Bool {
        let p = try cellPointer(payload)
        layers.forward.cipher.apply(UnsafeMutableRawBufferPointer(start: p, count: RelayPayload.length))
        return layers.forward.isRecognized(p)
    }

    /// Cell we originate toward the client: set digest under Db, then encrypt with Kb.
    public func originateBackward(_ payload: UnsafeMutableRawBufferPointer) throws {
        let p = try cellPointer(payload)
        layers.backward.setDigest(p)
        layers.backward.cipher.apply(UnsafeMutableRawBufferPointer(start: p, count: RelayPayload.length))
    }

    /// Cell from the next hop travelling toward the client: add our Kb layer only.
    public func relayBackward(_ payload: UnsafeMutableRawBufferPointer) throws {
        let p = try cellPointer(payload)
        layers.backward.cipher.apply(UnsafeMutableRawBufferPointer(start: p, count: RelayPayload.length))
    }

    /// Full running digest after the last cell we originated (record on every 100th DATA cell, SENDME v1).
    public var backwardDigest: [UInt8] { layers.backward.runningDigest.digest }
    /// Full running digest after the last cell recognized from the client (echo in our SENDME v1).
    public var forwardDigest: [UInt8] { layers.forward.runningDigest.digest }

    public func decryptForward(_ payload: inout [UInt8]) throws -> Bool { try payload.withUnsafeMutableBytes { try decryptForward($0) } }
    public func originateBackward(_ payload: inout [UInt8]) throws { try payload.withUnsafeMutableBytes { try originateBackward($0) } }
    public func relayBackward(_ payload: inout [UInt8]) throws { try payload.withUnsafeMutableBytes { try relayBackward($0) } }
}

/// SHAKE-256 (used by test vectors; ntor-v3 will need it).
public func shake256(_ input: [UInt8], count: Int) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: max(0, count))
    let ok = out.withUnsafeMutableBufferPointer { cossl_shake256(input, input.count, $0.baseAddress, count) }
    guard ok == 1 else { throw TorCryptoError.openSSL("SHAKE-256") }
    return out
}
