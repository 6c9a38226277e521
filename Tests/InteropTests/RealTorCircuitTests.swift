import Foundation
import NetBasics
import NIOCore
import NIOPosix
import OnionRouting
import OnionTransport
import TestSupport
import Testing
import TorCells
import TorCrypto

/// Our onion node against real C tor relays on a private test network (no authorities: our client
/// needs no consensus, the relays answer CREATE2/EXTEND2 without one, and the harness sets
/// RefuseUnknownExits 0 on the exit). Each test fetches 4 MiB from the local HTTP sink over HTTP/1.0
/// and checks it byte-exact against the sink's SHA-256.
@Suite("RealTor circuits", .serialized)
struct RealTorCircuitTests {
    static let size = 4 << 20

    @Test("RealTor (1): our client → tor → tor → tor exit → sink, 4 MiB byte-exact",
          .privateNetwork, .timeLimit(.minutes(3)))
    func ourClientThroughRealTor() async throws {
        let env = try await RealTorEnvironment.start(ourRelays: 0)
        defer { env.stop() }
        let path = try env.tor.middleRelays.prefix(2).map(CircuitHop.init(torNode:)) + [try CircuitHop(torNode: env.tor.exits[0])]
        let result = try await env.fetch(path: path, bytes: Self.size)
        #expect(result.body == Self.size)
        #expect(result.sha256 == (try await env.expectedSHA256(Self.size)))
    }

    @Test("RealTor (2): our client → tor → our relay → our exit → sink (tor extends to us), byte-exact",
          .privateNetwork, .timeLimit(.minutes(3)))
    func realTorExtendsToOurRelay() async throws {
        let env = try await RealTorEnvironment.start(ourRelays: 2)
        defer { env.stop() }
        let torMiddle = try #require(env.tor.middleRelays.first)
        let path = [try CircuitHop(torNode: torMiddle)] + env.ours.map(\.descriptor)
        let result = try await env.fetch(path: path, bytes: Self.size)
        #expect(result.body == Self.size)
        #expect(result.sha256 == (try await env.expectedSHA256(Self.size)))
        // C tor connected to our relay as an authenticated relay (CERTS 2/7/4/6 + AUTHENTICATE that we
        // verified), after checking our CERTS as initiator.
        let linked = try await env.ours[0].linkedRelayIdentities()
        #expect(linked.contains(try RSAIdentity(bytes: try #require(torMiddle.rsaIdentity))))
    }

    @Test("RealTor (3): our client → our relay → our relay → tor exit → sink (we extend to tor), byte-exact",
          .privateNetwork, .timeLimit(.minutes(3)))
    func ourRelayExtendsToRealTor() async throws {
        let env = try await RealTorEnvironment.start(ourRelays: 2)
        defer { env.stop() }
        let path = env.ours.map(\.descriptor) + [try CircuitHop(torNode: env.tor.exits[0])]
        let result = try await env.fetch(path: path, bytes: Self.size)
        #expect(result.body == Self.size)
        #expect(result.sha256 == (try await env.expectedSHA256(Self.size)))
        // The C tor exit served a BEGIN whose previous hop is our relay: it only does so for a peer
        // that AUTHENTICATEd as a relay (a client channel gets END TORPROTOCOL), so our AUTHENTICATE
        // verified in C tor. Our side of that link knows the exit's identity from its CERTS.
        let linked = try await env.ours[1].linkedRelayIdentities()
        #expect(linked.contains(try RSAIdentity(bytes: try #require(env.tor.exits[0].rsaIdentity))))
    }

    /// `scripts/bench-onion`: the same client and sink over a 3-hop circuit of our relays and over
    /// a 3-hop circuit of C tor relays; prints MB/s for each and the ratio.
    @Test("RealTor benchmark: our 3 relays vs 3 tor relays",
          .enabled(if: ProcessInfo.processInfo.environment["PEERSM_BENCH_ONION"] != nil,
                   "set PEERSM_BENCH_ONION=<bytes> (scripts/bench-onion)"), .privateNetwork,
          .timeLimit(.minutes(10)))
    func benchmark() async throws {
        let bytes = Int(ProcessInfo.processInfo.environment["PEERSM_BENCH_ONION"] ?? "") ?? (64 << 20)
        let runs = Int(ProcessInfo.processInfo.environment["PEERSM_BENCH_RUNS"] ?? "") ?? 2
        let env = try await RealTorEnvironment.start(ourRelays: 3)
        defer { env.stop() }
        let expected = try await env.expectedSHA256(bytes)
        let torPath = try env.tor.middleRelays.prefix(2).map(CircuitHop.init(torNode:)) + [try CircuitHop(torNode: env.tor.exits[0])]
        let ourPath = env.ours.map(\.descriptor)
        var best: [String: Double] = [:]
        for run in 1...runs {
            for (name, path) in [("ours", ourPath), ("c-tor", torPath)] {
                let result = try await env.fetch(path: path, bytes: bytes)
                #expect(result.body == bytes && result.sha256 == expected, "\(name) run \(run) not byte-exact")
                let mbps = Double(bytes) / result.seconds / 1e6
                print("bench-onion: \(name) run \(run): \(bytes) bytes in \(String(format: "%.2f", result.seconds)) s = \(String(format: "%.2f", mbps)) MB/s")
                best[name] = max(best[name] ?? 0, mbps)
            }
        }
        let ours = best["ours"] ?? 0, tor = best["c-tor"] ?? 0
        print("bench-onion: best ours \(String(format: "%.2f", ours)) MB/s, c-tor \(String(format: "%.2f", tor)) MB/s, ratio ours/c-tor \(String(format: "%.2f", tor > 0 ? ours / tor : 0))")
    }
}

/// A tor test network without authorities, the HTTP sink, and `ourRelays` of our relays (the last
/// one an exit for the sink's loopback address).
final class RealTorEnvironment: @unchecked Sendable {
    let tor: TorTestNetwork
    let sink: HTTPSink
    let ours: [OnionRelayServer]
    let group: MultiThreadedEventLoopGroup
    let scratch: TemporaryDirectory

    static func start(ourRelays: Int) async throws -> RealTorEnvironment {
        let scratch = try TemporaryDirectory("realtor-circuit")
        let tor = try await TorTestNetwork.start(authorities: 0, relays: 2, exits: 1, client: false)
        let sink = try await HTTPSink.start(directory: scratch.url)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(2, ourRelays + 1))
        var ours: [OnionRelayServer] = []
        for index in 0..<ourRelays {
            let exit = index == ourRelays - 1
            var config = OnionRelayServerConfiguration(keys: try RelayKeys.generate(now: Date()))
            config.relay.exitPolicy = exit ? AddressPolicy(lines: ["accept 127.0.0.0/8:*", "reject *:*"])! : .rejectAll
            config.relay.extendAllowPrivateAddresses = true
            ours.append(try await OnionRelayServer.start(config, on: group.next()))
        }
        return RealTorEnvironment(tor: tor, sink: sink, ours: ours, group: group, scratch: scratch)
    }

    private init(tor: TorTestNetwork, sink: HTTPSink, ours: [OnionRelayServer], group: MultiThreadedEventLoopGroup, scratch: TemporaryDirectory) {
        self.tor = tor
        self.sink = sink
        self.ours = ours
        self.group = group
        self.scratch = scratch
    }

    func expectedSHA256(_ count: Int) async throws -> String {
        try await self.sink.expectedSHA256(bytes: count, scratch: self.scratch.url)
    }

    struct Fetch {
        var body: Int
        var sha256: String
        var seconds: Double
    }

    /// GET /bytes/N over a fresh client and circuit; times from the request to the last byte.
    func fetch(path: [CircuitHop], bytes: Int) async throws -> Fetch {
        let client = try await OnionClient.connect(to: path[0], on: self.group.next())
        defer { Task { await client.close() } }
        let circuit = try await client.buildCircuit(through: path)
        let stream = try await circuit.openStream(host: self.sink.host, port: self.sink.port)
        let start = ContinuousClock.now
        try await stream.write(ByteBuffer(string: "GET \(self.sink.path(bytes: bytes)) HTTP/1.0\r\nHost: \(self.sink.host)\r\n\r\n"))
        var response: [UInt8] = []
        response.reserveCapacity(bytes + 512)
        for try await chunk in stream { response += chunk.readableBytesView }
        let elapsed = ContinuousClock.now - start
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let headerEnd = response.firstRange(of: separator) else {
            throw RealTorCircuitError.badResponse(String(decoding: response.prefix(200), as: UTF8.self))
        }
        let head = String(decoding: response[..<headerEnd.lowerBound], as: UTF8.self)
        guard head.hasPrefix("HTTP/1.") && head.split(separator: " ").dropFirst().first == "200" else {
            throw RealTorCircuitError.badResponse(head)
        }
        let body = Array(response[headerEnd.upperBound...])
        let hex = Hex.encode(TorDigest.sha256(body))
        return Fetch(body: body.count, sha256: hex,
                     seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    func stop() {
        let ours = self.ours, group = self.group
        Task {
            for relay in ours { await relay.shutdown() }
            try? await group.shutdownGracefully()
        }
        self.sink.stop()
        self.tor.stop()
    }
}

enum RealTorCircuitError: Error {
    case badResponse(String)
}

extension CircuitHop {
    /// A hop from the harness's network.json record of a C tor relay.
    init(torNode node: TorNode) throws {
        guard let port = node.orPort, let rsa = node.rsaIdentity, let ntor = node.ntorOnionKey, let ed = node.ed25519Identity else {
            throw RealTorCircuitError.badResponse("\(node.nickname) lacks an ORPort or keys")
        }
        self.init(
            address: IPv4Address(127, 0, 0, 1), port: port,
            ntorKey: try NtorPublicKey(identity: try RSAIdentity(bytes: rsa), onionKey: ntor),
            ed25519Identity: try Ed25519Identity(bytes: ed))
    }
}
