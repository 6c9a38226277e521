import Foundation
import NIOCore
import TorCells
import TorCrypto

/// The peer of an open channel, as the handshake established it.
public struct ChannelPeer: Hashable, Sendable {
    /// The negotiated link protocol version (4 or 5).
    public let linkProtocol: UInt16
    /// Our end of the link: `.initiator` if we opened it.
    public let ourRole: ChannelRole
    /// The peer's proven identities. Always set when we initiated (the responder must prove them); set
    /// on the responder only if the initiator authenticated, i.e. the peer is a relay. Nil means the peer
    /// is a client: tor refuses BEGIN on such a first hop, and circuits from it are client circuits.
    public let identity: VerifiedPeerIdentity?
    /// The peer's NETINFO: the address it sees for us and its own addresses. Unauthenticated hints.
    public let netinfo: Netinfo
    /// Our clock minus the peer's NETINFO clock, when it sent one (relays do; clients send 0).
    public let clockSkew: TimeInterval?

    public var isAuthenticatedRelay: Bool { identity != nil }
}

/// What the owner of a `ChannelStateMachine` must do, in order.
public enum ChannelAction: Equatable, Sendable {
    /// Write these bytes (whole framed cells) to the TLS connection.
    case write(ByteBuffer)
    /// The handshake completed: circuit cells may flow now.
    case opened(ChannelPeer)
    /// A circuit-level cell (CREATE2, CREATE_FAST, CREATED*, RELAY, RELAY_EARLY, DESTROY) for the circuit layer.
    case circuitCell(ChannelCell)
    /// Close the connection and log the reason. Nothing further comes from this state machine.
    case close(TorChannelError)
}

/// Sans-I/O state machine of one Tor channel (a TLS link), link protocol v4/v5 (tor-spec §4), in the
/// manner of swift-nio-ssh's `SSHConnectionStateMachine`: the owner feeds it the decrypted bytes the TLS
/// layer delivers, with the current time, and performs the actions it returns. It does no I/O, reads no
/// clock and never traps on peer input.
///
/// It owns cell framing in both directions during the handshake because AUTHENTICATE signs SHA-256
/// transcripts of the exact bytes each side sent (SLOG, CLOG), and because the circuit ID width changes
/// right after the VERSIONS cell. Once open, it frames circuit cells out (`encodeCircuitCell`) and
/// splits incoming bytes into circuit cells for the circuit layer.
///
/// Handshake (initiator → responder):
///
///     VERSIONS →
///                ← VERSIONS, CERTS (2,7,4,5), AUTH_CHALLENGE, NETINFO
///     client: NETINFO →            relay: CERTS (2,7,4,6), AUTHENTICATE (type 3), NETINFO →
public struct ChannelStateMachine {
    private enum State {
        /// `start` not called yet.
        case idle
        /// Waiting for the peer's VERSIONS (we sent ours first if we are the initiator).
        case awaitingVersions
        /// Initiator: waiting for the responder's CERTS.
        case awaitingCerts(version: UInt16)
        /// Initiator: the responder is verified; waiting for AUTH_CHALLENGE (or its NETINFO).
        case awaitingAuthChallenge(version: UInt16, responder: VerifiedPeerIdentity)
        /// Initiator: we answered; waiting for the responder's NETINFO.
        case awaitingNetinfo(version: UInt16, responder: VerifiedPeerIdentity)
        /// Responder: our side of the handshake is sent; waiting for the initiator's cells up to NETINFO.
        case awaitingInitiator(version: UInt16, ResponderProgress)
        case open(ChannelPeer)
        case closed
    }

    private struct ResponderProgress {
        /// SHA-256 of everything we sent through AUTH_CHALLENGE: the SLOG an authenticating initiator signs.
        var slog: [UInt8]
        /// The initiator's verified CERTS (types 2, 7, 4, 6), waiting for its AUTHENTICATE.
        var initiatorCerts: VerifiedPeerIdentity?
        /// Set once AUTHENTICATE verified.
        var authenticated: VerifiedPeerIdentity?
    }

    public let configuration: ChannelConfiguration
    private let link: LinkContext
    private var state: State = .idle
    private var decoder = ChannelCellDecoder(circuitIDWidth: .twoBytes)
    private var encoder = ChannelCellEncoder(circuitIDWidth: .twoBytes)
    /// Transcripts of the handshake bytes each way (AUTHENTICATE's SLOG and CLOG).
    private var sentLog = RunningSHA256()
    private var receivedLog = RunningSHA256()

    public init(configuration: ChannelConfiguration, link: LinkContext) {
        self.configuration = configuration
        self.link = link
    }

    /// The peer once the channel is open.
    public var peer: ChannelPeer? {
        if case .open(let peer) = state { return peer }
        return nil
    }

    public var isOpen: Bool { peer != nil }

    public var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    /// Short name of the current state, for logs and errors.
    public var stateDescription: String {
        switch state {
        case .idle: return "idle"
        case .awaitingVersions: return "awaiting VERSIONS"
        case .awaitingCerts: return "awaiting CERTS"
        case .awaitingAuthChallenge: return "awaiting AUTH_CHALLENGE"
        case .awaitingNetinfo: return "awaiting NETINFO"
        case .awaitingInitiator: return "awaiting the initiator's NETINFO"
        case .open: return "open"
        case .closed: return "closed"
        }
    }

    // MARK: owner events

    /// Call once, right after the TLS handshake. The initiator sends VERSIONS; the responder waits.
    public mutating func start(now: Date) -> [ChannelAction] {
        guard case .idle = state else { return [] }
        state = .awaitingVersions
        switch configuration.endpoint {
        case .client, .relayInitiator:
            guard link.peerCertificateSHA256?.count == 32 else {
                return close(.missingLinkInformation("the responder's TLS certificate"))
            }
            if case .relayInitiator = configuration.endpoint, link.exporter == nil {
                return close(.missingLinkInformation("a TLS keying-material exporter, needed to authenticate"))
            }
            var out = ByteBuffer()
            if let error = send(.versions(configuration.linkVersions), into: &out) { return close(error) }
            return [.write(out)]
        case .responder(let keys):
            // The type-5 cert we send certifies `keys.linkCert`; a TLS layer serving another certificate
            // would make every initiator refuse us, so say so here rather than in the peers' logs.
            guard let local = link.localCertificateSHA256 else {
                return close(.missingLinkInformation("our TLS certificate"))
            }
            guard timingSafeEqual(local, keys.linkCert.sha256) else {
                return close(.localConfiguration("the TLS certificate is not RelayKeys.linkCert"))
            }
            return []
        }
    }

    /// Feed bytes received from the TLS connection (any split). Returns the actions to perform in order.
    public mutating func receive(_ bytes: ByteBuffer, now: Date) -> [ChannelAction] {
        switch state {
        case .closed: return []
        case .idle: return close(.localConfiguration("bytes received before start(now:)"))
        default: break
        }
        decoder.append(bytes)
        var actions: [ChannelAction] = []
        while !isClosed {
            let next: ChannelCellDecoder.Next
            do { next = try decoder.next() } catch {
                actions += close(.framing(error))
                break
            }
            guard case .cell(let cell) = next else { break }
            if case .open = state {
                actions += receiveOpen(cell)
            } else {
                recordReceived(cell)
                actions += receiveHandshake(cell, now: now)
            }
        }
        return actions
    }

    /// Frames a circuit cell (from the circuit layer) for the open channel.
    public func encodeCircuitCell(_ cell: ChannelCell, into out: inout ByteBuffer) throws(TorChannelError) {
        guard case .open = state else { throw .notOpen }
        guard !Self.isLinkCommand(cell.command) else { throw .notACircuitCell(cell.command) }
        do { try encoder.encode(cell, into: &out) } catch { throw .malformedCell(cell.command, error) }
    }

    // MARK: handshake

    private mutating func receiveHandshake(_ cell: ChannelCell, now: Date) -> [ChannelAction] {
        let command = cell.command
        // Padding may be interleaved anywhere (it still counts in the transcripts). Unknown
        // variable-length commands are ignored, as tor-spec asks; C tor closes on any other fixed cell.
        if command == .padding || command == .vpadding { return [] }
        if command.isVariableLength && !Self.isLinkCommand(command) { return [] }
        guard Self.isLinkCommand(command) else { return close(.unexpectedCell(command, state: stateDescription)) }
        guard cell.circuitID == 0 else { return close(.nonZeroCircuitID(command, cell.circuitID)) }
        let message: ChannelMessage
        do { message = try cell.message() } catch { return close(.malformedCell(command, error)) }

        switch (state, message) {
        case (.awaitingVersions, .versions(let versions)):
            return receiveVersions(versions, now: now)
        case (.awaitingCerts(let version), .certs(let certs)):
            return receiveResponderCerts(certs, version: version, now: now)
        case (.awaitingAuthChallenge(let version, let responder), .authChallenge(let challenge)):
            return answerResponder(version: version, responder: responder, challenge: challenge, now: now)
        case (.awaitingAuthChallenge(let version, let responder), .netinfo(let netinfo)):
            // No AUTH_CHALLENGE: a client answers anyway; a relay could not authenticate.
            var actions = answerResponder(version: version, responder: responder, challenge: nil, now: now)
            if !isClosed { actions += open(version: version, identity: responder, netinfo: netinfo, now: now) }
            return actions
        case (.awaitingNetinfo(let version, let responder), .netinfo(let netinfo)):
            return open(version: version, identity: responder, netinfo: netinfo, now: now)
        case (.awaitingInitiator(let version, var progress), .certs(let certs)):
            guard progress.initiatorCerts == nil else { return close(.unexpectedCell(command, state: "after CERTS")) }
            do {
                progress.initiatorCerts = try PeerCertificates.verifyInitiator(Self.entries(certs), at: now)
            } catch {
                return close(.certificatesRejected(Self.cryptoError(error)))
            }
            state = .awaitingInitiator(version: version, progress)
            return []
        case (.awaitingInitiator(let version, var progress), .authenticate(let authenticate)):
            do {
                progress.authenticated = try verifyAuthenticate(authenticate, progress: progress)
            } catch {
                return close(error)
            }
            state = .awaitingInitiator(version: version, progress)
            return []
        case (.awaitingInitiator(let version, let progress), .netinfo(let netinfo)):
            // CERTS without AUTHENTICATE proves nothing: such a peer is a client, as in C tor.
            return open(version: version, identity: progress.authenticated, netinfo: netinfo, now: now)
        default:
            return close(.unexpectedCell(command, state: stateDescription))
        }
    }

    private mutating func receiveVersions(_ versions: [UInt16], now: Date) -> [ChannelAction] {
        guard let version = configuration.linkVersions.filter(versions.contains).max() else {
            return close(.noCommonLinkVersion(peerVersions: versions))
        }
        // Only the VERSIONS cells use 2-byte circuit IDs.
        decoder.circuitIDWidth = .fourBytes
        guard case .responder(let keys) = configuration.endpoint else {
            encoder.circuitIDWidth = .fourBytes
            state = .awaitingCerts(version: version)
            return []
        }
        var out = ByteBuffer()
        if let error = send(.versions(configuration.linkVersions), into: &out) { return close(error) }
        encoder.circuitIDWidth = .fourBytes
        let challengeBytes = configuration.randomBytes(AuthChallenge.challengeLength)
        let challenge: AuthChallenge
        let certs: Certs
        do {
            challenge = try AuthChallenge(challenge: challengeBytes, methods: [LinkAuthenticationV3.authType])
            certs = try Self.certsCell(keys, types: [2, 7, 4, 5])
        } catch {
            return close(.localConfiguration("building CERTS / AUTH_CHALLENGE: \(error)"))
        }
        if let error = send(.certs(certs), into: &out) { return close(error) }
        if let error = send(.authChallenge(challenge), into: &out) { return close(error) }
        // SLOG covers our cells through AUTH_CHALLENGE; C tor stops its digest before NETINFO too.
        let slog = sentLog.current
        if let error = send(.netinfo(netinfo(now: now, relay: true)), into: &out) { return close(error) }
        state = .awaitingInitiator(version: version, ResponderProgress(slog: slog))
        return [.write(out)]
    }

    /// Initiator: checks the responder's CERTS as C tor does (type 4 with the signed-with-ed25519-key
    /// extension, type 5 certifying our view of its TLS certificate, type 2 RSA-1024 self-signed, type 7
    /// binding the two identities; all signed and unexpired), then the identities we expected.
    private mutating func receiveResponderCerts(_ certs: Certs, version: UInt16, now: Date) -> [ChannelAction] {
        guard let tlsDigest = link.peerCertificateSHA256 else {
            return close(.missingLinkInformation("the responder's TLS certificate"))
        }
        let identity: VerifiedPeerIdentity
        do {
            identity = try PeerCertificates.verifyResponder(Self.entries(certs), tlsCertificateSHA256: tlsDigest, at: now)
        } catch {
            return close(.certificatesRejected(Self.cryptoError(error)))
        }
        let expected: ExpectedPeerIdentity
        switch configuration.endpoint {
        case .client(let e), .relayInitiator(_, let e): expected = e
        case .responder: return close(.unexpectedCell(.certs, state: stateDescription))
        }
        let rsaOK = expected.rsaIdentity.map { $0 == identity.rsaIdentity } ?? true
        let edOK = expected.ed25519Identity.map { $0 == identity.ed25519Identity } ?? true
        guard rsaOK, edOK else {
            return close(.wrongIdentity(
                expected: expected,
                actual: ExpectedPeerIdentity(rsaIdentity: identity.rsaIdentity, ed25519Identity: identity.ed25519Identity)))
        }
        state = .awaitingAuthChallenge(version: version, responder: identity)
        return []
    }

    /// Initiator: our reply to the responder. A client sends NETINFO only; a relay first proves its
    /// identities with CERTS and AUTHENTICATE type 3. `challenge` is nil if the responder sent none.
    private mutating func answerResponder(version: UInt16, responder: VerifiedPeerIdentity, challenge: AuthChallenge?,
                                          now: Date) -> [ChannelAction] {
        var out = ByteBuffer()
        switch configuration.endpoint {
        case .client:
            if let error = send(.netinfo(netinfo(now: now, relay: false)), into: &out) { return close(error) }
        case .relayInitiator(let keys, _):
            guard let challenge, challenge.methods.contains(LinkAuthenticationV3.authType) else {
                return close(.noUsableAuthMethod(challenge?.methods ?? []))
            }
            // SLOG: everything the responder sent through this AUTH_CHALLENGE, which was just recorded.
            let slog = receivedLog.current
            do {
                if let error = send(.certs(try Self.certsCell(keys, types: [2, 7, 4, 6])), into: &out) { return close(error) }
                guard let exporter = link.exporter, let scert = link.peerCertificateSHA256 else {
                    return close(.missingLinkInformation("exporter or responder certificate"))
                }
                let transcript = try LinkAuthenticationV3.transcript(
                    initiatorRSA: keys.rsaIdentity.publicKey, responderRSA: responder.rsaKey,
                    initiatorEd: keys.edIdentity, responderEd: responder.ed25519Identity,
                    slog: slog, clog: sentLog.current, scert: scert, exporter: exporter)
                let body = try LinkAuth3.makeBody(
                    transcript, authKey: keys.authKey, random: configuration.randomBytes(LinkAuthenticationV3.randomLength))
                let message = ChannelMessage.authenticate(
                    Authenticate(authType: LinkAuthenticationV3.authType, body: ByteBuffer(bytes: body)))
                if let error = send(message, into: &out) { return close(error) }
            } catch let error as TorChannelError {
                return close(error)
            } catch {
                return close(.localConfiguration("building AUTHENTICATE: \(error)"))
            }
            if let error = send(.netinfo(netinfo(now: now, relay: true)), into: &out) { return close(error) }
        case .responder:
            return close(.unexpectedCell(.authChallenge, state: stateDescription))
        }
        state = .awaitingNetinfo(version: version, responder: responder)
        return [.write(out)]
    }

    /// Responder: AUTHENTICATE must follow a verified CERTS, use method 3 (the only one we offer), and
    /// match our own computation of every field before the signature.
    private func verifyAuthenticate(_ authenticate: Authenticate, progress: ResponderProgress) throws(TorChannelError)
        -> VerifiedPeerIdentity
    {
        guard progress.authenticated == nil else { throw .unexpectedCell(.authenticate, state: "after AUTHENTICATE") }
        guard let initiator = progress.initiatorCerts, let authKey = initiator.authKey else {
            throw .unexpectedCell(.authenticate, state: "before CERTS")
        }
        guard authenticate.authType == LinkAuthenticationV3.authType else {
            throw .authenticationFailed("method \(authenticate.authType) was not offered")
        }
        guard case .responder(let keys) = configuration.endpoint else { throw .unexpectedCell(.authenticate, state: stateDescription) }
        guard let exporter = link.exporter, let scert = link.localCertificateSHA256 else {
            throw .missingLinkInformation("a TLS keying-material exporter, needed to check AUTHENTICATE")
        }
        // CLOG: the initiator's bytes before this AUTHENTICATE (recordReceived skips AUTHENTICATE).
        let expected = try LinkAuthenticationV3.transcript(
            initiatorRSA: initiator.rsaKey, responderRSA: keys.rsaIdentity.publicKey,
            initiatorEd: initiator.ed25519Identity, responderEd: keys.edIdentity,
            slog: progress.slog, clog: receivedLog.current, scert: scert, exporter: exporter)
        try LinkAuthenticationV3.verify(body: authenticate.body, expected: expected, authKey: authKey)
        return initiator
    }

    private mutating func open(version: UInt16, identity: VerifiedPeerIdentity?, netinfo: Netinfo, now: Date)
        -> [ChannelAction]
    {
        let skew = netinfo.timestamp == 0 ? nil : now.timeIntervalSince1970 - TimeInterval(netinfo.timestamp)
        let peer = ChannelPeer(
            linkProtocol: version, ourRole: configuration.endpoint.role, identity: identity, netinfo: netinfo,
            clockSkew: skew)
        state = .open(peer)
        // The transcripts are only for AUTHENTICATE; drop them.
        sentLog = RunningSHA256()
        receivedLog = RunningSHA256()
        return [.opened(peer)]
    }

    // MARK: open channel

    private mutating func receiveOpen(_ cell: ChannelCell) -> [ChannelAction] {
        switch cell.command {
        case .relay, .relayEarly, .destroy, .create2, .created2, .createFast, .createdFast, .create, .created:
            return [.circuitCell(cell)]
        case .padding, .vpadding, .paddingNegotiate:
            // We send no link padding, so a peer's padding negotiation needs no answer.
            return []
        case let command where Self.isLinkCommand(command):
            return close(.unexpectedCell(command, state: "open"))
        default:
            return []  // unknown command: ignored, per tor-spec
        }
    }

    // MARK: helpers

    /// Link-handshake commands: never valid on an open channel, never valid with a circuit ID.
    private static func isLinkCommand(_ command: ChannelCommand) -> Bool {
        switch command {
        case .versions, .certs, .authChallenge, .authenticate, .netinfo, .authorize: return true
        default: return false
        }
    }

    /// Encodes a link cell into `out` and adds its bytes to our transcript.
    private mutating func send(_ message: ChannelMessage, into out: inout ByteBuffer) -> TorChannelError? {
        let start = out.writerIndex
        do { try encoder.encode(circuitID: 0, message: message, into: &out) } catch {
            return .localConfiguration("encoding \(message.command): \(error)")
        }
        out.withUnsafeReadableBytes { all in
            sentLog.update(UnsafeRawBufferPointer(rebasing: all[(start - out.readerIndex)...]))
        }
        return nil
    }

    /// Adds a received handshake cell to the peer's transcript, re-framed exactly as it arrived (the
    /// decoder kept the full payload, padding included, and we frame it with the width it was read with).
    /// AUTHENTICATE is left out: the CLOG it carries covers only what came before it.
    private mutating func recordReceived(_ cell: ChannelCell) {
        guard cell.command != .authenticate else { return }
        var framed = ByteBuffer()
        do {
            try ChannelCellEncoder(circuitIDWidth: decoder.circuitIDWidth).encode(cell, into: &framed)
        } catch {
            return  // unreachable: the decoder produced it with this width and length
        }
        framed.withUnsafeReadableBytes { receivedLog.update($0) }
    }

    private func netinfo(now: Date, relay: Bool) -> Netinfo {
        // Clients send time 0 and no addresses so that NETINFO does not fingerprint them (tor-spec §4.5).
        let seconds = now.timeIntervalSince1970
        let time = relay ? UInt32(clamping: Int64(seconds.isFinite ? max(0, seconds) : 0)) : 0
        return Netinfo(timestamp: time, otherAddress: link.peerAddress, myAddresses: relay ? link.localAddresses : [])
    }

    private static func certsCell(_ keys: RelayKeys, types: [UInt8]) throws -> Certs {
        let all = Dictionary(keys.certsCellEntries.map { ($0.type, $0.body) }, uniquingKeysWith: { a, _ in a })
        return try Certs(types.compactMap { type in
            all[type].map { Certs.Entry(type: CertType(type), body: ByteBuffer(bytes: $0)) }
        })
    }

    private static func entries(_ certs: Certs) -> [(type: UInt8, body: [UInt8])] {
        certs.entries.map { (type: $0.type.rawValue, body: Array($0.body.readableBytesView)) }
    }

    private static func cryptoError(_ error: any Error) -> TorCryptoError {
        (error as? TorCryptoError) ?? .malformedCertificate("\(error)")
    }

    private mutating func close(_ error: TorChannelError) -> [ChannelAction] {
        state = .closed
        return [.close(error)]
    }
}
