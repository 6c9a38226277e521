import NIOCore

/// Width of the circuit ID field in channel cells.
///
/// Link protocol ≤ 3 uses 2 bytes (512-byte fixed cells); ≥ 4 uses 4 bytes (514-byte fixed cells).
/// The first VERSIONS cell on a connection always uses `.twoBytes`, whatever is negotiated.
public enum CircuitIDWidth: Int, Hashable, Sendable, CustomStringConvertible {
    case twoBytes = 2
    case fourBytes = 4

    /// The width the negotiated link protocol version uses.
    public init(linkProtocol version: UInt16) { self = version >= 4 ? .fourBytes : .twoBytes }

    /// Bytes in the fixed-cell header: circuit ID + command.
    @inlinable public var fixedHeaderLength: Int { rawValue + 1 }
    /// Bytes in the variable-cell header: circuit ID + command + length.
    @inlinable public var variableHeaderLength: Int { rawValue + 3 }
    /// Total size of a fixed-length cell: 512 or 514.
    @inlinable public var fixedCellLength: Int { fixedHeaderLength + ChannelCell.fixedPayloadLength }

    public var description: String { self == .twoBytes ? "2-byte circuit IDs" : "4-byte circuit IDs" }
}

/// One framed channel cell: a circuit ID, a command, and its payload.
///
/// For fixed-length commands the payload is always exactly 509 bytes (zero-padded on encode);
/// for variable-length commands it is exactly the announced length. Parse it with `message()`.
public struct ChannelCell: Hashable, Sendable {
    /// Payload size of every fixed-length cell.
    public static let fixedPayloadLength = 509

    public var circuitID: UInt32
    public var command: ChannelCommand
    public var payload: ByteBuffer

    public init(circuitID: UInt32, command: ChannelCommand, payload: ByteBuffer) {
        self.circuitID = circuitID
        self.command = command
        self.payload = payload
    }

    /// Builds the cell carrying `message` (payload encoded, fixed cells padded to 509 bytes).
    public init(circuitID: UInt32, message: ChannelMessage) throws(CellError) {
        var payload = ByteBuffer()
        try message.writePayload(into: &payload)
        if !message.command.isVariableLength {
            guard payload.readableBytes <= Self.fixedPayloadLength else {
                throw .payloadTooLong(length: payload.readableBytes, limit: Self.fixedPayloadLength)
            }
            payload.writeRepeatingByte(0, count: Self.fixedPayloadLength - payload.readableBytes)
        }
        self.init(circuitID: circuitID, command: message.command, payload: payload)
    }

    /// Parses the payload according to the command.
    public func message() throws(CellError) -> ChannelMessage {
        try ChannelMessage(command: command, payload: payload)
    }
}

/// Streaming cell framer: feed it bytes as they arrive, pull complete cells out one at a time.
///
/// Pull-based on purpose: after the peer's VERSIONS cell the caller negotiates a link protocol and
/// sets `circuitIDWidth` before pulling the next cell, which may already be in the buffer.
///
/// Variable-length payloads are capped by `maximumVariablePayloadLength`. The wire field is 16 bits,
/// so the default cap is 65 535 bytes (just under 64 KiB): enough for any CERTS or VPADDING cell a
/// real relay sends, and it bounds what one peer can make us buffer to one cell plus one read.
/// After a framing error the decoder stays failed and rethrows it: the byte stream can no longer be
/// trusted to be aligned on cell boundaries.
public struct ChannelCellDecoder: Sendable {
    /// Result of one decoding step.
    public enum Next: Hashable, Sendable {
        case cell(ChannelCell)
        /// The buffered bytes do not yet hold a complete cell.
        case needMoreData
    }

    public static let defaultMaximumVariablePayloadLength = Int(UInt16.max)

    /// Circuit ID width for the next cells. Starts at `.twoBytes` for the VERSIONS exchange.
    public var circuitIDWidth: CircuitIDWidth
    public let maximumVariablePayloadLength: Int
    private var buffer: ByteBuffer
    private var failure: CellError?

    public init(circuitIDWidth: CircuitIDWidth = .twoBytes,
                maximumVariablePayloadLength: Int = ChannelCellDecoder.defaultMaximumVariablePayloadLength) {
        self.circuitIDWidth = circuitIDWidth
        self.maximumVariablePayloadLength = maximumVariablePayloadLength
        self.buffer = ByteBuffer()
    }

    /// Bytes received but not yet returned as cells.
    public var bufferedByteCount: Int { buffer.readableBytes }

    /// Appends received bytes.
    public mutating func append(_ bytes: ByteBuffer) {
        if buffer.readableBytes == 0 {
            buffer = bytes  // common case: no copy, just keep the reference
        } else {
            var bytes = bytes
            buffer.writeBuffer(&bytes)
        }
    }

    /// Returns the next complete cell, or `.needMoreData`.
    public mutating func next() throws(CellError) -> Next {
        if let failure { throw failure }
        let width = circuitIDWidth
        let start = buffer.readerIndex
        guard let command = buffer.getInteger(at: start + width.rawValue, as: UInt8.self) else { return .needMoreData }
        let circuitID: UInt32 = width == .twoBytes
            ? UInt32(buffer.getInteger(at: start, as: UInt16.self) ?? 0)
            : buffer.getInteger(at: start, as: UInt32.self) ?? 0
        let command_ = ChannelCommand(command)
        let headerLength: Int, payloadLength: Int
        if command_.isVariableLength {
            guard let length = buffer.getInteger(at: start + width.rawValue + 1, as: UInt16.self) else {
                return .needMoreData
            }
            guard Int(length) <= maximumVariablePayloadLength else {
                let error = CellError.oversizedVariableCell(length: Int(length), limit: maximumVariablePayloadLength)
                failure = error
                throw error
            }
            headerLength = width.variableHeaderLength
            payloadLength = Int(length)
        } else {
            headerLength = width.fixedHeaderLength
            payloadLength = ChannelCell.fixedPayloadLength
        }
        guard buffer.readableBytes >= headerLength + payloadLength else { return .needMoreData }
        guard let payload = buffer.getSlice(at: start + headerLength, length: payloadLength) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: headerLength + payloadLength)
        if buffer.readableBytes == 0 { buffer.clear() } else if buffer.readerIndex > 65_536 { buffer.discardReadBytes() }
        return .cell(ChannelCell(circuitID: circuitID, command: command_, payload: payload))
    }

    /// Decodes every complete cell currently buffered, all with the current `circuitIDWidth`.
    /// Don't use this across the VERSIONS exchange, where the width changes between cells.
    public mutating func decodeAvailable() throws(CellError) -> [ChannelCell] {
        var cells: [ChannelCell] = []
        while case .cell(let cell) = try next() { cells.append(cell) }
        return cells
    }
}

/// Writes channel cells in the framing of the current circuit ID width.
public struct ChannelCellEncoder: Sendable {
    /// Use `.twoBytes` for our first VERSIONS cell, then the negotiated width.
    public var circuitIDWidth: CircuitIDWidth

    public init(circuitIDWidth: CircuitIDWidth = .twoBytes) { self.circuitIDWidth = circuitIDWidth }

    /// Frames a cell whose payload is already encoded. Fixed payloads shorter than 509 are zero-padded.
    public func encode(_ cell: ChannelCell, into out: inout ByteBuffer) throws(CellError) {
        let length = cell.payload.readableBytes
        if cell.command.isVariableLength {
            guard length <= Int(UInt16.max) else { throw .payloadTooLong(length: length, limit: Int(UInt16.max)) }
        } else {
            guard length <= ChannelCell.fixedPayloadLength else {
                throw .payloadTooLong(length: length, limit: ChannelCell.fixedPayloadLength)
            }
        }
        try writeHeader(circuitID: cell.circuitID, command: cell.command, out: &out)
        if cell.command.isVariableLength { out.writeInteger(UInt16(length)) }
        out.writeImmutableBuffer(cell.payload)
        if !cell.command.isVariableLength {
            out.writeRepeatingByte(0, count: ChannelCell.fixedPayloadLength - length)
        }
    }

    /// Encodes `message` straight into `out`, with no intermediate payload buffer.
    /// On error nothing is left written to `out`.
    public func encode(circuitID: UInt32, message: ChannelMessage, into out: inout ByteBuffer) throws(CellError) {
        let command = message.command
        let cellStart = out.writerIndex
        do throws(CellError) {
            try writeHeader(circuitID: circuitID, command: command, out: &out)
            if command.isVariableLength {
                let lengthIndex = out.writerIndex
                out.writeInteger(UInt16(0))
                let bodyStart = out.writerIndex
                try message.writePayload(into: &out)
                let length = out.writerIndex - bodyStart
                guard length <= Int(UInt16.max) else { throw CellError.payloadTooLong(length: length, limit: Int(UInt16.max)) }
                out.setInteger(UInt16(length), at: lengthIndex)
            } else {
                let bodyStart = out.writerIndex
                try message.writePayload(into: &out)
                let length = out.writerIndex - bodyStart
                guard length <= ChannelCell.fixedPayloadLength else {
                    throw CellError.payloadTooLong(length: length, limit: ChannelCell.fixedPayloadLength)
                }
                out.writeRepeatingByte(0, count: ChannelCell.fixedPayloadLength - length)
            }
        } catch {
            out.moveWriterIndex(to: cellStart)
            throw error
        }
    }

    private func writeHeader(circuitID: UInt32, command: ChannelCommand, out: inout ByteBuffer) throws(CellError) {
        switch circuitIDWidth {
        case .twoBytes:
            guard let id = UInt16(exactly: circuitID) else { throw .circuitIDOutOfRange(circuitID, width: circuitIDWidth) }
            out.writeInteger(id)
        case .fourBytes:
            out.writeInteger(circuitID)
        }
        out.writeInteger(command.rawValue)
    }
}
