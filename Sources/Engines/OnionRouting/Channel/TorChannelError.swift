import TorCells
import TorCrypto

/// Why a channel was closed (or an owner call refused). Every peer-caused failure ends the link: after
/// a bad cell the byte stream and the handshake transcript can no longer be trusted.
public enum TorChannelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The byte stream could not be split into cells (e.g. an oversized variable-length cell).
    case framing(CellError)
    /// A cell's payload did not parse.
    case malformedCell(ChannelCommand, CellError)
    /// A cell that is not allowed at this point of the handshake (or at all once the channel is open).
    case unexpectedCell(ChannelCommand, state: String)
    /// A link-level cell carried a non-zero circuit ID.
    case nonZeroCircuitID(ChannelCommand, UInt32)
    /// The peer offers no link protocol version ≥ 4 that we support.
    case noCommonLinkVersion(peerVersions: [UInt16])
    /// The responder's (or an authenticating initiator's) certificates did not verify.
    case certificatesRejected(TorCryptoError)
    /// The responder proved an identity other than the one we expected.
    case wrongIdentity(expected: ExpectedPeerIdentity, actual: ExpectedPeerIdentity)
    /// An AUTHENTICATE cell did not verify.
    case authenticationFailed(String)
    /// The responder offered no authentication method we can use, so we cannot authenticate as a relay.
    case noUsableAuthMethod([UInt16])
    /// The TLS layer did not provide what this handshake needs (certificate digest, exporter).
    case missingLinkInformation(String)
    /// Our own keys or certificates do not match the TLS connection (a local configuration error).
    case localConfiguration(String)
    /// The owner asked to send on a channel that is not open.
    case notOpen
    /// The owner asked to send a link-handshake cell over the open channel.
    case notACircuitCell(ChannelCommand)

    public var description: String {
        switch self {
        case .framing(let e): return "cell framing error: \(e)"
        case .malformedCell(let c, let e): return "malformed \(c) cell: \(e)"
        case .unexpectedCell(let c, let state): return "unexpected \(c) cell while \(state)"
        case .nonZeroCircuitID(let c, let id): return "\(c) cell with circuit ID \(id), expected 0"
        case .noCommonLinkVersion(let v): return "no common link protocol version ≥ 4 (peer offers \(v))"
        case .certificatesRejected(let e): return "peer certificates rejected: \(e)"
        case .wrongIdentity(let expected, let actual):
            return "peer identity \(Self.describe(actual)) is not the expected \(Self.describe(expected))"
        case .authenticationFailed(let why): return "AUTHENTICATE rejected: \(why)"
        case .noUsableAuthMethod(let m): return "responder offers no usable authentication method (\(m))"
        case .missingLinkInformation(let what): return "TLS link information missing: \(what)"
        case .localConfiguration(let why): return "local configuration error: \(why)"
        case .notOpen: return "channel is not open"
        case .notACircuitCell(let c): return "\(c) is a link-handshake cell, not a circuit cell"
        }
    }

    private static func describe(_ id: ExpectedPeerIdentity) -> String {
        [id.rsaIdentity.map { "\($0)" }, id.ed25519Identity.map { "ed25519:\($0)" }].compactMap { $0 }.joined(separator: " ")
    }
}
