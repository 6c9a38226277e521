import Foundation
import NIOCore
import NIOPosix
import OnionRouting
import OnionTransport
import Testing
import TorCells
import TorCrypto

/// Bad peers on the ORPort: the relay drops them, keeps nothing, and keeps serving.
@Suite(.serialized) struct NodeRobustnessTests {
    /// Opens a raw TCP connection to the relay, sends `bytes` (or nothing), and returns the channel.
    private func rawConnection(to port: Int, group: EventLoopGroup, sending bytes: [UInt8]) async throws -> Channel {
        let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
        if !bytes.isEmpty { try await channel.writeAndFlush(ByteBuffer(bytes: bytes)) }
        return channel
    }

    private func waitForLinks(_ relay: OnionRelayServer, toBe count: Int, within seconds: Int) async throws -> Int {
        var links = try await relay.linkCount()
        for _ in 0..<(seconds * 10) where links != count {
            try await Task.sleep(for: .milliseconds(100))
            links = try await relay.linkCount()
        }
        return links
    }

    @Test func garbageAndMalformedPeersAreDroppedAndTheRelayKeepsServing() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        defer { Task { try? await group.shutdownGracefully() } }
        let relays = try await OurRelays.start(group: group)
        let guardRelay = relays.guardRelay

        // Not TLS at all: the TLS layer fails and the link is closed.
        let garbage = try await self.rawConnection(
            to: guardRelay.port, group: group, sending: Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8) + [UInt8](repeating: 0xFF, count: 4096))
        try await withDeadline(10, "garbage connection closed") { try await garbage.closeFuture.get() }

        // A TLS client that completes TLS but then sends a malformed VERSIONS cell (odd length).
        let tls = try TLSContext.client()
        let bad = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(try TLSLinkHandler(context: tls)) }
            }
            .connect(host: "127.0.0.1", port: guardRelay.port).get()
        try await bad.writeAndFlush(ByteBuffer(bytes: [0, 0, 7, 0, 3, 0, 4, 0]))
        try await withDeadline(10, "malformed VERSIONS closed") { try await bad.closeFuture.get() }

        #expect(try await self.waitForLinks(guardRelay, toBe: 0, within: 5) == 0)

        // The relay still builds circuits.
        let circuitOK = try await withDeadline(60, "circuit after bad peers") {
            let client = try await OnionClient.connect(to: guardRelay.descriptor, on: group.next())
            _ = try await client.buildCircuit(through: relays.path)
            await client.close()
            return true
        }
        #expect(circuitOK)
        await relays.shutdown()
    }

    @Test func silentPeerIsDroppedAfterTheHandshakeTimeout() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { Task { try? await group.shutdownGracefully() } }
        let config = OnionRelayServerConfiguration(keys: try RelayKeys.generate(now: Date()), linkHandshakeTimeout: .seconds(1))
        let relay = try await OnionRelayServer.start(config, on: group.next())
        // TLS completes (the TLS layer answers), then nothing: the link handshake times out.
        let tls = try TLSContext.client()
        let silent = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(try TLSLinkHandler(context: tls)) }
            }
            .connect(host: "127.0.0.1", port: relay.port).get()
        try await withDeadline(10, "silent peer dropped") { try await silent.closeFuture.get() }
        #expect(try await self.waitForLinks(relay, toBe: 0, within: 5) == 0)
        await relay.shutdown()
    }

    @Test func linksBeyondTheLimitAreRefused() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { Task { try? await group.shutdownGracefully() } }
        let keys = try RelayKeys.generate(now: Date())
        let relay = try await OnionRelayServer.start(OnionRelayServerConfiguration(keys: keys, maximumLinks: 1), on: group.next())
        let first = try await withDeadline(20, "first client") { try await OnionClient.connect(to: relay.descriptor, on: group.next()) }
        // The second connection is closed at accept, before TLS: the client sees its link fail.
        await #expect(throws: OnionClientError.self) {
            _ = try await withDeadline(20, "second client") { try await OnionClient.connect(to: relay.descriptor, on: group.next()) }
        }
        #expect(try await relay.linkCount() == 1)
        await first.close()
        await relay.shutdown()
    }
}
