import Foundation

/// A peer's identities as proven by its CERTS cell (tor-spec §4.2, C tor `or_handshake_certs_check_both`).
public struct VerifiedPeerIdentity: Sendable, Hashable {
    public let rsaIdentity: RSAIdentity
    public let rsaKey: RSAPublicKey
    public let ed25519Identity: Ed25519Identity
    /// The medium-term signing key the type-4 cert certifies.
    public let signingKey: Ed25519Identity
    /// The AUTHENTICATE key (type-6 cert), when checking an authenticating initiator.
    public let authKey: Ed25519Identity?
}

/// Checks the certificates of a CERTS cell, given as raw `(type, body)` entries (TorCells decodes the cell).
public enum PeerCertificates {
    /// What the connection initiator requires of the responder: types 2, 7, 4 and 5, with the type-5 cert
    /// certifying the SHA-256 of the TLS certificate the responder presented (`tlsCertificateDER`).
    public static func verifyResponder(
        _ entries: [(type: UInt8, body: [UInt8])], tlsCertificateDER: [UInt8], at now: Date
    ) throws -> VerifiedPeerIdentity {
        try verifyResponder(entries, tlsCertificateSHA256: TorDigest.sha256(tlsCertificateDER), at: now)
    }

    /// As above, given the SHA-256 of the responder's TLS certificate.
    public static func verifyResponder(
        _ entries: [(type: UInt8, body: [UInt8])], tlsCertificateSHA256: [UInt8], at now: Date
    ) throws -> VerifiedPeerIdentity {
        let certs = try index(entries)
        let base = try verifyCommon(certs, at: now)
        let link = try require(certs, TorCertType.signingToTLSLink.rawValue)
        let c5 = try UncheckedEd25519Cert(parsing: link).check(signingKey: base.signingKey, at: now)
        guard c5.certType == .signingToTLSLink else { throw TorCryptoError.certificateMismatch("type 5 entry is \(c5.certType)") }
        guard constantTimeEqual(c5.certifiedKey, tlsCertificateSHA256) else {
            throw TorCryptoError.certificateMismatch("type 5 cert does not certify the TLS certificate")
        }
        return base
    }

    /// What the responder requires of an initiator that AUTHENTICATEs with method 3: types 2, 7, 4 and 6.
    /// The returned `authKey` must then verify the AUTHENTICATE signature.
    public static func verifyInitiator(_ entries: [(type: UInt8, body: [UInt8])], at now: Date) throws -> VerifiedPeerIdentity {
        let certs = try index(entries)
        let base = try verifyCommon(certs, at: now)
        let auth = try require(certs, TorCertType.signingToAuth.rawValue)
        let c6 = try UncheckedEd25519Cert(parsing: auth).check(signingKey: base.signingKey, at: now)
        guard c6.certType == .signingToAuth else { throw TorCryptoError.certificateMismatch("type 6 entry is \(c6.certType)") }
        return VerifiedPeerIdentity(
            rsaIdentity: base.rsaIdentity, rsaKey: base.rsaKey, ed25519Identity: base.ed25519Identity,
            signingKey: base.signingKey, authKey: try Ed25519Identity(bytes: c6.certifiedKey))
    }

    private static func index(_ entries: [(type: UInt8, body: [UInt8])]) throws -> [UInt8: [UInt8]] {
        var out: [UInt8: [UInt8]] = [:]
        for e in entries {
            guard out.updateValue(e.body, forKey: e.type) == nil else {
                throw TorCryptoError.malformedCertificate("CERTS: duplicate cert type \(e.type)")
            }
        }
        return out
    }

    private static func require(_ certs: [UInt8: [UInt8]], _ type: UInt8) throws -> [UInt8] {
        guard let body = certs[type] else { throw TorCryptoError.certificateMismatch("CERTS: missing cert type \(type)") }
        return body
    }

    /// Types 2 (RSA identity), 4 (Ed25519 identity → signing, with the identity in extension 04) and
    /// 7 (RSA → Ed25519 cross-cert binding the two identities).
    private static func verifyCommon(_ certs: [UInt8: [UInt8]], at now: Date) throws -> VerifiedPeerIdentity {
        let rsaKey = try X509Certificate(der: require(certs, 2)).checkAsTorIdentityCert(at: now)
        let c4u = try UncheckedEd25519Cert(parsing: require(certs, TorCertType.identityToSigning.rawValue))
        guard c4u.certType == .identityToSigning else { throw TorCryptoError.certificateMismatch("type 4 entry is \(c4u.certType)") }
        guard c4u.includedSigningKey != nil else { throw TorCryptoError.certificateMismatch("type 4 cert lacks the Ed25519 identity") }
        let c4 = try c4u.check(signingKey: nil, at: now)
        let cross = try UncheckedRSACrossCert(parsing: require(certs, TorCertType.rsaToEd25519.rawValue)).check(rsaKey: rsaKey, at: now)
        guard cross.ed25519Key == c4.signingKey else {
            throw TorCryptoError.certificateMismatch("cross-cert names a different Ed25519 identity")
        }
        return VerifiedPeerIdentity(
            rsaIdentity: rsaKey.identity, rsaKey: rsaKey, ed25519Identity: c4.signingKey,
            signingKey: try Ed25519Identity(bytes: c4.certifiedKey), authKey: nil)
    }
}
