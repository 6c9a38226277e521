import NIOCore
import NetBasics

/// A parsed relay message body (tor-spec §6).
///
/// Commands this codec doesn't parse — RESOLVE, RESOLVED, the obsolete EXTEND/EXTENDED, padding
/// negotiation, XON/XOFF, an application's commands (`ApplicationCommands`), onion-service and
/// unknown commands — are kept as `.raw(command, body)` and re-encode byte for byte.
public enum RelayMessage: Hashable, Sendable {
    case begin(Begin)
    case data(ByteBuffer)
    case end(End)
    case connected(Connected)
    case sendme(Sendme)
    case extend2(Extend2)
    /// Same layout as CREATED2.
    case extended2(Created2)
    case truncate
    case truncated(DestroyReason)
    case drop
    case beginDir
    case raw(RelayCommand, ByteBuffer)

    public var command: RelayCommand {
        switch self {
        case .begin: return .begin
        case .data: return .data
        case .end: return .end
        case .connected: return .connected
        case .sendme: return .sendme
        case .extend2: return .extend2
        case .extended2: return .extended2
        case .truncate: return .truncate
        case .truncated: return .truncated
        case .drop: return .drop
        case .beginDir: return .beginDir
        case .raw(let command, _): return command
        }
    }

    /// Parses `body` (the relay cell's data, exactly Length bytes) as a `command` message.
    public init(command: RelayCommand, body: ByteBuffer) throws(CellError) {
        var p = body
        switch command {
        case .begin: self = .begin(try Begin(decoding: &p))
        case .data: self = .data(body)
        case .end: self = .end(try End(decoding: &p))
        case .connected: self = .connected(try Connected(decoding: &p))
        case .sendme: self = .sendme(try Sendme(decoding: &p))
        case .extend2: self = .extend2(try Extend2(decoding: &p))
        case .extended2: self = .extended2(try Created2(decoding: &p))
        case .truncate: self = .truncate
        case .truncated: self = .truncated(DestroyReason(try p.readInteger(UInt8.self, field: "TRUNCATED reason")))
        case .drop: self = .drop
        case .beginDir: self = .beginDir
        default: self = .raw(command, body)
        }
    }

    /// Appends the message body to `out`. Callers check the 498-byte limit (`RelayCell` does).
    public func writeBody(into out: inout ByteBuffer) throws(CellError) {
        switch self {
        case .begin(let begin): begin.write(into: &out)
        case .data(let data):
            guard data.readableBytes <= RelayCellBody.maximumDataLength else {
                throw .payloadTooLong(length: data.readableBytes, limit: RelayCellBody.maximumDataLength)
            }
            out.writeImmutableBuffer(data)
        case .end(let end): end.write(into: &out)
        case .connected(let connected): try connected.write(into: &out)
        case .sendme(let sendme): try sendme.write(into: &out)
        case .extend2(let extend): try extend.write(into: &out)
        case .extended2(let created): try created.write(into: &out)
        case .truncate, .drop, .beginDir: break
        case .truncated(let reason): out.writeInteger(reason.rawValue)
        case .raw(_, let body): out.writeImmutableBuffer(body)
        }
    }
}

/// RELAY_BEGIN: `ADDRPORT NUL [FLAGS(4)]` where ADDRPORT is `host:port` or `[ipv6]:port`.
public struct Begin: Hashable, Sendable {
    /// BEGIN flags (tor-spec §6.2). Unknown bits are preserved.
    public struct Flags: OptionSet, Hashable, Sendable {
        public var rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let ipv6Okay = Flags(rawValue: 1 << 0)
        public static let ipv4NotOkay = Flags(rawValue: 1 << 1)
        public static let ipv6Preferred = Flags(rawValue: 1 << 2)
    }

    /// A hostname, a dotted IPv4 address, or an IPv6 address (without brackets).
    public let host: String
    public let port: UInt16
    public var flags: Flags

    /// Validates the target. Hosts are printable ASCII without `:`, `[`, `]`, unless they parse as
    /// IPv6; port 0 is refused.
    public init(host: String, port: UInt16, flags: Flags = []) throws(CellError) {
        guard port != 0 else { throw .badStreamTarget(reason: "port 0") }
        try Self.validate(host: Substring(host))
        self.host = host
        self.port = port
        self.flags = flags
    }

    /// The IPv6 address if `host` is one.
    public var ipv6Address: IPv6Address? { host.contains(":") ? IPv6Address(host) : nil }

    static func validate(host: Substring) throws(CellError) {
        guard !host.isEmpty else { throw .badStreamTarget(reason: "empty host") }
        guard host.utf8.count <= 255 else { throw .badStreamTarget(reason: "host longer than 255 bytes") }
        if host.contains(":") {
            guard IPv6Address(host) != nil else { throw .badStreamTarget(reason: "malformed IPv6 address") }
            return
        }
        for byte in host.utf8 where byte <= 0x20 || byte >= 0x7F || byte == UInt8(ascii: "[") || byte == UInt8(ascii: "]") {
            throw .badStreamTarget(reason: "host contains a non-printable, non-ASCII or bracket character")
        }
    }

    init(decoding p: inout ByteBuffer) throws(CellError) {
        guard let nul = p.readableBytesView.firstIndex(of: 0) else { throw .missingNulTerminator(field: "BEGIN ADDRPORT") }
        let addrport = p.readableBytesView[p.readableBytesView.startIndex..<nul]
        p.moveReaderIndex(to: nul + 1)
        guard addrport.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .badStreamTarget(reason: "ADDRPORT is not printable ASCII")
        }
        let text = String(decoding: addrport, as: UTF8.self)
        let hostPart: Substring, portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .badStreamTarget(reason: "unclosed [") }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.first == ":" else { throw .badStreamTarget(reason: "missing port") }
            portPart = rest.dropFirst()
            guard IPv6Address(hostPart) != nil else { throw .badStreamTarget(reason: "malformed IPv6 address") }
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .badStreamTarget(reason: "missing port") }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            guard !hostPart.contains(":") else { throw .badStreamTarget(reason: "IPv6 address without brackets") }
            try Self.validate(host: hostPart)
        }
        guard (1...5).contains(portPart.count), portPart.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = UInt16(portPart), port != 0 else {
            throw .badStreamTarget(reason: "bad port")
        }
        host = String(hostPart)
        self.port = port
        switch p.readableBytes {
        case 0: flags = []
        case 1..<4: throw .truncated(field: "BEGIN flags")
        default: flags = Flags(rawValue: try p.readInteger(UInt32.self, field: "BEGIN flags"))
        }
    }

    func write(into out: inout ByteBuffer) {
        if host.contains(":") { out.writeString("[\(host)]:\(port)") } else { out.writeString("\(host):\(port)") }
        out.writeInteger(UInt8(0))
        // Flags are optional on the wire; C tor and arti omit them when zero.
        if !flags.isEmpty { out.writeInteger(flags.rawValue) }
    }
}

/// RELAY_END: a reason, plus for EXITPOLICY the rejected address and a TTL.
public struct End: Hashable, Sendable {
    public struct ExitPolicyRejection: Hashable, Sendable {
        public var address: IPAddress
        /// Seconds; 0xFFFFFFFF when the sender gave none.
        public var ttl: UInt32
        public init(address: IPAddress, ttl: UInt32) { self.address = address; self.ttl = ttl }
    }

    public var reason: EndReason
    /// Present only with reason EXITPOLICY, when the sender included it.
    public var exitPolicy: ExitPolicyRejection?

    public init(reason: EndReason, exitPolicy: ExitPolicyRejection? = nil) {
        self.reason = reason
        self.exitPolicy = exitPolicy
    }

    init(decoding p: inout ByteBuffer) throws(CellError) {
        // tor-spec: an empty END means MISC.
        guard p.readableBytes > 0 else { self.init(reason: .misc); return }
        let reason = EndReason(try p.readInteger(UInt8.self, field: "END reason"))
        // Other reasons: extra bytes are ignored.
        guard reason == .exitPolicy, p.readableBytes > 0 else { self.init(reason: reason); return }
        let address: IPAddress
        switch p.readableBytes {
        case 4, 8: address = .v4(try p.readIPv4(field: "END address"))
        case 16, 20: address = .v6(try p.readIPv6(field: "END address"))
        default: throw .badAddress(type: 0, length: p.readableBytes)
        }
        let ttl = p.readableBytes == 4 ? try p.readInteger(UInt32.self, field: "END TTL") : UInt32.max
        self.init(reason: reason, exitPolicy: ExitPolicyRejection(address: address, ttl: ttl))
    }

    func write(into out: inout ByteBuffer) {
        out.writeInteger(reason.rawValue)
        guard let exitPolicy else { return }
        switch exitPolicy.address.family {
        case .v4(let a): out.writeInteger(a.rawValue)
        case .v6(let a): out.writeIPv6(a)
        }
        out.writeInteger(exitPolicy.ttl)
    }
}

/// RELAY_CONNECTED: empty, or the address connected to and a TTL.
public struct Connected: Hashable, Sendable {
    public var address: IPAddress?
    /// Seconds; meaningful only with an address.
    public var ttl: UInt32

    public init(address: IPAddress? = nil, ttl: UInt32 = 0) {
        self.address = address
        self.ttl = address == nil ? 0 : ttl
    }

    /// The empty form (what an exit sends for BEGIN_DIR, or to hide the address).
    public static let empty = Connected()

    init(decoding p: inout ByteBuffer) throws(CellError) {
        guard p.readableBytes > 0 else { self.init(); return }
        let v4 = try p.readInteger(UInt32.self, field: "CONNECTED IPv4 address")
        let address: IPAddress
        if v4 != 0 {
            address = .v4(IPv4Address(rawValue: v4))
        } else {
            // An all-zero IPv4 address announces the IPv6 form: ATYPE(1)=6 IPv6(16) TTL(4).
            let type = try p.readInteger(UInt8.self, field: "CONNECTED address type")
            guard type == 6 else { throw .badAddress(type: type, length: p.readableBytes) }
            address = .v6(try p.readIPv6(field: "CONNECTED IPv6 address"))
        }
        self.init(address: address, ttl: try p.readInteger(UInt32.self, field: "CONNECTED TTL"))
    }

    func write(into out: inout ByteBuffer) throws(CellError) {
        switch address?.family {
        case nil: return
        case .v4(let a):
            guard a.rawValue != 0 else { throw .unencodableAddress("0.0.0.0 in CONNECTED is reserved for the IPv6 form") }
            out.writeInteger(a.rawValue)
        case .v6(let a):
            out.writeInteger(UInt32(0)); out.writeInteger(UInt8(6)); out.writeIPv6(a)
        }
        out.writeInteger(ttl)
    }
}

/// RELAY_SENDME (tor-spec §7.3–7.4).
public enum Sendme: Hashable, Sendable {
    public static let digestLength = 20

    /// Unauthenticated (empty body, or version 0).
    case v0
    /// Authenticated: the first 20 bytes of the running digest after the triggering cell.
    case v1(digest: [UInt8])
    /// A version this codec doesn't know, kept for the flow-control logic to decide on.
    case unrecognized(version: UInt8, data: ByteBuffer)

    init(decoding p: inout ByteBuffer) throws(CellError) {
        guard p.readableBytes > 0 else { self = .v0; return }
        let version = try p.readInteger(UInt8.self, field: "SENDME version")
        let length = try p.readInteger(UInt16.self, field: "SENDME DATA_LEN")
        var data = try p.readSlice(length: Int(length), field: "SENDME data")
        switch version {
        case 0: self = .v0
        case 1:
            guard length == Self.digestLength else { throw .badSendmeDigestLength(Int(length)) }
            self = .v1(digest: try data.readBytes(length: Self.digestLength, field: "SENDME digest"))
        default: self = .unrecognized(version: version, data: data)
        }
    }

    func write(into out: inout ByteBuffer) throws(CellError) {
        switch self {
        case .v0: break
        case .v1(let digest):
            guard digest.count == Self.digestLength else { throw .badSendmeDigestLength(digest.count) }
            out.writeInteger(UInt8(1)); out.writeInteger(UInt16(Self.digestLength)); out.writeBytes(digest)
        case .unrecognized(let version, let data):
            out.writeInteger(version)
            try out.writeLengthPrefixed16(data, field: "SENDME data")
        }
    }
}

/// A link specifier in EXTEND2 (tor-spec §5.1.2). Unknown types are kept verbatim.
public enum LinkSpecifier: Hashable, Sendable {
    /// Type 0: IPv4 address and OR port.
    case ipv4(IPv4Address, port: UInt16)
    /// Type 1: IPv6 address and OR port.
    case ipv6(IPv6Address, port: UInt16)
    /// Type 2: the SHA-1 digest of the RSA identity key (20 bytes).
    case rsaIdentity([UInt8])
    /// Type 3: the Ed25519 identity key (32 bytes).
    case ed25519Identity([UInt8])
    case unknown(type: UInt8, body: [UInt8])

    public var type: UInt8 {
        switch self {
        case .ipv4: return 0
        case .ipv6: return 1
        case .rsaIdentity: return 2
        case .ed25519Identity: return 3
        case .unknown(let type, _): return type
        }
    }

    init(decoding p: inout ByteBuffer) throws(CellError) {
        let type = try p.readInteger(UInt8.self, field: "link specifier type")
        let length = try p.readInteger(UInt8.self, field: "link specifier length")
        var body = try p.readSlice(length: Int(length), field: "link specifier")
        switch (type, length) {
        case (0, 6):
            let address = try body.readIPv4(field: "link specifier IPv4")
            self = .ipv4(address, port: try body.readInteger(UInt16.self, field: "link specifier port"))
        case (1, 18):
            let address = try body.readIPv6(field: "link specifier IPv6")
            self = .ipv6(address, port: try body.readInteger(UInt16.self, field: "link specifier port"))
        case (2, 20): self = .rsaIdentity(Array(body.readableBytesView))
        case (3, 32): self = .ed25519Identity(Array(body.readableBytesView))
        case (0...3, _): throw .badLinkSpecifier(type: type, length: Int(length))
        default: self = .unknown(type: type, body: Array(body.readableBytesView))
        }
    }

    func write(into out: inout ByteBuffer) throws(CellError) {
        out.writeInteger(type)
        switch self {
        case .ipv4(let a, let port): out.writeInteger(UInt8(6)); out.writeInteger(a.rawValue); out.writeInteger(port)
        case .ipv6(let a, let port): out.writeInteger(UInt8(18)); out.writeIPv6(a); out.writeInteger(port)
        case .rsaIdentity(let id):
            guard id.count == 20 else { throw .badLinkSpecifier(type: 2, length: id.count) }
            out.writeInteger(UInt8(20)); out.writeBytes(id)
        case .ed25519Identity(let id):
            guard id.count == 32 else { throw .badLinkSpecifier(type: 3, length: id.count) }
            out.writeInteger(UInt8(32)); out.writeBytes(id)
        case .unknown(_, let body):
            guard body.count <= Int(UInt8.max) else { throw .badLinkSpecifier(type: type, length: body.count) }
            out.writeInteger(UInt8(body.count)); out.writeBytes(body)
        }
    }
}

/// RELAY_EXTEND2: where to extend (link specifiers, in the order given) and the CREATE2 handshake.
public struct Extend2: Hashable, Sendable {
    /// Send in the order 00 (IPv4), 02 (RSA), 03 (Ed25519), 01 (IPv6), as C tor does.
    public var linkSpecifiers: [LinkSpecifier]
    public var handshakeType: UInt16
    public var handshakeData: ByteBuffer

    public init(linkSpecifiers: [LinkSpecifier], handshakeType: UInt16, handshakeData: ByteBuffer) {
        self.linkSpecifiers = linkSpecifiers
        self.handshakeType = handshakeType
        self.handshakeData = handshakeData
    }

    /// The handshake as a CREATE2 message for the next hop.
    public var create2: Create2 { Create2(handshakeType: handshakeType, handshakeData: handshakeData) }

    init(decoding p: inout ByteBuffer) throws(CellError) {
        let count = try p.readInteger(UInt8.self, field: "EXTEND2 NSPEC")
        var specs: [LinkSpecifier] = []
        specs.reserveCapacity(Int(count))
        for _ in 0..<count { specs.append(try LinkSpecifier(decoding: &p)) }
        linkSpecifiers = specs
        let create = try Create2(decoding: &p)
        handshakeType = create.handshakeType
        handshakeData = create.handshakeData
    }

    func write(into out: inout ByteBuffer) throws(CellError) {
        guard linkSpecifiers.count <= Int(UInt8.max) else {
            throw .tooManyEntries(field: "EXTEND2 NSPEC", count: linkSpecifiers.count)
        }
        out.writeInteger(UInt8(linkSpecifiers.count))
        for spec in linkSpecifiers { try spec.write(into: &out) }
        try create2.write(into: &out)
    }
}
