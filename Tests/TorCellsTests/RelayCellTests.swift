import NIOCore
import Testing
import TestSupport
@testable import TorCells
import PeersmProtocol

@Suite("Relay cells")
struct RelayCellTests {
    @Test("Encoding: header layout, 4 zero bytes, then seeded random padding")
    func encodeLayout() throws {
        var rng = SplitMix64(seed: 42)
        let body = try RelayCell(command: .data, streamID: 1, data: buffer(Array("hi".utf8))).encode(padding: &rng)
        let raw = bytes(body.bytes)
        #expect(raw.count == 509)
        #expect(Array(raw[0..<17]) == hex("02 0000 0001 00000000 0002 6869 00000000"))
        // The rest is the generator's output, little-endian, 8 bytes at a time.
        var expected = SplitMix64(seed: 42)
        var padding: [UInt8] = []
        while padding.count < 509 - 17 {
            var word = expected.next()
            for _ in 0..<8 { padding.append(UInt8(truncatingIfNeeded: word)); word >>= 8 }
        }
        #expect(Array(raw[17...]) == Array(padding.prefix(509 - 17)))
        // Different seeds give different padding; the same seed is reproducible.
        var rngA = SplitMix64(seed: 7), rngB = SplitMix64(seed: 8), rngC = SplitMix64(seed: 7)
        let cell = RelayCell(command: .drop, streamID: 0, data: ByteBuffer())
        let a = try cell.encode(padding: &rngA), b = try cell.encode(padding: &rngB), c = try cell.encode(padding: &rngC)
        #expect(a != b && a == c)
    }

    @Test("Full 498-byte data leaves no room for padding; 499 is refused")
    func fullCell() throws {
        var rng = SplitMix64(seed: 1)
        let data = (0..<498).map { UInt8(truncatingIfNeeded: $0) }
        let body = try RelayCell(command: .data, streamID: 9, data: buffer(data)).encode(padding: &rng)
        #expect(Array(bytes(body.bytes)[11...]) == data)
        let decoded = try RelayCell(decoding: body)
        #expect(bytes(decoded.data) == data && decoded.streamID == 9)
        #expect(cellError { try RelayCell(command: .data, streamID: 9, data: buffer(data + [0])).encode(padding: &rng) } == .relayDataTooLong(499))
        #expect(cellError { try RelayCell(streamID: 1, message: .raw(.dbData, buffer(data + [0]))) } == .payloadTooLong(length: 499, limit: 498))
    }

    @Test("Decoding: Length > 498 is an error; non-509 bodies are refused")
    func decodeErrors() throws {
        var raw = hex("02 0000 0001 00000000 01F3")  // Length 499
        raw = padded(raw)
        let body = try RelayCellBody(buffer(raw))
        #expect(cellError { try RelayCell(decoding: body) } == .relayDataTooLong(499))
        #expect(cellError { try RelayCellBody(buffer(Array(repeating: 0, count: 510))) } == .badRelayBodyLength(510))
        #expect(cellError { try Array(repeating: UInt8(0), count: 10).withUnsafeBytes { p throws(CellError) in try RelayCellBody(copying: p) } }
            == .badRelayBodyLength(10))
    }

    @Test("In-place header accessors: zero the digest, hash, write it back")
    func inPlaceDigest() throws {
        var rng = SplitMix64(seed: 3)
        var body = try RelayCell(command: .sendme, streamID: 0, data: buffer(hex("01 0014") + Array(repeating: 0xAB, count: 20))).encode(padding: &rng)
        #expect(body.recognized == 0 && body.digest == 0 && body.command == .sendme && body.dataLength == 23)
        // A toy "hash" (sum of bytes) stands in for SHA-1: computed over the body with Digest = 0.
        let sum = body.withUnsafeBytes { $0.reduce(UInt32(0)) { $0 &+ UInt32($1) } }
        body.digest = sum
        #expect(Array(bytes(body.bytes)[5..<9]) == [UInt8(sum >> 24), UInt8(truncatingIfNeeded: sum >> 16), UInt8(truncatingIfNeeded: sum >> 8), UInt8(truncatingIfNeeded: sum)])
        // Receiver side: save, zero, recompute, compare.
        let received = body.digest
        body.digest = 0
        #expect(body.withUnsafeBytes { $0.reduce(UInt32(0)) { $0 &+ UInt32($1) } } == received)
        body.recognized = 0xBEEF
        body.streamID = 77
        #expect(Array(bytes(body.bytes)[1..<5]) == hex("BEEF 004D"))
        // In-place mutation through the raw pointer (what a stream cipher does).
        body.withUnsafeMutableBytes { p in for i in p.indices { p[i] ^= 0xFF } }
        #expect(body.command == RelayCommand(0x05 ^ 0xFF))
        #expect(body.bytes.readableBytes == 509)
    }

    @Test("Header accessors work on a body sliced out of a cell stream, and with a non-zero reader index")
    func slicedBody() throws {
        var rng = SplitMix64(seed: 5)
        let inner = try RelayCell(command: .end, streamID: 4, data: buffer([6])).encode(padding: &rng)
        var decoder = ChannelCellDecoder(circuitIDWidth: .fourBytes)
        var wire = ByteBuffer()
        let encoder = ChannelCellEncoder(circuitIDWidth: .fourBytes)
        try encoder.encode(circuitID: 1, message: .padding, into: &wire)
        try encoder.encode(circuitID: 2, message: .relay(inner), into: &wire)
        decoder.append(wire)
        let cells = try decoder.decodeAvailable()
        guard case .relay(var body) = try cells[1].message() else { Issue.record("not RELAY"); return }
        #expect(body.streamID == 4 && body.command == .end)
        body.digest = 0x0102_0304
        #expect(try RelayCell(decoding: body).message() == .end(End(reason: .done)))
        #expect(body.digest == 0x0102_0304)

        var offset = ByteBuffer(bytes: [0xAA, 0xBB, 0xCC] + bytes(inner.bytes))
        offset.moveReaderIndex(forwardBy: 3)
        var shifted = try RelayCellBody(offset)
        #expect(shifted.bytes.readerIndex == 3)
        #expect(shifted.streamID == 4 && shifted.command == .end && shifted.dataLength == 1)
        shifted.recognized = 0x0102
        #expect(Array(bytes(shifted.bytes)[1..<3]) == [1, 2])
        #expect(try RelayCell(decoding: shifted).message() == .end(End(reason: .done)))
    }

    @Test("Header writes on a uniquely owned body happen in place (no copy-on-write)")
    func noCopyOnHotPath() throws {
        var rng = SplitMix64(seed: 11)
        var body = try RelayCell(command: .data, streamID: 3, data: buffer([1, 2, 3])).encode(padding: &rng)
        let before = body.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        body.digest = 0
        body.recognized = 0
        body.digest = 0xDEAD_BEEF
        body.withUnsafeMutableBytes { $0[20] ^= 1 }
        let after = body.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(before == after)
    }
}
