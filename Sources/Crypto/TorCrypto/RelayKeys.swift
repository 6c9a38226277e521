import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How long the certificates `RelayKeys` issues stay valid. Defaults follow C tor: 30-day signing cert,
/// 2-day link and auth certs (TestingLinkCertLifetime / TestingAuthKeyLifetime).
public struct RelayCertLifetimes: Sendable {
    public var signingCert: TimeInterval = 30 * 86400
    public var linkCert: TimeInterval = 2 * 86400
    public var authCert: TimeInterval = 2 * 86400
    /// RSA identity X.509 (type 2).
    public var identityCert: TimeInterval = 365 * 86400
    /// RSA→Ed25519 cross-cert (type 7); C tor issues it for ten years.
    public var crossCert: TimeInterval = 10 * 365 * 86400
    public init() {}
}

/// All long- and short-term keys and certificates a relay needs for the link handshake (CERTS types 2, 4,
/// 5, 6, 7 and AUTHENTICATE), circuit handshakes (ntor onion key) and descriptors (legacy TAP onion key).
public struct RelayKeys: Sendable {
    public let rsaIdentity: RSAPrivateKey                // RSA-1024, fingerprint
    public private(set) var rsaIdentityCert: X509Certificate  // CERTS type 2, self-signed
    public let ed25519Identity: Ed25519SigningKey        // master identity
    public private(set) var crossCert: RSACrossCert      // CERTS type 7
    public private(set) var signingKey: Ed25519SigningKey
    public private(set) var signingCert: Ed25519Cert     // CERTS type 4: identity → signing
    public private(set) var linkKey: RSAPrivateKey       // RSA-2048 TLS key (C tor requires an RSA leaf)
    public private(set) var linkCert: X509Certificate    // TLS certificate
    public private(set) var linkCertEd: Ed25519Cert      // CERTS type 5: signing → SHA-256(linkCert)
    public private(set) var authKey: Ed25519SigningKey  // signs AUTHENTICATE
    public private(set) var authCert: Ed25519Cert        // CERTS type 6: signing → authKey
    public let ntorKey: NtorSecretKey
    public let legacyOnionKey: RSAPrivateKey             // RSA-1024 TAP key, still required in descriptors

    public var fingerprint: RSAIdentity { rsaIdentity.publicKey.identity }
    public var edIdentity: Ed25519Identity { ed25519Identity.publicKey }

    /// Raw CERTS cell entries a responder (or authenticating initiator) sends, in C tor's order.
    public var certsCellEntries: [(type: UInt8, body: [UInt8])] {
        [(2, rsaIdentityCert.der), (7, crossCert.encoded), (4, signingCert.encoded), (5, linkCertEd.encoded),
         (6, authCert.encoded)]
    }

    public static func generate(now: Date, lifetimes: RelayCertLifetimes = .init()) throws -> RelayKeys {
        let rsa = try RSAPrivateKey.generate(bits: 1024)
        let ed = Ed25519SigningKey()
        let signing = Ed25519SigningKey()
        let link = try issueLink(signingKey: signing, now: now, lifetimes: lifetimes)
        let auth = try issueAuth(signingKey: signing, now: now, lifetimes: lifetimes)
        return RelayKeys(
            rsaIdentity: rsa,
            rsaIdentityCert: try issueIdentityCert(rsa, now: now, lifetimes: lifetimes),
            ed25519Identity: ed,
            crossCert: try RSACrossCert.issue(ed25519Key: ed.publicKey, rsaKey: rsa, expires: now + lifetimes.crossCert),
            signingKey: signing,
            signingCert: try issueSigningCert(identity: ed, signing: signing, now: now, lifetimes: lifetimes),
            linkKey: link.key, linkCert: link.cert, linkCertEd: link.ed,
            authKey: auth.key, authCert: auth.cert,
            ntorKey: NtorSecretKey.generate(identity: rsa.publicKey.identity),
            legacyOnionKey: try RSAPrivateKey.generate(bits: 1024))
    }

    /// Re-issues every certificate with less than half its lifetime left at `now` (a new signing key
    /// re-issues the link and auth certs it signs). Returns true if anything changed (then save).
    @discardableResult
    public mutating func renew(now: Date, lifetimes: RelayCertLifetimes = .init()) throws -> Bool {
        func due(_ expiry: Date, _ lifetime: TimeInterval) -> Bool { expiry.timeIntervalSince(now) < lifetime / 2 }
        var changed = false
        if due(rsaIdentityCert.notAfter, lifetimes.identityCert) {
            rsaIdentityCert = try Self.issueIdentityCert(rsaIdentity, now: now, lifetimes: lifetimes)
            changed = true
        }
        if due(crossCert.expiry, lifetimes.crossCert) {
            crossCert = try RSACrossCert.issue(ed25519Key: edIdentity, rsaKey: rsaIdentity, expires: now + lifetimes.crossCert)
            changed = true
        }
        var newSigning = false
        if due(signingCert.expiry, lifetimes.signingCert) {
            signingKey = Ed25519SigningKey()
            signingCert = try Self.issueSigningCert(identity: ed25519Identity, signing: signingKey, now: now, lifetimes: lifetimes)
            newSigning = true
            changed = true
        }
        if newSigning || due(linkCertEd.expiry, lifetimes.linkCert) {
            let link = try Self.issueLink(signingKey: signingKey, now: now, lifetimes: lifetimes)
            (linkKey, linkCert, linkCertEd) = (link.key, link.cert, link.ed)
            changed = true
        }
        if newSigning || due(authCert.expiry, lifetimes.authCert) {
            let auth = try Self.issueAuth(signingKey: signingKey, now: now, lifetimes: lifetimes)
            (authKey, authCert) = (auth.key, auth.cert)
            changed = true
        }
        return changed
    }

    // MARK: issuing

    static func randomHostname(_ tld: String) -> String { "www.\(secureRandomBytes(6).hexString).\(tld)" }

    static func issueIdentityCert(_ rsa: RSAPrivateKey, now: Date, lifetimes: RelayCertLifetimes) throws -> X509Certificate {
        // Backdated a day, as C tor does, so peers with slow clocks accept it.
        try X509Certificate.selfSigned(
            key: rsa, commonName: randomHostname("com"), notBefore: now - 86400, notAfter: now + lifetimes.identityCert)
    }

    static func issueSigningCert(identity: Ed25519SigningKey, signing: Ed25519SigningKey, now: Date,
                                 lifetimes: RelayCertLifetimes) throws -> Ed25519Cert {
        try Ed25519Cert.issue(
            type: .identityToSigning, keyType: .ed25519, certifiedKey: signing.publicKey.bytes, signer: identity.key,
            expires: now + lifetimes.signingCert, includeSigningKey: true)
    }

    static func issueLink(signingKey: Ed25519SigningKey, now: Date, lifetimes: RelayCertLifetimes) throws
        -> (key: RSAPrivateKey, cert: X509Certificate, ed: Ed25519Cert)
    {
        let key = try RSAPrivateKey.generate(bits: 2048)
        // The X.509 outlives its type-5 cert by a day so a renewal race never leaves a TLS cert expired.
        let cert = try X509Certificate.selfSigned(
            key: key, commonName: randomHostname("net"), notBefore: now - 86400, notAfter: now + lifetimes.linkCert + 86400)
        let ed = try Ed25519Cert.issue(
            type: .signingToTLSLink, keyType: .sha256OfX509, certifiedKey: cert.sha256, signer: signingKey.key,
            expires: now + lifetimes.linkCert, includeSigningKey: false)
        return (key, cert, ed)
    }

    static func issueAuth(signingKey: Ed25519SigningKey, now: Date, lifetimes: RelayCertLifetimes) throws
        -> (key: Ed25519SigningKey, cert: Ed25519Cert)
    {
        let key = Ed25519SigningKey()
        let cert = try Ed25519Cert.issue(
            type: .signingToAuth, keyType: .ed25519, certifiedKey: key.publicKey.bytes, signer: signingKey.key,
            expires: now + lifetimes.authCert, includeSigningKey: false)
        return (key, cert)
    }

    // MARK: storage

    enum File: String, CaseIterable {
        case rsaIdentity = "rsa_identity.pem", rsaIdentityCert = "rsa_identity_cert.der"
        case edIdentity = "ed25519_identity.secret", crossCert = "rsa_ed25519_crosscert"
        case signingKey = "ed25519_signing.secret", signingCert = "ed25519_signing.cert"
        case linkKey = "link_key.pem", linkCert = "link_cert.der", linkCertEd = "link.cert"
        case authKey = "auth.secret", authCert = "auth.cert"
        case ntorKey = "ntor_onion.secret", legacyOnionKey = "legacy_onion.pem"
    }

    /// Writes every key and certificate into `directory` (created 0700), each file 0600, atomically.
    public func save(to directory: URL) throws {
        try ensureDirectory(directory)
        let contents: [File: [UInt8]] = [
            .rsaIdentity: try rsaIdentity.pem(), .rsaIdentityCert: rsaIdentityCert.der,
            .edIdentity: ed25519Identity.seed, .crossCert: crossCert.encoded,
            .signingKey: signingKey.seed, .signingCert: signingCert.encoded,
            .linkKey: try linkKey.pem(), .linkCert: linkCert.der, .linkCertEd: linkCertEd.encoded,
            .authKey: authKey.seed, .authCert: authCert.encoded,
            .ntorKey: ntorKey.rawPrivateKey, .legacyOnionKey: try legacyOnionKey.pem(),
        ]
        for (file, bytes) in contents { try writeSecretFile(directory.appendingPathComponent(file.rawValue), bytes) }
    }

    /// Loads a directory written by `save` and checks that every certificate is signed by, and certifies,
    /// the keys beside it. Expiry is not checked here: call `renew(now:)` afterwards.
    public static func load(from directory: URL) throws -> RelayKeys {
        func read(_ f: File) throws -> [UInt8] {
            do { return Array(try Data(contentsOf: directory.appendingPathComponent(f.rawValue))) } catch {
                throw TorCryptoError.io("reading \(f.rawValue): \(error.localizedDescription)")
            }
        }
        // Signatures and bindings only; the epoch is before every expiry.
        let anyTime = Date(timeIntervalSince1970: 0)
        let rsa = try RSAPrivateKey(pem: read(.rsaIdentity))
        let idCert = try X509Certificate(der: read(.rsaIdentityCert))
        guard idCert.publicKey == rsa.publicKey, idCert.isSigned(by: rsa.publicKey) else {
            throw TorCryptoError.certificateMismatch("\(File.rsaIdentityCert.rawValue) is not for the RSA identity")
        }
        let ed = try Ed25519SigningKey(seed: read(.edIdentity))
        let cross = try UncheckedRSACrossCert(parsing: read(.crossCert)).check(rsaKey: rsa.publicKey, at: anyTime)
        guard cross.ed25519Key == ed.publicKey else { throw TorCryptoError.certificateMismatch("cross-cert names another key") }
        let signing = try Ed25519SigningKey(seed: read(.signingKey))
        let signingCert = try checkBinding(read(.signingCert), .identityToSigning, signer: ed.publicKey, certifies: signing.publicKey.bytes, at: anyTime)
        let linkKey = try RSAPrivateKey(pem: read(.linkKey))
        let linkCert = try X509Certificate(der: read(.linkCert))
        guard linkCert.publicKey == linkKey.publicKey else { throw TorCryptoError.certificateMismatch("link cert is not for the link key") }
        let linkCertEd = try checkBinding(read(.linkCertEd), .signingToTLSLink, signer: signing.publicKey, certifies: linkCert.sha256, at: anyTime)
        let auth = try Ed25519SigningKey(seed: read(.authKey))
        let authCert = try checkBinding(read(.authCert), .signingToAuth, signer: signing.publicKey, certifies: auth.publicKey.bytes, at: anyTime)
        return RelayKeys(
            rsaIdentity: rsa, rsaIdentityCert: idCert, ed25519Identity: ed, crossCert: cross,
            signingKey: signing, signingCert: signingCert, linkKey: linkKey, linkCert: linkCert, linkCertEd: linkCertEd,
            authKey: auth, authCert: authCert,
            ntorKey: try NtorSecretKey(identity: rsa.publicKey.identity, rawPrivateKey: read(.ntorKey)),
            legacyOnionKey: try RSAPrivateKey(pem: read(.legacyOnionKey)))
    }

    /// Loads `directory` if it holds keys (generating them otherwise), renews what is due, and saves if
    /// anything changed.
    public static func loadOrCreate(directory: URL, now: Date, lifetimes: RelayCertLifetimes = .init()) throws -> RelayKeys {
        let marker = directory.appendingPathComponent(File.rsaIdentity.rawValue).path
        if FileManager.default.fileExists(atPath: marker) {
            var keys = try load(from: directory)
            if try keys.renew(now: now, lifetimes: lifetimes) { try keys.save(to: directory) }
            return keys
        }
        let keys = try generate(now: now, lifetimes: lifetimes)
        try keys.save(to: directory)
        return keys
    }

    private static func checkBinding(_ bytes: [UInt8], _ type: TorCertType, signer: Ed25519Identity, certifies: [UInt8],
                                     at time: Date) throws -> Ed25519Cert {
        let cert = try UncheckedEd25519Cert(parsing: bytes).check(signingKey: signer, at: time)
        guard cert.certType == type, cert.certifiedKey == certifies else {
            throw TorCryptoError.certificateMismatch("\(type) does not certify the stored key")
        }
        return cert
    }
}

private func ensureDirectory(_ url: URL) throws {
    do {
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    } catch {
        throw TorCryptoError.io("creating \(url.path): \(error.localizedDescription)")
    }
}

/// Writes via a 0600 temporary file and rename, so a crash never leaves a half-written or world-readable key.
private func writeSecretFile(_ url: URL, _ bytes: [UInt8]) throws {
    let tmp = url.path + ".tmp"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw TorCryptoError.io("open \(tmp): errno \(errno)") }
    // The first failing call's errno, saved before close/unlink can overwrite it.
    var failure: Int32 = 0
    if fchmod(fd, 0o600) != 0 { failure = errno }  // in case the file already existed with wider permissions
    var offset = 0
    while failure == 0 && offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
        if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { failure = n < 0 ? errno : EIO }
    }
    if failure == 0 && fsync(fd) != 0 { failure = errno }
    close(fd)
    if failure == 0 && rename(tmp, url.path) != 0 { failure = errno }
    guard failure == 0 else {
        unlink(tmp)
        throw TorCryptoError.io("writing \(url.path): errno \(failure)")
    }
}
