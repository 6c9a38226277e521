import Foundation
import NetBasics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import OnionRouting
import OnionTransport
import Testing
import TestSupport
import TorCells
import TorCrypto
import PeersmProtocol

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
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next(), applicationCommands: .peersm)
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
        // The server saw every byte we sent, in order, before it closed (once the close reaches it).
        #expect(await eventually { !server.results.isEmpty })
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
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next(), applicationCommands: .peersm)
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
            // DESTROY from the middle relay. Its own reason is CHANNEL_CLOSED (its link to the exit
            // closed), but toward the client it says only DESTROYED, as C tor does since tor#40649:
            // reasons copied hop to hop would let colluding relays signal along a circuit.
            #expect(error == .circuitClosed(.destroyed, failure: nil))
        }
        await server.close()
        await relays.shutdown()
    }

    @Test func exitPolicyRefusalSurfacesAsEndExitPolicy() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let relays = try await OurRelays.start(group: group)
        defer { Task { try? await group.shutdownGracefully() } }

        let error: OnionClientError? = try await withDeadline(60, "BEGIN refused") {
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next(), applicationCommands: .peersm)
            // CREATE_FAST to the first hop here (the other tests use ntor everywhere).
            let circuit = try await client.buildCircuit(through: relays.path, firstHop: .createFast)
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
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next(), applicationCommands: .peersm)
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

    @Test func webSocketFirstHopCarriesACircuit() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let relays = try await OurRelays.start(group: group, webSocketGuard: true)
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { Task { try? await group.shutdownGracefully(); try? await serverGroup.shutdownGracefully() } }
        let size = 1 << 20
        let server = try await PatternServer.start(group: serverGroup, sendCount: size, sendSeed: 5, receiveCount: 0, receiveSeed: 0)
        let wsPort = try #require(relays.guardRelay.webSocketPort)

        let (received, mismatch) = try await withDeadline(60, "1 MiB over a WebSocket first hop") {
            let client = try await OnionClient.connect(
                to: relays.guardRelay.descriptor, on: group.next(), webSocket: (UInt16(wsPort), "/"))
            let circuit = try await client.buildCircuit(through: relays.path)
            let stream = try await circuit.openStream(host: "127.0.0.1", port: UInt16(server.port))
            var check = PatternStream(seed: 5)
            var received = 0
            var mismatch: Int?
            for try await chunk in stream {
                if mismatch == nil, let at = check.check(chunk) { mismatch = received + at }
                received += chunk.readableBytes
            }
            await client.close()
            return (received, mismatch)
        }
        #expect(received == size)
        #expect(mismatch == nil)
        await server.close()
        await relays.shutdown()
    }

    /// A client that stops reading stops the exit: its inbox pauses the stream (SENDMEs withheld), the
    /// exit's window runs out, its queue fills and it stops reading the destination socket, so the
    /// server cannot push more than a few MiB of socket buffers and windows. Then everything arrives.
    /// Shown by the server's writes stopping (a stall, however slow the machine) below that bound
    /// with bytes waiting for window at the exit; without backpressure they would run to the end.
    @Test func slowReaderBackpressuresTheExitServer() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 4)
        let relays = try await OurRelays.start(group: group)
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { Task { try? await group.shutdownGracefully(); try? await serverGroup.shutdownGracefully() } }
        let size = 24 << 20
        let server = try await PatternServer.start(group: serverGroup, sendCount: size, sendSeed: 9, receiveCount: 0, receiveSeed: 0)

        let (stalled, received, mismatch) = try await withDeadline(180, "slow reader") {
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next(), applicationCommands: .peersm)
            let circuit = try await client.buildCircuit(through: relays.path)
            let stream = try await circuit.openStream(host: "127.0.0.1", port: UInt16(server.port))
            let stalled = try await stall(of: { server.sentBytes.withLockedValue { $0 } }, before: size)
            let queued = try await relays.exit.queuedBytesByCircuit().values.reduce(0, +)
            print("slow reader: the server \(stalled.map { "stalled at \($0) bytes" } ?? "never stalled"); \(queued) queued at the exit")
            #expect(queued > 0, "the exit holds nothing for window: the stream window did not run out")
            var check = PatternStream(seed: 9)
            var received = 0
            var mismatch: Int?
            for try await chunk in stream {
                if mismatch == nil, let at = check.check(chunk) { mismatch = received + at }
                received += chunk.readableBytes
            }
            await client.close()
            return (stalled, received, mismatch)
        }
        // Unread: ~1 MiB inbox + 500-cell stream window + 128 KiB exit queue + loopback socket buffers.
        let at = try #require(stalled, "the server never stopped writing to a reader that was not reading")
        #expect(at < 10 << 20, "server pushed \(at) bytes at a reader that was not reading")
        #expect(received == size)
        #expect(mismatch == nil)
        await server.close()
        await relays.shutdown()
    }

    /// A destination that does not read stops the client: the exit's socket stops being writable, the
    /// exit withholds stream SENDMEs, the client's stream window runs out and its writes wait (they
    /// stall, below the bound, however slow the machine; without backpressure they would run to the
    /// end). Once the destination reads, every byte arrives in order.
    @Test func slowDestinationBackpressuresTheClientWriter() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 4)
        let relays = try await OurRelays.start(group: group)
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { Task { try? await group.shutdownGracefully(); try? await serverGroup.shutdownGracefully() } }
        let size = 24 << 20
        let server = try await PatternServer.start(
            group: serverGroup, sendCount: 0, sendSeed: 0, receiveCount: size, receiveSeed: 13, holdReads: true)
        let written = NIOLockedValueBox(0)

        let stalled = try await withDeadline(180, "slow destination") {
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next(), applicationCommands: .peersm)
            let circuit = try await client.buildCircuit(through: relays.path)
            let stream = try await circuit.openStream(host: "127.0.0.1", port: UInt16(server.port))
            let writer = Task {
                var pattern = PatternStream(seed: 13)
                var left = size
                while left > 0 {
                    let n = min(left, 64 * 1024)
                    try await stream.write(pattern.buffer(n))
                    written.withLockedValue { $0 += n }
                    left -= n
                }
            }
            let stalled = try await stall(of: { written.withLockedValue { $0 } }, before: size)
            server.startReading()
            try await writer.value
            // The server closes once it has every byte; the exit then ENDs the stream.
            for try await _ in stream {}
            await client.close()
            return stalled
        }
        print("slow destination: the client \(stalled.map { "stalled at \($0) bytes" } ?? "never stalled")")
        // Unread: loopback socket buffers + exit's 500-cell stream window + the client's 256 KiB queue.
        let at = try #require(stalled, "the client never stopped writing toward a destination that was not reading")
        #expect(at < 8 << 20, "client wrote \(at) bytes toward a destination that was not reading")
        #expect(server.results == [PatternServer.Outcome(received: size, mismatchAt: nil)])
        await server.close()
        await relays.shutdown()
    }

    /// EXTEND2 reuses an open link to the same relay instead of opening one per circuit.
    @Test func extendReusesTheOpenLinkToTheNextRelay() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let relays = try await OurRelays.start(group: group)
        defer { Task { try? await group.shutdownGracefully() } }
        let (links, circuits) = try await withDeadline(60, "three circuits") {
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next(), applicationCommands: .peersm)
            var built: [OnionCircuit] = []
            for _ in 0..<3 { built.append(try await client.buildCircuit(through: relays.path)) }
            let links = try await relays.middle.linkCount()
            let circuits = try await relays.middle.circuitCount()
            await client.close()
            return (links, circuits)
        }
        // The middle holds one link from the guard and one to the exit, carrying all three circuits.
        #expect(links == 2)
        #expect(circuits == 3)
        #expect(try await relays.middle.linkedRelayIdentities() == [relays.guardRelay.descriptor.ntorKey.identity, relays.exit.descriptor.ntorKey.identity])
        await relays.shutdown()
    }

    @Test func nonLoopbackBindNeedsExplicitSetting() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { Task { try? await group.shutdownGracefully() } }
        let config = OnionRelayServerConfiguration(keys: try RelayKeys.generate(now: Date()), host: "0.0.0.0")
        await #expect(throws: OnionRelayServerError.nonLoopbackBindNotAllowed("0.0.0.0")) {
            _ = try await OnionRelayServer.start(config, on: group.next())
        }
    }

    @Test func applicationProducerIsPacedByTheWindow() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let size = 4 << 20
        let producer = PacedProducer(total: size)
        let relays = try await OurRelays.start(group: group, application: producer)
        defer { Task { try? await group.shutdownGracefully() } }

        let (received, mismatch) = try await withDeadline(120, "4 MiB of DB_DATA") {
            let client = try await OnionClient.connect(to: relays.guardRelay.descriptor, on: group.next(), applicationCommands: .peersm)
            let circuit = try await client.buildCircuit(through: relays.path)
            let stream = try await circuit.openApplicationStream()
            try await stream.send(command: .dbQuery, body: ByteBuffer(string: "all of it"))
            var check = PatternStream(seed: 21)
            var received = 0
            var mismatch: Int?
            for try await message in stream {
                if message.command == .dbEnd { break }
                if mismatch == nil, let at = check.check(message.body) { mismatch = received + at }
                received += message.body.readableBytes
            }
            await client.close()
            return (received, mismatch)
        }
        #expect(received == size)
        #expect(mismatch == nil)
        // 4 MiB cannot fit the 1000-cell circuit window: the producer had to wait at least once.
        #expect(producer.pauses.withLockedValue { $0 } > 0)
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
/// Answers one DB_QUERY with `total` bytes of DB_DATA, produced in 64 KiB pieces only while
/// `sendApplicationMessage` says the stream has room, resuming on `streamWritable`.
final class PacedProducer: OnionRelayApplication, @unchecked Sendable {
    let total: Int
    private var pattern = PatternStream(seed: 21)
    private var produced = 0
    private var target: (RelayCircuitID, UInt16)?
    let pauses = NIOLockedValueBox(0)

    init(total: Int) { self.total = total }

    func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, stream: UInt16, received command: RelayCommand, body: ByteBuffer) {
        guard command == .dbQuery, self.target == nil else { return }
        self.target = (circuit, stream)
        self.produce(server)
    }

    func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamWritable stream: UInt16) {
        self.produce(server)
    }

    private func produce(_ server: OnionRelayServer) {
        guard let (circuit, stream) = self.target else { return }
        do {
            while self.produced < self.total {
                let n = min(64 * 1024, self.total - self.produced)
                self.produced += n
                if !(try server.sendApplicationMessage(circuit, stream: stream, command: .dbData, body: self.pattern.buffer(n))) {
                    self.pauses.withLockedValue { $0 += 1 }
                    return
                }
            }
            try server.sendApplicationMessage(circuit, stream: stream, command: .dbEnd, body: ByteBuffer())
            self.target = nil
        } catch {
            Issue.record("producing failed: \(error)")
        }
    }
}

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

/// Samples `value` until it has not moved for `quiet`: where a producer under backpressure stops.
/// Nil if it was still moving at `timeout` (or had reached `done`, which is no stall).
private func stall(of value: () -> Int, before done: Int, quiet: Duration = .milliseconds(1500),
                           timeout: Duration = .seconds(90)) async throws -> Int? {
    let deadline = ContinuousClock.now + timeout
    var last = value(), since = ContinuousClock.now
    while ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(100))
        let now = value()
        if now != last {
            (last, since) = (now, ContinuousClock.now)
        } else if ContinuousClock.now - since >= quiet {
            return now < done ? now : nil
        }
    }
    return nil
}
