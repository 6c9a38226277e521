// Drives the torrent engine for scripts/bench-torrent: streams a whole torrent from one peer by
// magnet link and prints one JSON line with the rate. Nothing is written to disk.
import Foundation
import TorrentEngine

func fail(_ msg: String) -> Never {
    FileHandle.standardError.write(Data("TorrentBench: \(msg)\n".utf8))
    exit(2)
}

var magnet: String?
var torrentFile: String?
var peer: PeerEndpoint?
var utp = false
var readAhead: Int?
var budgetMiB: Int?
var verbose = false
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--magnet": magnet = args.next()
    case "--torrent": torrentFile = args.next()
    case "--peer":
        guard let s = args.next(), let c = s.lastIndex(of: ":"), let p = UInt16(s[s.index(after: c)...]) else { fail("--peer HOST:PORT") }
        peer = PeerEndpoint(host: String(s[..<c]), port: p)
    case "--utp": utp = true
    case "--verbose": verbose = true
    case "--read-ahead": readAhead = args.next().flatMap(Int.init)
    case "--memory-mib": budgetMiB = args.next().flatMap(Int.init)
    default: fail("unknown argument \(a); usage: --magnet URI | --torrent FILE, --peer HOST:PORT [--utp] [--read-ahead N] [--memory-mib N]")
    }
}
guard magnet != nil || torrentFile != nil, let peer else { fail("--magnet or --torrent, and --peer, are required") }
let source: TorrentSource
if let torrentFile {
    guard let bytes = FileManager.default.contents(atPath: torrentFile) else { fail("cannot read \(torrentFile)") }
    source = .torrentFile([UInt8](bytes))
} else {
    do { source = try TorrentSource(hashName: magnet!) } catch { fail("\(error)") }
}

let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("torrent-bench-\(getpid())")
defer { try? FileManager.default.removeItem(at: scratch) }
var settings = TorrentEngineSettings.loopbackTest(dataDirectory: scratch.path)
settings.enableUTP = utp
if let readAhead { settings.maxReadAheadPieces = readAhead }
if let budgetMiB { settings.memoryBudget = budgetMiB << 20 }

let engine = try TorrentEngine(settings: settings)
let started = ContinuousClock.now
if verbose {
    // Peer events with their time since the start, on stderr.
    Task {
        for await e in engine.peerEvents {
            FileHandle.standardError.write(Data("[\(ContinuousClock.now - started)] \(e)\n".utf8))
        }
    }
}
var firstByte: Duration?
var ready: Duration?
var bytes = 0
do {
    for try await event in try await engine.stream(source: source, peers: [peer]) {
        if case .ready = event { ready = ContinuousClock.now - started }
        if case .data(let d) = event {
            if firstByte == nil { firstByte = ContinuousClock.now - started }
            bytes += d.count
        }
    }
} catch {
    fail("stream failed: \(error)")
}
let elapsed = ContinuousClock.now - started
func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
let stats = try await engine.sessionStats()
await engine.shutdown()
let secs = seconds(elapsed)
let afterReady = secs - (ready.map(seconds) ?? 0)
print("{\"bytes\": \(bytes), \"seconds\": \(secs), \"first_byte_seconds\": \(firstByte.map(seconds) ?? -1), "
    + "\"ready_seconds\": \(ready.map(seconds) ?? -1), \"rate_after_ready_mb_s\": \(Double(bytes) / afterReady / 1e6), "
    + "\"rate_mb_s\": \(Double(bytes) / secs / 1e6), \"payload_uploaded\": \(stats.payloadUploaded), "
    + "\"store_peak_bytes\": \(stats.storePeakBytes), \"transport\": \"\(utp ? "utp+tcp" : "tcp")\", "
    + "\"input\": \"\(torrentFile == nil ? "magnet" : "torrent")\"}")
