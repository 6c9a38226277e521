import Crypto
import Foundation

/// The ntor handshake, CREATE2 handshake type 2 (tor-spec §5.1.4).
public enum Ntor {
    public static let handshakeType: UInt16 = 2
    public static let onionskinLength = 84  // ID(20) B(32) X(32)
    public static let replyLength = 64      // Y(32) AUTH(32)

    static let protoID = Array("ntor-curve25519-sha256-1".utf8)
    static let tMac = protoID + Array(":mac".utf8)
    static let tKey = protoID + Array(":key_extract".utf8)
    static let tVerify = protoID + Array(":verify".utf8)
    static let mExpand = protoID + Array(":key_expand".utf8)
    static let server = Array("Server".utf8)

    /// Client-side state between sending the onionskin and receiving CREATED2.
    /// (@unchecked: swift-crypto's private key is an immutable value that does not declare Sendable.)
    public struct ClientState: @unchecked Sendable {
        let relay: NtorPublicKey
        let ephemeral: Curve25519.KeyAgreement.PrivateKey
    }

    /// Length of an ephemeral X25519 secret (x or y).
    public static let ephemeralSecretLength = 32

    /// Builds the 84-byte onionskin. `ephemeral` is injectable only so tests can be deterministic.
    public static func clientStart(
        relay: NtorPublicKey, ephemeral: Curve25519.KeyAgreement.PrivateKey = .init()
    ) -> (state: ClientState, onionskin: [UInt8]) {
        let skin = relay.identity.bytes + relay.onionKey + Array(ephemeral.publicKey.rawRepresentation)
        return (ClientState(relay: relay, ephemeral: ephemeral), skin)
    }

    /// As above with the ephemeral secret x given as 32 raw bytes, for callers that do not link swift-crypto.
    public static func clientStart(
        relay: NtorPublicKey, ephemeralSecret: [UInt8]
    ) throws -> (state: ClientState, onionskin: [UInt8]) {
        clientStart(relay: relay, ephemeral: try ephemeralKey(ephemeralSecret))
    }

    /// As above with x drawn from `rng`, so a state machine's injected generator covers its handshakes too.
    /// `rng` must be a CSPRNG outside tests: x is the handshake's secret.
    public static func clientStart(
        relay: NtorPublicKey, using rng: inout some RandomNumberGenerator
    ) -> (state: ClientState, onionskin: [UInt8]) {
        clientStart(relay: relay, ephemeral: ephemeralKey(using: &rng))
    }

    /// Checks the server's `Y | AUTH` (constant-time) and derives the hop's keys.
    public static func clientFinish(state: ClientState, reply: [UInt8]) throws -> CircuitKeys {
        try CircuitKeys(ntorMaterial: clientFinish(state: state, reply: reply, keyBytes: CircuitKeys.materialLength))
    }

    /// As above, returning `keyBytes` bytes of raw KDF output (for callers wanting a different layout).
    public static func clientFinish(state: ClientState, reply: [UInt8], keyBytes: Int) throws -> [UInt8] {
        try requireLength(reply, replyLength, "ntor reply")
        let y = Array(reply[0..<32]), auth = Array(reply[32..<64])
        let yx = try dh(state.ephemeral, y)
        let bx = try dh(state.ephemeral, state.relay.onionKey)
        let x = Array(state.ephemeral.publicKey.rawRepresentation)
        let (seed, expectedAuth) = derive(
            exp1: yx, exp2: bx, id: state.relay.identity.bytes, b: state.relay.onionKey, x: x, y: y)
        guard constantTimeEqual(expectedAuth, auth) else { throw TorCryptoError.handshakeAuthFailed }
        return try TorKDF.rfc5869(secretInput: seed, tKey: tKey, mExpand: mExpand, count: keyBytes)
    }

    /// Server side: finds the onion key named by KEYID among `keys` (current and previous keys during
    /// rotation), checks the identity, and returns the 64-byte CREATED2 reply plus the hop's keys.
    public static func serverRespond(
        onionskin: [UInt8], keys: [NtorSecretKey], ephemeral: Curve25519.KeyAgreement.PrivateKey = .init()
    ) throws -> (reply: [UInt8], keys: CircuitKeys) {
        let (reply, material) = try serverRespond(
            onionskin: onionskin, keys: keys, ephemeral: ephemeral, keyBytes: CircuitKeys.materialLength)
        return (reply, try CircuitKeys(ntorMaterial: material))
    }

    /// As above with the ephemeral secret y drawn from `rng` (a CSPRNG outside tests).
    public static func serverRespond(
        onionskin: [UInt8], keys: [NtorSecretKey], using rng: inout some RandomNumberGenerator
    ) throws -> (reply: [UInt8], keys: CircuitKeys) {
        try serverRespond(onionskin: onionskin, keys: keys, ephemeral: ephemeralKey(using: &rng))
    }

    /// As above with y given as 32 raw bytes.
    public static func serverRespond(
        onionskin: [UInt8], keys: [NtorSecretKey], ephemeralSecret: [UInt8]
    ) throws -> (reply: [UInt8], keys: CircuitKeys) {
        try serverRespond(onionskin: onionskin, keys: keys, ephemeral: try ephemeralKey(ephemeralSecret))
    }

    public static func serverRespond(
        onionskin: [UInt8], keys: [NtorSecretKey], ephemeral: Curve25519.KeyAgreement.PrivateKey, keyBytes: Int
    ) throws -> (reply: [UInt8], keyMaterial: [UInt8]) {
        try requireLength(onionskin, onionskinLength, "ntor onionskin")
        let id = Array(onionskin[0..<20]), keyID = Array(onionskin[20..<52]), x = Array(onionskin[52..<84])
        guard let key = keys.first(where: { $0.identity.bytes == id && $0.publicKey.onionKey == keyID }) else {
            throw TorCryptoError.unknownNtorKey
        }
        let y = Array(ephemeral.publicKey.rawRepresentation)
        let xy = try dh(ephemeral, x)
        let xb = try dh(key.privateKey, x)
        let (seed, auth) = derive(exp1: xy, exp2: xb, id: id, b: keyID, x: x, y: y)
        let material = try TorKDF.rfc5869(secretInput: seed, tKey: tKey, mExpand: mExpand, count: keyBytes)
        return (y + auth, material)
    }

    static func ephemeralKey(_ secret: [UInt8]) throws -> Curve25519.KeyAgreement.PrivateKey {
        try requireLength(secret, ephemeralSecretLength, "ntor ephemeral secret")
        do { return try .init(rawRepresentation: secret) } catch { throw TorCryptoError.badKey("Curve25519 private key") }
    }

    static func ephemeralKey(using rng: inout some RandomNumberGenerator) -> Curve25519.KeyAgreement.PrivateKey {
        do {
            return try ephemeralKey(randomBytes(ephemeralSecretLength, using: &rng))
        } catch {
            // X25519 clamps the scalar, so every 32-byte string is a valid secret.
            preconditionFailure("32 random bytes rejected as an X25519 secret: \(error)")
        }
    }

    /// Returns (secret_input, AUTH).
    private static func derive(exp1: [UInt8], exp2: [UInt8], id: [UInt8], b: [UInt8], x: [UInt8], y: [UInt8])
        -> ([UInt8], [UInt8])
    {
        let secretInput = exp1 + exp2 + id + b + x + y + protoID
        let verify = hmac(key: tVerify, secretInput)
        let authInput = verify + id + b + y + x + protoID + server
        return (secretInput, hmac(key: tMac, authInput))
    }

    static func hmac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    /// X25519, rejecting a non-contributory (all-zero) result.
    static func dh(_ priv: Curve25519.KeyAgreement.PrivateKey, _ peer: [UInt8]) throws -> [UInt8] {
        let pub: Curve25519.KeyAgreement.PublicKey
        do { pub = try .init(rawRepresentation: peer) } catch { throw TorCryptoError.badKey("Curve25519 public key") }
        let out: [UInt8]
        do {
            out = try priv.sharedSecretFromKeyAgreement(with: pub).withUnsafeBytes { Array($0) }
        } catch {
            // BoringSSL's X25519 itself fails on an all-zero output.
            throw TorCryptoError.nonContributoryDH
        }
        guard !isAllZero(out) else { throw TorCryptoError.nonContributoryDH }
        return out
    }
}

/// The former name, which clashes with the cell type `TorCells.CreateFast` wherever both modules are
/// imported. Kept so existing `TorCrypto.CreateFast` call sites build; remove once none remain, and the
/// cell type no longer needs its module prefix.
@available(*, deprecated, renamed: "CreateFastHandshake")
public typealias CreateFast = CreateFastHandshake

/// CREATE_FAST / CREATED_FAST (tor-spec §5.1.5): no public-key crypto, only for the first hop over an
/// already-authenticated TLS channel. Clients rarely use it, but a relay must answer it.
public enum CreateFastHandshake {
    public static let nonceLength = 20

    public struct ClientState: Sendable { let x: [UInt8] }

    /// Returns the state and X (the CREATE_FAST payload). `x` is injectable for tests.
    public static func clientStart(x: [UInt8]? = nil) throws -> (state: ClientState, x: [UInt8]) {
        let x = x ?? secureRandomBytes(nonceLength)
        try requireLength(x, nonceLength, "CREATE_FAST X")
        return (ClientState(x: x), x)
    }

    /// Checks KH in `Y | KH` and returns the hop's keys.
    public static func clientFinish(state: ClientState, reply: [UInt8]) throws -> CircuitKeys {
        try requireLength(reply, 2 * nonceLength, "CREATED_FAST reply")
        let keys = try CircuitKeys(createFastMaterial: TorKDF.tor(state.x + reply[0..<20], count: CircuitKeys.materialLength))
        guard constantTimeEqual(keys.binding, reply[20..<40]) else { throw TorCryptoError.handshakeAuthFailed }
        return keys
    }

    /// Server side: returns the CREATED_FAST payload `Y | KH` and the hop's keys.
    public static func serverRespond(x: [UInt8], y: [UInt8]? = nil) throws -> (reply: [UInt8], keys: CircuitKeys) {
        try requireLength(x, nonceLength, "CREATE_FAST X")
        let y = y ?? secureRandomBytes(nonceLength)
        try requireLength(y, nonceLength, "CREATED_FAST Y")
        let keys = try CircuitKeys(createFastMaterial: TorKDF.tor(x + y, count: CircuitKeys.materialLength))
        return (y + keys.binding, keys)
    }
}
