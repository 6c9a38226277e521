import NIOCore
import TorCells
import TorCrypto

/// AUTHENTICATE type 3, "Ed25519-SHA256-RFC5705" (tor-spec §4.4.2): the body an authenticating initiator
/// signs with its type-6 key, and the responder rebuilds field by field to check it.
///
///     TYPE "AUTH0003" | CID | SID | CID_ED | SID_ED | SLOG | CLOG | SCERT | TLSSECRETS | RAND(24) | SIG(64)
struct LinkAuthenticationV3 {
    static let authType: UInt16 = 3
    static let typeTag = Array("AUTH0003".utf8)
    static let exporterLabel = "EXPORTER FOR TOR TLS CLIENT BINDING AUTH0003"
    static let randomLength = 24
    static let signatureLength = 64
    /// TYPE through TLSSECRETS: the part the responder must find exactly as it computes it.
    static let fixedPartLength = 8 + 32 * 8
    static let minimumBodyLength = fixedPartLength + randomLength + signatureLength

    /// SHA-256 of the initiator's RSA identity key (PKCS#1 DER).
    var cid: [UInt8]
    /// SHA-256 of the responder's RSA identity key.
    var sid: [UInt8]
    var cidEd: [UInt8]
    var sidEd: [UInt8]
    /// SHA-256 of what the responder sent, through its AUTH_CHALLENGE.
    var slog: [UInt8]
    /// SHA-256 of what the initiator sent before AUTHENTICATE.
    var clog: [UInt8]
    /// SHA-256 of the responder's TLS certificate.
    var scert: [UInt8]
    var tlsSecrets: [UInt8]

    init(initiatorRSA: RSAPublicKey, responderRSA: RSAPublicKey, initiatorEd: Ed25519Identity,
         responderEd: Ed25519Identity, slog: [UInt8], clog: [UInt8], scert: [UInt8],
         exporter: LinkKeyingMaterialExporter) throws {
        self.cid = TorDigest.sha256(initiatorRSA.der)
        self.sid = TorDigest.sha256(responderRSA.der)
        self.cidEd = initiatorEd.bytes
        self.sidEd = responderEd.bytes
        self.slog = slog
        self.clog = clog
        self.scert = scert
        // The exporter context is CID, the SHA-256 of the initiator's RSA identity key: that is what C tor
        // (relay_handshake.c, `auth->cid`) and arti use. tor-spec §4.4.2 says "the initiator's Ed25519
        // identity", but a relay following that text is refused by every C tor relay ("Some field in
        // the AUTHENTICATE cell body was not as expected"); our interop test against tor 0.4.9 shows it.
        self.tlsSecrets = try exporter(Self.exporterLabel, cid, 32)
        guard tlsSecrets.count == 32 else {
            throw TorChannelError.missingLinkInformation("exporter returned \(tlsSecrets.count) bytes, expected 32")
        }
    }

    var fixedPart: [UInt8] {
        var out = Self.typeTag
        out.reserveCapacity(Self.fixedPartLength)
        for field in [cid, sid, cidEd, sidEd, slog, clog, scert, tlsSecrets] { out += field }
        return out
    }

    /// The initiator's AUTHENTICATE body: fixed part, RAND, and the type-6 key's signature over both.
    func signedBody(random: [UInt8], authKey: Ed25519SigningKey) throws -> [UInt8] {
        guard random.count == Self.randomLength else {
            throw TorChannelError.localConfiguration("RAND must be \(Self.randomLength) bytes, got \(random.count)")
        }
        let signed = fixedPart + random
        return signed + (try authKey.sign(signed))
    }

    /// The responder's check: every field from TYPE through TLSSECRETS must match what it computed, and
    /// the signature (the last 64 bytes; extra bytes after RAND are ignored but signed) must verify under
    /// the initiator's certified AUTHENTICATE key, as C tor does.
    func verify(body: ByteBuffer, authKey: Ed25519Identity) throws(TorChannelError) {
        let bytes = Array(body.readableBytesView)
        guard bytes.count >= Self.minimumBodyLength else {
            throw .authenticationFailed("body is \(bytes.count) bytes, expected at least \(Self.minimumBodyLength)")
        }
        let expected = fixedPart
        let received = bytes[0..<Self.fixedPartLength]
        guard timingSafeEqual(received, expected) else {
            // Name the first wrong field: it tells an operator whether transcripts, identities or TLS disagree.
            let names = ["TYPE", "CID", "SID", "CID_ED", "SID_ED", "SLOG", "CLOG", "SCERT", "TLSSECRETS"]
            var offset = 0
            for (index, name) in names.enumerated() {
                let length = index == 0 ? 8 : 32
                if !timingSafeEqual(bytes[offset..<offset + length], expected[offset..<offset + length]) {
                    throw .authenticationFailed("\(name) does not match")
                }
                offset += length
            }
            throw .authenticationFailed("fixed part does not match")
        }
        let signatureStart = bytes.count - Self.signatureLength
        guard authKey.isValidSignature(Array(bytes[signatureStart...]), for: Array(bytes[..<signatureStart])) else {
            throw .authenticationFailed("bad Ed25519 signature")
        }
    }
}

/// Equality whose time depends only on the lengths (AUTHENTICATE fields include the TLS exporter value).
func timingSafeEqual<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for (x, y) in zip(a, b) { diff |= x ^ y }
    return diff == 0
}
