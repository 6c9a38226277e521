import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import OnionRouting
import OnionTransport
import Testing
import TorCells
import TorCrypto

/// Our client through three of our relays (TLS links, link handshakes with AUTHENTICATE between the
/// relays, ntor, EXTEND2, relay crypto, SENDMEs) to a TCP server behind the exit.
@Suite(.serialized) struct NodeCircuitTests {
    static let size = 4 << 20

    @Test func fourMebibytesEachWayByteExact() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 4)
        let relays = try await OurRelays.start(group: group)
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { Task { try? await serverGroup.shutdownGracefully() } }
        let server = try await PatternServer.start(
            group: serverGroup, sendCount: Self.size, sendSeed: 7, receiveCount: Self.size, receiveSeed: 11)
        defer { Task { try? await group.shutdownGracefully() } }

        let (received, mismatch) = try await withDeadline(120, "4 MiB each way") {
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next())
            let circuit = try await client.buildCircuit(through: relays.path)
            let stream = try await circuit.openStream(host: "127.0.0.1", port: UInt16(server.port))
            let writer = Task {
                var pattern = PatternStream(seed: 11)
                var left = Self.size
                while left > 0 {
                    let n = min(left, 100_000)
                    try await stream.write(pattern.buffer(n))
                    left -= n
                }
            }
            var check = PatternStream(seed: 7)
            var received = 0
            var mismatch: Int?
            for try await chunk in stream {
                if mismatch == nil, let at = check.check(chunk) { mismatch = received + at }
                received += chunk.readableBytes
            }
            try await writer.value
            await client.close()
            return (received, mismatch)
        }
        #expect(received == Self.size)
        #expect(mismatch == nil)
        // The server saw every byte we sent, in order, before it closed.
        try await Task.sleep(for: .milliseconds(200))
        #expect(server.results == [PatternServer.Outcome(received: Self.size, mismatchAt: nil)])
        await server.close()
        await relays.shutdown()
    }

    @Test func destroyMidTransferSurfacesAsCircuitError() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 4)
        let relays = try await OurRelays.start(group: group)
        // The server sends far more than we will read before the exit dies.
        // On its own loop: generating the bytes must not stall a relay's loop.
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { Task { try? await serverGroup.shutdownGracefully() } }
        let server = try await PatternServer.start(
            group: serverGroup, sendCount: 16 << 20, sendSeed: 3, receiveCount: 0, receiveSeed: 0)
        defer { Task { try? await group.shutdownGracefully() } }

        let outcome: Result<Int, OnionClientError> = try await withDeadline(60, "DESTROY mid-transfer") {
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next())
            let circuit = try await client.buildCircuit(through: relays.path)
            let stream = try await circuit.openStream(host: "127.0.0.1", port: UInt16(server.port))
            var received = 0
            var killed = false
            do {
                for try await chunk in stream {
                    received += chunk.readableBytes
                    if !killed && received > 1 << 20 {
                        killed = true
                        // The exit goes away: the middle relay DESTROYs the circuit toward us.
                        await relays.exit.shutdown()
                    }
                }
                return .success(received)
            } catch let error as OnionClientError {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(let n):
            Issue.record("stream ended cleanly after \(n) bytes; expected a circuit failure")
        case .failure(let error):
            // DESTROY from the middle relay with reason CHANNEL_CLOSED (its link to the exit closed).
            #expect(error == .circuitClosed(.channelClosed, failure: nil))
        }
        await server.close()
        await relays.shutdown()
    }

    @Test func exitPolicyRefusalSurfacesAsEndExitPolicy() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let relays = try await OurRelays.start(group: group)
        defer { Task { try? await group.shutdownGracefully() } }

        let error: OnionClientError? = try await withDeadline(60, "BEGIN refused") {
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next())
            let circuit = try await client.buildCircuit(through: relays.path)
            do {
                _ = try await circuit.openStream(host: "192.0.2.7", port: 80)
                return nil
            } catch let error as OnionClientError {
                // The circuit survives a refused stream: a second BEGIN is answered too.
                _ = try? await circuit.openStream(host: "192.0.2.8", port: 443)
                return error
            }
        }
        guard case .streamEnded(let end)? = error else {
            Issue.record("expected END EXITPOLICY, got \(String(describing: error))")
            return
        }
        #expect(end.reason == .exitPolicy)
        #expect(end.exitPolicy?.address == IPAddress("192.0.2.7"))
        await relays.shutdown()
    }

    @Test func applicationHookRoundTripOverThreeHops() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let echo = EchoApplication()
        let relays = try await OurRelays.start(group: group, application: echo)
        defer { Task { try? await group.shutdownGracefully() } }

        let replies: [ApplicationMessage] = try await withDeadline(60, "DB_QUERY round trip") {
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next())
            let circuit = try await client.buildCircuit(through: relays.path)
            let stream = try await circuit.openApplicationStream()
            // 1200 bytes in three DB_QUERY messages (a non-data message fits one cell); the DB_DATA
            // answer is split into cells by the relay.
            let query = (0..<1200).map { UInt8(truncatingIfNeeded: $0 * 7) }
            for part in stride(from: 0, to: 1200, by: 400) {
                try await stream.send(command: .dbQuery, body: ByteBuffer(bytes: query[part..<part + 400]))
            }
            var replies: [ApplicationMessage] = []
            for try await message in stream {
                replies.append(message)
                if message.command == .dbEnd { break }
            }
            await client.close()
            return replies
        }
        let data = replies.filter { $0.command == .dbData }.reduce(into: ByteBuffer()) { acc, m in
            var body = m.body
            acc.writeBuffer(&body)
        }
        #expect(Array(data.readableBytesView) == (0..<1200).map { UInt8(truncatingIfNeeded: $0 * 7) }.reversed())
        #expect(replies.last?.command == .dbEnd)
        #expect(echo.queries.withLockedValue { $0 } == 3)
        await relays.shutdown()
    }

    @Test func wrongFirstHopIdentityFailsTheLink() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let relays = try await OurRelays.start(group: group)
        defer { Task { try? await group.shutdownGracefully() } }
        var impostor = relays.guardRelay.descriptor
        impostor.ntorKey = relays.middle.descriptor.ntorKey  // someone else's identity at the guard's port
        await #expect(throws: OnionClientError.self) {
            _ = try await OnionClient.connect(to: impostor, on: group.next())
        }
        await relays.shutdown()
    }
}

/// Answers DB_QUERY at the exit with the query bytes reversed as DB_DATA, then DB_END: the shape of
/// the Peersm facilitator's exchange, exercised through the real hook.
final class EchoApplication: OnionRelayApplication, @unchecked Sendable {
    let queries = NIOLockedValueBox(0)
    private var pending: [String: ByteBuffer] = [:]

    func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, stream: UInt16, received command: RelayCommand, body: ByteBuffer) {
        guard command == .dbQuery else { return }
        self.queries.withLockedValue { $0 += 1 }
        let key = "\(circuit)/\(stream)"
        var acc = self.pending[key] ?? ByteBuffer()
        var body = body
        acc.writeBuffer(&body)
        self.pending[key] = acc
        guard acc.readableBytes >= 1200 else { return }
        self.pending[key] = nil
        do {
            try server.sendApplicationMessage(circuit, stream: stream, command: .dbData, body: ByteBuffer(bytes: acc.readableBytesView.reversed()))
            try server.sendApplicationMessage(circuit, stream: stream, command: .dbEnd, body: ByteBuffer())
        } catch {
            Issue.record("sending the answer failed: \(error)")
        }
    }
}
