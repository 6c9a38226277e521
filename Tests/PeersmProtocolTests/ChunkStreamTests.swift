import Crypto
import NIOCore
import Testing
import TestSupport
@testable import PeersmProtocol

/// Signer → verifier round trips and the attacks the verifier must catch.
@Suite struct ChunkStreamTests {
    static let key = try! Curve25519.Signing.PrivateKey(rawRepresentation: rfc8032Seed)
    static let B = PeersmWire.blockChunks
    static let C = PeersmWire.chunkSize

    static func info(size: Int, mimeType: String = "application/octet-stream",
                     key: Curve25519.Signing.PrivateKey = key) -> FileInfo {
        try! FileInfo(size: UInt64(size), mimeType: mimeType, publicKey: key.publicKey)
    }

    static func query(first: UInt32 = 0, count: UInt16 = .max, nonce: RequestNonce = vectorNonce,
                      hashName: HashName = vectorHashName) -> DBQuery {
        DBQuery(hashName: hashName, firstChunk: first, chunkCount: count, counter: 0, nonce: nonce)
    }

    static func file(_ size: Int, seed: UInt64 = 1) -> [UInt8] {
        var generator = SplitMix64(seed: seed)
        return randomBytes(size, using: &generator)
    }

    // MARK: Known-answer vectors (independent implementation)

    /// Produced with Python's `hashlib` and `cryptography` (Ed25519, RFC 8032 test-1 key), from the
    /// scheme as written in docs/PROTOCOL.md, not from this code:
    ///
    ///     ctx = sha256(b"peersm/db-data/v1/request\0" + bytes([len(h)]) + h + nonce + pack(">Q", size)
    ///                  + pack(">H", len(mime)) + mime + pack(">IH", first, count))
    ///     per block b of chunks c0..<c1:  d = sha256(Σ pack(">IH", c, len(data_c)) + data_c)
    ///     sig = sign(b"peersm/db-data/v1/block\0" + ctx + pack(">IIHB", b, c0, c1 - c0, final) + d)
    ///     the last 8 of max(c1 - c0, 8) messages carry sig[8f:8f+8]; the others 8 zero bytes;
    ///     signature-only messages have chunk number = end chunk and no data.
    @Test func knownAnswerFiveByteFile() throws {
        let query = Self.query(first: 0, count: 1)
        let expected = [
            "00000000f90ec85346ea3e0c68656c6c6f",
            "000000018cc46dd4aee767a4", "0000000187e119fc8f5be219", "00000001e9b8b087f95c29bf",
            "000000010f1f6f15c7eefe51", "00000001172efb7be0fe6ae1", "000000019f7f01f815d04ce5",
            "00000001b1ab0d4913afa405",
        ]
        #expect(hexString(Array(Self.key.publicKey.rawRepresentation)) == hexString(rfc8032Public))
        #expect(hexString(BlockAuthentication.requestContext(query: query, fileSize: 5, mimeType: "text/plain"))
            == "5c025b525dcf44bcbee4cfb0a3d96a147d0ea286518687c368683b5f9ffc6a5c")
        let bodies = try signAll(file: Array("hello".utf8), mimeType: "text/plain", key: Self.key, query: query)
        #expect(bodies.map { hexString(bytes($0)) } == expected)
        let verified = try verifyAll(expected.map { buffer(hex($0)) }, fileInfo: Self.info(size: 5, mimeType: "text/plain"), query: query)
        #expect(verified == Array("hello".utf8))
    }

    @Test func knownAnswerEmptyFile() throws {
        let query = Self.query(first: 0, count: 5)
        let expected = [
            "00000000a4aee5f47a6dbe79", "000000006750113d943be2f0", "000000009b88e133c4a38522", "0000000012bd589dfc27b9af",
            "000000005878a408928679bf", "00000000ac19c58606b9e78f", "000000003478e83eb55ebfb8", "00000000f73113376d56ad07",
        ]
        let bodies = try signAll(file: [], key: Self.key, query: query)
        #expect(bodies.map { hexString(bytes($0)) } == expected)
        #expect(try verifyAll(bodies, fileInfo: Self.info(size: 0), query: query) == [])
    }

    /// Same generator as above; the digest is SHA-256 over (u16 length ‖ body) of every message.
    @Test func knownAnswerMultiBlock() throws {
        let data = (0..<(128 * 486 + 500)).map { UInt8(($0 * 7) % 251) }
        func digest(_ bodies: [ByteBuffer]) -> String {
            var hasher = SHA256()
            for body in bodies {
                hasher.update(data: [UInt8(body.readableBytes >> 8), UInt8(body.readableBytes & 0xFF)] + bytes(body))
            }
            return hexString(Array(hasher.finalize()))
        }
        let whole = try signAll(file: data, mimeType: "video/mp4", key: Self.key, query: Self.query(first: 0, count: 200))
        #expect(whole.count == 136)
        #expect(digest(whole) == "bdf4b67318fc99464aabf1e1d5288d00d96c2c852fd21b7772e8a55b8d1179b9")
        let middle = try signAll(file: data, mimeType: "video/mp4", key: Self.key, query: Self.query(first: 5, count: 124))
        #expect(middle.count == 124)
        #expect(digest(middle) == "e58d103193885c90f6b8941de9dd6cfffb6e3a51b7d30cc9bb0185fe7dbbb7bb")
    }

    // MARK: Round trips

    @Test(arguments: [0, 1, 485, 486, 487, 8 * 486 - 1, 8 * 486, 128 * 486, 128 * 486 + 1, 136 * 486, 3 * 128 * 486 + 4000])
    func roundTripWholeFile(size: Int) throws {
        let file = Self.file(size, seed: UInt64(size))
        for piece in [1, 486, 4096] where piece <= max(size, 1) || piece == 1 {
            let bodies = try signAll(file: file, key: Self.key, query: Self.query(), piece: piece)
            #expect(try verifyAll(bodies, fileInfo: Self.info(size: size), query: Self.query()) == file)
            let plan = try ResponsePlan(fileSize: UInt64(size), query: Self.query())
            #expect(bodies.count == plan.messageCount)
            #expect(bodies.allSatisfy { $0.readableBytes <= PeersmWire.maxBodyLength })
        }
    }

    @Test func roundTripRandomSizesAndRanges() throws {
        var generator = SplitMix64(seed: 42)
        for _ in 0..<40 {
            let size = Int(generator.next() % UInt64(5 * Self.B * Self.C))
            let file = Self.file(size, seed: generator.next())
            let chunks = UInt32(ChunkLayout.chunkCount(fileSize: UInt64(size)))
            let first = UInt32(generator.next() % UInt64(chunks + 1))
            let count = UInt16(1 + generator.next() % 700)
            let nonce = RequestNonce.random(using: &generator)
            let query = Self.query(first: first, count: count, nonce: nonce)
            let piece = Int(1 + generator.next() % 3000)
            let bodies = try signAll(file: file, key: Self.key, query: query, piece: piece)
            let verified = try verifyAll(bodies, fileInfo: Self.info(size: size), query: query)
            let range = try ResponsePlan(fileSize: UInt64(size), query: query).byteRange
            #expect(verified == Array(file[Int(range.lowerBound)..<Int(range.upperBound)]))
        }
    }

    @Test func resumeFromLastVerifiedBlock() throws {
        let size = 3 * Self.B * Self.C + 1000
        let file = Self.file(size)
        let first = Self.query(nonce: try RequestNonce(bytes: [UInt8](repeating: 1, count: 16)))
        let bodies = try signAll(file: file, key: Self.key, query: first)
        // The circuit breaks in the middle of the second block.
        var verifier = try ChunkVerifier(fileInfo: Self.info(size: size), query: first)
        var received: [UInt8] = []
        for body in bodies.prefix(Self.B + 50) {
            if let block = try verifier.receive(body: body) { received += bytes(block.bytes) }
        }
        #expect(received.count == Self.B * Self.C)
        #expect(verifier.resumeChunk == UInt32(Self.B))
        #expect(throws: ChunkStreamError.truncated(nextChunk: UInt32(Self.B), missingChunks: UInt32(2 * Self.B + 3))) {
            try verifier.finish()
        }
        // A new query (new nonce) from the resume point, possibly to another facilitator with another key.
        let otherKey = Curve25519.Signing.PrivateKey()
        let second = Self.query(first: verifier.resumeChunk, nonce: try RequestNonce(bytes: [UInt8](repeating: 2, count: 16)))
        let rest = try signAll(file: file, key: otherKey, query: second)
        received += try verifyAll(rest, fileInfo: Self.info(size: size, key: otherKey), query: second)
        #expect(received == file)
    }

    @Test func signerRejectsBadRangesAndInput() throws {
        let query = Self.query(first: 3, count: 10)
        #expect(throws: ChunkStreamError.rangeNotSatisfiable(firstChunk: 3, fileChunks: 2)) {
            try ChunkSigner(signingKey: Self.key, fileSize: 900, mimeType: "a/b", query: query)
        }
        #expect(throws: ChunkStreamError.notADataQuery) {
            try ChunkSigner(signingKey: Self.key, fileSize: 900, mimeType: "a/b", query: .info(vectorHashName, nonce: vectorNonce))
        }
        #expect(throws: PeersmProtocolError.invalidValue(.size, PeersmWire.maxFileSize + 1)) {
            try ChunkSigner(signingKey: Self.key, fileSize: PeersmWire.maxFileSize + 1, mimeType: "a/b", query: Self.query())
        }
        var signer = try ChunkSigner(signingKey: Self.key, fileSize: 1000, mimeType: "a/b", query: Self.query())
        #expect(signer.byteRange == 0..<1000)
        _ = try signer.feed(buffer([UInt8](repeating: 0, count: 600)))
        #expect(throws: ChunkStreamError.excessInput(bytes: 1)) { try signer.feed(buffer([UInt8](repeating: 0, count: 401))) }
        #expect(throws: ChunkStreamError.incompleteInput(missingBytes: 400)) { try signer.finish() }
        #expect(!signer.isComplete)
        // Starting exactly at the end is allowed: a signed, empty answer.
        var atEnd = try ChunkSigner(signingKey: Self.key, fileSize: 972, mimeType: "a/b", query: Self.query(first: 2))
        #expect(try atEnd.finish().count == 8)
    }

    @Test func signerReleasesAllButEightChunksOfABlockImmediately() throws {
        var signer = try ChunkSigner(signingKey: Self.key, fileSize: UInt64(2 * Self.B * Self.C), mimeType: "a/b", query: Self.query())
        let first = try signer.feed(buffer(Self.file((Self.B - 8) * Self.C)))
        #expect(first.count == Self.B - 8)
        #expect(first.allSatisfy { $0.signatureField == 0 })
        let sealed = try signer.feed(buffer(Self.file(8 * Self.C)))
        #expect(sealed.map(\.chunkNumber) == Array(UInt32(Self.B - 8)..<UInt32(Self.B)))
    }

    // MARK: Detection

    /// Signs a 2½-block file; returns the bodies and the matching verifier inputs.
    static func sample() throws -> (bodies: [ByteBuffer], info: FileInfo, query: DBQuery, file: [UInt8]) {
        let size = 2 * B * C + 5 * C + 100  // blocks of 128, 128, 6 chunks (+2 signature-only)
        let file = Self.file(size, seed: 99)
        let query = Self.query()
        return (try signAll(file: file, key: key, query: query), info(size: size), query, file)
    }

    static func flip(_ body: ByteBuffer, byte: Int, bit: Int = 0) -> ByteBuffer {
        var raw = bytes(body)
        raw[byte] ^= UInt8(1 << bit)
        return buffer(raw)
    }

    private func expectFailure(_ bodies: [ByteBuffer], info: FileInfo, query: DBQuery, _ expected: ChunkStreamError,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: expected, sourceLocation: sourceLocation) { try verifyAll(bodies, fileInfo: info, query: query) }
    }

    @Test func flippedDataBitIsDetectedAtItsBlock() throws {
        let s = try Self.sample()
        let blocks = [0..<UInt32(Self.B), UInt32(Self.B)..<UInt32(2 * Self.B), UInt32(2 * Self.B)..<UInt32(2 * Self.B + 6)]
        for (index, message) in [(3, 3), (Self.B + 127, Self.B + 127), (2 * Self.B + 5, 2 * Self.B + 5)] {
            var bodies = s.bodies
            bodies[message] = Self.flip(bodies[message], byte: 12 + 7, bit: 5)
            let block = index / Self.B
            expectFailure(bodies, info: s.info, query: s.query, .badSignature(block: UInt32(block), chunks: blocks[block]))
        }
    }

    @Test func flippedChunkNumberBitIsDetected() throws {
        let s = try Self.sample()
        var bodies = s.bodies
        bodies[10] = Self.flip(bodies[10], byte: 3, bit: 1)
        expectFailure(bodies, info: s.info, query: s.query, .unexpectedChunkNumber(expected: 10, received: 8))
    }

    @Test func flippedSignatureFragmentBitIsDetected() throws {
        let s = try Self.sample()
        // Every fragment position of a full block and of the short final block (incl. signature-only messages).
        for message in [120, 127, 2 * Self.B, 2 * Self.B + 5, 2 * Self.B + 6, 2 * Self.B + 7] {
            var bodies = s.bodies
            bodies[message] = Self.flip(bodies[message], byte: 4 + 7, bit: 7)
            let block = UInt32(min(message / Self.B, 2))
            let chunks = block == 2 ? UInt32(2 * Self.B)..<UInt32(2 * Self.B + 6) : (block * UInt32(Self.B))..<((block + 1) * UInt32(Self.B))
            expectFailure(bodies, info: s.info, query: s.query, .badSignature(block: block, chunks: chunks))
        }
        // A bit set in a field that must be zero.
        var bodies = s.bodies
        bodies[5] = Self.flip(bodies[5], byte: 4)
        expectFailure(bodies, info: s.info, query: s.query, .nonZeroSignatureField(chunk: 5))
    }

    @Test func reorderedChunksAreDetected() throws {
        let s = try Self.sample()
        var bodies = s.bodies
        bodies.swapAt(40, 41)
        expectFailure(bodies, info: s.info, query: s.query, .unexpectedChunkNumber(expected: 40, received: 41))
        // Whole blocks swapped.
        var blocks = s.bodies
        let first = Array(blocks[0..<Self.B])
        blocks.replaceSubrange(0..<Self.B, with: blocks[Self.B..<(2 * Self.B)])
        blocks.replaceSubrange(Self.B..<(2 * Self.B), with: first)
        expectFailure(blocks, info: s.info, query: s.query, .unexpectedChunkNumber(expected: 0, received: UInt32(Self.B)))
    }

    @Test func relabelledChunkFromAnotherBlockIsDetected() throws {
        // A chunk (with its field) copied from block 1 and relabelled with the expected number.
        let s = try Self.sample()
        var bodies = s.bodies
        var replay = bytes(bodies[Self.B + 3])
        replay.replaceSubrange(0..<4, with: [0, 0, 0, 3])
        bodies[3] = buffer(replay)
        expectFailure(bodies, info: s.info, query: s.query, .badSignature(block: 0, chunks: 0..<UInt32(Self.B)))
    }

    @Test func blockReplayedFromAnotherRequestIsDetected() throws {
        let s = try Self.sample()
        // Same file, same key, same range, but the requester's new nonce: the old answer does not verify.
        let fresh = Self.query(nonce: try RequestNonce(bytes: [UInt8](repeating: 0x55, count: 16)))
        expectFailure(s.bodies, info: s.info, query: fresh, .badSignature(block: 0, chunks: 0..<UInt32(Self.B)))
        // Another file (hash_name) of the same size signed by the same key.
        let otherName = Self.query(hashName: try HashName(bytes: [UInt8](repeating: 9, count: 20)))
        expectFailure(s.bodies, info: s.info, query: otherName, .badSignature(block: 0, chunks: 0..<UInt32(Self.B)))
        // Another offset: an answer starting at block 1 spliced where a query for chunk 128… expects its own.
        let shifted = Self.query(first: UInt32(Self.B))
        let shiftedBodies = try signAll(file: s.file, key: Self.key, query: shifted)
        var spliced = s.bodies
        spliced.replaceSubrange(Self.B..<(2 * Self.B), with: shiftedBodies[0..<Self.B])
        expectFailure(spliced, info: s.info, query: s.query, .badSignature(block: 1, chunks: UInt32(Self.B)..<UInt32(2 * Self.B)))
        // A lying DB_CONNECTED (other MIME type) is caught at the first block too.
        let otherType = try FileInfo(size: s.info.size, mimeType: "text/html", publicKeyBytes: s.info.publicKeyBytes)
        expectFailure(s.bodies, info: otherType, query: s.query, .badSignature(block: 0, chunks: 0..<UInt32(Self.B)))
    }

    @Test func truncationIsDetected() throws {
        let s = try Self.sample()
        let total = UInt32(2 * Self.B + 6)
        // Missing the last signature-only message: the short final block never verifies or releases.
        expectFailure(Array(s.bodies.dropLast()), info: s.info, query: s.query,
                      .truncated(nextChunk: UInt32(2 * Self.B), missingChunks: 6))
        // Missing the whole last block.
        expectFailure(Array(s.bodies.prefix(2 * Self.B)), info: s.info, query: s.query,
                      .truncated(nextChunk: UInt32(2 * Self.B), missingChunks: 6))
        // Missing a chunk in the middle.
        var gap = s.bodies
        gap.remove(at: 7)
        expectFailure(gap, info: s.info, query: s.query, .unexpectedChunkNumber(expected: 7, received: 8))
        // The last data chunk shortened by one byte.
        var short = s.bodies
        short[2 * Self.B + 5] = buffer(bytes(short[2 * Self.B + 5]).dropLast())
        expectFailure(short, info: s.info, query: s.query, .wrongDataLength(chunk: total - 1, expected: 100, received: 99))
        // Cut at a block boundary in a file whose answer is whole blocks: still truncated.
        let exact = Self.file(2 * Self.B * Self.C)
        let exactBodies = try signAll(file: exact, key: Self.key, query: Self.query())
        expectFailure(Array(exactBodies.prefix(Self.B)), info: Self.info(size: exact.count), query: Self.query(),
                      .truncated(nextChunk: UInt32(Self.B), missingChunks: UInt32(Self.B)))
    }

    @Test func extraMessageAfterTheEndIsDetected() throws {
        let s = try Self.sample()
        expectFailure(s.bodies + [s.bodies.last!], info: s.info, query: s.query, .dataAfterEnd(chunk: UInt32(2 * Self.B + 6)))
    }

    @Test func wrongPublicKeyIsDetected() throws {
        let s = try Self.sample()
        let other = Self.info(size: Int(s.info.size), key: Curve25519.Signing.PrivateKey())
        expectFailure(s.bodies, info: other, query: s.query, .badSignature(block: 0, chunks: 0..<UInt32(Self.B)))
    }

    @Test func forgedBlockIsDetected() throws {
        // An attacker who knows the plan rebuilds block 0 with its own data and its own key.
        let s = try Self.sample()
        var forged = s.file
        forged[0] ^= 0xFF
        let attacker = Curve25519.Signing.PrivateKey()
        var bodies = try signAll(file: forged, key: attacker, query: s.query)
        bodies.replaceSubrange(Self.B..., with: s.bodies[Self.B...])
        expectFailure(bodies, info: s.info, query: s.query, .badSignature(block: 0, chunks: 0..<UInt32(Self.B)))
    }

    @Test func failedVerifierStaysFailedAndReleasesNothingUnverified() throws {
        let s = try Self.sample()
        var verifier = try ChunkVerifier(fileInfo: s.info, query: s.query)
        var bodies = s.bodies
        bodies[Self.B + 1] = Self.flip(bodies[Self.B + 1], byte: 20)
        var released = 0
        var caught: ChunkStreamError?
        for body in bodies {
            do {
                if let block = try verifier.receive(body: body) { released += block.bytes.readableBytes }
            } catch let error as ChunkStreamError {
                caught = error
                break
            }
        }
        #expect(released == Self.B * Self.C)
        let expected = ChunkStreamError.badSignature(block: 1, chunks: UInt32(Self.B)..<UInt32(2 * Self.B))
        #expect(caught == expected)
        #expect(throws: expected) { try verifier.receive(body: s.bodies[2 * Self.B]) }
        #expect(throws: expected) { try verifier.finish() }
        #expect(verifier.resumeChunk == UInt32(Self.B))
    }

    @Test func malformedBodyFailsTheVerifier() throws {
        let s = try Self.sample()
        var verifier = try ChunkVerifier(fileInfo: s.info, query: s.query)
        let expected = ChunkStreamError.malformedMessage(.truncated(.signatureField))
        #expect(throws: expected) { try verifier.receive(body: buffer(hex("00000000 00000000000000"))) }
        #expect(throws: expected) { try verifier.receive(body: s.bodies[0]) }
    }

    /// Every byte of every DB_DATA body is covered (chunk number by position, field by zero-check or
    /// signature, data by signature), so any single-byte change anywhere must be rejected, and no
    /// block at or after the changed message may be released.
    @Test func anySingleByteChangeIsRejected() throws {
        let size = Self.B * Self.C + 3 * Self.C + 17  // a full block and a short one (4 chunks + 4 signature-only)
        let file = Self.file(size, seed: 5)
        let bodies = try signAll(file: file, key: Self.key, query: Self.query())
        var generator = SplitMix64(seed: 2024)
        for _ in 0..<300 {
            let message = Int(generator.next() % UInt64(bodies.count))
            let offset = Int(generator.next() % UInt64(bodies[message].readableBytes))
            var mutated = bodies
            mutated[message] = Self.flip(bodies[message], byte: offset, bit: Int(generator.next() % 8))
            var verifier = try ChunkVerifier(fileInfo: Self.info(size: size), query: Self.query())
            var released: [UInt8] = []
            var failed = false
            for body in mutated {
                do {
                    if let block = try verifier.receive(body: body) { released += bytes(block.bytes) }
                } catch is ChunkStreamError {
                    failed = true
                    break
                }
            }
            #expect(failed, "byte \(offset) of message \(message) changed without detection")
            // Only blocks entirely before the changed message may have been released, and they are intact.
            let releasedBlocks = message < Self.B ? 0 : 1
            #expect(released == Array(file.prefix(releasedBlocks * Self.B * Self.C)))
        }
    }

    /// The last chunks of the largest servable file: chunk numbers at the top of the 32-bit range.
    @Test func largestFileEdges() throws {
        let size = PeersmWire.maxFileSize - 100  // last chunk 386 bytes
        let lastChunk = UInt32.max - 1
        let query = Self.query(first: lastChunk - 2, count: 10)
        let info = try FileInfo(size: size, mimeType: "a/b", publicKey: Self.key.publicKey)
        var signer = try ChunkSigner(signingKey: Self.key, fileSize: size, mimeType: "a/b", query: query)
        #expect(signer.plan.chunkCount == 3)
        #expect(signer.plan.endChunk == UInt32.max)
        #expect(signer.byteRange.count == 2 * 486 + 386)
        let tail = Self.file(signer.byteRange.count)
        var messages = try signer.feed(buffer(tail))
        messages += try signer.finish()
        #expect(messages.map(\.chunkNumber) == [lastChunk - 2, lastChunk - 1, lastChunk] + [UInt32](repeating: .max, count: 5))
        let verified = try verifyAll(try messages.map { try $0.encoded() }, fileInfo: info, query: query)
        #expect(verified == tail)
        // Starting at the end: an empty, signed answer whose signature-only messages carry chunk 2³² − 1.
        let atEnd = Self.query(first: .max, count: 1)
        var empty = try ChunkSigner(signingKey: Self.key, fileSize: size, mimeType: "a/b", query: atEnd)
        let emptyMessages = try empty.finish()
        #expect(emptyMessages.allSatisfy { $0.chunkNumber == .max && $0.data.readableBytes == 0 })
        #expect(try verifyAll(try emptyMessages.map { try $0.encoded() }, fileInfo: info, query: atEnd) == [])
    }
}
