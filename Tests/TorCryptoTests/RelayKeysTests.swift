import Foundation
import Testing
@testable import TorCrypto

@Suite struct RelayKeysTests {
    func tempDir() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("torcrypto-\(UUID().uuidString)")
    }

    /// Checks the bundle the way a C tor initiator checks a responder's CERTS cell (torcert.c).
    func checkLikeCTor(_ k: RelayKeys, at now: Date) throws {
        let entries = Dictionary(uniqueKeysWithValues: k.certsCellEntries.map { ($0.type, $0.body) })
        #expect(entries.keys.sorted() == [2, 4, 5, 6, 7])
        let rsa = try X509Certificate(der: entries[2]!).checkAsTorIdentityCert(at: now)
        #expect(rsa.identity == k.fingerprint)
        let c4 = try UncheckedEd25519Cert(parsing: entries[4]!).check(signingKey: nil, at: now)
        #expect(c4.signingKey == k.edIdentity && c4.certType == .identityToSigning)
        let signing = try Ed25519Identity(bytes: c4.certifiedKey)
        let c5 = try UncheckedEd25519Cert(parsing: entries[5]!).check(signingKey: signing, at: now)
        #expect(c5.keyType == .sha256OfX509 && c5.certifiedKey == TorDigest.sha256(k.linkCert.der))
        let c6 = try UncheckedEd25519Cert(parsing: entries[6]!).check(signingKey: signing, at: now)
        #expect(c6.certifiedKey == k.authKey.publicKey.bytes)
        let c7 = try UncheckedRSACrossCert(parsing: entries[7]!).check(rsaKey: rsa, at: now)
        #expect(c7.ed25519Key == k.edIdentity)
        #expect(k.linkKey.publicKey.bits == 2048 && k.linkCert.publicKey == k.linkKey.publicKey)
        #expect(k.linkCert.isSigned(by: k.linkKey.publicKey) && k.linkCert.notAfter > c5.expiry)
        #expect(k.rsaIdentity.publicKey.bits == 1024 && k.legacyOnionKey.publicKey.bits == 1024)
        #expect(k.ntorKey.identity == k.fingerprint)
        // AUTHENTICATE signatures made with the auth key verify under the type-6 certified key.
        let sig = try k.authKey.sign(Array("AUTH0003".utf8))
        #expect(try Ed25519Identity(bytes: c6.certifiedKey).isValidSignature(sig, for: Array("AUTH0003".utf8)))
    }

    @Test func generateSaveLoadRenew() throws {
        let now = Date()
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let keys = try RelayKeys.loadOrCreate(directory: dir, now: now)
        try checkLikeCTor(keys, at: now)

        for f in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
            let attrs = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent(f).path)
            #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o600, "\(f)")
            #expect(!f.hasSuffix(".tmp"))
        }
        let loaded = try RelayKeys.loadOrCreate(directory: dir, now: now)
        #expect(loaded.fingerprint == keys.fingerprint && loaded.edIdentity == keys.edIdentity)
        #expect(loaded.certsCellEntries.map(\.body) == keys.certsCellEntries.map(\.body))
        #expect(loaded.ntorKey.publicKey == keys.ntorKey.publicKey)

        // Nothing is due right away; three days later the 2-day certs are re-issued, identity kept.
        var renewed = loaded
        #expect(try renewed.renew(now: now) == false)
        let later = now + 3 * 86400
        #expect(try renewed.renew(now: later))
        #expect(renewed.linkCert != keys.linkCert && renewed.authCert != keys.authCert)
        #expect(renewed.signingCert == keys.signingCert && renewed.fingerprint == keys.fingerprint)
        try checkLikeCTor(renewed, at: later)
        // After 20 days the signing key rotates too.
        #expect(try renewed.renew(now: now + 20 * 86400))
        #expect(renewed.signingKey.publicKey != keys.signingKey.publicKey)
        try checkLikeCTor(renewed, at: now + 20 * 86400)
    }

    @Test func loadRejectsMismatchedFiles() throws {
        let now = Date()
        let a = tempDir(), b = tempDir()
        defer { try? FileManager.default.removeItem(at: a); try? FileManager.default.removeItem(at: b) }
        try RelayKeys.generate(now: now).save(to: a)
        try RelayKeys.generate(now: now).save(to: b)
        // Swap in another relay's signing cert: its type-4 cert is signed by a different identity.
        try FileManager.default.removeItem(at: a.appendingPathComponent("ed25519_signing.cert"))
        try FileManager.default.copyItem(at: b.appendingPathComponent("ed25519_signing.cert"), to: a.appendingPathComponent("ed25519_signing.cert"))
        #expect(throws: TorCryptoError.self) { try RelayKeys.load(from: a) }
        #expect(throws: TorCryptoError.self) { try RelayKeys.load(from: a.appendingPathComponent("missing")) }
    }

    @Test func runningSHA256AndDigests() {
        var r = RunningSHA256()
        r.update([1, 2, 3])
        #expect(r.current == TorDigest.sha256([1, 2, 3]))
        r.update([4])
        #expect(r.current == TorDigest.sha256([1, 2, 3, 4]))
        #expect(TorDigest.sha1(Array("abc".utf8)) == hex("a9993e364706816aba3e25717850c26c9cd0d89d"))
    }
}

@Suite struct PeerCertificatesTests {
    @Test func verifiesOurOwnBundleBothWays() throws {
        let now = Date()
        let keys = try RelayKeys.generate(now: now)
        let entries = keys.certsCellEntries
        let responder = try PeerCertificates.verifyResponder(entries, tlsCertificateDER: keys.linkCert.der, at: now)
        #expect(responder.rsaIdentity == keys.fingerprint && responder.ed25519Identity == keys.edIdentity)
        #expect(responder.signingKey == keys.signingKey.publicKey && responder.authKey == nil)
        let initiator = try PeerCertificates.verifyInitiator(entries, at: now)
        #expect(initiator.authKey == keys.authKey.publicKey)

        // Wrong TLS certificate, a missing or duplicated entry, another relay's cross-cert, expiry.
        let other = try RelayKeys.generate(now: now)
        #expect(throws: TorCryptoError.self) {
            try PeerCertificates.verifyResponder(entries, tlsCertificateDER: other.linkCert.der, at: now)
        }
        #expect(throws: TorCryptoError.self) {
            try PeerCertificates.verifyResponder(entries.filter { $0.type != 7 }, tlsCertificateDER: keys.linkCert.der, at: now)
        }
        #expect(throws: TorCryptoError.self) {
            try PeerCertificates.verifyResponder(entries + [entries[0]], tlsCertificateDER: keys.linkCert.der, at: now)
        }
        let swapped = entries.map { $0.type == 7 ? (type: UInt8(7), body: other.crossCert.encoded) : $0 }
        #expect(throws: TorCryptoError.badSignature) {
            try PeerCertificates.verifyResponder(swapped, tlsCertificateDER: keys.linkCert.der, at: now)
        }
        #expect(throws: TorCryptoError.expired) {
            try PeerCertificates.verifyResponder(entries, tlsCertificateDER: keys.linkCert.der, at: now + 3 * 86400)
        }
        #expect(throws: TorCryptoError.self) { try PeerCertificates.verifyInitiator(entries.filter { $0.type != 6 }, at: now) }
    }
}

@Suite struct LinkAuth3Tests {
    @Test func buildAndVerify() throws {
        let now = Date()
        let initiator = try RelayKeys.generate(now: now), responder = try RelayKeys.generate(now: now)
        let t = LinkAuth3.Transcript(
            initiatorRSA: initiator.rsaIdentity.publicKey, responderRSA: responder.rsaIdentity.publicKey,
            initiatorEd: initiator.edIdentity, responderEd: responder.edIdentity,
            responderLog: TorDigest.sha256([1]), initiatorLog: TorDigest.sha256([2]),
            responderTLSCertSHA256: responder.linkCert.sha256, tlsSecrets: secureRandomBytes(32))
        let rand = [UInt8](repeating: 0x42, count: 24)
        let body = try LinkAuth3.makeBody(t, authKey: initiator.authKey, random: rand)
        #expect(body.count == LinkAuth3.bodyLength)
        // Layout: TYPE | CID | SID | CID_ED | SID_ED | SLOG | CLOG | SCERT | TLSSECRETS | RAND | SIG.
        #expect(Array(body[0..<8]) == Array("AUTH0003".utf8))
        #expect(Array(body[8..<40]) == LinkAuth3.exporterContext(initiatorRSA: initiator.rsaIdentity.publicKey))
        #expect(Array(body[72..<104]) == initiator.edIdentity.bytes && Array(body[264..<288]) == rand)

        // The responder learns the auth key from the initiator's CERTS cell.
        let peer = try PeerCertificates.verifyInitiator(initiator.certsCellEntries, at: now)
        try LinkAuth3.verifyBody(body, expected: t, authKey: #require(peer.authKey))

        // A mismatch names the fields that differ.
        var otherSecrets = t
        otherSecrets.tlsSecrets = secureRandomBytes(32)
        #expect(throws: TorCryptoError.certificateMismatch("AUTHENTICATE field TLSSECRETS does not match this channel")) {
            try LinkAuth3.verifyBody(body, expected: otherSecrets, authKey: peer.authKey!)
        }
        var otherLogs = t
        otherLogs.responderLog = TorDigest.sha256([3])
        otherLogs.initiatorLog = TorDigest.sha256([4])
        #expect(throws: TorCryptoError.certificateMismatch("AUTHENTICATE fields SLOG, CLOG do not match this channel")) {
            try LinkAuth3.verifyBody(body, expected: otherLogs, authKey: peer.authKey!)
        }
        var otherInitiator = t
        otherInitiator.initiatorRSA = responder.rsaIdentity.publicKey
        #expect(throws: TorCryptoError.certificateMismatch("AUTHENTICATE field CID does not match this channel")) {
            try LinkAuth3.verifyBody(body, expected: otherInitiator, authKey: peer.authKey!)
        }
        for (range, name) in [(0..<8, "TYPE"), (40..<72, "SID"), (104..<136, "SID_ED"), (200..<232, "SCERT")] {
            var tampered = body
            tampered[range.lowerBound + 3] ^= 0x20
            #expect(throws: TorCryptoError.certificateMismatch("AUTHENTICATE field \(name) does not match this channel")) {
                try LinkAuth3.verifyBody(tampered, expected: t, authKey: peer.authKey!)
            }
        }
        var badSig = body
        badSig[300] ^= 1
        #expect(throws: TorCryptoError.badSignature) { try LinkAuth3.verifyBody(badSig, expected: t, authKey: peer.authKey!) }
        #expect(throws: TorCryptoError.self) { try LinkAuth3.verifyBody(Array(body.prefix(100)), expected: t, authKey: peer.authKey!) }
        #expect(throws: TorCryptoError.badSignature) {
            try LinkAuth3.verifyBody(body, expected: t, authKey: responder.authKey.publicKey)
        }
    }
}
