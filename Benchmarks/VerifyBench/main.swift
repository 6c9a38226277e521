// Throughput of the DB_DATA integrity scheme, per core (single thread), in file bytes per second.
// Run in release mode: scripts/bench-verify [megabytes]
import Crypto
import NIOCore
import PeersmProtocol

let megabytes = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 64
let rounds = 3

func measure(_ label: String, bytes: Int, _ body: () throws -> Void) rethrows {
    var best = Duration.seconds(1_000_000)
    for _ in 0..<rounds {
        let start = ContinuousClock.now
        try body()
        best = min(best, ContinuousClock.now - start)
    }
    let seconds = Double(best.components.seconds) + Double(best.components.attoseconds) / 1e18
    let rate = Double(bytes) / seconds / 1e6
    print("\(label.padding(toLength: 44, withPad: " ", startingAt: 0)) \(String(format: "%8.1f", rate)) MB/s  (best of \(rounds), \(String(format: "%.3f", seconds)) s)")
}

// Deterministic, incompressible-looking file.
var state: UInt64 = 0x1234_5678
let size = megabytes << 20
var fileBytes = [UInt8](repeating: 0, count: size)
for i in stride(from: 0, to: size, by: 8) {
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    for j in 0..<min(8, size - i) { fileBytes[i + j] = UInt8(truncatingIfNeeded: state >> (8 * UInt64(j) + 3)) }
}
let file = ByteBuffer(bytes: fileBytes)
let key = Curve25519.Signing.PrivateKey()
let chunks = ChunkLayout.chunkCount(fileSize: UInt64(size))
let hashName = try HashName(bytes: [UInt8](repeating: 7, count: 20))
let mime = "video/mp4"
let info = try FileInfo(size: UInt64(size), mimeType: mime, publicKey: key.publicKey)

// Queries of at most 65,535 chunks (the width of nb chunks), as a requester would send them.
var queries: [DBQuery] = []
var first: UInt64 = 0
while first < chunks {
    let count = UInt16(min(UInt64(UInt16.max), chunks - first))
    queries.append(DBQuery(hashName: hashName, firstChunk: UInt32(first), chunkCount: count, nonce: .random()))
    first += UInt64(count)
}

print("file: \(megabytes) MiB, \(chunks) chunks of \(PeersmWire.chunkSize) B, blocks of \(PeersmWire.blockChunks) chunks, \(queries.count) queries")

// Sign: feed 64 KiB pieces (like libtorrent reads), encode each DB_DATA body as it would go into a relay cell.
var bodies: [[ByteBuffer]] = []
try measure("sign (feed + Ed25519 + encode bodies)", bytes: size) {
    bodies = []
    let allocator = ByteBufferAllocator()
    for query in queries {
        var signer = try ChunkSigner(signingKey: key, fileSize: UInt64(size), mimeType: mime, query: query)
        var out: [DBData] = []
        out.reserveCapacity(Int(query.chunkCount) + 8)
        var offset = Int(signer.byteRange.lowerBound)
        let end = Int(signer.byteRange.upperBound)
        while offset < end {
            let n = min(65_536, end - offset)
            try signer.feed(file.getSlice(at: offset, length: n)!, into: &out)
            offset += n
        }
        out += try signer.finish()
        bodies.append(try out.map { try $0.encoded(allocator: allocator) })
    }
}

// Verify: decode each body and feed the verifier; release verified blocks.
try measure("verify (decode + SHA-256 + Ed25519 + copy)", bytes: size) {
    var total = 0
    for (query, answer) in zip(queries, bodies) {
        var verifier = try ChunkVerifier(fileInfo: info, query: query)
        for body in answer {
            if let block = try verifier.receive(body: body) { total += block.bytes.readableBytes }
        }
        try verifier.finish()
    }
    precondition(total == size)
}

// Components, for reading the figures above.
measure("  SHA-256 alone, 486-byte updates", bytes: size) {
    var hasher = SHA256()
    var offset = 0
    while offset < size {
        let n = min(486, size - offset)
        file.withUnsafeReadableBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + n])) }
        offset += n
    }
    _ = hasher.finalize()
}
let message = [UInt8](repeating: 1, count: 123)
let signature = try key.signature(for: message)
let verifies = 2000
var ok = true
let start = ContinuousClock.now
for _ in 0..<verifies { ok = ok && key.publicKey.isValidSignature(signature, for: message) }
let perVerify = (ContinuousClock.now - start) / verifies
precondition(ok)
let signStart = ContinuousClock.now
for _ in 0..<verifies { _ = try key.signature(for: message) }
let perSign = (ContinuousClock.now - signStart) / verifies
print("  Ed25519 verify: \(perVerify) each; sign: \(perSign) each; one verify per \(PeersmWire.blockChunks * PeersmWire.chunkSize) B")
