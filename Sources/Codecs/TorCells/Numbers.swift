// Integer code points. Each is a struct over its raw integer rather than a Swift enum, so values
// this codec does not know survive decoding and re-encoding unchanged (newer peers may send them).

/// A channel cell command (tor-spec §3).
public struct ChannelCommand: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public init(_ rawValue: UInt8) { self.rawValue = rawValue }

    public static let padding = ChannelCommand(0)
    /// Obsolete TAP handshake; decoded as `ChannelMessage.unknown`.
    public static let create = ChannelCommand(1)
    /// Obsolete TAP handshake; decoded as `ChannelMessage.unknown`.
    public static let created = ChannelCommand(2)
    public static let relay = ChannelCommand(3)
    public static let destroy = ChannelCommand(4)
    public static let createFast = ChannelCommand(5)
    public static let createdFast = ChannelCommand(6)
    public static let versions = ChannelCommand(7)
    public static let netinfo = ChannelCommand(8)
    public static let relayEarly = ChannelCommand(9)
    public static let create2 = ChannelCommand(10)
    public static let created2 = ChannelCommand(11)
    public static let paddingNegotiate = ChannelCommand(12)
    public static let vpadding = ChannelCommand(128)
    public static let certs = ChannelCommand(129)
    public static let authChallenge = ChannelCommand(130)
    public static let authenticate = ChannelCommand(131)
    /// Reserved, never specified; decoded as `ChannelMessage.unknown`.
    public static let authorize = ChannelCommand(132)

    /// Variable-length cells are VERSIONS and every command ≥ 128 (tor-spec §3).
    @inlinable public var isVariableLength: Bool { rawValue == 7 || rawValue >= 128 }

    public var description: String {
        switch self {
        case .padding: return "PADDING"
        case .create: return "CREATE"
        case .created: return "CREATED"
        case .relay: return "RELAY"
        case .destroy: return "DESTROY"
        case .createFast: return "CREATE_FAST"
        case .createdFast: return "CREATED_FAST"
        case .versions: return "VERSIONS"
        case .netinfo: return "NETINFO"
        case .relayEarly: return "RELAY_EARLY"
        case .create2: return "CREATE2"
        case .created2: return "CREATED2"
        case .paddingNegotiate: return "PADDING_NEGOTIATE"
        case .vpadding: return "VPADDING"
        case .certs: return "CERTS"
        case .authChallenge: return "AUTH_CHALLENGE"
        case .authenticate: return "AUTHENTICATE"
        case .authorize: return "AUTHORIZE"
        default: return "CHANNEL_COMMAND(\(rawValue))"
        }
    }
}

/// A relay cell command (tor-spec §6.1, with C tor's XOFF = 43, XON = 44). Commands an application
/// defines above the Tor layers are kept raw; see `ApplicationCommands`.
public struct RelayCommand: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public init(_ rawValue: UInt8) { self.rawValue = rawValue }

    public static let begin = RelayCommand(1)
    public static let data = RelayCommand(2)
    public static let end = RelayCommand(3)
    public static let connected = RelayCommand(4)
    public static let sendme = RelayCommand(5)
    /// Obsolete (TAP); kept raw.
    public static let extend = RelayCommand(6)
    /// Obsolete (TAP); kept raw.
    public static let extended = RelayCommand(7)
    public static let truncate = RelayCommand(8)
    public static let truncated = RelayCommand(9)
    public static let drop = RelayCommand(10)
    public static let resolve = RelayCommand(11)
    public static let resolved = RelayCommand(12)
    public static let beginDir = RelayCommand(13)
    public static let extend2 = RelayCommand(14)
    public static let extended2 = RelayCommand(15)
    public static let paddingNegotiate = RelayCommand(41)
    public static let paddingNegotiated = RelayCommand(42)
    /// The 2023 tor-spec.txt swaps these two; C tor's or.h (XOFF 43, XON 44) is authoritative.
    public static let xoff = RelayCommand(43)
    public static let xon = RelayCommand(44)

    /// Whether this command concerns a stream (and so needs a non-zero stream ID), per tor-spec §6.1.
    /// Unknown and application commands report false (an application's commands may be circuit-level).
    public var isStreamCommand: Bool {
        switch self {
        case .begin, .data, .end, .connected, .resolve, .resolved, .beginDir, .xoff, .xon: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .begin: return "BEGIN"
        case .data: return "DATA"
        case .end: return "END"
        case .connected: return "CONNECTED"
        case .sendme: return "SENDME"
        case .extend: return "EXTEND"
        case .extended: return "EXTENDED"
        case .truncate: return "TRUNCATE"
        case .truncated: return "TRUNCATED"
        case .drop: return "DROP"
        case .resolve: return "RESOLVE"
        case .resolved: return "RESOLVED"
        case .beginDir: return "BEGIN_DIR"
        case .extend2: return "EXTEND2"
        case .extended2: return "EXTENDED2"
        case .paddingNegotiate: return "PADDING_NEGOTIATE"
        case .paddingNegotiated: return "PADDING_NEGOTIATED"
        case .xoff: return "XOFF"
        case .xon: return "XON"
        default: return "RELAY_COMMAND(\(rawValue))"
        }
    }
}

/// The reason byte of DESTROY and TRUNCATED (tor-spec §5.4).
public struct DestroyReason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public init(_ rawValue: UInt8) { self.rawValue = rawValue }

    public static let none = DestroyReason(0)
    public static let `protocol` = DestroyReason(1)
    public static let `internal` = DestroyReason(2)
    public static let requested = DestroyReason(3)
    public static let hibernating = DestroyReason(4)
    public static let resourceLimit = DestroyReason(5)
    public static let connectFailed = DestroyReason(6)
    public static let orIdentity = DestroyReason(7)
    public static let channelClosed = DestroyReason(8)
    public static let finished = DestroyReason(9)
    public static let timeout = DestroyReason(10)
    public static let destroyed = DestroyReason(11)
    public static let noSuchService = DestroyReason(12)

    public var description: String {
        let names = ["NONE", "PROTOCOL", "INTERNAL", "REQUESTED", "HIBERNATING", "RESOURCELIMIT",
                     "CONNECTFAILED", "OR_IDENTITY", "CHANNEL_CLOSED", "FINISHED", "TIMEOUT", "DESTROYED",
                     "NOSUCHSERVICE"]
        return Int(rawValue) < names.count ? names[Int(rawValue)] : "DESTROY_REASON(\(rawValue))"
    }
}

/// The reason byte of a RELAY_END (tor-spec §6.3).
public struct EndReason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public init(_ rawValue: UInt8) { self.rawValue = rawValue }

    public static let misc = EndReason(1)
    public static let resolveFailed = EndReason(2)
    public static let connectRefused = EndReason(3)
    /// Carries the rejected address and a TTL (see `End.exitPolicy`).
    public static let exitPolicy = EndReason(4)
    public static let destroy = EndReason(5)
    public static let done = EndReason(6)
    public static let timeout = EndReason(7)
    public static let noRoute = EndReason(8)
    public static let hibernating = EndReason(9)
    public static let `internal` = EndReason(10)
    public static let resourceLimit = EndReason(11)
    public static let connReset = EndReason(12)
    public static let torProtocol = EndReason(13)
    public static let notDirectory = EndReason(14)

    public var description: String {
        let names = ["", "MISC", "RESOLVEFAILED", "CONNECTREFUSED", "EXITPOLICY", "DESTROY", "DONE", "TIMEOUT",
                     "NOROUTE", "HIBERNATING", "INTERNAL", "RESOURCELIMIT", "CONNRESET", "TORPROTOCOL",
                     "NOTDIRECTORY"]
        return (1..<names.count).contains(Int(rawValue)) ? names[Int(rawValue)] : "END_REASON(\(rawValue))"
    }
}

/// A certificate type in a CERTS cell (tor-spec §4.2, cert-spec).
public struct CertType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public init(_ rawValue: UInt8) { self.rawValue = rawValue }

    /// X.509 link certificate, signed by the RSA identity key.
    public static let rsaLink = CertType(1)
    /// Self-signed RSA-1024 identity certificate (X.509).
    public static let rsaIdentity = CertType(2)
    /// RSA AUTHENTICATE certificate (X.509, legacy).
    public static let rsaAuthenticate = CertType(3)
    /// Ed25519 identity → signing key.
    public static let ed25519Signing = CertType(4)
    /// Ed25519 signing key → TLS link certificate digest.
    public static let ed25519Link = CertType(5)
    /// Ed25519 signing key → AUTHENTICATE key.
    public static let ed25519Authenticate = CertType(6)
    /// RSA identity → Ed25519 identity cross-certificate.
    public static let rsaEd25519CrossCert = CertType(7)

    public var description: String { "CERT_TYPE(\(rawValue))" }
}
