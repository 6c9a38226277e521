import Foundation
import TorCells
import TorCrypto

/// The identities the initiator requires of the relay it connects to (from the consensus, a descriptor,
/// or an EXTEND2 link specifier). A nil field is not checked; the proven identities are reported anyway.
public struct ExpectedPeerIdentity: Hashable, Sendable {
    public var rsaIdentity: RSAIdentity?
    public var ed25519Identity: Ed25519Identity?

    public init(rsaIdentity: RSAIdentity?, ed25519Identity: Ed25519Identity? = nil) {
        self.rsaIdentity = rsaIdentity
        self.ed25519Identity = ed25519Identity
    }

    /// Accept whichever relay answers (bootstrapping, tests). Clients building circuits always know the
    /// first hop's fingerprint and should pass it.
    public static let any = ExpectedPeerIdentity(rsaIdentity: nil, ed25519Identity: nil)
}

/// Which end of the link handshake we run, and with what keys.
public enum ChannelEndpoint: Sendable {
    /// We opened the link as a client: verify the responder, do not authenticate, NETINFO with time 0.
    case client(expecting: ExpectedPeerIdentity)
    /// We opened the link as a relay (e.g. to extend a circuit): verify the responder, then authenticate
    /// with CERTS (2, 7, 4, 6) + AUTHENTICATE type 3, so the peer treats us as a relay and not a client.
    case relayInitiator(RelayKeys, expecting: ExpectedPeerIdentity)
    /// The peer opened the link to our relay.
    case responder(RelayKeys)

    var role: ChannelRole {
        if case .responder = self { return .responder }
        return .initiator
    }
}

/// RFC 5705 keying-material exporter of the TLS session: `(label, context, length) -> bytes`.
/// Only AUTHENTICATE type 3 uses it (relay initiator and responder); clients never call it.
public typealias LinkKeyingMaterialExporter = (_ label: String, _ context: [UInt8], _ length: Int) throws -> [UInt8]

/// Facts about the TLS connection under the channel, handed in by the transport layer.
public struct LinkContext {
    /// SHA-256 of the peer's TLS leaf certificate (DER). The initiator requires it: the responder's type-5
    /// cert must certify it, and it is AUTHENTICATE's SCERT. A Tor initiator presents no certificate.
    public var peerCertificateSHA256: [UInt8]?
    /// SHA-256 of our own TLS certificate: the responder's SCERT (it must be `RelayKeys.linkCert`).
    public var localCertificateSHA256: [UInt8]?
    public var exporter: LinkKeyingMaterialExporter?
    /// The peer's address as we see it (NETINFO's OTHERADDR).
    public var peerAddress: NetinfoAddress
    /// Our public addresses, advertised in NETINFO by relays (clients send none).
    public var localAddresses: [NetinfoAddress]

    public init(peerCertificateDER: [UInt8]?, localCertificateDER: [UInt8]?, exporter: LinkKeyingMaterialExporter?,
                peerAddress: NetinfoAddress, localAddresses: [NetinfoAddress] = []) {
        self.init(peerCertificateSHA256: peerCertificateDER.map(TorDigest.sha256),
                  localCertificateSHA256: localCertificateDER.map(TorDigest.sha256),
                  exporter: exporter, peerAddress: peerAddress, localAddresses: localAddresses)
    }

    /// As above, with the certificates already hashed (test vectors publish only the digest).
    public init(peerCertificateSHA256: [UInt8]?, localCertificateSHA256: [UInt8]?, exporter: LinkKeyingMaterialExporter?,
                peerAddress: NetinfoAddress, localAddresses: [NetinfoAddress] = []) {
        self.peerCertificateSHA256 = peerCertificateSHA256
        self.localCertificateSHA256 = localCertificateSHA256
        self.exporter = exporter
        self.peerAddress = peerAddress
        self.localAddresses = localAddresses
    }
}

/// Everything the channel state machine needs besides the TLS facts.
public struct ChannelConfiguration: Sendable {
    public var endpoint: ChannelEndpoint
    /// Link protocol versions we offer. Only 4 and 5 are supported (4-byte circuit IDs); anything else
    /// is dropped at init, so the negotiated version is always ≥ 4.
    public private(set) var linkVersions: [UInt16]
    /// Random bytes for AUTH_CHALLENGE and AUTHENTICATE's RAND. Production uses the system CSPRNG;
    /// tests may inject a deterministic source.
    public var randomBytes: @Sendable (Int) -> [UInt8]

    public static let supportedLinkVersions: [UInt16] = [4, 5]

    public init(endpoint: ChannelEndpoint, linkVersions: [UInt16] = ChannelConfiguration.supportedLinkVersions,
                randomBytes: @escaping @Sendable (Int) -> [UInt8] = { secureRandomBytes($0) }) {
        self.endpoint = endpoint
        let usable = Array(Set(linkVersions.filter { Self.supportedLinkVersions.contains($0) })).sorted()
        self.linkVersions = usable.isEmpty ? Self.supportedLinkVersions : usable
        self.randomBytes = randomBytes
    }
}
