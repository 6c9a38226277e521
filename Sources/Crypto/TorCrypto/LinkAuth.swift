import Foundation

/// AUTHENTICATE method 3, "Ed25519-SHA256-RFC5705" (tor-spec §4.4.2): building the body as an initiator
/// and checking it as a responder. The channel layer supplies the transcript digests and the TLS exporter
/// output; everything cryptographic happens here.
public enum LinkAuth3 {
    public static let authType: UInt16 = 3
    public static let bodyLength = 352  // TYPE(8) + 8×32 + RAND(24) + SIG(64)
    static let typeString = Array("AUTH0003".utf8)
    /// Label for the TLS keying-material exporter (32 bytes out, context `exporterContext`).
    public static let exporterLabel = "EXPORTER FOR TOR TLS CLIENT BINDING AUTH0003"

    /// The exporter context C tor really uses: CID, the SHA-256 of the initiator's RSA identity key DER
    /// (the spec originally meant the Ed25519 identity; tor-spec records the deviation).
    public static func exporterContext(initiatorRSA: RSAPublicKey) -> [UInt8] { TorDigest.sha256(initiatorRSA.der) }

    /// Everything both sides must agree on.
    public struct Transcript: Sendable {
        public var initiatorRSA: RSAPublicKey
        public var responderRSA: RSAPublicKey
        public var initiatorEd: Ed25519Identity
        public var responderEd: Ed25519Identity
        /// SHA-256 of every byte the responder sent, through AUTH_CHALLENGE.
        public var responderLog: [UInt8]
        /// SHA-256 of every byte the initiator sent before AUTHENTICATE.
        public var initiatorLog: [UInt8]
        /// SHA-256 of the responder's TLS certificate DER.
        public var responderTLSCertSHA256: [UInt8]
        /// 32 bytes from the TLS exporter (`exporterLabel`, `exporterContext`).
        public var tlsSecrets: [UInt8]

        public init(initiatorRSA: RSAPublicKey, responderRSA: RSAPublicKey, initiatorEd: Ed25519Identity,
                    responderEd: Ed25519Identity, responderLog: [UInt8], initiatorLog: [UInt8],
                    responderTLSCertSHA256: [UInt8], tlsSecrets: [UInt8]) {
            self.initiatorRSA = initiatorRSA
            self.responderRSA = responderRSA
            self.initiatorEd = initiatorEd
            self.responderEd = responderEd
            self.responderLog = responderLog
            self.initiatorLog = initiatorLog
            self.responderTLSCertSHA256 = responderTLSCertSHA256
            self.tlsSecrets = tlsSecrets
        }

        /// TYPE through TLSSECRETS, each field with its tor-spec name (for saying which one mismatched).
        func fields() throws -> [(name: String, bytes: [UInt8])] {
            try requireLength(responderLog, 32, "SLOG")
            try requireLength(initiatorLog, 32, "CLOG")
            try requireLength(responderTLSCertSHA256, 32, "SCERT")
            try requireLength(tlsSecrets, 32, "TLSSECRETS")
            return [
                ("TYPE", LinkAuth3.typeString), ("CID", TorDigest.sha256(initiatorRSA.der)),
                ("SID", TorDigest.sha256(responderRSA.der)), ("CID_ED", initiatorEd.bytes), ("SID_ED", responderEd.bytes),
                ("SLOG", responderLog), ("CLOG", initiatorLog), ("SCERT", responderTLSCertSHA256),
                ("TLSSECRETS", tlsSecrets),
            ]
        }

        func fixedPart() throws -> [UInt8] { try fields().flatMap(\.bytes) }
    }

    /// The initiator's AUTHENTICATE body, signed with its type-6 auth key. `random` is injectable for tests.
    public static func makeBody(_ t: Transcript, authKey: Ed25519SigningKey, random: [UInt8]? = nil) throws -> [UInt8] {
        let rand = random ?? secureRandomBytes(24)
        try requireLength(rand, 24, "AUTHENTICATE RAND")
        let signed = try t.fixedPart() + rand
        return signed + (try authKey.sign(signed))
    }

    /// The responder's check: TYPE through TLSSECRETS equal what we expect (constant time), and SIG — the
    /// last 64 bytes — verifies over everything before it under `authKey` (from the initiator's type-6 cert).
    /// A mismatch throws `certificateMismatch` naming every field that differs, e.g.
    /// "AUTHENTICATE field SLOG does not match this channel": that tells a transcript bug from a wrong peer.
    public static func verifyBody(_ body: [UInt8], expected t: Transcript, authKey: Ed25519Identity) throws {
        guard body.count >= bodyLength else {
            throw TorCryptoError.badLength(what: "AUTHENTICATE body", expected: bodyLength, actual: body.count)
        }
        // Every field is compared in full before reporting, so the time does not depend on which differs.
        var offset = 0
        var mismatched: [String] = []
        for field in try t.fields() {
            if !constantTimeEqual(body[offset..<offset + field.bytes.count], field.bytes) { mismatched.append(field.name) }
            offset += field.bytes.count
        }
        guard mismatched.isEmpty else {
            let names = mismatched.joined(separator: ", ")
            throw TorCryptoError.certificateMismatch(
                "AUTHENTICATE field\(mismatched.count == 1 ? "" : "s") \(names) \(mismatched.count == 1 ? "does" : "do") not match this channel")
        }
        // Extra bytes between RAND and SIG are signed but otherwise ignored, as the spec requires.
        guard authKey.isValidSignature(Array(body.suffix(64)), for: Array(body.dropLast(64))) else {
            throw TorCryptoError.badSignature
        }
    }
}
