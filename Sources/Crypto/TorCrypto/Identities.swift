import Crypto
import Foundation

/// Cryptographically secure random bytes (SystemRandomNumberGenerator is getrandom(2) on Linux).
public func secureRandomBytes(_ count: Int) -> [UInt8] {
    var rng = SystemRandomNumberGenerator()
    return randomBytes(count, using: &rng)
}

/// A relay's legacy identity: SHA-1 of its RSA-1024 identity key in PKCS#1 DER (the "fingerprint").
public struct RSAIdentity: Hashable, Sendable, CustomStringConvertible {
    public static let length = 20
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        try requireLength(bytes, Self.length, "RSA identity")
        self.bytes = bytes
    }

    /// Upper-case hex, as tor prints fingerprints.
    public var hex: String { bytes.hexString.uppercased() }
    public var description: String { "$" + hex }
}

/// A relay's Ed25519 master identity public key, as raw bytes (validity is checked where it is used).
public struct Ed25519Identity: Hashable, Sendable, CustomStringConvertible {
    public static let length = 32
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        try requireLength(bytes, Self.length, "Ed25519 identity")
        self.bytes = bytes
    }

    public init(_ key: Curve25519.Signing.PublicKey) { self.bytes = Array(key.rawRepresentation) }

    /// The swift-crypto key; throws if the bytes are not a valid point encoding.
    public func publicKey() throws -> Curve25519.Signing.PublicKey {
        do { return try Curve25519.Signing.PublicKey(rawRepresentation: bytes) } catch {
            throw TorCryptoError.badKey("Ed25519 public key")
        }
    }

    public var description: String { Data(bytes).base64EncodedString().replacingOccurrences(of: "=", with: "") }
}

/// What a client knows about a relay to run ntor with it: identity fingerprint and ntor onion key B.
public struct NtorPublicKey: Hashable, Sendable {
    public let identity: RSAIdentity
    /// The 32-byte Curve25519 public key B ("KEYID" in CREATE2).
    public let onionKey: [UInt8]

    public init(identity: RSAIdentity, onionKey: [UInt8]) throws {
        try requireLength(onionKey, 32, "ntor onion key")
        self.identity = identity
        self.onionKey = onionKey
    }
}

/// A relay's ntor onion key pair, bound to its identity.
/// (@unchecked: swift-crypto's private key is an immutable value that does not declare Sendable.)
public struct NtorSecretKey: @unchecked Sendable {
    public let identity: RSAIdentity
    public let privateKey: Curve25519.KeyAgreement.PrivateKey
    public let publicKey: NtorPublicKey

    public init(identity: RSAIdentity, privateKey: Curve25519.KeyAgreement.PrivateKey) {
        self.identity = identity
        self.privateKey = privateKey
        // The raw representation of a swift-crypto key is always 32 bytes, so this cannot fail.
        self.publicKey = try! NtorPublicKey(identity: identity, onionKey: Array(privateKey.publicKey.rawRepresentation))
    }
}

/// Per-hop key material from a circuit handshake (tor-spec §5.2): running-digest seeds, AES keys, and the
/// 20-byte binding value (KH for CREATE_FAST, the ntor "nonce" used by e.g. onion-service rendezvous).
public struct CircuitKeys: Sendable, Equatable {
    public let forwardDigest: [UInt8]   // Df, 20
    public let backwardDigest: [UInt8]  // Db, 20
    public let forwardKey: [UInt8]      // Kf, 16
    public let backwardKey: [UInt8]     // Kb, 16
    public let binding: [UInt8]         // KH / nonce, 20

    public static let materialLength = 92

    /// ntor layout: `Df Db Kf Kb KH`.
    public init(ntorMaterial m: [UInt8]) throws {
        try requireLength(m, Self.materialLength, "ntor key material")
        forwardDigest = Array(m[0..<20]); backwardDigest = Array(m[20..<40])
        forwardKey = Array(m[40..<56]); backwardKey = Array(m[56..<72]); binding = Array(m[72..<92])
    }

    /// CREATE_FAST layout: `KH Df Db Kf Kb`.
    public init(createFastMaterial m: [UInt8]) throws {
        try requireLength(m, Self.materialLength, "CREATE_FAST key material")
        binding = Array(m[0..<20]); forwardDigest = Array(m[20..<40]); backwardDigest = Array(m[40..<60])
        forwardKey = Array(m[60..<76]); backwardKey = Array(m[76..<92])
    }
}
