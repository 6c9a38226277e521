import Crypto
import Foundation
import Testing
@testable import TorCrypto

@Suite struct CertTests {
    // arti crates/tor-cert/tests/testvec_certs.rs: certs from a chutney CERTS cell, checked at 1601000000.
    let when = Date(timeIntervalSince1970: 1_601_000_000)
    let signingKey = hex("F82294B866A31F01FC5D0DA8572850A9B929545C3266558D7D2316E3B74172B0")
    let identityKey = hex("DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9")
    let type4 = hex("""
        01 04 0006CC2A 01
        F82294B866A31F01FC5D0DA8572850A9B929545C3266558D7D2316E3B74172B0
        01 0020 04 00
        DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9
        FF1A5203FA27F86EF7528D89A0845D2520166E340754FFEA2AAE0F612B7CE5DA
        094A0236CDAC45034B0B6842C18E7F6B51B93A3CF7E60663B8AD061C30A62602
        """)
    let type5 = hex("""
        01 05 0006C98A 03
        B4FD606B64E4CBD466B8D76CB131069BAE6F3AA1878857C9F624E31D77A799B8
        00
        7173E5F8068431D0D3F5EE16B4C9FFD59DF373E152A87281BAE744AA5FCF7217
        1BF4B27C4E8FC1C6A9FC5CA11058BC49647063D7903CFD9F512F89099B27BC0C
        """)
    let rsaPK = hex("30818902818100d38b1e6ceb946e0db0751f4cbace3dcb9688b6c25304227b4710c35afb73627e50500f5913e158b621802612d1c75827003703338375237552eb3cd3c12f6ab3604e60c1a2d26bb1fbad206ff023969a90909d6a65a5458a5312c26ebd3a3dad30302d4515cdcd264146ac18e6fc60a04bd3ec327f04294d96ba5aa25b464c3f0203010001")
    let wrongRsaPK = hex("30818902818100d38b1e6ceb946e0db0751f4cbace3dcb9688b6c25304227b4710c35afb73627e50500f5913e158b621802612d1c75827003703338375237552eb3cd3c12f6ab3604e60c1a2d26bb1fbad206ff023969a90909d6a65a5458a5312c26ebd6a3dad30302d4515cdcd264146ac18e6fc60a04bd3ec327f04294d96ba5aa25b464c3f0203010001")
    let crossCert = hex("""
        DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9
        0006DA3A 80
        5CF6006F9179066534DE6B45AD47A5C469063EE462762723396DC9F25452A0A5
        2DA3F5087DD239F2A311F6B0D4DFEFF4ABD089DC3D0237A0ABAB19EB2045B91C
        DCAF04BE0A72D548A27BF2E77BD876ECFE5E1BE622350DA6BF31F6E306ED8964
        88DD5B39409B23FC3EB7B2C9F7328EB18DA36D54D80575899EA6507CCBFCDF1F
        """)

    @Test func chutneyType4And5() throws {
        let c4 = try UncheckedEd25519Cert(parsing: type4)
        #expect(c4.certType == .identityToSigning && c4.certifiedKey == signingKey && c4.keyType == .ed25519)
        #expect(c4.includedSigningKey == identityKey)
        let checked4 = try c4.check(signingKey: nil, at: when)
        #expect(checked4.signingKey.bytes == identityKey)
        #expect(checked4.expiry == Date(timeIntervalSince1970: 0x6cc2a * 3600))

        let c5 = try UncheckedEd25519Cert(parsing: type5)
        #expect(c5.certType == .signingToTLSLink && c5.keyType == .sha256OfX509 && c5.includedSigningKey == nil)
        #expect(throws: TorCryptoError.self) { try c5.check(signingKey: nil, at: when) }
        let checked5 = try c5.check(signingKey: try Ed25519Identity(bytes: signingKey), at: when)
        #expect(checked5.certifiedKey == hex("B4FD606B64E4CBD466B8D76CB131069BAE6F3AA1878857C9F624E31D77A799B8"))
        // Wrong signer, expiry, tampering, truncation.
        #expect(throws: TorCryptoError.badSignature) { try c5.check(signingKey: try Ed25519Identity(bytes: identityKey), at: when) }
        #expect(throws: TorCryptoError.expired) { try c4.check(signingKey: nil, at: Date(timeIntervalSince1970: 0x6cc2a * 3600 + 1)) }
        var tampered = type4
        tampered[10] ^= 1
        #expect(throws: TorCryptoError.badSignature) { try UncheckedEd25519Cert(parsing: tampered).check(signingKey: nil, at: when) }
        for n in [0, 1, 39, type4.count - 1] {
            #expect(throws: TorCryptoError.self) { try UncheckedEd25519Cert(parsing: Array(type4.prefix(n))) }
        }
        #expect(throws: TorCryptoError.self) { try UncheckedEd25519Cert(parsing: type4 + [0]) }
    }

    @Test func chutneyRSACrossCert() throws {
        let pk = try RSAPublicKey(der: rsaPK)
        #expect(pk.bits == 1024)
        let cc = try UncheckedRSACrossCert(parsing: crossCert)
        #expect(cc.ed25519Key.bytes == identityKey)
        #expect(throws: TorCryptoError.badSignature) { try cc.check(rsaKey: try RSAPublicKey(der: wrongRsaPK), at: when) }
        let checked = try cc.check(rsaKey: pk, at: when)
        #expect(checked.ed25519Key.bytes == identityKey)
        #expect(throws: TorCryptoError.expired) { try cc.check(rsaKey: pk, at: Date(timeIntervalSince1970: 0x6DA3A * 3600 + 1)) }
        #expect(throws: TorCryptoError.self) { try UncheckedRSACrossCert(parsing: Array(crossCert.dropLast())) }
    }

    @Test func issueAndCheckEd25519Certs() throws {
        let identity = Curve25519.Signing.PrivateKey(), signing = Curve25519.Signing.PrivateKey()
        let now = Date()
        let cert = try Ed25519Cert.issue(
            type: .identityToSigning, keyType: .ed25519, certifiedKey: Array(signing.publicKey.rawRepresentation),
            signer: identity, expires: now + 3600 * 24 * 30, includeSigningKey: true)
        let reparsed = try UncheckedEd25519Cert(parsing: cert.encoded).check(signingKey: nil, at: now)
        #expect(reparsed == cert)
        #expect(reparsed.expiry >= now + 3600 * 24 * 30 && reparsed.expiry < now + 3600 * 24 * 30 + 3600)
        // An unknown extension flagged AFFECTS_VALIDATION makes the cert unusable; unflagged ones are ignored.
        for (flags, ok) in [(UInt8(1), false), (UInt8(0), true)] {
            var body: [UInt8] = [1, 6, 0, 0x10, 0, 0, 1] + [UInt8](repeating: 7, count: 32) + [1, 0, 2, 0x09, flags, 0xAA, 0xBB]
            body += Array(try signing.signature(for: body))
            let c = try UncheckedEd25519Cert(parsing: body)
            if ok {
                #expect(try c.check(signingKey: Ed25519Identity(signing.publicKey), at: now).certType == .signingToAuth)
            } else {
                #expect(throws: TorCryptoError.unrecognizedCriticalExtension(0x09)) {
                    try c.check(signingKey: Ed25519Identity(signing.publicKey), at: now)
                }
            }
        }
        // Disagreeing given and embedded signing keys.
        #expect(throws: TorCryptoError.self) {
            try UncheckedEd25519Cert(parsing: cert.encoded).check(signingKey: Ed25519Identity(signing.publicKey), at: now)
        }
    }

    @Test func rsaKeysCrossCertAndX509() throws {
        let rsa = try RSAPrivateKey.generate(bits: 1024)
        #expect(rsa.publicKey.bits == 1024)
        #expect(rsa.publicKey.der.first == 0x30)
        #expect(rsa.publicKey.identity.bytes == Array(Insecure.SHA1.hash(data: rsa.publicKey.der)))
        let reloaded = try RSAPrivateKey(pem: try rsa.pem())
        #expect(reloaded.publicKey == rsa.publicKey)
        #expect(try RSAPublicKey(der: rsa.publicKey.der) == rsa.publicKey)
        #expect(throws: TorCryptoError.self) { try RSAPublicKey(der: rsa.publicKey.der + [0]) }
        #expect(throws: TorCryptoError.self) { try RSAPrivateKey(pem: Array("nonsense".utf8)) }

        let digest = Array(SHA256.hash(data: [1, 2, 3]))
        let sig = try rsa.torSignature(digest)
        #expect(sig.count == 128)
        #expect(rsa.publicKey.verifyTorSignature(sig, message: digest))
        #expect(!rsa.publicKey.verifyTorSignature(sig, message: Array(digest.reversed())))
        #expect(!rsa.publicKey.verifyTorSignature([1, 2, 3], message: digest))

        let ed = Ed25519Identity(Curve25519.Signing.PrivateKey().publicKey)
        let now = Date()
        let cc = try RSACrossCert.issue(ed25519Key: ed, rsaKey: rsa, expires: now + 86400)
        #expect(try UncheckedRSACrossCert(parsing: cc.encoded).check(rsaKey: rsa.publicKey, at: now) == cc)

        let x509 = try X509Certificate.selfSigned(key: rsa, commonName: "www.example.net", notBefore: now - 60, notAfter: now + 86400)
        #expect(try X509Certificate(der: x509.der) == x509)
        #expect(try x509.checkAsTorIdentityCert(at: now) == rsa.publicKey)
        #expect(throws: TorCryptoError.expired) { try x509.checkAsTorIdentityCert(at: now + 2 * 86400) }
        let other = try RSAPrivateKey.generate(bits: 1024)
        #expect(!x509.isSigned(by: other.publicKey))
        #expect(throws: TorCryptoError.self) { try X509Certificate(der: Array(x509.der.dropLast())) }
    }
}

@Suite struct ChutneyCertsCellTests {
    // arti crates/tor-proto/src/channel/handshake.rs test module `certs`: a C tor relay's CERTS cell from a
    // chutney network, valid at 2020-09-26T18:01:20Z.
    let t2 = hex("308201B930820122A0030201020208607C28BE6C390943300D06092A864886F70D01010B0500301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D301E170D3230303831303030303030305A170D3231303831303030303030305A301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D30819F300D06092A864886F70D010101050003818D0030818902818100D38B1E6CEB946E0DB0751F4CBACE3DCB9688B6C25304227B4710C35AFB73627E50500F5913E158B621802612D1C75827003703338375237552EB3CD3C12F6AB3604E60C1A2D26BB1FBAD206FF023969A90909D6A65A5458A5312C26EBD3A3DAD30302D4515CDCD264146AC18E6FC60A04BD3EC327F04294D96BA5AA25B464C3F0203010001300D06092A864886F70D01010B0500038181003BCE561EA7F95CC00B78AAB5D69573FF301C282A751D4A651921D042F1BECDBA24D918A6D8A5E138DC07BBA0B335478AE37ABD2C93A93932442AE9084329E846170FE0FC4A50AAFC804F311CC3CA4F41D845A7BA5901CBBC3E021E9794AAC70CE1F37B0A951592DB1B64F2B4AFB81AE52DBD9B6FEDE96A5FB8125EB6251EE50A")
    let t4 = hex("01040006CC2A01F82294B866A31F01FC5D0DA8572850A9B929545C3266558D7D2316E3B74172B00100200400DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9FF1A5203FA27F86EF7528D89A0845D2520166E340754FFEA2AAE0F612B7CE5DA094A0236CDAC45034B0B6842C18E7F6B51B93A3CF7E60663B8AD061C30A62602")
    let t5 = hex("01050006C98A03B4FD606B64E4CBD466B8D76CB131069BAE6F3AA1878857C9F624E31D77A799B8007173E5F8068431D0D3F5EE16B4C9FFD59DF373E152A87281BAE744AA5FCF72171BF4B27C4E8FC1C6A9FC5CA11058BC49647063D7903CFD9F512F89099B27BC0C")
    let t7 = hex("DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E90006DA3A805CF6006F9179066534DE6B45AD47A5C469063EE462762723396DC9F25452A0A52DA3F5087DD239F2A311F6B0D4DFEFF4ABD089DC3D0237A0ABAB19EB2045B91CDCAF04BE0A72D548A27BF2E77BD876ECFE5E1BE622350DA6BF31F6E306ED896488DD5B39409B23FC3EB7B2C9F7328EB18DA36D54D80575899EA6507CCBFCDF1F")
    let tlsDigest = hex("b4fd606b64e4cbd466b8d76cb131069bae6f3aa1878857c9f624e31d77a799b8")
    let when = Date(timeIntervalSince1970: 1_601_143_280)

    @Test func verifiesRealCTorCertsCell() throws {
        let entries: [(type: UInt8, body: [UInt8])] = [(2, t2), (4, t4), (5, t5), (7, t7)]
        let id = try PeerCertificates.verifyResponder(entries, tlsCertificateSHA256: tlsDigest, at: when)
        #expect(id.rsaIdentity.bytes == hex("2f1fb49bb332a9eec617e41e911c33fb3890aef3"))
        #expect(id.ed25519Identity.bytes == hex("dcb604db2034b00fd16986d4adb9d16b21cb4e4457a33dec0f538903683e96e9"))
        var wrong = tlsDigest
        wrong[0] ^= 1
        #expect(throws: TorCryptoError.self) { try PeerCertificates.verifyResponder(entries, tlsCertificateSHA256: wrong, at: when) }
        // The RSA identity X.509 expired in August 2021.
        #expect(throws: TorCryptoError.expired) {
            try PeerCertificates.verifyResponder(entries, tlsCertificateSHA256: tlsDigest, at: Date(timeIntervalSince1970: 1_630_000_000))
        }
    }
}
