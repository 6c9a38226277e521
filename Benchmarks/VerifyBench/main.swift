// Throughput of the DB_DATA integrity scheme, per core (single thread), in file bytes per second.
// Run in release mode: scripts/bench-verify [megabytes]
import Crypto
import NIOCore
import PeersmProtocol
#if canImport(Glibc)
import Glibc
#endif

let megabytes = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 64
let rounds = 3

/// CPU time of this thread: on a shared machine it is what "per core" means; wall time is shown too.
func threadCPUSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

func measure(_ label: String, bytes: Int, _ body: () throws -> Void) rethrows {
    var bestCPU = Double.infinity
    var bestWall = Double.infinity
    for _ in 0..<rounds {
        let cpu = threadCPUSeconds()
        let start = ContinuousClock.now
        try body()
        let wall = ContinuousClock.now - start
        bestCPU = min(bestCPU, threadCPUSeconds() - cpu)
        bestWall = min(bestWall, Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18)
    }
    func rate(_ seconds: Double) -> String { String(format: "%8.1f MB/s", Double(bytes) / seconds / 1e6) }
    print("\(label.padding(toLength: 46, withPad: " ", startingAt: 0)) \(rate(bestCPU)) CPU  \(rate(bestWall)) wall  (best of \(rounds))")
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
measure("  decode DB_DATA bodies only", bytes: size) {
    var total = 0
    for answer in bodies { for body in answer { total &+= try! DBData(decoding: body).data.readableBytes } }
    precondition(total == size)
}
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
let operations = 2000
var ok = true
var cpu = threadCPUSeconds()
for _ in 0..<operations { ok = ok && key.publicKey.isValidSignature(signature, for: message) }
let perVerify = (threadCPUSeconds() - cpu) / Double(operations)
precondition(ok)
cpu = threadCPUSeconds()
for _ in 0..<operations { _ = try key.signature(for: message) }
let perSign = (threadCPUSeconds() - cpu) / Double(operations)
print(String(format: "  Ed25519 (CPU time): verify %.1f µs, sign %.1f µs; one of each per %d file bytes",
             perVerify * 1e6, perSign * 1e6, PeersmWire.blockChunks * PeersmWire.chunkSize))
