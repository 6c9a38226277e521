import Crypto
import NIOCore

// Bodies of the six DB_* relay messages. Layouts keep the seed's field order; docs/PROTOCOL.md
// gives every width. Decoders consume the whole body and reject leftovers.

/// Encoding and decoding of one DB_* relay data body.
public protocol PeersmMessageBody: Sendable {
    static var command: PeersmRelayCommand { get }
    /// Decodes a whole relay data body.
    init(decoding body: ByteBuffer) throws
    /// Appends the body; throws if a field does not fit its width or the body exceeds 498 bytes.
    func encode(into buffer: inout ByteBuffer) throws
}

extension PeersmMessageBody {
    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) throws -> ByteBuffer {
        var buffer = allocator.buffer(capacity: PeersmWire.maxBodyLength)
        try encode(into: &buffer)
        return buffer
    }

    /// Runs `body` then checks the written length, rolling back on failure so `buffer` is unchanged.
    fileprivate func checkedWrite(into buffer: inout ByteBuffer, _ body: (inout ByteBuffer) throws -> Void) throws {
        let start = buffer.writerIndex
        do {
            try body(&buffer)
        } catch {
            buffer.moveWriterIndex(to: start)
            throw error
        }
        let written = buffer.writerIndex - start
        if written > PeersmWire.maxBodyLength {
            buffer.moveWriterIndex(to: start)
            throw PeersmProtocolError.bodyTooLong(written)
        }
    }
}

private func checkBodyLength(_ body: ByteBuffer) throws {
    if body.readableBytes > PeersmWire.maxBodyLength { throw PeersmProtocolError.bodyTooLong(body.readableBytes) }
}

extension ByteBuffer {
    fileprivate mutating func readHashName() throws -> HashName {
        let length = Int(try readField(.hashNameLength, as: UInt8.self))
        guard length > 0 else { throw PeersmProtocolError.invalidLength(.hashNameLength, 0) }
        return try HashName(bytes: readFieldBytes(.hashName, length: length))
    }

    fileprivate mutating func writeHashName(_ name: HashName) {
        writeInteger(UInt8(name.bytes.count))
        writeBytes(name.bytes)
    }
}

// MARK: - DB_INFO (80)

/// How much of a file the announcing peer holds (seed: "P pieces (0 (25%) to 3 (100%))").
public enum Availability: UInt8, Sendable, CaseIterable {
    case quarter = 0, half = 1, threeQuarters = 2, complete = 3
}

/// `[hash_name len 1][hash_name][P 1][F 1, present only for facilitators]`: a peer tells an ORDB what it has.
public struct DBInfo: PeersmMessageBody, Hashable {
    public static let command = PeersmRelayCommand.dbInfo
    public var hashName: HashName
    public var availability: Availability
    public var isFacilitator: Bool

    public init(hashName: HashName, availability: Availability, isFacilitator: Bool) {
        self.hashName = hashName
        self.availability = availability
        self.isFacilitator = isFacilitator
    }

    public init(decoding body: ByteBuffer) throws {
        try checkBodyLength(body)
        var body = body
        hashName = try body.readHashName()
        let part = try body.readField(.part, as: UInt8.self)
        guard let availability = Availability(rawValue: part) else { throw PeersmProtocolError.invalidValue(.part, UInt64(part)) }
        self.availability = availability
        if let flag = body.readInteger(as: UInt8.self) {
            // node-Tor sends F only when it is 1; 0 is accepted as "not a facilitator".
            guard flag <= 1 else { throw PeersmProtocolError.invalidValue(.facilitator, UInt64(flag)) }
            isFacilitator = flag == 1
        } else {
            isFacilitator = false
        }
        try body.requireFullyConsumed()
    }

    public func encode(into buffer: inout ByteBuffer) throws {
        try checkedWrite(into: &buffer) { buffer in
            buffer.writeHashName(hashName)
            buffer.writeInteger(availability.rawValue)
            if isFacilitator { buffer.writeInteger(UInt8(1)) }
        }
    }
}

// MARK: - DB_QUERY (81)

/// 16 random bytes chosen by the requester for each DB_QUERY; every block signature of the answer covers it.
public struct RequestNonce: Hashable, Sendable {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        guard bytes.count == PeersmWire.requestNonceLength else {
            throw PeersmProtocolError.invalidLength(.requestNonce, bytes.count)
        }
        self.bytes = bytes
    }

    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> RequestNonce {
        RequestNonce(unchecked: (0..<PeersmWire.requestNonceLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    public static func random() -> RequestNonce {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }
}

/// `[hash_name len 1][hash_name][chunk nb len 1][chunk nb BE, 1…4][nb chunks 2][counter 1][nonce 16]`.
/// `chunkCount == 0` asks for the file info (answered by DB_CONNECTED); otherwise it asks for
/// chunks [firstChunk, firstChunk + chunkCount) clipped to the end of the file (answered by DB_DATA).
public struct DBQuery: PeersmMessageBody, Hashable {
    public static let command = PeersmRelayCommand.dbQuery
    public var hashName: HashName
    public var firstChunk: UInt32
    public var chunkCount: UInt16
    /// Hops this query has been forwarded between ORDBs; the seed's loop guard.
    public var counter: UInt8
    public var nonce: RequestNonce

    public init(hashName: HashName, firstChunk: UInt32, chunkCount: UInt16, counter: UInt8 = 0, nonce: RequestNonce) {
        self.hashName = hashName
        self.firstChunk = firstChunk
        self.chunkCount = chunkCount
        self.counter = counter
        self.nonce = nonce
    }

    /// An info query (`nb chunks` 0); the chunk number is sent as 0 and ignored.
    public static func info(_ hashName: HashName, counter: UInt8 = 0, nonce: RequestNonce) -> DBQuery {
        DBQuery(hashName: hashName, firstChunk: 0, chunkCount: 0, counter: counter, nonce: nonce)
    }

    public var isInfoRequest: Bool { chunkCount == 0 }
    /// The receiver must answer DB_END(LOOP) instead of serving or forwarding.
    public var hasReachedLoopLimit: Bool { counter >= PeersmWire.loopLimit }

    public init(decoding body: ByteBuffer) throws {
        try checkBodyLength(body)
        var body = body
        hashName = try body.readHashName()
        let numberLength = Int(try body.readField(.chunkNumberLength, as: UInt8.self))
        guard (1...PeersmWire.maxChunkNumberLength).contains(numberLength) else {
            throw PeersmProtocolError.invalidLength(.chunkNumberLength, numberLength)
        }
        firstChunk = UInt32(try body.readVarUInt(.chunkNumber, length: numberLength))
        chunkCount = try body.readField(.chunkCount)
        counter = try body.readField(.counter)
        nonce = RequestNonce(unchecked: try body.readFieldBytes(.requestNonce, length: PeersmWire.requestNonceLength))
        try body.requireFullyConsumed()
    }

    public func encode(into buffer: inout ByteBuffer) throws {
        try checkedWrite(into: &buffer) { buffer in
            buffer.writeHashName(hashName)
            buffer.writeVarUIntWithLength(UInt64(firstChunk))
            buffer.writeInteger(chunkCount)
            buffer.writeInteger(counter)
            buffer.writeBytes(nonce.bytes)
        }
    }
}

// MARK: - DB_CONNECTED (82)

/// A facilitator's progress word, sent as DB_CONNECTED with size 0 and no key (node-Tor's
/// `torrent`, `dhtready`, `start`). Unknown words are kept, not rejected.
public struct ProgressState: RawRepresentable, Hashable, Sendable {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    /// The hash_name is being looked up as a torrent.
    public static let torrent = ProgressState(rawValue: "torrent")
    /// The DHT lookup is under way.
    public static let dhtReady = ProgressState(rawValue: "dhtready")
    /// Peers were found; the download starts.
    public static let start = ProgressState(rawValue: "start")
}

/// What the requester learns before asking for data: size, MIME type, and the Ed25519 key that
/// signs every block of data the facilitator sends for this file.
public struct FileInfo: Hashable, Sendable {
    public let size: UInt64
    public let mimeType: String
    public let publicKeyBytes: [UInt8]

    public init(size: UInt64, mimeType: String, publicKey: Curve25519.Signing.PublicKey) throws {
        try self.init(size: size, mimeType: mimeType, publicKeyBytes: Array(publicKey.rawRepresentation))
    }

    public init(size: UInt64, mimeType: String, publicKeyBytes: [UInt8]) throws {
        guard size <= PeersmWire.maxFileSize else { throw PeersmProtocolError.invalidValue(.size, size) }
        let type = Array(mimeType.utf8)
        guard !type.isEmpty, type.count <= Int(UInt16.max) else { throw PeersmProtocolError.invalidLength(.type, type.count) }
        guard isPrintableASCII(type) else { throw PeersmProtocolError.invalidText(.type) }
        guard publicKeyBytes.count == PeersmWire.publicKeyLength else {
            throw PeersmProtocolError.invalidLength(.publicKey, publicKeyBytes.count)
        }
        self.size = size
        self.mimeType = mimeType
        self.publicKeyBytes = publicKeyBytes
    }

    public var publicKey: Curve25519.Signing.PublicKey {
        // Any 32 bytes are accepted by swift-crypto; the length was checked at init.
        try! Curve25519.Signing.PublicKey(rawRepresentation: publicKeyBytes)
    }

    /// Number of chunks of the file: ⌈size / 486⌉.
    public var chunkCount: UInt64 { ChunkLayout.chunkCount(fileSize: size) }
}

/// `[size len 1][size BE, 1…8][type len 2][type][public key len 1][public key 0 or 32]`.
/// A key-less DB_CONNECTED with size 0 is a progress state; one with a 32-byte key is the file info.
public enum DBConnected: PeersmMessageBody, Hashable {
    public static let command = PeersmRelayCommand.dbConnected
    case progress(ProgressState)
    case fileInfo(FileInfo)

    public init(decoding body: ByteBuffer) throws {
        try checkBodyLength(body)
        var body = body
        let sizeLength = Int(try body.readField(.sizeLength, as: UInt8.self))
        guard (1...PeersmWire.maxSizeLength).contains(sizeLength) else {
            throw PeersmProtocolError.invalidLength(.sizeLength, sizeLength)
        }
        let size = try body.readVarUInt(.size, length: sizeLength)
        let typeLength = Int(try body.readField(.typeLength, as: UInt16.self))
        let type = try body.readFieldBytes(.type, length: typeLength)
        let keyLength = Int(try body.readField(.publicKeyLength, as: UInt8.self))
        guard keyLength == 0 || keyLength == PeersmWire.publicKeyLength else {
            throw PeersmProtocolError.invalidLength(.publicKeyLength, keyLength)
        }
        let key = try body.readFieldBytes(.publicKey, length: keyLength)
        try body.requireFullyConsumed()

        guard !type.isEmpty else { throw PeersmProtocolError.invalidLength(.type, 0) }
        guard isPrintableASCII(type) else { throw PeersmProtocolError.invalidText(.type) }
        let text = String(decoding: type, as: UTF8.self)
        if keyLength == 0 {
            // Only progress states go without a key; file data is always signed.
            guard size == 0 else { throw PeersmProtocolError.invalidLength(.publicKeyLength, 0) }
            self = .progress(ProgressState(rawValue: text))
        } else {
            guard size <= PeersmWire.maxFileSize else { throw PeersmProtocolError.invalidValue(.size, size) }
            self = .fileInfo(try FileInfo(size: size, mimeType: text, publicKeyBytes: key))
        }
    }

    public func encode(into buffer: inout ByteBuffer) throws {
        let size: UInt64
        let type: [UInt8]
        let key: [UInt8]
        switch self {
        case .progress(let state):
            (size, type, key) = (0, Array(state.rawValue.utf8), [])
        case .fileInfo(let info):
            (size, type, key) = (info.size, Array(info.mimeType.utf8), info.publicKeyBytes)
        }
        guard !type.isEmpty, type.count <= Int(UInt16.max) else { throw PeersmProtocolError.invalidLength(.type, type.count) }
        guard isPrintableASCII(type) else { throw PeersmProtocolError.invalidText(.type) }
        try checkedWrite(into: &buffer) { buffer in
            buffer.writeVarUIntWithLength(size)
            buffer.writeInteger(UInt16(type.count))
            buffer.writeBytes(type)
            buffer.writeInteger(UInt8(key.count))
            buffer.writeBytes(key)
        }
    }
}

// MARK: - DB_DATA (83)

/// `[chunk nb 4][signature field 8][data 0…486]`. The signature field holds one eighth of a block
/// signature or zeros; a message with no data carries only a signature fragment (see ChunkSigner).
public struct DBData: PeersmMessageBody, Hashable {
    public static let command = PeersmRelayCommand.dbData
    public var chunkNumber: UInt32
    /// The 8-byte field, big-endian: bytes 8i…8i+7 of the block signature, or 0.
    public var signatureField: UInt64
    public var data: ByteBuffer

    public init(chunkNumber: UInt32, signatureField: UInt64, data: ByteBuffer) {
        self.chunkNumber = chunkNumber
        self.signatureField = signatureField
        self.data = data
    }

    /// Decoding slices `data` out of `body` without copying.
    public init(decoding body: ByteBuffer) throws {
        try checkBodyLength(body)
        var body = body
        chunkNumber = try body.readField(.chunkNumber)
        signatureField = try body.readField(.signatureField)
        data = body
    }

    public func encode(into buffer: inout ByteBuffer) throws {
        guard data.readableBytes <= PeersmWire.chunkSize else {
            throw PeersmProtocolError.invalidLength(.data, data.readableBytes)
        }
        buffer.writeInteger(chunkNumber)
        buffer.writeInteger(signatureField)
        buffer.writeImmutableBuffer(data)
    }
}

// MARK: - DB_END (84)

/// Why a DB stream ends. 0–2 are the seed's; 3–8 are ours. Unknown values are kept.
public struct DBEndReason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The hash_name cannot be found or fetched.
    public static let unavailable = DBEndReason(rawValue: 0)
    /// The request is over: sent by the requester to abort, by the facilitator after a complete answer.
    public static let finished = DBEndReason(rawValue: 1)
    /// The serving party went away (shutdown, torrent removed, circuit to the source lost).
    public static let destroyed = DBEndReason(rawValue: 2)
    /// The query's counter reached 5.
    public static let loop = DBEndReason(rawValue: 3)
    /// The facilitator is at a concurrency or rate limit; try later or elsewhere.
    public static let busy = DBEndReason(rawValue: 4)
    /// The DB_QUERY did not decode, or asked for something meaningless.
    public static let badRequest = DBEndReason(rawValue: 5)
    /// The content could not be obtained in time (metadata or pieces).
    public static let timeout = DBEndReason(rawValue: 6)
    /// The first chunk asked for is past the end of the file.
    public static let range = DBEndReason(rawValue: 7)
    /// The peer broke the protocol: a block failed verification, a window was overrun, a message was out of place.
    public static let protocolViolation = DBEndReason(rawValue: 8)

    public var description: String {
        switch rawValue {
        case 0: return "UNAVAILABLE"
        case 1: return "FINISHED"
        case 2: return "DESTROYED"
        case 3: return "LOOP"
        case 4: return "BUSY"
        case 5: return "BAD_REQUEST"
        case 6: return "TIMEOUT"
        case 7: return "RANGE"
        case 8: return "PROTOCOL"
        default: return "UNKNOWN(\(rawValue))"
        }
    }
}

/// `[reason 1]`.
public struct DBEnd: PeersmMessageBody, Hashable {
    public static let command = PeersmRelayCommand.dbEnd
    public var reason: DBEndReason

    public init(reason: DBEndReason) { self.reason = reason }

    public init(decoding body: ByteBuffer) throws {
        try checkBodyLength(body)
        var body = body
        reason = DBEndReason(rawValue: try body.readField(.reason))
        try body.requireFullyConsumed()
    }

    public func encode(into buffer: inout ByteBuffer) throws {
        buffer.writeInteger(reason.rawValue)
    }
}

// MARK: - DB_SENDME (85)

/// Empty body, as in node-Tor. Each one grants the sender `DBFlowControl.increment` more DB_DATA messages.
public struct DBSendme: PeersmMessageBody, Hashable {
    public static let command = PeersmRelayCommand.dbSendme
    public init() {}

    public init(decoding body: ByteBuffer) throws {
        try checkBodyLength(body)
        try body.requireFullyConsumed()
    }

    public func encode(into buffer: inout ByteBuffer) throws {}
}

// MARK: - Any message

/// One decoded DB_* message, for code that dispatches on the relay command.
public enum PeersmMessage: Hashable, Sendable {
    case info(DBInfo)
    case query(DBQuery)
    case connected(DBConnected)
    case data(DBData)
    case end(DBEnd)
    case sendme(DBSendme)

    /// Decodes the data of a relay cell whose command is `command`.
    public init(command: UInt8, body: ByteBuffer) throws {
        guard let known = PeersmRelayCommand(rawValue: command) else { throw PeersmProtocolError.unknownCommand(command) }
        switch known {
        case .dbInfo: self = .info(try DBInfo(decoding: body))
        case .dbQuery: self = .query(try DBQuery(decoding: body))
        case .dbConnected: self = .connected(try DBConnected(decoding: body))
        case .dbData: self = .data(try DBData(decoding: body))
        case .dbEnd: self = .end(try DBEnd(decoding: body))
        case .dbSendme: self = .sendme(try DBSendme(decoding: body))
        }
    }

    public var command: PeersmRelayCommand {
        switch self {
        case .info: return .dbInfo
        case .query: return .dbQuery
        case .connected: return .dbConnected
        case .data: return .dbData
        case .end: return .dbEnd
        case .sendme: return .dbSendme
        }
    }

    public var body: any PeersmMessageBody {
        switch self {
        case .info(let m): return m
        case .query(let m): return m
        case .connected(let m): return m
        case .data(let m): return m
        case .end(let m): return m
        case .sendme(let m): return m
        }
    }

    public func encode(into buffer: inout ByteBuffer) throws { try body.encode(into: &buffer) }

    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) throws -> ByteBuffer {
        try body.encoded(allocator: allocator)
    }
}
