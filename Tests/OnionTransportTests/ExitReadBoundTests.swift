import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import OnionRouting
import OnionTransport
import Testing
import PeersmProtocol

/// An exit reads its TCP socket only while the circuit has room: against a client that stops reading
/// (so stops sending stream SENDMEs), the bytes the exit holds for the circuit stay near
/// `exitReadPauseBytes` plus one read, however fast the destination pushes, and even when the
/// destination then finishes and closes (NIO drains the whole socket receive buffer on EOF, whatever
/// autoRead says, so that buffer must stay small too).
@Suite(.serialized) struct ExitReadBoundTests {
    @Test func exitQueueStaysBoundedWhileTheClientDoesNotRead() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 4)
        let relays = try await OurRelays.start(group: group)
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { Task { try? await group.shutdownGracefully(); try? await serverGroup.shutdownGracefully() } }
        let readFirst = 12 << 20
        let size = readFirst + (5 << 19)
        let server = try await PatternServer.start(group: serverGroup, sendCount: size, sendSeed: 5, receiveCount: 0, receiveSeed: 0)

        let (peak, circuitsWhileStalled, received, mismatch) = try await withDeadline(120, "stalled exit stream") {
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next(), applicationCommands: .peersm)
            let circuit = try await client.buildCircuit(through: relays.path)
            let stream = try await circuit.openStream(host: "127.0.0.1", port: UInt16(server.port))
            var check = PatternStream(seed: 5)
            var received = 0
            var mismatch: Int?
            var chunks = stream.makeAsyncIterator()
            // Read fast first, so the kernel grows the exit's receive buffer as it would in a bulk
            // transfer; then stop: the client's inbox fills, it withholds stream SENDMEs, the exit's
            // stream window runs out, and the destination finishes into the socket buffers and closes.
            while received < readFirst, let chunk = try await chunks.next() {
                if mismatch == nil, let at = check.check(chunk) { mismatch = received + at }
                received += chunk.readableBytes
            }
            var peak = 0
            let start = ContinuousClock.now
            while ContinuousClock.now - start < .seconds(3) {
                peak = max(peak, try await relays.exit.queuedBytesByCircuit().values.max() ?? 0)
                try await Task.sleep(for: .milliseconds(2))
            }
            let circuits = try await relays.exit.circuitCount()
            print("exit read bound: the destination wrote \(server.sentBytes.withLockedValue { $0 }) of \(size) bytes while stalled")
            while let chunk = try await chunks.next() {
                if mismatch == nil, let at = check.check(chunk) { mismatch = received + at }
                received += chunk.readableBytes
            }
            await client.close()
            return (peak, circuits, received, mismatch)
        }
        let config = relays.exit.configuration
        print("exit read bound: peak \(peak) bytes queued (pause \(config.exitReadPauseBytes))")
        #expect(peak >= config.exitReadPauseBytes, "the exit never filled its queue: the test saw no backpressure")
        // One read past the pause (64 KiB), plus at EOF what the receive buffer held (the kernel
        // doubles SO_RCVBUF).
        #expect(peak <= config.exitReadPauseBytes + 64 * 1024 + 2 * config.exitReceiveBufferBytes,
                "exit queued \(peak) bytes against a \(config.exitReadPauseBytes)-byte pause")
        #expect(circuitsWhileStalled == 1, "the exit dropped the stalled circuit")
        #expect(received == size)
        #expect(mismatch == nil)
        await server.close()
        await relays.shutdown()
    }
}
