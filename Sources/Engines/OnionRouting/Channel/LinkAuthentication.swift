import NIOCore
import TorCells
import TorCrypto

/// Channel-side glue for AUTHENTICATE type 3 (Ed25519-SHA256-RFC5705, tor-spec §4.4.2): gathers what the
/// body covers — identities, the two transcript digests, the responder's TLS certificate digest and the
/// TLS exporter value — into a `LinkAuth3.Transcript`. Building, signing and checking the body is
/// TorCrypto's `LinkAuth3`; both ends of the channel use this one function, so they cannot disagree.
enum LinkAuthenticationV3 {
    static var authType: UInt16 { LinkAuth3.authType }
    static let randomLength = 24

    static func transcript(initiatorRSA: RSAPublicKey, responderRSA: RSAPublicKey, initiatorEd: Ed25519Identity,
                           responderEd: Ed25519Identity, slog: [UInt8], clog: [UInt8], scert: [UInt8],
                           exporter: LinkKeyingMaterialExporter) throws(TorChannelError) -> LinkAuth3.Transcript {
        // The exporter context is CID, the SHA-256 of the initiator's RSA identity key, as C tor
        // (relay_handshake.c) and arti use. tor-spec's text says the Ed25519 identity; tor 0.4.9 refuses
        // that ("Some field in the AUTHENTICATE cell body was not as expected"), as our interop test shows.
        let secrets: [UInt8]
        do {
            secrets = try exporter(LinkAuth3.exporterLabel, LinkAuth3.exporterContext(initiatorRSA: initiatorRSA), 32)
        } catch {
            throw .missingLinkInformation("TLS keying-material export failed: \(error)")
        }
        guard secrets.count == 32 else {
            throw .missingLinkInformation("TLS exporter returned \(secrets.count) bytes, expected 32")
        }
        return LinkAuth3.Transcript(
            initiatorRSA: initiatorRSA, responderRSA: responderRSA, initiatorEd: initiatorEd, responderEd: responderEd,
            responderLog: slog, initiatorLog: clog, responderTLSCertSHA256: scert, tlsSecrets: secrets)
    }

    /// The responder's check, with TorCrypto's failure turned into a close reason.
    static func verify(body: ByteBuffer, expected: LinkAuth3.Transcript, authKey: Ed25519Identity) throws(TorChannelError) {
        do {
            try LinkAuth3.verifyBody(Array(body.readableBytesView), expected: expected, authKey: authKey)
        } catch TorCryptoError.badSignature {
            throw .authenticationFailed("bad Ed25519 signature")
        } catch TorCryptoError.badLength(let what, let expected, let actual) {
            throw .authenticationFailed("\(what) is \(actual) bytes, expected at least \(expected)")
        } catch TorCryptoError.certificateMismatch(let why) {
            throw .authenticationFailed(why)
        } catch {
            throw .authenticationFailed("\(error)")
        }
    }
}

/// Equality whose time depends only on the lengths.
func timingSafeEqual<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for (x, y) in zip(a, b) { diff |= x ^ y }
    return diff == 0
}
