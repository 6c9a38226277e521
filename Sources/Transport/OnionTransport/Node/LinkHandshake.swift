// The link handshake (tor-spec §4) as a sans-I/O state machine: it takes decoded cells and returns the
// bytes to send and the outcome. It lives here until the OnionRouting/Channel state machine (branch
// `links`) lands; `OnionLinkHandler` is the only user, so swapping it is local to that handler.
import Foundation
import NIOCore
import OnionRouting
import TorCells
import TorCrypto

/// Which end of the link handshake we run.
public enum LinkRole: Sendable {
    /// We opened the link as a client: verify the responder, do not authenticate.
    case client(expecting: RSAIdentity?, ed25519: Ed25519Identity? = nil)
    /// We opened the link as a relay (to extend a circuit): verify the responder, then authenticate
    /// with CERTS (2, 7, 4, 6) and AUTHENTICATE type 3 so the peer knows which relay we are.
    case relayInitiator(RelayKeys, expecting: RSAIdentity?, ed25519: Ed25519Identity? = nil)
    /// The peer opened the link to our relay.
    case responder(RelayKeys)

    var channelRole: ChannelRole {
        if case .responder = self { return .responder }
        return .initiator
    }
}

/// Why a link handshake failed. Every case closes the connection.
public enum LinkHandshakeError: Error, Equatable, Sendable, CustomStringConvertible {
    case framing(CellError)
    case malformedCell(ChannelCommand, CellError)
    case unexpectedCell(ChannelCommand, state: String)
    case noCommonLinkVersion([UInt16])
    case certificatesRejected(String)
    case wrongIdentity(expected: String, actual: String)
    case authenticationFailed(String)
    case missingLinkInformation(String)
    case timeout
    case closed

    public var description: String {
        switch self {
        case .framing(let e): "cell framing error: \(e)"
        case .malformedCell(let c, let e): "malformed \(c) cell: \(e)"
        case .unexpectedCell(let c, let s): "unexpected \(c) cell while \(s)"
        case .noCommonLinkVersion(let v): "no common link protocol version ≥ 4 (peer offers \(v))"
        case .certificatesRejected(let why): "peer certificates rejected: \(why)"
        case .wrongIdentity(let e, let a): "peer identity \(a) is not the expected \(e)"
        case .authenticationFailed(let why): "AUTHENTICATE rejected: \(why)"
        case .missingLinkInformation(let what): "TLS link information missing: \(what)"
        case .timeout: "link handshake timed out"
        case .closed: "connection closed during the link handshake"
        }
    }
}

/// What the handshake proved about the peer once the channel is open.
public struct LinkPeer: Sendable, Hashable {
    /// The peer's RSA identity: set for a responder we connected to, and for an initiator that
    /// authenticated (a relay); nil for a client.
    public var rsaIdentity: RSAIdentity?
    public var ed25519Identity: Ed25519Identity?
    public var linkProtocol: UInt16
}

/// Facts about the TLS connection the handshake needs.
struct LinkFacts {
    var peerCertificateDER: [UInt8]?
    var localCertificateDER: [UInt8]?
    var exporter: (_ label: String, _ context: [UInt8], _ length: Int) throws -> [UInt8]
    var peerAddress: NetinfoAddress
    var localAddresses: [NetinfoAddress]
    /// Wall clock for NETINFO and certificate validity (the handler reads the clock, not us).
    var now: Date
}

struct LinkHandshake {
    enum Action {
        /// Write these bytes (already framed).
        case write(ByteBuffer)
        /// The handshake is done; cells after this one use 4-byte circuit IDs.
        case open(LinkPeer)
    }

    private enum State: CustomStringConvertible {
        case start
        case awaitingVersions
        case awaitingCerts
        case awaitingAuthChallenge
        case awaitingNetinfo
        /// Responder: the initiator's CERTS / AUTHENTICATE (optional) and NETINFO.
        case awaitingInitiator
        case awaitingAuthenticate
        case open
        case failed

        var description: String {
            switch self {
            case .start: "starting"
            case .awaitingVersions: "awaiting VERSIONS"
            case .awaitingCerts: "awaiting CERTS"
            case .awaitingAuthChallenge: "awaiting AUTH_CHALLENGE"
            case .awaitingNetinfo: "awaiting NETINFO"
            case .awaitingInitiator: "awaiting the initiator's CERTS or NETINFO"
            case .awaitingAuthenticate: "awaiting AUTHENTICATE"
            case .open: "open"
            case .failed: "failed"
            }
        }
    }

    static let supportedVersions: [UInt16] = [4, 5]

    let role: LinkRole
    let facts: LinkFacts
    private var state = State.start
    private(set) var encoder = ChannelCellEncoder(circuitIDWidth: .twoBytes)
    private(set) var linkProtocol: UInt16 = 0
    /// Every byte sent and received until authentication is settled (SLOG/CLOG of AUTHENTICATE).
    private var sentLog: [UInt8] = []
    private var receivedLog: [UInt8] = []
    /// SHA-256 of the responder's bytes through AUTH_CHALLENGE.
    private var responderLog: [UInt8]?
    private var responderChallengeSeen = false
    private var peer: VerifiedPeerIdentity?

    init(role: LinkRole, facts: LinkFacts) {
        self.role = role
        self.facts = facts
    }

    var circuitIDWidth: CircuitIDWidth { self.encoder.circuitIDWidth }
    var isOpen: Bool { if case .open = self.state { true } else { false } }

    /// The initiator speaks first.
    mutating func start() throws(LinkHandshakeError) -> [Action] {
        guard case .start = self.state else { return [] }
        switch self.role {
        case .responder:
            self.state = .awaitingVersions
            return []
        case .client, .relayInitiator:
            self.state = .awaitingVersions
            return [.write(try self.frame([.versions(Self.supportedVersions)]))]
        }
    }

    mutating func receive(_ cell: ChannelCell) throws(LinkHandshakeError) -> [Action] {
        do {
            return try self.handle(cell)
        } catch {
            self.state = .failed
            throw error
        }
    }

    private mutating func handle(_ cell: ChannelCell) throws(LinkHandshakeError) -> [Action] {
        let message: ChannelMessage
        do { message = try cell.message() } catch { throw .malformedCell(cell.command, error) }
        let incomingLog = self.logging ? self.encoded(cell) : []
        // Padding may come at any point and counts in the transcript.
        if case .padding = message { self.receivedLog += incomingLog; return [] }
        if case .vpadding = message { self.receivedLog += incomingLog; return [] }

        switch (self.state, message) {
        case (.awaitingVersions, .versions(let theirs)):
            self.receivedLog += incomingLog
            guard let version = Set(theirs).intersection(Self.supportedVersions).max() else {
                throw .noCommonLinkVersion(theirs)
            }
            self.linkProtocol = version
            switch self.role {
            case .client, .relayInitiator:
                self.encoder.circuitIDWidth = .fourBytes
                self.state = .awaitingCerts
                return []
            case .responder(let keys):
                var out = try self.frame([.versions(Self.supportedVersions)])
                self.encoder.circuitIDWidth = .fourBytes
                let challenge = try AuthChallenge(challengeBytes: secureRandomBytes(32))
                var rest = try self.frame([
                    .certs(try Self.certs(keys, types: [2, 7, 4, 5])), .authChallenge(challenge),
                ])
                out.writeBuffer(&rest)
                self.responderLog = TorDigest.sha256(self.sentLog)
                var netinfo = try self.frame([.netinfo(self.netinfo(timestamp: true))])
                out.writeBuffer(&netinfo)
                self.state = .awaitingInitiator
                return [.write(out)]
            }

        case (.awaitingCerts, .certs(let certs)):
            self.receivedLog += incomingLog
            guard let der = self.facts.peerCertificateDER else {
                throw .missingLinkInformation("the responder presented no TLS certificate")
            }
            let verified: VerifiedPeerIdentity
            do {
                verified = try PeerCertificates.verifyResponder(Self.entries(certs), tlsCertificateDER: der, at: self.facts.now)
            } catch { throw .certificatesRejected("\(error)") }
            try self.checkExpected(verified)
            self.peer = verified
            self.state = .awaitingAuthChallenge
            return []

        case (.awaitingAuthChallenge, .authChallenge(let challenge)):
            self.receivedLog += incomingLog
            self.responderLog = TorDigest.sha256(self.receivedLog)
            self.responderChallengeSeen = challenge.methods.contains(LinkAuth3.authType)
            self.state = .awaitingNetinfo
            return []

        case (.awaitingNetinfo, .netinfo) where self.role.channelRole == .responder:
            return [self.opened(rsa: self.peer?.rsaIdentity, ed: self.peer?.ed25519Identity)]

        case (.awaitingAuthChallenge, .netinfo), (.awaitingNetinfo, .netinfo):
            // A responder may skip AUTH_CHALLENGE; then a relay initiator cannot authenticate and
            // connects as a client would.
            var out = ByteBuffer()
            if case .relayInitiator(let keys, _, _) = self.role, self.responderChallengeSeen, let slog = self.responderLog {
                var certs = try self.frame([.certs(try Self.certs(keys, types: [2, 7, 4, 6]))])
                out.writeBuffer(&certs)
                let body = try self.authenticateBody(keys: keys, slog: slog)
                var auth = try self.frame([.authenticate(Authenticate(authType: LinkAuth3.authType, body: ByteBuffer(bytes: body)))])
                out.writeBuffer(&auth)
                var netinfo = try self.frame([.netinfo(self.netinfo(timestamp: true))])
                out.writeBuffer(&netinfo)
            } else {
                // Clients send a zero timestamp and no addresses of their own.
                out = try self.frame([.netinfo(Netinfo(timestamp: 0, otherAddress: self.facts.peerAddress, myAddresses: []))])
            }
            return [.write(out), self.opened(rsa: self.peer?.rsaIdentity, ed: self.peer?.ed25519Identity)]

        case (.awaitingInitiator, .certs(let certs)):
            self.receivedLog += incomingLog
            do {
                self.peer = try PeerCertificates.verifyInitiator(Self.entries(certs), at: self.facts.now)
            } catch { throw .certificatesRejected("\(error)") }
            self.state = .awaitingAuthenticate
            return []

        case (.awaitingAuthenticate, .authenticate(let auth)):
            guard case .responder(let keys) = self.role, let peer = self.peer, let authKey = peer.authKey,
                let slog = self.responderLog
            else { throw .unexpectedCell(cell.command, state: "\(self.state)") }
            guard auth.authType == LinkAuth3.authType else {
                throw .authenticationFailed("unsupported method \(auth.authType)")
            }
            let clog = TorDigest.sha256(self.receivedLog)
            guard let localDER = self.facts.localCertificateDER else {
                throw .missingLinkInformation("our TLS certificate")
            }
            do {
                let secrets = try self.facts.exporter(
                    LinkAuth3.exporterLabel, LinkAuth3.exporterContext(initiatorRSA: peer.rsaKey), 32)
                let transcript = LinkAuth3.Transcript(
                    initiatorRSA: peer.rsaKey, responderRSA: keys.rsaIdentity.publicKey,
                    initiatorEd: peer.ed25519Identity, responderEd: keys.edIdentity, responderLog: slog,
                    initiatorLog: clog, responderTLSCertSHA256: TorDigest.sha256(localDER), tlsSecrets: secrets)
                try LinkAuth3.verifyBody(Array(auth.body.readableBytesView), expected: transcript, authKey: authKey)
            } catch { throw .authenticationFailed("\(error)") }
            self.state = .awaitingNetinfo
            return []

        case (.awaitingInitiator, .netinfo):
            // An unauthenticated initiator: a client.
            self.peer = nil
            return [self.opened(rsa: nil, ed: nil)]

        default:
            throw .unexpectedCell(cell.command, state: "\(self.state)")
        }
    }

    private var logging: Bool {
        switch self.state {
        case .open, .failed: false
        default: true
        }
    }

    private mutating func opened(rsa: RSAIdentity?, ed: Ed25519Identity?) -> Action {
        self.state = .open
        self.sentLog = []
        self.receivedLog = []
        return .open(LinkPeer(rsaIdentity: rsa, ed25519Identity: ed, linkProtocol: self.linkProtocol))
    }

    private func checkExpected(_ verified: VerifiedPeerIdentity) throws(LinkHandshakeError) {
        let (rsa, ed): (RSAIdentity?, Ed25519Identity?)
        switch self.role {
        case .client(let r, let e), .relayInitiator(_, let r, let e): (rsa, ed) = (r, e)
        case .responder: return
        }
        if let rsa, rsa != verified.rsaIdentity {
            throw .wrongIdentity(expected: "\(rsa)", actual: "\(verified.rsaIdentity)")
        }
        if let ed, ed != verified.ed25519Identity {
            throw .wrongIdentity(expected: "ed25519:\(ed)", actual: "ed25519:\(verified.ed25519Identity)")
        }
    }

    private func authenticateBody(keys: RelayKeys, slog: [UInt8]) throws(LinkHandshakeError) -> [UInt8] {
        guard let peer = self.peer, let der = self.facts.peerCertificateDER else {
            throw .missingLinkInformation("responder identity")
        }
        do {
            let secrets = try self.facts.exporter(
                LinkAuth3.exporterLabel, LinkAuth3.exporterContext(initiatorRSA: keys.rsaIdentity.publicKey), 32)
            let transcript = LinkAuth3.Transcript(
                initiatorRSA: keys.rsaIdentity.publicKey, responderRSA: peer.rsaKey, initiatorEd: keys.edIdentity,
                responderEd: peer.ed25519Identity, responderLog: slog, initiatorLog: TorDigest.sha256(self.sentLog),
                responderTLSCertSHA256: TorDigest.sha256(der), tlsSecrets: secrets)
            return try LinkAuth3.makeBody(transcript, authKey: keys.authKey)
        } catch { throw .authenticationFailed("building AUTHENTICATE: \(error)") }
    }

    private func netinfo(timestamp: Bool) -> Netinfo {
        Netinfo(
            timestamp: timestamp ? UInt32(clamping: Int(self.facts.now.timeIntervalSince1970)) : 0,
            otherAddress: self.facts.peerAddress, myAddresses: self.facts.localAddresses)
    }

    /// Frame messages on circuit 0 and log them.
    private mutating func frame(_ messages: [ChannelMessage]) throws(LinkHandshakeError) -> ByteBuffer {
        var out = ByteBuffer()
        for message in messages {
            do { try self.encoder.encode(circuitID: 0, message: message, into: &out) } catch {
                throw .malformedCell(message.command, error)
            }
        }
        if self.logging { self.sentLog += out.readableBytesView }
        return out
    }

    private func encoded(_ cell: ChannelCell) -> [UInt8] {
        // The received cell re-framed with the width it arrived in is byte-identical to the wire bytes.
        var out = ByteBuffer()
        let width: CircuitIDWidth = cell.command == .versions ? .twoBytes : self.encoder.circuitIDWidth
        try? ChannelCellEncoder(circuitIDWidth: width).encode(cell, into: &out)
        return Array(out.readableBytesView)
    }

    private static func certs(_ keys: RelayKeys, types: Set<UInt8>) throws(LinkHandshakeError) -> Certs {
        let entries = keys.certsCellEntries.filter { types.contains($0.type) }.map {
            Certs.Entry(type: CertType($0.type), body: ByteBuffer(bytes: $0.body))
        }
        do { return try Certs(entries) } catch { throw .malformedCell(.certs, error) }
    }

    private static func entries(_ certs: Certs) -> [(type: UInt8, body: [UInt8])] {
        certs.entries.map { ($0.type.rawValue, Array($0.body.readableBytesView)) }
    }
}

extension AuthChallenge {
    init(challengeBytes: [UInt8]) throws(LinkHandshakeError) {
        do { try self.init(challenge: challengeBytes, methods: [LinkAuth3.authType]) } catch {
            throw .malformedCell(.authChallenge, error)
        }
    }
}
