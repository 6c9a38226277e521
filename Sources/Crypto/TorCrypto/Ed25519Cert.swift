import Crypto
import Foundation

/// Tor certificate types (cert-spec §A.1) that we create or check.
public struct TorCertType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let identityToSigning = TorCertType(rawValue: 0x04)  // Ed25519 identity → medium-term signing key
    public static let signingToTLSLink = TorCertType(rawValue: 0x05)    // signing key → SHA-256 of the TLS cert
    public static let signingToAuth = TorCertType(rawValue: 0x06)       // signing key → AUTHENTICATE key
    public static let rsaToEd25519 = TorCertType(rawValue: 0x07)        // RSA identity → Ed25519 identity (§2.3)

    public var description: String { "cert type \(rawValue)" }
}

/// What CERTIFIED_KEY holds (cert-spec §2.1). A struct, not an enum: the label is advisory (tor before
/// 0.4.5 wrote 01 everywhere) and a peer's unknown value must not make the whole CERTS cell unparseable.
public struct CertifiedKeyType: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let ed25519 = CertifiedKeyType(rawValue: 0x01)
    public static let sha256OfRSA = CertifiedKeyType(rawValue: 0x02)
    public static let sha256OfX509 = CertifiedKeyType(rawValue: 0x03)
}

public struct CertExtension: Hashable, Sendable {
    public static let signedWithEd25519Key: UInt8 = 0x04
    public static let affectsValidation: UInt8 = 0x01

    public let type: UInt8
    public let flags: UInt8
    public let data: [UInt8]

    public init(type: UInt8, flags: UInt8, data: [UInt8]) {
        self.type = type
        self.flags = flags
        self.data = data
    }
}

/// A Tor Ed25519 certificate as parsed off the wire, not yet trusted (cert-spec §2.1). Call `check` to get
/// an `Ed25519Cert`.
public struct UncheckedEd25519Cert: Hashable, Sendable {
    public let encoded: [UInt8]
    public let certType: TorCertType
    /// Hours since the epoch.
    public let expirationHours: UInt32
    public let keyType: CertifiedKeyType
    public let certifiedKey: [UInt8]
    public let extensions: [CertExtension]
    public let signature: [UInt8]

    public var expiry: Date { Date(timeIntervalSince1970: TimeInterval(expirationHours) * 3600) }

    /// The signing key named by extension 04, if present.
    public var includedSigningKey: [UInt8]? {
        extensions.first { $0.type == CertExtension.signedWithEd25519Key }?.data
    }

    public init(parsing bytes: [UInt8]) throws {
        var r = ByteReader(bytes, what: "Ed25519 cert")
        guard try r.u8() == 1 else { throw TorCryptoError.malformedCertificate("Ed25519 cert: unknown version") }
        certType = TorCertType(rawValue: try r.u8())
        expirationHours = try r.u32()
        keyType = CertifiedKeyType(rawValue: try r.u8())
        certifiedKey = try r.take(32)
        let n = try r.u8()
        var exts: [CertExtension] = []
        for _ in 0..<n {
            let len = try r.u16()
            let type = try r.u8(), flags = try r.u8()
            let data = try r.take(Int(len))
            if type == CertExtension.signedWithEd25519Key, data.count != 32 {
                throw TorCryptoError.malformedCertificate("Ed25519 cert: signed-with-key extension length \(data.count)")
            }
            exts.append(CertExtension(type: type, flags: flags, data: data))
        }
        guard exts.filter({ $0.type == CertExtension.signedWithEd25519Key }).count <= 1 else {
            throw TorCryptoError.malformedCertificate("Ed25519 cert: duplicate signed-with-key extension")
        }
        extensions = exts
        guard r.remaining == 64 else {
            throw TorCryptoError.malformedCertificate("Ed25519 cert: \(r.remaining) bytes where the 64-byte signature belongs")
        }
        signature = try r.take(64)
        encoded = bytes
    }

    /// Verifies the certificate: the signing key is `signingKey` if given, else the one in extension 04
    /// (if both are present they must agree); every AFFECTS_VALIDATION extension must be understood; the
    /// signature must verify; and the certificate must not have expired at `now` (C tor's rule: expired
    /// once `now` is past the expiration hour).
    public func check(signingKey: Ed25519Identity?, at now: Date) throws -> Ed25519Cert {
        for e in extensions where e.flags & CertExtension.affectsValidation != 0 && e.type != CertExtension.signedWithEd25519Key {
            throw TorCryptoError.unrecognizedCriticalExtension(e.type)
        }
        let signer: Ed25519Identity
        switch (signingKey, includedSigningKey) {
        case let (given?, included?):
            guard given.bytes == included else { throw TorCryptoError.certificateMismatch("signing key differs from extension 04") }
            signer = given
        case let (given?, nil): signer = given
        case let (nil, included?): signer = try Ed25519Identity(bytes: included)
        case (nil, nil): throw TorCryptoError.certificateMismatch("no signing key known for \(certType)")
        }
        guard try signer.publicKey().isValidSignature(signature, for: encoded.dropLast(64)) else {
            throw TorCryptoError.badSignature
        }
        guard now <= expiry else { throw TorCryptoError.expired }
        return Ed25519Cert(unchecked: self, signer: signer)
    }
}

/// A Tor Ed25519 certificate whose signature and expiry have been checked.
public struct Ed25519Cert: Hashable, Sendable {
    public let unchecked: UncheckedEd25519Cert
    public let signingKey: Ed25519Identity

    init(unchecked: UncheckedEd25519Cert, signer: Ed25519Identity) {
        self.unchecked = unchecked
        self.signingKey = signer
    }

    public var encoded: [UInt8] { unchecked.encoded }
    public var certType: TorCertType { unchecked.certType }
    public var keyType: CertifiedKeyType { unchecked.keyType }
    public var certifiedKey: [UInt8] { unchecked.certifiedKey }
    public var expiry: Date { unchecked.expiry }

    /// Issues a certificate. Expiry is rounded up to a whole hour (never earlier than asked). With
    /// `includeSigningKey` the signer's public key goes in extension 04 (required on type-4 certs).
    public static func issue(
        type: TorCertType, keyType: CertifiedKeyType, certifiedKey: [UInt8], signer: Curve25519.Signing.PrivateKey,
        expires: Date, includeSigningKey: Bool
    ) throws -> Ed25519Cert {
        try requireLength(certifiedKey, 32, "certified key")
        let hours = (expires.timeIntervalSince1970 / 3600).rounded(.up)
        guard hours >= 0, hours <= TimeInterval(UInt32.max) else { throw TorCryptoError.malformedCertificate("expiry out of range") }
        let signerID = Ed25519Identity(signer.publicKey)
        var body: [UInt8] = [0x01, type.rawValue]
        body.appendBE(UInt32(hours))
        body.append(keyType.rawValue)
        body += certifiedKey
        if includeSigningKey {
            body.append(1)
            body.appendBE(UInt16(32))
            body += [CertExtension.signedWithEd25519Key, 0x00]
            body += signerID.bytes
        } else {
            body.append(0)
        }
        let sig: [UInt8]
        do { sig = Array(try signer.signature(for: body)) } catch { throw TorCryptoError.badKey("Ed25519 signing failed") }
        let unchecked = try UncheckedEd25519Cert(parsing: body + sig)
        return Ed25519Cert(unchecked: unchecked, signer: signerID)
    }
}

/// The RSA→Ed25519 cross-certificate (cert-spec §2.3, CERTS type 7), not yet trusted.
public struct UncheckedRSACrossCert: Hashable, Sendable {
    static let prefix = Array("Tor TLS RSA/Ed25519 cross-certificate".utf8)

    public let encoded: [UInt8]
    public let ed25519Key: Ed25519Identity
    public let expirationHours: UInt32
    public let signature: [UInt8]

    public var expiry: Date { Date(timeIntervalSince1970: TimeInterval(expirationHours) * 3600) }

    public init(parsing bytes: [UInt8]) throws {
        var r = ByteReader(bytes, what: "RSA cross-cert")
        ed25519Key = try Ed25519Identity(bytes: try r.take(32))
        expirationHours = try r.u32()
        let siglen = try r.u8()
        signature = try r.take(Int(siglen))
        guard r.remaining == 0 else { throw TorCryptoError.malformedCertificate("RSA cross-cert: trailing bytes") }
        encoded = bytes
    }

    /// What the RSA key signs: SHA256(prefix | ED25519_KEY | EXPIRATION).
    static func digest(_ signed: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: prefix + signed)) }

    /// Verifies the RSA signature under `rsaKey` and the expiry at `now`.
    public func check(rsaKey: RSAPublicKey, at now: Date) throws -> RSACrossCert {
        guard rsaKey.verifyTorSignature(signature, message: Self.digest(Array(encoded.prefix(36)))) else {
            throw TorCryptoError.badSignature
        }
        guard now <= expiry else { throw TorCryptoError.expired }
        return RSACrossCert(unchecked: self, rsaKey: rsaKey)
    }
}

/// A verified RSA→Ed25519 cross-certificate.
public struct RSACrossCert: Hashable, Sendable {
    public let unchecked: UncheckedRSACrossCert
    public let rsaKey: RSAPublicKey

    public var encoded: [UInt8] { unchecked.encoded }
    public var ed25519Key: Ed25519Identity { unchecked.ed25519Key }
    public var expiry: Date { unchecked.expiry }

    public static func issue(ed25519Key: Ed25519Identity, rsaKey: RSAPrivateKey, expires: Date) throws -> RSACrossCert {
        let hours = (expires.timeIntervalSince1970 / 3600).rounded(.up)
        guard hours >= 0, hours <= TimeInterval(UInt32.max) else { throw TorCryptoError.malformedCertificate("expiry out of range") }
        var signed = ed25519Key.bytes
        signed.appendBE(UInt32(hours))
        let sig = try rsaKey.torSignature(UncheckedRSACrossCert.digest(signed))
        guard sig.count <= 255 else { throw TorCryptoError.badKey("RSA key too large for a cross-cert") }
        let unchecked = try UncheckedRSACrossCert(parsing: signed + [UInt8(sig.count)] + sig)
        return RSACrossCert(unchecked: unchecked, rsaKey: rsaKey.publicKey)
    }
}
