import NIOCore
import NetBasics

/// A parsed channel cell payload (tor-spec §3–§5).
///
/// Decoding ignores bytes after the last field, as C tor does: fixed cells are zero-padded to 509
/// bytes, and future versions may append fields.
public enum ChannelMessage: Hashable, Sendable {
    /// Fixed-length link padding; its payload is ignored.
    case padding
    /// Variable-length link padding of `length` bytes (sent as zeros).
    case vpadding(length: Int)
    /// The link protocol versions the sender supports.
    case versions([UInt16])
    case certs(Certs)
    case authChallenge(AuthChallenge)
    case authenticate(Authenticate)
    case netinfo(Netinfo)
    case create2(Create2)
    case created2(Created2)
    case createFast(CreateFast)
    case createdFast(CreatedFast)
    /// An (encrypted) relay cell payload.
    case relay(RelayCellBody)
    /// Same as `relay`, but counted against the RELAY_EARLY budget (EXTEND2 must use it).
    case relayEarly(RelayCellBody)
    case destroy(DestroyReason)
    case paddingNegotiate(PaddingNegotiate)
    /// Any command this codec does not parse (unknown, or obsolete: CREATE, CREATED, AUTHORIZE).
    /// For a fixed-length command the body is the whole 509-byte payload.
    case unknown(ChannelCommand, ByteBuffer)

    public var command: ChannelCommand {
        switch self {
        case .padding: return .padding
        case .vpadding: return .vpadding
        case .versions: return .versions
        case .certs: return .certs
        case .authChallenge: return .authChallenge
        case .authenticate: return .authenticate
        case .netinfo: return .netinfo
        case .create2: return .create2
        case .created2: return .created2
        case .createFast: return .createFast
        case .createdFast: return .createdFast
        case .relay: return .relay
        case .relayEarly: return .relayEarly
        case .destroy: return .destroy
        case .paddingNegotiate: return .paddingNegotiate
        case .unknown(let command, _): return command
        }
    }

    /// Parses `payload` as the body of a `command` cell.
    public init(command: ChannelCommand, payload: ByteBuffer) throws(CellError) {
        var p = payload
        switch command {
        case .padding:
            self = .padding
        case .vpadding:
            self = .vpadding(length: p.readableBytes)
        case .versions:
            guard p.readableBytes % 2 == 0 else { throw .oddVersionsLength(p.readableBytes) }
            var versions: [UInt16] = []
            versions.reserveCapacity(p.readableBytes / 2)
            while p.readableBytes > 0 { versions.append(try p.readInteger(UInt16.self, field: "VERSIONS entry")) }
            self = .versions(versions)
        case .certs:
            self = .certs(try Certs(decoding: &p))
        case .authChallenge:
            self = .authChallenge(try AuthChallenge(decoding: &p))
        case .authenticate:
            let type = try p.readInteger(UInt16.self, field: "AUTHENTICATE type")
            let length = try p.readInteger(UInt16.self, field: "AUTHENTICATE length")
            self = .authenticate(Authenticate(authType: type, body: try p.readSlice(length: Int(length), field: "AUTHENTICATE body")))
        case .netinfo:
            self = .netinfo(try Netinfo(decoding: &p))
        case .create2:
            self = .create2(try Create2(decoding: &p))
        case .created2:
            self = .created2(try Created2(decoding: &p))
        case .createFast:
            self = .createFast(CreateFast(unchecked: try p.readBytes(length: 20, field: "CREATE_FAST key material")))
        case .createdFast:
            let y = try p.readBytes(length: 20, field: "CREATED_FAST key material")
            let kh = try p.readBytes(length: 20, field: "CREATED_FAST derivative key data")
            self = .createdFast(CreatedFast(unchecked: y, kh))
        case .relay:
            self = .relay(try RelayCellBody(p))
        case .relayEarly:
            self = .relayEarly(try RelayCellBody(p))
        case .destroy:
            self = .destroy(DestroyReason(try p.readInteger(UInt8.self, field: "DESTROY reason")))
        case .paddingNegotiate:
            self = .paddingNegotiate(try PaddingNegotiate(decoding: &p))
        default:
            self = .unknown(command, payload)
        }
    }

    /// Appends the payload (without fixed-cell padding) to `out`.
    public func writePayload(into out: inout ByteBuffer) throws(CellError) {
        switch self {
        case .padding:
            break
        case .vpadding(let length):
            guard length >= 0 else { throw .negativeLength(length) }
            guard length <= Int(UInt16.max) else { throw .payloadTooLong(length: length, limit: Int(UInt16.max)) }
            out.writeRepeatingByte(0, count: length)
        case .versions(let versions):
            guard versions.count <= Int(UInt16.max) / 2 else {
                throw .payloadTooLong(length: versions.count * 2, limit: Int(UInt16.max))
            }
            for v in versions { out.writeInteger(v) }
        case .certs(let certs): try certs.write(into: &out)
        case .authChallenge(let challenge): try challenge.write(into: &out)
        case .authenticate(let auth):
            out.writeInteger(auth.authType)
            try out.writeLengthPrefixed16(auth.body, field: "AUTHENTICATE body")
        case .netinfo(let netinfo): try netinfo.write(into: &out)
        case .create2(let create): try create.write(into: &out)
        case .created2(let created): try created.write(into: &out)
        case .createFast(let create): try out.writeFixed(create.keyMaterial, count: 20, field: "CREATE_FAST key material")
        case .createdFast(let created):
            try out.writeFixed(created.keyMaterial, count: 20, field: "CREATED_FAST key material")
            try out.writeFixed(created.derivativeKeyData, count: 20, field: "CREATED_FAST derivative key data")
        case .relay(let body), .relayEarly(let body):
            out.writeImmutableBuffer(body.bytes)
        case .destroy(let reason):
            out.writeInteger(reason.rawValue)
        case .paddingNegotiate(let negotiate):
            out.writeInteger(UInt8(0))
            out.writeInteger(negotiate.command.rawValue)
            out.writeInteger(negotiate.lowMilliseconds)
            out.writeInteger(negotiate.highMilliseconds)
        case .unknown(_, let body):
            out.writeImmutableBuffer(body)
        }
    }
}

/// The CERTS cell: raw certificate bodies by type. Parsing and verification belong to TorCrypto.
public struct Certs: Hashable, Sendable {
    public struct Entry: Hashable, Sendable {
        public var type: CertType
        public var body: ByteBuffer
        public init(type: CertType, body: ByteBuffer) { self.type = type; self.body = body }
    }

    /// The certificates in wire order; at most one per type.
    public private(set) var entries: [Entry]

    /// Throws `duplicateCertType` if two entries share a type.
    public init(_ entries: [Entry]) throws(CellError) {
        var seen = Set<CertType>()
        for entry in entries where !seen.insert(entry.type).inserted { throw .duplicateCertType(entry.type) }
        self.entries = entries
    }

    /// The body of the certificate of `type`, if present.
    public subscript(type: CertType) -> ByteBuffer? { entries.first { $0.type == type }?.body }

    init(decoding p: inout ByteBuffer) throws(CellError) {
        let count = try p.readInteger(UInt8.self, field: "CERTS count")
        var entries: [Entry] = []
        var seen = Set<CertType>()
        for _ in 0..<count {
            let type = CertType(try p.readInteger(UInt8.self, field: "CERTS cert type"))
            let length = try p.readInteger(UInt16.self, field: "CERTS cert length")
            let body = try p.readSlice(length: Int(length), field: "CERTS cert body")
            guard seen.insert(type).inserted else { throw .duplicateCertType(type) }
            entries.append(Entry(type: type, body: body))
        }
        self.entries = entries
    }

    func write(into out: inout ByteBuffer) throws(CellError) {
        guard entries.count <= Int(UInt8.max) else { throw .tooManyEntries(field: "CERTS count", count: entries.count) }
        out.writeInteger(UInt8(entries.count))
        for entry in entries {
            out.writeInteger(entry.type.rawValue)
            try out.writeLengthPrefixed16(entry.body, field: "CERTS cert body")
        }
    }
}

/// AUTH_CHALLENGE: a 32-byte challenge and the authentication methods the responder accepts.
public struct AuthChallenge: Hashable, Sendable {
    public static let challengeLength = 32
    public private(set) var challenge: [UInt8]
    public var methods: [UInt16]

    /// Throws `badFieldLength` unless `challenge` has 32 bytes.
    public init(challenge: [UInt8], methods: [UInt16]) throws(CellError) {
        guard challenge.count == Self.challengeLength else {
            throw .badFieldLength(field: "AUTH_CHALLENGE challenge", expected: Self.challengeLength, actual: challenge.count)
        }
        self.challenge = challenge
        self.methods = methods
    }

    init(decoding p: inout ByteBuffer) throws(CellError) {
        challenge = try p.readBytes(length: Self.challengeLength, field: "AUTH_CHALLENGE challenge")
        let count = try p.readInteger(UInt16.self, field: "AUTH_CHALLENGE method count")
        var methods: [UInt16] = []
        for _ in 0..<count { methods.append(try p.readInteger(UInt16.self, field: "AUTH_CHALLENGE method")) }
        self.methods = methods
    }

    func write(into out: inout ByteBuffer) throws(CellError) {
        out.writeBytes(challenge)
        guard methods.count <= Int(UInt16.max) else { throw .tooManyEntries(field: "AUTH_CHALLENGE methods", count: methods.count) }
        out.writeInteger(UInt16(methods.count))
        for m in methods { out.writeInteger(m) }
    }
}

/// AUTHENTICATE: an authentication type (3 = Ed25519-SHA256-RFC5705) and its opaque body.
public struct Authenticate: Hashable, Sendable {
    public var authType: UInt16
    public var body: ByteBuffer
    public init(authType: UInt16, body: ByteBuffer) { self.authType = authType; self.body = body }
}

/// An address in a NETINFO cell: IPv4, IPv6, or a type this codec does not know (kept verbatim).
public enum NetinfoAddress: Hashable, Sendable {
    case ipv4(IPv4Address)
    case ipv6(IPv6Address)
    case unknown(type: UInt8, body: [UInt8])

    init(decoding p: inout ByteBuffer) throws(CellError) {
        let type = try p.readInteger(UInt8.self, field: "NETINFO address type")
        let length = try p.readInteger(UInt8.self, field: "NETINFO address length")
        var body = try p.readSlice(length: Int(length), field: "NETINFO address")
        switch (type, length) {
        case (4, 4): self = .ipv4(try body.readIPv4(field: "NETINFO IPv4 address"))
        case (6, 16): self = .ipv6(try body.readIPv6(field: "NETINFO IPv6 address"))
        case (4, _), (6, _): throw .badAddress(type: type, length: Int(length))
        default: self = .unknown(type: type, body: Array(body.readableBytesView))
        }
    }

    func write(into out: inout ByteBuffer) throws(CellError) {
        switch self {
        case .ipv4(let a): out.writeInteger(UInt8(4)); out.writeInteger(UInt8(4)); out.writeInteger(a.rawValue)
        case .ipv6(let a): out.writeInteger(UInt8(6)); out.writeInteger(UInt8(16)); out.writeIPv6(a)
        case .unknown(let type, let body):
            guard body.count <= Int(UInt8.max) else { throw .payloadTooLong(length: body.count, limit: Int(UInt8.max)) }
            out.writeInteger(type); out.writeInteger(UInt8(body.count)); out.writeBytes(body)
        }
    }
}

/// NETINFO: the sender's clock, the address it sees for us, and its own addresses.
public struct Netinfo: Hashable, Sendable {
    /// Seconds since the Unix epoch; clients send 0.
    public var timestamp: UInt32
    public var otherAddress: NetinfoAddress
    public var myAddresses: [NetinfoAddress]

    public init(timestamp: UInt32, otherAddress: NetinfoAddress, myAddresses: [NetinfoAddress]) {
        self.timestamp = timestamp
        self.otherAddress = otherAddress
        self.myAddresses = myAddresses
    }

    init(decoding p: inout ByteBuffer) throws(CellError) {
        timestamp = try p.readInteger(UInt32.self, field: "NETINFO time")
        otherAddress = try NetinfoAddress(decoding: &p)
        let count = try p.readInteger(UInt8.self, field: "NETINFO address count")
        var addresses: [NetinfoAddress] = []
        for _ in 0..<count { addresses.append(try NetinfoAddress(decoding: &p)) }
        myAddresses = addresses
    }

    func write(into out: inout ByteBuffer) throws(CellError) {
        out.writeInteger(timestamp)
        try otherAddress.write(into: &out)
        guard myAddresses.count <= Int(UInt8.max) else { throw .tooManyEntries(field: "NETINFO addresses", count: myAddresses.count) }
        out.writeInteger(UInt8(myAddresses.count))
        for a in myAddresses { try a.write(into: &out) }
    }
}

/// CREATE2 (and the handshake part of EXTEND2): handshake type and client handshake data.
public struct Create2: Hashable, Sendable {
    /// 2 = ntor, 3 = ntor-v3.
    public var handshakeType: UInt16
    public var handshakeData: ByteBuffer
    public init(handshakeType: UInt16, handshakeData: ByteBuffer) {
        self.handshakeType = handshakeType
        self.handshakeData = handshakeData
    }

    init(decoding p: inout ByteBuffer) throws(CellError) {
        handshakeType = try p.readInteger(UInt16.self, field: "HTYPE")
        let length = try p.readInteger(UInt16.self, field: "HLEN")
        handshakeData = try p.readSlice(length: Int(length), field: "HDATA")
    }

    func write(into out: inout ByteBuffer) throws(CellError) {
        out.writeInteger(handshakeType)
        try out.writeLengthPrefixed16(handshakeData, field: "HDATA")
    }
}

/// CREATED2 (and EXTENDED2): the server's handshake reply.
public struct Created2: Hashable, Sendable {
    public var handshakeData: ByteBuffer
    public init(handshakeData: ByteBuffer) { self.handshakeData = handshakeData }

    init(decoding p: inout ByteBuffer) throws(CellError) {
        let length = try p.readInteger(UInt16.self, field: "HLEN")
        handshakeData = try p.readSlice(length: Int(length), field: "HDATA")
    }

    func write(into out: inout ByteBuffer) throws(CellError) {
        try out.writeLengthPrefixed16(handshakeData, field: "HDATA")
    }
}

/// CREATE_FAST: the client's 20 bytes of key material X.
public struct CreateFast: Hashable, Sendable {
    public private(set) var keyMaterial: [UInt8]

    /// Throws `badFieldLength` unless `keyMaterial` has 20 bytes.
    public init(keyMaterial: [UInt8]) throws(CellError) {
        guard keyMaterial.count == 20 else {
            throw .badFieldLength(field: "CREATE_FAST key material", expected: 20, actual: keyMaterial.count)
        }
        self.keyMaterial = keyMaterial
    }

    init(unchecked keyMaterial: [UInt8]) { self.keyMaterial = keyMaterial }
}

/// CREATED_FAST: the server's key material Y (20) and the derivative key data KH (20).
public struct CreatedFast: Hashable, Sendable {
    public private(set) var keyMaterial: [UInt8]
    public private(set) var derivativeKeyData: [UInt8]

    /// Throws `badFieldLength` unless both arrays have 20 bytes.
    public init(keyMaterial: [UInt8], derivativeKeyData: [UInt8]) throws(CellError) {
        guard keyMaterial.count == 20 else {
            throw .badFieldLength(field: "CREATED_FAST key material", expected: 20, actual: keyMaterial.count)
        }
        guard derivativeKeyData.count == 20 else {
            throw .badFieldLength(field: "CREATED_FAST derivative key data", expected: 20, actual: derivativeKeyData.count)
        }
        self.keyMaterial = keyMaterial
        self.derivativeKeyData = derivativeKeyData
    }

    init(unchecked y: [UInt8], _ kh: [UInt8]) { keyMaterial = y; derivativeKeyData = kh }
}

/// PADDING_NEGOTIATE (padding-spec §2.2): start or stop link padding with a timeout range.
public struct PaddingNegotiate: Hashable, Sendable {
    public struct Command: RawRepresentable, Hashable, Sendable {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let stop = Command(rawValue: 1)
        public static let start = Command(rawValue: 2)
    }

    public var command: Command
    public var lowMilliseconds: UInt16
    public var highMilliseconds: UInt16

    public init(command: Command, lowMilliseconds: UInt16 = 0, highMilliseconds: UInt16 = 0) {
        self.command = command
        self.lowMilliseconds = lowMilliseconds
        self.highMilliseconds = highMilliseconds
    }

    init(decoding p: inout ByteBuffer) throws(CellError) {
        let version = try p.readInteger(UInt8.self, field: "PADDING_NEGOTIATE version")
        guard version == 0 else { throw .unsupportedPaddingNegotiateVersion(version) }
        command = Command(rawValue: try p.readInteger(UInt8.self, field: "PADDING_NEGOTIATE command"))
        lowMilliseconds = try p.readInteger(UInt16.self, field: "PADDING_NEGOTIATE ito_low_ms")
        highMilliseconds = try p.readInteger(UInt16.self, field: "PADDING_NEGOTIATE ito_high_ms")
    }
}
