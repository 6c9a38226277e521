import Crypto
import Facilitator
import Foundation
import NIOCore
import NIOPosix
import OnionRouting
import OnionTransport
import PeersmCircuits
import PeersmProtocol
import Requester
import TestSupport
import Testing
import TorCrypto

/// What the exit hop holds for a requester is bounded, whatever the requester does: its relay queue,
/// the messages waiting for the service, and the relay streams of finished queries.
@Suite struct ExitBoundsTests {
    let name = try! HashName(infohash: Array(repeating: 0x17, count: 20))

    /// A requester that keeps sending DB_SENDMEs but never reads its link, so it never sends the
    /// circuit SENDMEs that would let the exit's queue drain. DB_SENDME proves nothing was delivered,
    /// so only the relay's own queue can stop the facilitator: it must stop producing at the pause
    /// bound (not grow the queue until the relay's hard cap destroys the circuit), and stop reading
    /// its source once its small per-stream buffer is full.
    @Test func aRequesterWithholdingCircuitSendmesCannotGrowTheExitQueue() async throws {
        let source = CountingContentSource(name: name, size: 64 << 20)
        let rig = try LoopbackRig(source: source)
        defer { Task { await rig.stop() } }
        let circuit = try await rig.network.buildCircuit()
        let exitCircuit = try #require(await rig.network.exitCircuits.first)
        await rig.network.setClientReading(false)

        // One stream asking for 31.8 MB (one stream so that the requester can tell when a DB_SENDME
        // is legal; the bound is per circuit anyway).
        let stream = try await circuit.openStream()
        try await stream.send(.query(DBQuery(hashName: name, firstChunk: 0, chunkCount: .max, nonce: .random())))

        // The exit sends what the circuit window (1000 cells) allows; everything else the facilitator
        // produced is queued there. A DB_SENDME is legal once the facilitator produced 500 more DB_DATA
        // since the last: at least the cells that reached the client's link plus those still queued
        // (a message is at most one cell; the margin covers control cells).
        let cellData = 498
        var sendmes = 0
        var maxQueued = 0
        var lastProduced = -1
        var quietRounds = 0
        for _ in 0..<4000 where quietRounds < 100 {
            let queued = await rig.network.exitQueuedBytes(exitCircuit)
            maxQueued = max(maxQueued, queued)
            guard await rig.network.exitCircuits.contains(exitCircuit) else { break }
            let produced = await rig.network.cellsHeldForClient + queued / cellData
            quietRounds = produced == lastProduced ? quietRounds + 1 : 0
            lastProduced = produced
            if produced - 8 >= 500 * (sendmes + 1) {
                try await stream.send(.sendme(DBSendme()))
                sendmes += 1
            }
            try await Task.sleep(for: .milliseconds(5))
        }

        let bound = LoopbackOnionNetwork.circuitPauseBytes + 1001 * cellData
        #expect(await rig.network.exitCircuits.contains(exitCircuit), "the exit destroyed the circuit: the facilitator overran its queue")
        #expect(maxQueued <= bound, "exit queued \(maxQueued) bytes for the circuit (bound \(bound))")
        #expect(sendmes > 0, "the attack never got going")
        // Reading stopped: a buffer of maxBufferedMessages per stream (and one source piece) past
        // what was produced, and no more while we wait.
        let readNow = source.bytesRead
        try await Task.sleep(for: .milliseconds(300))
        #expect(source.bytesRead == readNow, "the facilitator kept reading its source")
        #expect(readNow < 16 << 20, "read \(readNow) bytes of a 64 MiB file")
        #expect(await rig.service.activeStreams == 1, "sendmes \(sendmes), max queued \(maxQueued), produced \(lastProduced)")

        // The client reads again: the circuit drains, the relay tells the service, and the stream
        // sends all its DB window allows, which is more than it had produced (so it read again).
        await rig.network.setClientReading(true)
        let allowed = 1000 + 500 * sendmes
        let watchdog = Task {
            try await Task.sleep(for: .seconds(10))
            await circuit.close()
        }
        var received = 0
        do {
            for try await m in stream.inbound where m.command == PeersmRelayCommand.dbData.rawValue {
                received += 1
                if received == allowed { break }
            }
        } catch {}
        watchdog.cancel()
        #expect(received == allowed, "the stream did not resume after the queue drained")
        #expect(source.bytesRead > readNow)
        await circuit.close()
    }

    /// node-Tor never sends RELAY_END after DB_END: the facilitator releases the relay stream itself,
    /// so a circuit answers any number of sequential queries (more than the relay's 1024 streams).
    @Test func twoThousandQueriesOnOneCircuitWithoutRelayEnd() async throws {
        let rig = try LoopbackRig(source: MemoryContentSource(files: [name: [1, 2, 3]], progressWords: []))
        defer { Task { await rig.stop() } }
        let circuit = try await rig.network.buildCircuit()
        let exitCircuit = try #require(await rig.network.exitCircuits.first)
        for i in 0..<2000 {
            let stream = try await circuit.openStream()
            try await stream.send(.query(.info(name, nonce: .random())))
            var answers: [PeersmMessage] = []
            for try await m in stream.inbound {
                answers.append(try PeersmMessage(command: m.command, body: m.body))
                if case .end = answers.last { break }
            }
            guard answers.count == 2, case .connected(.fileInfo) = answers[0], answers[1] == .end(DBEnd(reason: .finished)) else {
                Issue.record("query \(i) got \(answers)")
                return
            }
            // No stream.close(): no RELAY_END, like node-Tor.
        }
        #expect(await eventually { await rig.network.exitStreamCount(exitCircuit) == 0 })

        // A late DB_SENDME on a stream the exit never saw opens nothing there.
        let stray = try await circuit.openStream()
        try await stray.send(.sendme(DBSendme()))
        try await Task.sleep(for: .milliseconds(100))
        #expect(await rig.network.exitStreamCount(exitCircuit) == 0)
        await circuit.close()
    }

    /// DB_* messages count against no window and the ORPort always reads: a flood toward a busy
    /// service is capped per circuit, and the flooding circuit is destroyed (RESOURCELIMIT).
    @Test(.privateNetwork)
    func aFloodOfDBMessagesIsCappedAndTheCircuitDestroyed() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bridge = FacilitatorRelayBridge(maximumPendingPerCircuit: 16)
        // No service attached: it never takes anything, the busiest service there is.
        var config = OnionRelayServerConfiguration(keys: try RelayKeys.generate(now: Date()), host: "127.0.0.1", port: 0)
        config.relay.applicationCommands = FacilitatorRelayBridge.applicationCommands
        let server = try await OnionRelayServer.start(config, on: group.next())
        bridge.attach(server)
        let circuits = OnionCircuitProvider(path: [server.descriptor], eventLoopGroup: group)
        let outcome: Result<Void, Error> = await Result(asyncCatching: {
            let circuit = try await circuits.buildCircuit()
            let stream = try await circuit.openStream()
            try await stream.send(.query(.info(name, nonce: .random())))
            for _ in 0..<300 { try? await stream.send(.sendme(DBSendme())) }
            let watchdog = KillOnce()
            let timer = Task {
                try await Task.sleep(for: .seconds(5))
                if watchdog.first() { await circuit.close() }
            }
            do {
                for try await _ in stream.inbound {}
            } catch {}  // CircuitLost: the relay destroyed the circuit (or the watchdog did)
            timer.cancel()
            #expect(watchdog.first(), "the flooding circuit was not destroyed")
            #expect(bridge.pendingMessages == 16)
            #expect(try await server.circuitCount() == 0)
        })
        bridge.finish()
        await server.shutdown()
        try? await group.shutdownGracefully()
        try outcome.get()
    }
}

/// A content source whose one file is generated on demand, counting the bytes read from it.
final class CountingContentSource: ContentSource, @unchecked Sendable {
    let name: HashName
    let size: Int
    private let lock = NSLock()
    private var read = 0
    init(name: HashName, size: Int) {
        self.name = name
        self.size = size
    }

    var bytesRead: Int { lock.withLock { read } }

    func open(_ name: HashName, readFrom: UInt64?, progress: @escaping @Sendable (ProgressState) async -> Void) async throws -> any ContentFile {
        guard name == self.name else { throw ContentError(.unavailable, "unknown name") }
        return CountingFile(source: self)
    }

    fileprivate func count(_ n: Int) { lock.withLock { read += n } }

    fileprivate struct CountingFile: ContentFile {
        let source: CountingContentSource
        var size: UInt64 { UInt64(source.size) }
        var mimeType: String { "application/octet-stream" }

        func read(_ range: Range<UInt64>) async throws -> AsyncThrowingStream<ByteBuffer, Error> {
            var offset = Int(range.lowerBound)
            let end = Int(range.upperBound)
            let source = self.source
            return AsyncThrowingStream(unfolding: {
                guard offset < end else { return nil }
                let n = min(64 << 10, end - offset)
                offset += n
                source.count(n)
                return ByteBuffer(repeating: UInt8(truncatingIfNeeded: offset >> 16), count: n)
            })
        }

        func close() async {}
    }
}

extension Result where Failure == Error {
    init(asyncCatching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
