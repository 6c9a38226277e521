import NIOCore
import Testing
@testable import TorCells

@Suite("Channel cell framing")
struct ChannelFramingTests {
    @Test("Fixed cells are 512 bytes with 2-byte IDs and 514 with 4-byte IDs")
    func fixedCellSizes() throws {
        for (width, size) in [(CircuitIDWidth.twoBytes, 512), (.fourBytes, 514)] {
            var out = ByteBuffer()
            try ChannelCellEncoder(circuitIDWidth: width).encode(circuitID: 0x1234, message: .destroy(.finished), into: &out)
            #expect(out.readableBytes == size)
            var decoder = ChannelCellDecoder(circuitIDWidth: width)
            decoder.append(out)
            let cells = try decoder.decodeAvailable()
            #expect(cells.count == 1)
            #expect(cells[0].circuitID == 0x1234)
            #expect(cells[0].payload.readableBytes == 509)
            #expect(try cells[0].message() == .destroy(.finished))
        }
    }

    @Test("Known framing bytes: v4 DESTROY and the first VERSIONS cell")
    func knownBytes() throws {
        var out = ByteBuffer()
        try ChannelCellEncoder(circuitIDWidth: .fourBytes).encode(circuitID: 0x8000_0001, message: .destroy(.protocol), into: &out)
        #expect(bytes(out) == hex("80000001 04 01") + Array(repeating: 0, count: 508))

        out.clear()
        try ChannelCellEncoder().encode(circuitID: 0, message: .versions([3, 4, 5]), into: &out)
        #expect(bytes(out) == hex("0000 07 0006 000300040005"))
    }

    @Test("VERSIONS with 2-byte IDs, then the width switches to 4 bytes mid-stream")
    func widthSwitchAfterVersions() throws {
        var stream = ByteBuffer()
        var encoder = ChannelCellEncoder(circuitIDWidth: .twoBytes)
        try encoder.encode(circuitID: 0, message: .versions([4, 5]), into: &stream)
        encoder.circuitIDWidth = .fourBytes
        try encoder.encode(circuitID: 0, message: .vpadding(length: 3), into: &stream)
        try encoder.encode(circuitID: 0x8000_0002, message: .createFast(try CreateFast(keyMaterial: Array(repeating: 7, count: 20))), into: &stream)

        var decoder = ChannelCellDecoder()
        decoder.append(stream)
        guard case .cell(let versionsCell) = try decoder.next(), case .versions(let versions) = try versionsCell.message() else {
            Issue.record("expected VERSIONS"); return
        }
        decoder.circuitIDWidth = CircuitIDWidth(linkProtocol: versions.max() ?? 3)
        #expect(decoder.circuitIDWidth == .fourBytes)
        let rest = try decoder.decodeAvailable()
        #expect(rest.map(\.command) == [.vpadding, .createFast])
        #expect(rest[1].circuitID == 0x8000_0002)
        #expect(try rest[0].message() == .vpadding(length: 3))
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test("Partial input yields needMoreData at every split point, then the same cells")
    func byteByByte() throws {
        var stream = ByteBuffer()
        let encoder = ChannelCellEncoder(circuitIDWidth: .fourBytes)
        try encoder.encode(circuitID: 5, message: .versions([3, 4, 5]), into: &stream)
        try encoder.encode(circuitID: 6, message: .destroy(.timeout), into: &stream)
        try encoder.encode(circuitID: 7, message: .vpadding(length: 0), into: &stream)
        let all = bytes(stream)

        var decoder = ChannelCellDecoder(circuitIDWidth: .fourBytes)
        var cells: [ChannelCell] = []
        for byte in all {
            decoder.append(buffer([byte]))
            while case .cell(let cell) = try decoder.next() { cells.append(cell) }
        }
        #expect(cells.map(\.circuitID) == [5, 6, 7])
        #expect(try cells.map { try $0.message() } == [.versions([3, 4, 5]), .destroy(.timeout), .vpadding(length: 0)])
        #expect(try decoder.next() == .needMoreData)
    }

    @Test("Empty decoder and a lone header report needMoreData")
    func needMoreData() throws {
        var decoder = ChannelCellDecoder(circuitIDWidth: .fourBytes)
        #expect(try decoder.next() == .needMoreData)
        decoder.append(buffer(hex("00000001 81 01")))  // variable cell, half the length field
        #expect(try decoder.next() == .needMoreData)
        decoder.append(buffer(hex("00 AA")))  // length 0x100, 1 payload byte
        #expect(try decoder.next() == .needMoreData)
        #expect(decoder.bufferedByteCount == 8)
    }

    @Test("Oversized variable cells fail and the decoder stays failed")
    func oversized() throws {
        var decoder = ChannelCellDecoder(circuitIDWidth: .fourBytes, maximumVariablePayloadLength: 1024)
        decoder.append(buffer(hex("00000000 80 0401")))
        #expect(cellError { try decoder.next() } == .oversizedVariableCell(length: 1025, limit: 1024))
        decoder.append(buffer(Array(repeating: 0, count: 2000)))
        #expect(cellError { try decoder.next() } == .oversizedVariableCell(length: 1025, limit: 1024))

        // The default cap is the 16-bit wire maximum: a 65 535-byte VPADDING is accepted.
        var lenient = ChannelCellDecoder(circuitIDWidth: .fourBytes)
        lenient.append(buffer(hex("00000000 80 FFFF") + Array(repeating: 0, count: 65_535)))
        #expect(try lenient.next() == .cell(ChannelCell(circuitID: 0, command: .vpadding, payload: buffer(Array(repeating: 0, count: 65_535)))))
    }

    @Test("Unknown fixed and variable commands keep their bytes")
    func unknownCommands() throws {
        let fixedBody = padded(Array("A mage's name is better hidden than a herring in the sea".utf8))
        var decoder = ChannelCellDecoder(circuitIDWidth: .fourBytes)
        decoder.append(buffer(hex("00000009 65") + fixedBody))
        decoder.append(buffer(hex("00000009 F4 0022") + Array("better guarded than a dragon's den".utf8)))
        let cells = try decoder.decodeAvailable()
        #expect(try cells[0].message() == .unknown(ChannelCommand(101), buffer(fixedBody)))
        #expect(try cells[1].message() == .unknown(ChannelCommand(244), buffer(Array("better guarded than a dragon's den".utf8))))

        var out = ByteBuffer()
        let encoder = ChannelCellEncoder(circuitIDWidth: .fourBytes)
        for cell in cells { try encoder.encode(cell, into: &out) }
        #expect(bytes(out) == hex("00000009 65") + fixedBody + hex("00000009 F4 0022") + Array("better guarded than a dragon's den".utf8))
    }

    @Test("Encoder errors: circuit ID too wide, fixed payload too long; nothing is left written")
    func encoderErrors() throws {
        var out = ByteBuffer(bytes: [0xEE])
        #expect(cellError { try ChannelCellEncoder(circuitIDWidth: .twoBytes).encode(circuitID: 0x10000, message: .padding, into: &out) }
            == .circuitIDOutOfRange(0x10000, width: .twoBytes))
        let tooLong = ChannelMessage.unknown(ChannelCommand(100), buffer(Array(repeating: 1, count: 510)))
        #expect(cellError { try ChannelCellEncoder(circuitIDWidth: .fourBytes).encode(circuitID: 1, message: tooLong, into: &out) }
            == .payloadTooLong(length: 510, limit: 509))
        #expect(cellError { try ChannelCell(circuitID: 1, message: tooLong) } == .payloadTooLong(length: 510, limit: 509))
        let cell = ChannelCell(circuitID: 1, command: ChannelCommand(100), payload: buffer(Array(repeating: 1, count: 510)))
        #expect(cellError { try ChannelCellEncoder(circuitIDWidth: .fourBytes).encode(cell, into: &out) } == .payloadTooLong(length: 510, limit: 509))
        #expect(bytes(out) == [0xEE])
    }

    @Test("ChannelCell(message:) pads fixed payloads and agrees with the direct encoder")
    func cellFromMessage() throws {
        let message = ChannelMessage.create2(Create2(handshakeType: 2, handshakeData: buffer(Array(repeating: 9, count: 84))))
        let cell = try ChannelCell(circuitID: 0x8000_0001, message: message)
        #expect(cell.payload.readableBytes == 509)
        var a = ByteBuffer(), b = ByteBuffer()
        let encoder = ChannelCellEncoder(circuitIDWidth: .fourBytes)
        try encoder.encode(cell, into: &a)
        try encoder.encode(circuitID: 0x8000_0001, message: message, into: &b)
        #expect(a == b)
        #expect(try cell.message() == message)
    }

    @Test("Variable-length commands are 7 and ≥ 128")
    func variableLength() {
        #expect(ChannelCommand.versions.isVariableLength)
        #expect(ChannelCommand(128).isVariableLength && ChannelCommand(255).isVariableLength)
        #expect(!ChannelCommand.relay.isVariableLength && !ChannelCommand(127).isVariableLength)
        #expect(CircuitIDWidth(linkProtocol: 3) == .twoBytes && CircuitIDWidth(linkProtocol: 5) == .fourBytes)
    }
}
