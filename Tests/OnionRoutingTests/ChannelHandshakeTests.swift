import Foundation
import NIOCore
import Testing
import TorCells
import TorCrypto

@testable import OnionRouting

@Suite struct ChannelHandshakeTests {
    let responderKeys = ChannelTestKeys.responder
    let initiatorKeys = ChannelTestKeys.initiator

    var expectedResponder: ExpectedPeerIdentity {
        ExpectedPeerIdentity(rsaIdentity: responderKeys.fingerprint, ed25519Identity: responderKeys.edIdentity)
    }

    @Test func clientHandshakeOpensBothEnds() throws {
        var pair = ChannelPair(initiator: clientMachine(expecting: expectedResponder), responder: responderMachine())
        pair.run()
        #expect(pair.initiatorActions.closeReason == nil)
        #expect(pair.responderActions.closeReason == nil)
        let atClient = try #require(pair.initiatorActions.openedPeer)
        let atRelay = try #require(pair.responderActions.openedPeer)
        #expect(atClient.linkProtocol == 5 && atRelay.linkProtocol == 5)
        #expect(atClient.ourRole == .initiator && atRelay.ourRole == .responder)
        #expect(atClient.identity?.rsaIdentity == responderKeys.fingerprint)
        #expect(atClient.identity?.ed25519Identity == responderKeys.edIdentity)
        #expect(atClient.identity?.signingKey == responderKeys.signingKey.publicKey)
        // The relay sees an unauthenticated peer: a client, whose NETINFO carries time 0 and no addresses.
        #expect(atRelay.identity == nil && !atRelay.isAuthenticatedRelay)
        #expect(atRelay.netinfo.timestamp == 0 && atRelay.netinfo.myAddresses.isEmpty && atRelay.clockSkew == nil)
        #expect(atRelay.netinfo.otherAddress == responderAddress)
        #expect(atClient.netinfo.myAddresses == [responderAddress] && atClient.netinfo.otherAddress == initiatorAddress)
        #expect(atClient.clockSkew == 0)
        #expect(pair.initiator.isOpen && pair.responder.isOpen)
    }

    @Test func clientSendsExactlyVersionsThenNetinfo() throws {
        var pair = ChannelPair(initiator: clientMachine(), responder: responderMachine())
        pair.run()
        let sent = try decodeLinkCells(pair.initiatorActions.written)
        #expect(sent.map(\.command) == [.versions, .netinfo])
        #expect(try sent[0].message() == .versions([4, 5]))
        let received = try decodeLinkCells(pair.responderActions.written)
        #expect(received.map(\.command) == [.versions, .certs, .authChallenge, .netinfo])
        guard case .authChallenge(let challenge) = try received[2].message(),
              case .certs(let certs) = try received[1].message() else {
            Issue.record("unexpected responder cells")
            return
        }
        #expect(challenge.methods == [3])
        #expect(certs.entries.map(\.type.rawValue) == [2, 7, 4, 5])
    }

    @Test func relayInitiatorAuthenticates() throws {
        var pair = ChannelPair(initiator: relayInitiatorMachine(expecting: expectedResponder), responder: responderMachine())
        pair.run()
        #expect(pair.initiatorActions.closeReason == nil)
        #expect(pair.responderActions.closeReason == nil)
        let atRelay = try #require(pair.responderActions.openedPeer)
        #expect(atRelay.isAuthenticatedRelay)
        #expect(atRelay.identity?.rsaIdentity == initiatorKeys.fingerprint)
        #expect(atRelay.identity?.ed25519Identity == initiatorKeys.edIdentity)
        #expect(atRelay.identity?.authKey == initiatorKeys.authKey.publicKey)
        #expect(atRelay.netinfo.timestamp == UInt32(ChannelTestKeys.now.timeIntervalSince1970))
        #expect(atRelay.clockSkew == 0)
        let sent = try decodeLinkCells(pair.initiatorActions.written)
        #expect(sent.map(\.command) == [.versions, .certs, .authenticate, .netinfo])
        guard case .certs(let certs) = try sent[1].message(), case .authenticate(let auth) = try sent[2].message() else {
            Issue.record("unexpected initiator cells")
            return
        }
        #expect(certs.entries.map(\.type.rawValue) == [2, 7, 4, 6])
        #expect(auth.authType == 3 && auth.body.readableBytes == 352)
        #expect(Array(auth.body.readableBytesView.prefix(8)) == Array("AUTH0003".utf8))
    }

    /// Every byte arrives on its own: framing and transcripts must not depend on how reads are split.
    @Test func relayHandshakeByteByByte() throws {
        var pair = ChannelPair(initiator: relayInitiatorMachine(), responder: responderMachine(), chunkSize: 1)
        pair.run()
        #expect(pair.responderActions.openedPeer?.identity?.rsaIdentity == initiatorKeys.fingerprint)
        #expect(pair.initiatorActions.openedPeer?.identity?.rsaIdentity == responderKeys.fingerprint)
    }

    @Test func linkVersion4WhenThatIsAllThePeerOffers() throws {
        let config = ChannelConfiguration(endpoint: .client(expecting: .any), linkVersions: [4])
        var pair = ChannelPair(initiator: ChannelStateMachine(configuration: config, link: initiatorLink()), responder: responderMachine())
        pair.run()
        #expect(pair.initiatorActions.openedPeer?.linkProtocol == 4)
        #expect(pair.responderActions.openedPeer?.linkProtocol == 4)
    }

    // MARK: identity and certificates

    @Test func wrongExpectedRSAIdentityRefused() throws {
        let expected = ExpectedPeerIdentity(rsaIdentity: ChannelTestKeys.stranger.fingerprint)
        var pair = ChannelPair(initiator: clientMachine(expecting: expected), responder: responderMachine())
        pair.run()
        guard case .wrongIdentity(let wanted, let actual) = pair.initiatorActions.closeReason else {
            Issue.record("expected wrongIdentity, got \(String(describing: pair.initiatorActions.closeReason))")
            return
        }
        #expect(wanted == expected && actual.rsaIdentity == responderKeys.fingerprint)
        #expect(pair.initiatorActions.openedPeer == nil && pair.initiator.isClosed)
        // The client never answered, so the responder is still waiting (the transport will time it out).
        #expect(!pair.responder.isOpen)
    }

    @Test func wrongExpectedEd25519IdentityRefused() throws {
        let expected = ExpectedPeerIdentity(rsaIdentity: responderKeys.fingerprint, ed25519Identity: ChannelTestKeys.stranger.edIdentity)
        var pair = ChannelPair(initiator: relayInitiatorMachine(expecting: expected), responder: responderMachine())
        pair.run()
        guard case .wrongIdentity = pair.initiatorActions.closeReason else {
            Issue.record("expected wrongIdentity, got \(String(describing: pair.initiatorActions.closeReason))")
            return
        }
        #expect(pair.initiatorActions.openedPeer == nil)
    }

    /// Feeds the initiator the responder's flight with `tamper` applied to the CERTS cell.
    func initiatorOutcome(link: LinkContext = initiatorLink(), at now: Date = ChannelTestKeys.now,
                          tamper: (ChannelCell) throws -> ChannelCell) throws -> [ChannelAction] {
        var flight = try responderFlight()
        flight[1] = try tamper(flight[1])
        var client = clientMachine(link: link)
        _ = client.start(now: now)
        return client.receive(try encodeLinkCells(flight), now: now)
    }

    @Test func untamperedFlightOpens() throws {
        let actions = try initiatorOutcome { $0 }
        #expect(actions.openedPeer != nil && actions.closeReason == nil)
    }

    @Test func badSignatureOnSigningCertRefused() throws {
        let actions = try initiatorOutcome { cell in
            var body = try certBody(in: cell, type: 4)
            body[body.count - 1] ^= 0x01
            return try replacingCert(in: cell, type: 4, with: body)
        }
        #expect(actions.closeReason == .certificatesRejected(.badSignature))
        #expect(actions.openedPeer == nil)
    }

    @Test func badSignatureOnCrossCertRefused() throws {
        let actions = try initiatorOutcome { cell in
            var body = try certBody(in: cell, type: 7)
            body[body.count - 1] ^= 0x01
            return try replacingCert(in: cell, type: 7, with: body)
        }
        guard case .certificatesRejected = actions.closeReason else {
            Issue.record("expected certificatesRejected, got \(String(describing: actions.closeReason))")
            return
        }
    }

    @Test func expiredCertsRefused() throws {
        // The type-5 link cert lives two days.
        let actions = try initiatorOutcome(at: ChannelTestKeys.now + 3 * 86400) { $0 }
        #expect(actions.closeReason == .certificatesRejected(.expired))
    }

    @Test func linkCertNotMatchingTLSCertificateRefused() throws {
        // A man in the middle presents its own TLS certificate but relays the real relay's CERTS.
        let link = initiatorLink(responder: ChannelTestKeys.stranger)
        let actions = try initiatorOutcome(link: link) { $0 }
        guard case .certificatesRejected(.certificateMismatch) = actions.closeReason else {
            Issue.record("expected a type-5 mismatch, got \(String(describing: actions.closeReason))")
            return
        }
    }

    @Test func missingCrossCertRefused() throws {
        let actions = try initiatorOutcome { try replacingCert(in: $0, type: 7, with: nil) }
        #expect(actions.closeReason == .certificatesRejected(.certificateMismatch("CERTS: missing cert type 7")))
    }

    @Test func missingLinkCertRefused() throws {
        let actions = try initiatorOutcome { try replacingCert(in: $0, type: 5, with: nil) }
        #expect(actions.closeReason == .certificatesRejected(.certificateMismatch("CERTS: missing cert type 5")))
    }

    @Test func crossCertOfAnotherRelayRefused() throws {
        let foreign = ChannelTestKeys.stranger.crossCert.encoded
        let actions = try initiatorOutcome { try replacingCert(in: $0, type: 7, with: foreign) }
        guard case .certificatesRejected = actions.closeReason else {
            Issue.record("expected certificatesRejected, got \(String(describing: actions.closeReason))")
            return
        }
    }

    @Test func identityCertOfAnotherRelayRefused() throws {
        let foreign = ChannelTestKeys.stranger.rsaIdentityCert.der
        let actions = try initiatorOutcome { try replacingCert(in: $0, type: 2, with: foreign) }
        guard case .certificatesRejected = actions.closeReason else {
            Issue.record("expected certificatesRejected, got \(String(describing: actions.closeReason))")
            return
        }
    }

    @Test func responderWithForeignTLSCertificateRefusesToStart() throws {
        let link = responderLink(ChannelTestKeys.stranger)
        var responder = responderMachine(link: link)
        let actions = responder.start(now: ChannelTestKeys.now)
        #expect(actions.closeReason == .localConfiguration("the TLS certificate is not RelayKeys.linkCert"))
    }

    @Test func initiatorWithoutPeerCertificateRefusesToStart() throws {
        let link = LinkContext(peerCertificateDER: nil, localCertificateDER: nil, exporter: nil, peerAddress: responderAddress)
        var client = clientMachine(link: link)
        guard case .missingLinkInformation = client.start(now: ChannelTestKeys.now).closeReason else {
            Issue.record("expected missingLinkInformation")
            return
        }
    }

    // MARK: AUTHENTICATE

    /// Runs a relay initiator against the responder, letting `tamper` rewrite the initiator's second
    /// flight (CERTS, AUTHENTICATE, NETINFO) before the responder sees it.
    func responderOutcome(initiatorSecret: [UInt8] = [1, 2, 3], responderSecret: [UInt8] = [1, 2, 3],
                          tamper: ([ChannelCell]) throws -> [ChannelCell] = { $0 }) throws -> [ChannelAction] {
        let now = ChannelTestKeys.now
        var initiator = relayInitiatorMachine(link: initiatorLink(secret: initiatorSecret))
        var responder = responderMachine(link: responderLink(secret: responderSecret))
        _ = responder.start(now: now)
        let hello = initiator.start(now: now).written
        let flight = responder.receive(hello, now: now).written
        let answer = initiator.receive(flight, now: now)
        #expect(answer.closeReason == nil)
        let cells = try tamper(try decodeCells(answer.written))
        return responder.receive(try encodeCells(cells), now: now)
    }

    func decodeCells(_ bytes: ByteBuffer) throws -> [ChannelCell] {
        var decoder = ChannelCellDecoder(circuitIDWidth: .fourBytes)
        decoder.append(bytes)
        return try decoder.decodeAvailable()
    }

    func tamperAuthenticate(_ cells: [ChannelCell], _ change: (inout [UInt8]) -> Void) throws -> [ChannelCell] {
        try cells.map { cell in
            guard case .authenticate(let auth) = try cell.message() else { return cell }
            var body = Array(auth.body.readableBytesView)
            change(&body)
            return try linkCell(.authenticate(Authenticate(authType: auth.authType, body: ByteBuffer(bytes: body))))
        }
    }

    @Test func untamperedAuthenticateAccepted() throws {
        let actions = try responderOutcome()
        #expect(actions.openedPeer?.identity?.rsaIdentity == initiatorKeys.fingerprint)
    }

    /// TLSSECRETS uses CID (SHA-256 of the initiator's RSA identity key) as the exporter context, as C tor
    /// and arti do (tor-spec's text says the Ed25519 identity; C tor refuses that).
    @Test func exporterContextIsTheInitiatorRSAIdentityDigest() throws {
        final class Calls: @unchecked Sendable { var contexts: [[UInt8]] = [] }
        let calls = Calls()
        let inner = testExporter(secret: [1, 2, 3])
        let recording: LinkKeyingMaterialExporter = { label, context, length in
            #expect(label == "EXPORTER FOR TOR TLS CLIENT BINDING AUTH0003" && length == 32)
            calls.contexts.append(context)
            return try inner(label, context, length)
        }
        var link = initiatorLink()
        link.exporter = recording
        var responderSide = responderLink()
        responderSide.exporter = recording
        var pair = ChannelPair(initiator: relayInitiatorMachine(link: link), responder: responderMachine(link: responderSide))
        pair.run()
        #expect(pair.responderActions.openedPeer?.isAuthenticatedRelay == true)
        let cid = TorDigest.sha256(initiatorKeys.rsaIdentity.publicKey.der)
        #expect(calls.contexts == [cid, cid])
    }

    @Test func authenticateFromAnotherTLSSessionRefused() throws {
        // Different exporter values: the AUTHENTICATE was made for another TLS session (a relay attack).
        let actions = try responderOutcome(initiatorSecret: [9, 9, 9])
        #expect(actions.closeReason == .authenticationFailed("AUTHENTICATE fields do not match this channel"))
        #expect(actions.openedPeer == nil)
    }

    @Test func authenticateWithBadSignatureRefused() throws {
        let actions = try responderOutcome { try tamperAuthenticate($0) { $0[$0.count - 1] ^= 0x80 } }
        #expect(actions.closeReason == .authenticationFailed("bad Ed25519 signature"))
    }

    @Test func authenticateWithWrongTranscriptRefused() throws {
        let slogOffset = 8 + 32 * 4
        let actions = try responderOutcome { try tamperAuthenticate($0) { $0[slogOffset] ^= 1 } }
        #expect(actions.closeReason == .authenticationFailed("AUTHENTICATE fields do not match this channel"))
        let clogOffset = 8 + 32 * 5
        let second = try responderOutcome { try tamperAuthenticate($0) { $0[clogOffset] ^= 1 } }
        #expect(second.closeReason == .authenticationFailed("AUTHENTICATE fields do not match this channel"))
    }

    @Test func truncatedAuthenticateRefused() throws {
        let actions = try responderOutcome { try tamperAuthenticate($0) { $0.removeLast(65) } }
        guard case .authenticationFailed = actions.closeReason else {
            Issue.record("expected authenticationFailed, got \(String(describing: actions.closeReason))")
            return
        }
    }

    @Test func unofferedAuthMethodRefused() throws {
        let actions = try responderOutcome { cells in
            try cells.map { cell in
                guard case .authenticate(let auth) = try cell.message() else { return cell }
                return try linkCell(.authenticate(Authenticate(authType: 1, body: auth.body)))
            }
        }
        #expect(actions.closeReason == .authenticationFailed("method 1 was not offered"))
    }

    @Test func authenticateWithoutCertsRefused() throws {
        let actions = try responderOutcome { cells in cells.filter { $0.command != .certs } }
        #expect(actions.closeReason == .unexpectedCell(.authenticate, state: "before CERTS"))
    }

    @Test func initiatorCertsWithAnotherRelaysAuthCertRefused() throws {
        let foreign = ChannelTestKeys.stranger.authCert.encoded
        let actions = try responderOutcome { cells in
            try cells.map { $0.command == .certs ? try replacingCert(in: $0, type: 6, with: foreign) : $0 }
        }
        #expect(actions.closeReason == .certificatesRejected(.badSignature))
    }

    /// CERTS then NETINFO with no AUTHENTICATE proves nothing: the peer is treated as a client (C tor).
    @Test func certsWithoutAuthenticateMeansClient() throws {
        let actions = try responderOutcome { cells in cells.filter { $0.command != .authenticate } }
        let peer = try #require(actions.openedPeer)
        #expect(peer.identity == nil)
    }
}
