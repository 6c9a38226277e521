import Crypto
import NetBasics
import NIOCore
import Testing
import TestSupport
@testable import PeersmProtocol

func hex(_ string: String) -> [UInt8] {
    guard let bytes = Hex.decode(string, ignoringWhitespace: true) else { preconditionFailure("bad hex literal: \(string)") }
    return bytes
}

func hexString(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }

func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

func encodedBytes(_ message: some PeersmMessageBody) throws -> [UInt8] { bytes(try message.encoded()) }

/// RFC 8032 §7.1 test 1 key pair.
let rfc8032Seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
let rfc8032Public = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")

let vectorHashName = try! HashName(bytes: Array(1...20))
let vectorNonce = try! RequestNonce(bytes: Array(0xA0...0xAF))


func randomBytes(_ count: Int, using generator: inout SplitMix64) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        let word = generator.next()
        for j in 0..<min(8, count - i) { out[i + j] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(j))) }
        i += 8
    }
    return out
}

/// Signs `file` for `query` feeding it in pieces of `piece` bytes; returns the encoded DB_DATA bodies.
func signAll(file: [UInt8], mimeType: String = "application/octet-stream", key: Curve25519.Signing.PrivateKey,
             query: DBQuery, piece: Int = 1000) throws -> [ByteBuffer] {
    var signer = try ChunkSigner(signingKey: key, fileSize: UInt64(file.count), mimeType: mimeType, query: query)
    let range = signer.byteRange
    let slice = Array(file[Int(range.lowerBound)..<Int(range.upperBound)])
    var messages: [DBData] = []
    var offset = 0
    while offset < slice.count {
        let end = min(offset + piece, slice.count)
        try signer.feed(buffer(Array(slice[offset..<end])), into: &messages)
        offset = end
    }
    messages += try signer.finish()
    #expect(signer.isComplete)
    return try messages.map { try $0.encoded() }
}

/// Feeds encoded DB_DATA bodies to a verifier and returns the verified bytes; rethrows the first error.
func verifyAll(_ bodies: [ByteBuffer], fileInfo: FileInfo, query: DBQuery, finish: Bool = true) throws -> [UInt8] {
    var verifier = try ChunkVerifier(fileInfo: fileInfo, query: query)
    var out: [UInt8] = []
    var expectedOffset = verifier.plan.byteRange.lowerBound
    for body in bodies {
        if let block = try verifier.receive(body: body) {
            #expect(block.fileOffset == expectedOffset)
            expectedOffset += UInt64(block.bytes.readableBytes)
            out += bytes(block.bytes)
        }
    }
    if finish { try verifier.finish() }
    return out
}
