import NIOCore
import Testing
import TestSupport
@testable import PeersmProtocol

/// Every malformed field yields its own typed error; nothing traps.
@Suite struct MalformedMessageTests {
    private func query(_ hexBody: String, nonce: Bool = true) -> ByteBuffer {
        buffer(hex(hexBody) + (nonce ? vectorNonce.bytes : []))
    }

    @Test func everyTruncationOfEveryMessageIsReported() throws {
        // Cutting a valid body anywhere must give .truncated (or, for DB_INFO's optional F, a valid shorter body).
        let samples: [PeersmMessage] = [
            .info(DBInfo(hashName: vectorHashName, availability: .half, isFacilitator: true)),
            .query(DBQuery(hashName: vectorHashName, firstChunk: 0x0102_0304, chunkCount: 9, counter: 1, nonce: vectorNonce)),
            .connected(.fileInfo(try FileInfo(size: 0x0102_0304_0506, mimeType: "video/mp4", publicKeyBytes: rfc8032Public))),
            .connected(.progress(.torrent)),
            .data(DBData(chunkNumber: 1, signatureField: 2, data: buffer([3]))),
            .end(DBEnd(reason: .range)),
        ]
        for message in samples {
            let wire = bytes(try message.encoded())
            for cut in 0..<wire.count {
                do {
                    let decoded = try PeersmMessage(command: message.command.rawValue, body: buffer(Array(wire[0..<cut])))
                    // Only two prefixes are themselves valid: DB_INFO without its optional F, DB_DATA with less data.
                    switch decoded {
                    case .info(let info): #expect(cut == wire.count - 1 && !info.isFacilitator)
                    case .data(let data): #expect(cut >= 12 && data.data.readableBytes == cut - 12)
                    default: Issue.record("prefix of \(cut) bytes of \(message.command) decoded as \(decoded)")
                    }
                } catch let error as PeersmProtocolError {
                    guard case .truncated = error else {
                        Issue.record("prefix of \(cut) bytes of \(message.command): \(error)")
                        continue
                    }
                }
            }
        }
    }

    @Test func bodyLongerThanOneCellIsRejected() {
        let long = buffer([UInt8](repeating: 0, count: 499))
        for command in PeersmRelayCommand.allCases {
            #expect(throws: PeersmProtocolError.bodyTooLong(499)) { try PeersmMessage(command: command.rawValue, body: long) }
        }
    }

    @Test func hashNameField() {
        #expect(throws: PeersmProtocolError.truncated(.hashNameLength)) { try DBQuery(decoding: buffer([])) }
        #expect(throws: PeersmProtocolError.invalidLength(.hashNameLength, 0)) { try DBQuery(decoding: query("00 01 00 0001 00")) }
        #expect(throws: PeersmProtocolError.truncated(.hashName)) { try DBQuery(decoding: buffer(hex("05 6162"))) }
        #expect(throws: PeersmProtocolError.invalidLength(.hashNameLength, 0)) { try DBInfo(decoding: buffer(hex("00 01"))) }
        #expect(throws: PeersmProtocolError.invalidLength(.hashName, 0)) { try HashName(bytes: []) }
        #expect(throws: PeersmProtocolError.invalidLength(.hashName, 256)) { try HashName(bytes: [UInt8](repeating: 1, count: 256)) }
        #expect(throws: PeersmProtocolError.invalidLength(.hashName, 19)) { try HashName(infohash: [UInt8](repeating: 1, count: 19)) }
        #expect(throws: PeersmProtocolError.invalidText(.hashName)) { try HashName(magnet: "http://example/") }
    }

    @Test func queryChunkNumberField() {
        #expect(throws: PeersmProtocolError.truncated(.chunkNumberLength)) { try DBQuery(decoding: buffer(hex("01 61"))) }
        #expect(throws: PeersmProtocolError.invalidLength(.chunkNumberLength, 0)) { try DBQuery(decoding: query("01 61 00 0001 00")) }
        #expect(throws: PeersmProtocolError.invalidLength(.chunkNumberLength, 5)) {
            try DBQuery(decoding: query("01 61 05 0000000001 0001 00"))
        }
        #expect(throws: PeersmProtocolError.truncated(.chunkNumber)) { try DBQuery(decoding: buffer(hex("01 61 03 0102"))) }
    }

    @Test func queryCountCounterNonceAndTrailing() {
        #expect(throws: PeersmProtocolError.truncated(.chunkCount)) { try DBQuery(decoding: buffer(hex("01 61 01 00 00"))) }
        #expect(throws: PeersmProtocolError.truncated(.counter)) { try DBQuery(decoding: buffer(hex("01 61 01 00 0001"))) }
        // The seed's layout without our nonce is refused: signatures could not be bound to the request.
        #expect(throws: PeersmProtocolError.truncated(.requestNonce)) { try DBQuery(decoding: query("01 61 01 00 0001 00", nonce: false)) }
        #expect(throws: PeersmProtocolError.trailingBytes(1)) {
            try DBQuery(decoding: buffer(hex("01 61 01 00 0001 00") + vectorNonce.bytes + [0]))
        }
        #expect(throws: PeersmProtocolError.invalidLength(.requestNonce, 15)) { try RequestNonce(bytes: [UInt8](repeating: 0, count: 15)) }
    }

    @Test func infoFields() {
        #expect(throws: PeersmProtocolError.truncated(.part)) { try DBInfo(decoding: buffer(hex("01 61"))) }
        #expect(throws: PeersmProtocolError.invalidValue(.part, 4)) { try DBInfo(decoding: buffer(hex("01 61 04"))) }
        #expect(throws: PeersmProtocolError.invalidValue(.facilitator, 2)) { try DBInfo(decoding: buffer(hex("01 61 00 02"))) }
        #expect(throws: PeersmProtocolError.trailingBytes(1)) { try DBInfo(decoding: buffer(hex("01 61 00 01 01"))) }
    }

    @Test func connectedSizeField() {
        #expect(throws: PeersmProtocolError.truncated(.sizeLength)) { try DBConnected(decoding: buffer([])) }
        #expect(throws: PeersmProtocolError.invalidLength(.sizeLength, 0)) { try DBConnected(decoding: buffer(hex("00 0001 61 00"))) }
        #expect(throws: PeersmProtocolError.invalidLength(.sizeLength, 9)) {
            try DBConnected(decoding: buffer(hex("09 000000000000000001 0001 61 00")))
        }
        #expect(throws: PeersmProtocolError.truncated(.size)) { try DBConnected(decoding: buffer(hex("04 0102"))) }
        // Larger than 486 · (2³² − 1): chunk numbers would not fit in 4 bytes.
        #expect(throws: PeersmProtocolError.invalidValue(.size, 0x0100_0000_0000_0000)) {
            try DBConnected(decoding: buffer(hex("08 0100000000000000 0001 61 20") + rfc8032Public))
        }
    }

    @Test func connectedTypeField() {
        #expect(throws: PeersmProtocolError.truncated(.typeLength)) { try DBConnected(decoding: buffer(hex("01 00 00"))) }
        #expect(throws: PeersmProtocolError.truncated(.type)) { try DBConnected(decoding: buffer(hex("01 00 0005 6162"))) }
        #expect(throws: PeersmProtocolError.invalidLength(.type, 0)) { try DBConnected(decoding: buffer(hex("01 00 0000 00"))) }
        #expect(throws: PeersmProtocolError.invalidText(.type)) { try DBConnected(decoding: buffer(hex("01 00 0002 610a 00"))) }
        #expect(throws: PeersmProtocolError.invalidText(.type)) { try DBConnected(decoding: buffer(hex("01 00 0002 c3a9 00"))) }
        #expect(throws: PeersmProtocolError.invalidText(.type)) {
            try FileInfo(size: 1, mimeType: "text/plain\r\nX: y", publicKeyBytes: rfc8032Public)
        }
        #expect(throws: PeersmProtocolError.invalidLength(.type, 0)) { try DBConnected.progress(ProgressState(rawValue: "")).encoded() }
    }

    @Test func connectedPublicKeyField() {
        #expect(throws: PeersmProtocolError.truncated(.publicKeyLength)) { try DBConnected(decoding: buffer(hex("01 00 0001 61"))) }
        #expect(throws: PeersmProtocolError.invalidLength(.publicKeyLength, 31)) {
            try DBConnected(decoding: buffer(hex("01 05 0001 61 1f") + [UInt8](repeating: 1, count: 31)))
        }
        #expect(throws: PeersmProtocolError.truncated(.publicKey)) { try DBConnected(decoding: buffer(hex("01 05 0001 61 20 0102"))) }
        // A non-empty file without a key would be unverifiable: refused.
        #expect(throws: PeersmProtocolError.invalidLength(.publicKeyLength, 0)) { try DBConnected(decoding: buffer(hex("01 05 0001 61 00"))) }
        #expect(throws: PeersmProtocolError.trailingBytes(2)) { try DBConnected(decoding: buffer(hex("01 00 0001 61 00 0000"))) }
        #expect(throws: PeersmProtocolError.invalidLength(.publicKey, 33)) {
            try FileInfo(size: 1, mimeType: "a/b", publicKeyBytes: [UInt8](repeating: 0, count: 33))
        }
    }

    @Test func dataFields() {
        #expect(throws: PeersmProtocolError.truncated(.chunkNumber)) { try DBData(decoding: buffer(hex("000000"))) }
        #expect(throws: PeersmProtocolError.truncated(.signatureField)) { try DBData(decoding: buffer(hex("00000000 00000000000000"))) }
        let tooMuch = DBData(chunkNumber: 0, signatureField: 0, data: buffer([UInt8](repeating: 0, count: 487)))
        #expect(throws: PeersmProtocolError.invalidLength(.data, 487)) { try tooMuch.encoded() }
    }

    @Test func endAndSendme() {
        #expect(throws: PeersmProtocolError.truncated(.reason)) { try DBEnd(decoding: buffer([])) }
        #expect(throws: PeersmProtocolError.trailingBytes(16)) { try DBEnd(decoding: buffer([1] + [UInt8](repeating: 0, count: 16))) }
        #expect(throws: PeersmProtocolError.trailingBytes(1)) { try DBSendme(decoding: buffer([0])) }
    }

    @Test func encoderRefusesBodiesOverOneCellAndLeavesBufferUntouched() throws {
        let longType = String(repeating: "x", count: 462)
        let info = try FileInfo(size: 1, mimeType: longType, publicKeyBytes: rfc8032Public)
        var out = ByteBuffer(bytes: [9, 9])
        #expect(throws: PeersmProtocolError.bodyTooLong(2 + 2 + 462 + 1 + 32)) { try DBConnected.fileInfo(info).encode(into: &out) }
        #expect(bytes(out) == [9, 9])
        // One byte shorter fits exactly.
        let fits = try FileInfo(size: 1, mimeType: String(repeating: "x", count: 461), publicKeyBytes: rfc8032Public)
        #expect(try DBConnected.fileInfo(fits).encoded().readableBytes == PeersmWire.maxBodyLength)
    }

    @Test func randomGarbageNeverTraps() {
        var generator = SplitMix64(seed: 7)
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 60)
            let body = buffer(randomBytes(length, using: &generator))
            let command = UInt8(78 + generator.next() % 9)
            // Either outcome is fine; what matters is no trap and only typed errors.
            do { _ = try PeersmMessage(command: command, body: body) } catch is PeersmProtocolError {} catch {
                Issue.record("untyped error \(error)")
            }
        }
    }
}

@Suite struct HashNameTests {
    /// The vectors TorrentEngine's magnet reader answers too: the hash hunted is the hash fetched.
    @Test func magnetInfohashSharedVectors() throws {
        for (magnet, want) in MagnetVectors.all {
            #expect(try HashName(magnet: magnet).infohash == want.map(hex), "\(magnet)")
        }
    }

    @Test func magnetInfohashForms() throws {
        let hexForm = try HashName(magnet: "magnet:?dn=x&xt=urn:btih:C12FE1C06BBA254A9DC9F519B335AA7C1367A88A&tr=udp%3A%2F%2Fa")
        #expect(hexForm.infohash == hex("c12fe1c06bba254a9dc9f519b335aa7c1367a88a"))
        // The same infohash in base32 (RFC 4648).
        let base32 = try HashName(magnet: "magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK")
        #expect(base32.infohash == hex("c12fe1c06bba254a9dc9f519b335aa7c1367a88a"))
        #expect(try HashName(magnet: "magnet:?xt=urn:btih:zz").infohash == nil)
        #expect(try HashName(magnet: "magnet:?xt=urn:btmh:1220abcd").infohash == nil)
        #expect(try HashName(bytes: Array(1...20)).infohash == Array(1...20))
        #expect(try HashName(bytes: [1, 2, 3]).infohash == nil)
        #expect(try HashName(bytes: Array(1...20)).description == "0102030405060708090a0b0c0d0e0f1011121314")
    }
}
