import TorCells
import TorCrypto

/// Why a circuit or stream was torn down by our side, or why an input was dropped: the log-worthy
/// reason that goes with the DESTROY / END we send. Bad input always ends up here, never in a trap.
public enum CircuitFailure: Error, Hashable, Sendable, CustomStringConvertible {
    /// A cell or relay message did not parse (truncated, oversized, bad field).
    case malformed(CellError)
    /// A relay cell no hop recognized (wrong digest) where it could go nowhere else: at the last hop,
    /// or at the client.
    case unrecognizedRelayCell
    /// The peer broke flow control (DATA beyond a window, SENDME overflow or bad digest).
    case flowControl(FlowControlViolation)
    /// More than 8 RELAY_EARLY cells on one circuit (tor-spec §5.6).
    case tooManyRelayEarly
    /// A RELAY_EARLY cell travelling toward the client, which only clients may send.
    case inboundRelayEarly
    /// EXTEND2 arrived in a plain RELAY cell.
    case extendNotInRelayEarly
    /// EXTEND2 on a circuit that already has (or is getting) a next hop.
    case alreadyExtended
    /// EXTEND2 we refuse: forbidden address, missing link specifiers, back to the previous hop, ...
    case extendRefused(String)
    /// The handshake with a hop failed (bad CREATED2 AUTH, unknown key, unsupported handshake type).
    case handshakeFailed(String)
    /// A message that makes no sense in the circuit's or stream's current state.
    case unexpected(String)
    /// A relay command that needs a stream ID arrived with stream ID 0, or vice versa.
    case badStreamID(RelayCommand, UInt16)
    /// The channel the circuit ran over is gone.
    case channelClosed
    /// We could not allocate a circuit or stream ID.
    case resourceLimit(String)
    /// Our own crypto layer failed (never expected; reported rather than trapped).
    case crypto(String)

    /// The DESTROY reason that goes with this failure.
    public var destroyReason: DestroyReason {
        switch self {
        case .channelClosed: .channelClosed
        case .resourceLimit: .resourceLimit
        case .crypto: .internal
        default: .protocol
        }
    }

    public var description: String {
        switch self {
        case .malformed(let e): "malformed cell: \(e)"
        case .unrecognizedRelayCell: "relay cell not recognized (bad digest) with nowhere to forward it"
        case .flowControl(let v): "flow-control violation: \(v)"
        case .tooManyRelayEarly: "more than 8 RELAY_EARLY cells on the circuit"
        case .inboundRelayEarly: "RELAY_EARLY cell travelling toward the client"
        case .extendNotInRelayEarly: "EXTEND2 not sent in a RELAY_EARLY cell"
        case .alreadyExtended: "EXTEND2 on a circuit that is already extended"
        case .extendRefused(let why): "EXTEND2 refused: \(why)"
        case .handshakeFailed(let why): "circuit handshake failed: \(why)"
        case .unexpected(let what): "unexpected: \(what)"
        case .badStreamID(let command, let id): "\(command) with invalid stream ID \(id)"
        case .channelClosed: "channel closed"
        case .resourceLimit(let what): "resource limit: \(what)"
        case .crypto(let what): "relay crypto failure: \(what)"
        }
    }
}

/// Circuits allow at most this many RELAY_EARLY cells (`MAX_RELAY_EARLY_CELLS_PER_CIRCUIT`).
public let maximumRelayEarlyCells = 8

/// Opaque handle the transport layer assigns to each channel (TLS link or WebSocket bridge).
public struct ChannelID: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "ch\(rawValue)" }
}
