import Crypto
import Facilitator
import Foundation
import NIOPosix
import OnionRouting
import OnionTransport
import PeersmCircuits
import PeersmProtocol
import Requester
import TestSupport
import Testing
import TorCrypto

/// The facilitator on the node runtime: three of our relays with real TLS links on 127.0.0.1, the
/// last one's `FacilitatorRelayBridge` feeding a `FacilitatorService`, fetched by the `Requester`
/// over `OnionCircuitProvider`. This is the path `peersm-demo` and the daemon use: the service's
/// DB_DATA go to the relay's event loop in batches, and the requester reads its stream in batches.
@Suite(.serialized) struct NodeFetchTests {
    @Test func fetchesByteExactOverThreeTLSRelaysInSeveralQueries() async throws {
        let scratch = try TemporaryDirectory("peersm-node-fetch")
        // 3 MB and 2 500 chunks (1.2 MB) per query: three data queries, the last one short and
        // ending in a short block; 3 000 bytes per source piece so chunks straddle pieces.
        let bytes = testBytes(3_000_000 + 123, seed: 0x5EED)
        let name = try HashName(infohash: Array(repeating: 0x42, count: 20))
        let source = MemoryContentSource(files: [name: bytes], pieceSize: 3_000)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let bridge = FacilitatorRelayBridge()
        let service = FacilitatorService(source: source, signingKey: Curve25519.Signing.PrivateKey(), transport: bridge)
        bridge.attach(service)
        var servers: [OnionRelayServer] = []
        do {
            for i in 0..<3 {
                var config = OnionRelayServerConfiguration(keys: try RelayKeys.generate(now: Date()), host: "127.0.0.1", port: 0)
                config.relay.extendAllowPrivateAddresses = true
                config.relay.applicationCommands = FacilitatorRelayBridge.applicationCommands
                let server = try await OnionRelayServer.start(config, on: group.next())
                if i == 2 { bridge.attach(server) }
                servers.append(server)
            }
        } catch {
            for server in servers { await server.shutdown() }
            try? await group.shutdownGracefully()
            throw error
        }
        let circuits = OnionCircuitProvider(path: servers.map(\.descriptor), eventLoopGroup: group)
        var options = FetchOptions()
        options.chunksPerQuery = 2_500
        let out = scratch.url.appendingPathComponent("fetched.bin")
        let outcome: Result<FetchResult, Error>
        do { outcome = .success(try await Requester(circuits: circuits, options: options).fetch(name, to: out)) } catch {
            outcome = .failure(error)
        }
        await service.shutdown()
        bridge.finish()
        for server in servers { await server.shutdown() }
        try? await group.shutdownGracefully()

        let result = try outcome.get()
        #expect(result.queries == 4)  // the info query and three data queries
        #expect(result.circuitsBuilt == 1)
        #expect(result.bytes == UInt64(bytes.count))
        #expect(try Data(contentsOf: out) == Data(bytes))
    }
}
