import Foundation
import NetBasics
import TestSupport
import Testing
@testable import Blocklists
#if canImport(Glibc)
import Glibc
#endif

// A minimal BEP 5 client, enough to query scripts/fake-spy-dht.py over real UDP on loopback.

indirect enum Bencode: Equatable {
    case int(Int), bytes([UInt8]), list([Bencode]), dict([String: Bencode])

    func encoded() -> [UInt8] {
        switch self {
        case .int(let i): return Array("i\(i)e".utf8)
        case .bytes(let b): return Array("\(b.count):".utf8) + b
        case .list(let l): return [UInt8(ascii: "l")] + l.flatMap { $0.encoded() } + [UInt8(ascii: "e")]
        case .dict(let d):
            return [UInt8(ascii: "d")] + d.keys.sorted().flatMap { Bencode.bytes(Array($0.utf8)).encoded() + d[$0]!.encoded() }
                + [UInt8(ascii: "e")]
        }
    }

    static func decode(_ b: [UInt8]) -> Bencode? {
        var i = 0
        guard let v = decode(b, &i), i == b.count else { return nil }
        return v
    }

    private static func decode(_ b: [UInt8], _ i: inout Int) -> Bencode? {
        guard i < b.count else { return nil }
        switch b[i] {
        case UInt8(ascii: "i"):
            guard let e = b[i...].firstIndex(of: UInt8(ascii: "e")), let v = Int(String(decoding: b[(i + 1)..<e], as: UTF8.self)) else { return nil }
            i = e + 1
            return .int(v)
        case UInt8(ascii: "l"):
            i += 1
            var out: [Bencode] = []
            while i < b.count && b[i] != UInt8(ascii: "e") { guard let v = decode(b, &i) else { return nil }; out.append(v) }
            i += 1
            return .list(out)
        case UInt8(ascii: "d"):
            i += 1
            var out: [String: Bencode] = [:]
            while i < b.count && b[i] != UInt8(ascii: "e") {
                guard case .bytes(let k)? = decode(b, &i), let v = decode(b, &i) else { return nil }
                out[String(decoding: k, as: UTF8.self)] = v
            }
            i += 1
            return .dict(out)
        default:
            guard let colon = b[i...].firstIndex(of: UInt8(ascii: ":")),
                  let n = Int(String(decoding: b[i..<colon], as: UTF8.self)), colon + 1 + n <= b.count else { return nil }
            i = colon + 1 + n
            return .bytes(Array(b[(colon + 1)..<i]))
        }
    }

    subscript(key: String) -> Bencode? { if case .dict(let d) = self { return d[key] } else { return nil } }
    var bytes: [UInt8]? { if case .bytes(let b) = self { return b } else { return nil } }
}

/// One UDP exchange: send, wait up to `timeout` for one datagram from the same address.
func udpExchange(_ payload: [UInt8], to endpoint: IPEndpoint, timeout: TimeInterval = 1) -> [UInt8]? {
    guard let v4 = endpoint.address.ipv4 else { return nil }
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var local = sockaddr_in()
    local.sin_family = sa_family_t(AF_INET)
    inet_pton(AF_INET, "127.0.0.1", &local.sin_addr)
    _ = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var to = sockaddr_in()
    to.sin_family = sa_family_t(AF_INET)
    to.sin_port = endpoint.port.bigEndian
    to.sin_addr.s_addr = v4.bigEndian
    let sent = payload.withUnsafeBytes { buf in
        withUnsafePointer(to: &to) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            sendto(fd, buf.baseAddress, buf.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        } }
    }
    guard sent == payload.count else { return nil }
    var buf = [UInt8](repeating: 0, count: 65536)
    let n = recv(fd, &buf, buf.count, 0)
    return n > 0 ? Array(buf.prefix(n)) : nil
}

/// `DHTDirectQuerying` over real KRPC: what the engine will do through libtorrent's dht_direct_request.
struct KRPCQuerier: DHTDirectQuerying {
    let start: [IPEndpoint]
    let ownID = [UInt8](repeating: 0x42, count: 20)

    func startingNodes() async throws -> [IPEndpoint] { start }

    func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse? {
        let query = Bencode.dict(["t": .bytes([0x61, 0x61]), "y": .bytes([0x71]), "q": .bytes(Array("get_peers".utf8)),
                                  "a": .dict(["id": .bytes(ownID), "info_hash": .bytes(infohash)])])
        guard let raw = udpExchange(query.encoded(), to: node), let msg = Bencode.decode(raw),
              msg["y"]?.bytes == [UInt8(ascii: "r")], let r = msg["r"], let id = r["id"]?.bytes, id.count == 20 else { return nil }
        var values: [IPEndpoint] = []
        if case .list(let vs)? = r["values"] {
            for case .bytes(let v) in vs where v.count == 6 { values.append(compactPeer(v[...])) }
        }
        var nodes: [DHTNode] = []
        if let raw = r["nodes"]?.bytes {
            for off in stride(from: 0, to: raw.count - raw.count % 26, by: 26) {
                nodes.append(DHTNode(id: Array(raw[off..<(off + 20)]), endpoint: compactPeer(raw[(off + 20)..<(off + 26)])))
            }
        }
        return DHTResponse(node: node, nodeID: id, values: values, nodes: nodes)
    }

    func compactPeer(_ b: ArraySlice<UInt8>) -> IPEndpoint {
        let s = b.startIndex
        let ip = UInt32(b[s]) << 24 | UInt32(b[s + 1]) << 16 | UInt32(b[s + 2]) << 8 | UInt32(b[s + 3])
        return IPEndpoint(address: IPAddress(ipv4: ip), port: UInt16(b[s + 4]) << 8 | UInt16(b[s + 5]))
    }
}

let scriptsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("scripts")

/// Debian's interpreter when present: a version-manager shim on PATH can take a second to start.
let python3 = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : "python3"

@Suite(.serialized) struct SpyDHTNodeTests {
    func startNode(_ dir: TemporaryDirectory, _ name: String, _ args: [String]) async throws -> ChildProcess {
        let p = try ChildProcess(python3, [scriptsDir.appendingPathComponent("fake-spy-dht.py").path, "--max-seconds", "120"] + args,
                                 directory: dir.url, name: name)
        try await p.waitForLog(containing: "listening on", timeout: .seconds(20))
        return p
    }

    @Test(.privateNetwork)
    func fakeSpyNodeSpeaksKRPC() async throws {
        let dir = try TemporaryDirectory("spy-dht-krpc")
        let spyHost = Loopback.address()
        let port = freePort(host: spyHost)
        let spy = try await startNode(dir, "spy", ["--host", spyHost, "--port", "\(port)"])
        defer { spy.stop() }
        let node = IPEndpoint(address: IPAddress(spyHost)!, port: port)
        var rng = SystemRandomNumberGenerator()
        let anyHash = (0..<20).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let reply = try #require(try await KRPCQuerier(start: []).getPeers(infohash: anyHash, from: node))
        #expect(reply.values.map(\.description) == ["127.0.0.66:6881", "127.0.0.67:6881"])
        let ping = Bencode.dict(["t": .bytes([1]), "y": .bytes([0x71]), "q": .bytes(Array("ping".utf8)), "a": .dict(["id": .bytes(anyHash)])])
        let pong = try #require(udpExchange(ping.encoded(), to: node).flatMap(Bencode.decode))
        #expect(pong["t"] == .bytes([1]) && pong["r"]?["id"]?.bytes?.count == 20)
        let unknown = Bencode.dict(["t": .bytes([2]), "y": .bytes([0x71]), "q": .bytes(Array("vote".utf8)), "a": .dict([:])])
        let err = try #require(udpExchange(unknown.encoded(), to: node).flatMap(Bencode.decode))
        #expect(err["e"] == .list([.int(204), .bytes(Array("Method Unknown".utf8))]))
        let garbage = try #require(udpExchange(Array("d1:q".utf8), to: node).flatMap(Bencode.decode))
        if case .list(let e)? = garbage["e"] { #expect(e.first == .int(203)) } else { Issue.record("no KRPC error for garbage") }
    }

    /// The hunt over real UDP: a spy answering any hash, a sybil minting IDs next to the target,
    /// and an honest close node that knows the real swarm. The walk starts at the spy, which names
    /// the other two as closer nodes.
    @Test(.privateNetwork)
    func spyHuntOverKRPCDetectsTheFakeSpyBeforeTheRealQuery() async throws {
        let dir = try TemporaryDirectory("spy-dht-hunt")
        let spyHost = Loopback.address(), sybilHost = Loopback.address(), honestHost = Loopback.address()
        let spyPort = freePort(host: spyHost), sybilPort = freePort(host: sybilHost), honestPort = freePort(host: honestHost)
        let honestID = nodeID(near: realHash, sharing: 22)
        let sybilID = [UInt8](repeating: 0xEE, count: 20)
        let realPeers = (1...6).map { "10.1.0.\($0):6881" }
        let nodesArg = "\(Hex.encode(sybilID))@\(sybilHost):\(sybilPort),\(Hex.encode(honestID))@\(honestHost):\(honestPort)"
        let spy = try await startNode(dir, "spy", ["--host", spyHost, "--port", "\(spyPort)", "--nodes", nodesArg])
        let sybil = try await startNode(dir, "sybil", ["--host", sybilHost, "--port", "\(sybilPort)", "--mode", "honest",
                                                      "--sybil", "--id", Hex.encode(sybilID)])
        let honest = try await startNode(dir, "honest", ["--host", honestHost, "--port", "\(honestPort)", "--mode", "honest",
                                                        "--id", Hex.encode(honestID), "--has", "\(Hex.encode(realHash))=\(realPeers.joined(separator: ","))"])
        defer { spy.stop(); sybil.stop(); honest.stop() }

        let service = try BlocklistService(store: try BlocklistStore())
        let sink = RecordingSink()
        try await service.register(sink)
        let lookup = IterativeDHTLookup(querier: KRPCQuerier(start: [IPEndpoint(address: IPAddress(spyHost)!, port: spyPort)]))
        let result = try await service.hunt(infohash: realHash, lookup: lookup)

        let reasons = Dictionary(grouping: result.detections, by: \.address.description).mapValues { Set($0.map(\.reason)) }
        #expect(reasons[spyHost] == [.valuesForFakeInfohash])
        #expect(reasons[sybilHost] == [.sybilNodeID])
        #expect(reasons[honestHost] == nil)
        #expect(result.trustedNodes == [IPEndpoint(address: IPAddress(honestHost)!, port: honestPort)])
        #expect(Set(result.peers.map(\.description)) == Set(realPeers.dropFirst()))  // the list head is dropped
        // The real hash went to the honest node alone; the spy and the sybil saw only the fake one.
        try await honest.waitForLog(containing: "get_peers \(Hex.encode(realHash)) -> 6 value(s)", timeout: .seconds(5))
        #expect(!spy.log.contains(Hex.encode(realHash)) && !sybil.log.contains(Hex.encode(realHash)), "\(spy.log)\n\(sybil.log)")
        #expect(spy.log.contains("get_peers \(Hex.encode(result.fakeInfohash)) -> 2 value(s)"), "\(spy.log)")
        // Blocked in every session before the real fetch starts.
        let filter = try #require(sink.last)
        #expect(filter.contains(IPAddress(spyHost)!) && filter.contains(IPAddress(sybilHost)!))
        #expect(!filter.contains(IPAddress(honestHost)!) && filter.contains(IPAddress("127.0.0.66")!))
        #expect(try await service.check(IPAddress(spyHost)!).spies.first?.reason == .valuesForFakeInfohash)
    }
}

@Suite(.serialized) struct BlocklistURLImportTests {
    @Test(.privateNetwork)
    func importsGzippedListFromALocalHTTPServer() async throws {
        let dir = try TemporaryDirectory("blocklist-http")
        let www = dir.url.appendingPathComponent("www")
        try FileManager.default.createDirectory(at: www, withIntermediateDirectories: true)
        try "Seeder on a list:127.0.0.2-127.0.0.2\nbad line here\nRange:10.0.0.0-10.0.255.255\n"
            .write(to: www.appendingPathComponent("level1.p2p"), atomically: true, encoding: .utf8)
        try runTool("gzip", ["-9", www.appendingPathComponent("level1.p2p").path])
        let port = freePort()
        // http.server that unblocks SIGTERM: children of the test runner inherit it blocked, and
        // ChildProcess.stop would otherwise wait out its grace period before SIGKILL.
        let serve = "import runpy, signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
            + "signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM]); "
            + "sys.argv = ['http.server', '--bind', '127.0.0.1', '--directory', sys.argv[1], sys.argv[2]]; "
            + "runpy.run_module('http.server', run_name='__main__')"
        let server = try ChildProcess(python3, ["-c", serve, www.path, "\(port)"], directory: dir.url, name: "http")
        defer { server.stop() }
        try await waitForTCP(port: port)

        let service = try BlocklistService(store: try BlocklistStore())
        let url = "http://127.0.0.1:\(port)/level1.p2p.gz"
        let report = try await service.importList(from: try BlocklistSource(url))
        #expect(report.list.name == "level1" && report.list.source == url && report.list.gzipped && report.list.format == .p2p)
        #expect(report.issues.map(\.description) == ["\(url):2: expected 'label:first-last', found no '-'"])
        let listed = try await service.isBlocked(IPAddress("127.0.0.2")!)
        let other = try await service.isBlocked(IPAddress("127.0.0.3")!)
        #expect(listed && !other)
        #expect(try await service.refreshRemoteLists().isEmpty)

        await #expect(throws: BlocklistError.fetch(source: "http://127.0.0.1:\(port)/missing.p2p", reason: "server answered HTTP 404")) {
            try await service.importList(from: try BlocklistSource("http://127.0.0.1:\(port)/missing.p2p"))
        }
    }
}
