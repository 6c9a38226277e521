import Crypto
import NIOCore
import Testing
@testable import PeersmProtocol

/// Byte-level vectors written out by hand from the layouts in docs/PROTOCOL.md.
@Suite struct MessageVectorTests {
    @Test func relayCommandNumbersMatchNodeTor() {
        #expect(PeersmRelayCommand.allCases.map(\.rawValue) == [80, 81, 82, 83, 84, 85])
        #expect(PeersmWire.chunkSize == 486)
        #expect(PeersmWire.maxFileSize == 4_294_967_295 * 486)
    }

    @Test func dbInfoFacilitator() throws {
        let message = DBInfo(hashName: vectorHashName, availability: .threeQuarters, isFacilitator: true)
        let wire = hex("14 0102030405060708090a0b0c0d0e0f1011121314 02 01")
        #expect(try encodedBytes(message) == wire)
        #expect(try DBInfo(decoding: buffer(wire)) == message)
    }

    @Test func dbInfoPlainPeerOmitsF() throws {
        let message = DBInfo(hashName: try HashName(bytes: [0xAB, 0xCD]), availability: .complete, isFacilitator: false)
        let wire = hex("02 abcd 03")
        #expect(try encodedBytes(message) == wire)
        #expect(try DBInfo(decoding: buffer(wire)) == message)
        // F = 0 is accepted and means "not a facilitator".
        #expect(try DBInfo(decoding: buffer(hex("02 abcd 03 00"))) == message)
    }

    @Test func dbQueryData() throws {
        let message = DBQuery(hashName: vectorHashName, firstChunk: 0x012345, chunkCount: 0x0080, counter: 2, nonce: vectorNonce)
        let wire = hex("""
            14 0102030405060708090a0b0c0d0e0f1011121314
            03 012345
            0080
            02
            a0a1a2a3a4a5a6a7a8a9aaabacadaeaf
            """)
        #expect(try encodedBytes(message) == wire)
        #expect(try DBQuery(decoding: buffer(wire)) == message)
        #expect(!message.isInfoRequest)
        #expect(!message.hasReachedLoopLimit)
    }

    @Test func dbQueryChunkNumberWidths() throws {
        // 0 is written as one zero byte (node-Tor's "01 00"); the widest chunk number takes 4 bytes.
        let zero = DBQuery(hashName: try HashName(bytes: [0x61]), firstChunk: 0, chunkCount: 1, counter: 0, nonce: vectorNonce)
        #expect(try encodedBytes(zero) == hex("01 61 01 00 0001 00") + vectorNonce.bytes)
        let widest = DBQuery(hashName: try HashName(bytes: [0x61]), firstChunk: .max, chunkCount: .max, counter: 5, nonce: vectorNonce)
        #expect(try encodedBytes(widest) == hex("01 61 04 ffffffff ffff 05") + vectorNonce.bytes)
        #expect(widest.hasReachedLoopLimit)
        // A non-minimal chunk number is accepted: the value is what counts.
        #expect(try DBQuery(decoding: buffer(hex("01 61 04 00000000 0001 00") + vectorNonce.bytes)) == zero)
    }

    @Test func dbQueryInfoWithMagnet() throws {
        let magnet = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567"
        let message = DBQuery.info(try HashName(magnet: magnet), nonce: vectorNonce)
        let wire = [UInt8(60)] + Array(magnet.utf8) + hex("01 00 0000 00") + vectorNonce.bytes
        #expect(try encodedBytes(message) == wire)
        let decoded = try DBQuery(decoding: buffer(wire))
        #expect(decoded == message)
        #expect(decoded.isInfoRequest)
        #expect(decoded.hashName.infohash == hex("0123456789abcdef0123456789abcdef01234567"))
    }

    @Test func dbConnectedFileInfo() throws {
        let info = try FileInfo(size: 1_000_000, mimeType: "video/webm", publicKeyBytes: rfc8032Public)
        let wire = hex("03 0f4240") + hex("000a") + Array("video/webm".utf8) + hex("20") + rfc8032Public
        #expect(try encodedBytes(DBConnected.fileInfo(info)) == wire)
        #expect(try DBConnected(decoding: buffer(wire)) == .fileInfo(info))
        #expect(info.chunkCount == 2058)  // ⌈1,000,000 / 486⌉
    }

    @Test func dbConnectedEmptyFileStillCarriesKey() throws {
        let info = try FileInfo(size: 0, mimeType: "text/plain", publicKeyBytes: rfc8032Public)
        let wire = hex("01 00 000a") + Array("text/plain".utf8) + hex("20") + rfc8032Public
        #expect(try encodedBytes(DBConnected.fileInfo(info)) == wire)
        #expect(try DBConnected(decoding: buffer(wire)) == .fileInfo(info))
    }

    @Test func dbConnectedProgressStates() throws {
        #expect(try encodedBytes(DBConnected.progress(.torrent)) == hex("01 00 0007 746f7272656e74 00"))
        #expect(try encodedBytes(DBConnected.progress(.dhtReady)) == hex("01 00 0008 6468747265616479 00"))
        #expect(try encodedBytes(DBConnected.progress(.start)) == hex("01 00 0005 7374617274 00"))
        #expect(try DBConnected(decoding: buffer(hex("01 00 0005 7374617274 00"))) == .progress(.start))
        // Unknown words are kept for the caller to log, not rejected.
        #expect(try DBConnected(decoding: buffer(hex("01 00 0004 77616974 00"))) == .progress(ProgressState(rawValue: "wait")))
    }

    @Test func dbData() throws {
        let message = DBData(chunkNumber: 0x0102_0304, signatureField: 0x1122_3344_5566_7788, data: buffer(Array("abc".utf8)))
        let wire = hex("01020304 1122334455667788 616263")
        #expect(try encodedBytes(message) == wire)
        #expect(try DBData(decoding: buffer(wire)) == message)
        // Signature-only message: no data.
        #expect(try DBData(decoding: buffer(hex("00000007 0000000000000000"))).data.readableBytes == 0)
        // A full chunk fills the relay cell exactly.
        let full = DBData(chunkNumber: 9, signatureField: 0, data: buffer([UInt8](repeating: 0xEE, count: 486)))
        #expect(try full.encoded().readableBytes == 498)
    }

    @Test func dbEndReasons() throws {
        let expected: [(DBEndReason, UInt8, String)] = [
            (.unavailable, 0, "UNAVAILABLE"), (.finished, 1, "FINISHED"), (.destroyed, 2, "DESTROYED"),
            (.loop, 3, "LOOP"), (.busy, 4, "BUSY"), (.badRequest, 5, "BAD_REQUEST"), (.timeout, 6, "TIMEOUT"),
            (.range, 7, "RANGE"), (.protocolViolation, 8, "PROTOCOL"),
        ]
        for (reason, byte, name) in expected {
            #expect(try encodedBytes(DBEnd(reason: reason)) == [byte])
            #expect(try DBEnd(decoding: buffer([byte])).reason == reason)
            #expect(reason.description == name)
        }
        // Unknown reasons are kept.
        #expect(try DBEnd(decoding: buffer([0xC8])).reason.rawValue == 200)
    }

    @Test func dbSendmeIsEmpty() throws {
        #expect(try encodedBytes(DBSendme()) == [])
        #expect(try DBSendme(decoding: buffer([])) == DBSendme())
    }

    @Test func dispatchByCommand() throws {
        let all: [PeersmMessage] = [
            .info(DBInfo(hashName: vectorHashName, availability: .half, isFacilitator: false)),
            .query(DBQuery(hashName: vectorHashName, firstChunk: 77, chunkCount: 3, counter: 1, nonce: vectorNonce)),
            .connected(.progress(.dhtReady)),
            .connected(.fileInfo(try FileInfo(size: 12345, mimeType: "audio/ogg", publicKeyBytes: rfc8032Public))),
            .data(DBData(chunkNumber: 3, signatureField: 42, data: buffer([1, 2, 3]))),
            .end(DBEnd(reason: .busy)),
            .sendme(DBSendme()),
        ]
        for message in all {
            let decoded = try PeersmMessage(command: message.command.rawValue, body: try message.encoded())
            #expect(decoded == message)
        }
        #expect(throws: PeersmProtocolError.unknownCommand(86)) { try PeersmMessage(command: 86, body: ByteBuffer()) }
        #expect(throws: PeersmProtocolError.unknownCommand(2)) { try PeersmMessage(command: 2, body: ByteBuffer()) }
    }
}
