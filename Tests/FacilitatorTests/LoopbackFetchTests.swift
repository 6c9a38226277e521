import Crypto
import Facilitator
import Foundation
import NIOCore
import PeersmProtocol
import Requester
import Testing
import TestSupport

/// Facilitator service + our relays (3 hops, in memory, real onion crypto and flow control) +
/// requester, with an in-memory content source. No sockets, so no private namespace needed.
@Suite struct LoopbackFetchTests {
    let name = try! HashName(magnet: "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=test")

    @Test func fetchesByteExactOverThreeHops() async throws {
        let file = testBytes(3 * 1024 * 1024 + 123, seed: 1)
        let rig = try LoopbackRig(source: MemoryContentSource(files: [name: file]))
        defer { Task { await rig.stop() } }
        let out = scratchFile()
        defer { try? FileManager.default.removeItem(at: out) }
        // Small queries so the answer spans several queries and a block boundary inside each.
        let result = try await rig.requester { $0.chunksPerQuery = 2500 }.fetch(name, to: out)
        #expect(try Data(contentsOf: out) == Data(file))
        #expect(result.bytes == UInt64(file.count))
        #expect(result.fileInfo.publicKeyBytes == Array(rig.key.publicKey.rawRepresentation))
        let perQuery: Int = 486 * 2500
        let dataQueries: Int = (file.count + perQuery - 1) / perQuery
        #expect(result.queries == 1 + dataQueries)
        #expect(result.circuitsBuilt == 1)
        #expect(await rig.service.activeStreams == 0)
    }

    @Test func emptyAndTinyFiles() async throws {
        let tiny = try HashName(infohash: Array(repeating: 9, count: 20))
        let empty = try HashName(infohash: Array(repeating: 8, count: 20))
        let rig = try LoopbackRig(source: MemoryContentSource(files: [tiny: [1, 2, 3, 4, 5], empty: []]))
        defer { Task { await rig.stop() } }
        let out = scratchFile()
        defer { try? FileManager.default.removeItem(at: out) }
        _ = try await rig.requester().fetch(tiny, to: out)
        #expect(try Data(contentsOf: out) == Data([1, 2, 3, 4, 5]))
        _ = try await rig.requester().fetch(empty, to: out)
        #expect(try Data(contentsOf: out).isEmpty)
    }

    @Test func aFlippedBitInOneDBDataIsDetected() async throws {
        let file = testBytes(300 * 1024, seed: 2)
        let rig = try LoopbackRig(source: MemoryContentSource(files: [name: file])) { BitFlippingTransport($0, flipping: 200) }
        defer { Task { await rig.stop() } }
        let out = scratchFile()
        defer { try? FileManager.default.removeItem(at: out) }
        await #expect {
            _ = try await rig.requester().fetch(self.name, to: out)
        } throws: { error in
            guard case FetchError.verificationFailed(.badSignature(let block, _)) = error else { return false }
            return block == 1  // message 200 is in the second block (chunks 128…255)
        }
        // Only the verified first block was written.
        #expect(try Data(contentsOf: out).count == 128 * 486)
    }

    @Test func aCircuitKilledMidTransferResumesToAByteExactFile() async throws {
        let file = testBytes(2 * 1024 * 1024, seed: 5)
        var source = MemoryContentSource(files: [name: file])
        source.pieceSize = 32 << 10
        source.delayPerPiece = .milliseconds(5)
        let rig = try LoopbackRig(source: source)
        defer { Task { await rig.stop() } }
        let out = scratchFile()
        defer { try? FileManager.default.removeItem(at: out) }
        let killed = KillOnce()
        let network = rig.network
        let result = try await rig.requester().fetch(name, to: out) { progress in
            if case .transferring = progress.stage, progress.verifiedBytes > 512 * 1024, killed.first() {
                Task { if let id = await network.openCircuits.first { await network.killCircuit(id) } }
            }
        }
        #expect(killed.fired)
        #expect(try Data(contentsOf: out) == Data(file))
        #expect(result.circuitsBuilt == 2)
        // The facilitator stopped the killed stream's work: nothing is left open (once the kill reaches it).
        #expect(await eventually { await rig.service.activeStreams == 0 })
    }

    /// On the service's own (manual) clock, so the deadline is asserted exactly: open at 799 ms,
    /// UNAVAILABLE at 800 ms, however loaded the machine is.
    @Test func unknownNameIsUnavailableWithinTheConfiguredTimeout() async throws {
        var config = FacilitatorConfiguration()
        config.resolveTimeout = .milliseconds(800)
        let clock = ManualClock()
        let rig = try LoopbackRig(source: MemoryContentSource(files: [:]), configuration: config, clock: clock)
        defer { Task { await rig.stop() } }
        let requester = rig.requester()
        let answer = Task { [name] in _ = try await requester.fileInfo(name) }
        // The stream's watchdog wakes every quarter of the timeout (200 ms) to check the deadline.
        for step in [Duration.milliseconds(200), .milliseconds(200), .milliseconds(200), .milliseconds(199)] {
            #expect(await eventually { clock.sleeping == 1 }, "the watchdog is not waiting")
            clock.advance(by: step)
        }
        #expect(await eventually { clock.sleeping == 1 })
        #expect(await rig.service.activeStreams == 1, "answered before the resolve timeout")
        clock.advance(by: .milliseconds(1))
        try #require(await eventually { await rig.service.activeStreams == 0 }, "no answer at the resolve timeout")
        // Exactly DB_END UNAVAILABLE: a timeout, a broken circuit or a protocol error do not count.
        await #expect {
            try await answer.value
        } throws: { error in
            if case FetchError.refused(.unavailable, _) = error { return true }
            return false
        }
    }

    @Test func counterFiveIsAnsweredWithLoop() async throws {
        let rig = try LoopbackRig(source: MemoryContentSource(files: [name: [1, 2, 3]]))
        defer { Task { await rig.stop() } }
        await #expect {
            _ = try await rig.requester { $0.counter = 5 }.fileInfo(self.name)
        } throws: { error in
            if case FetchError.refused(.loop, _) = error { return true }
            return false
        }
    }

    @Test func tooManyStreamsOnACircuitIsBusy() async throws {
        var config = FacilitatorConfiguration()
        config.maxStreamsPerCircuit = 1
        // The name never resolves, so the first stream stays open.
        let rig = try LoopbackRig(source: MemoryContentSource(files: [:]), configuration: config)
        defer { Task { await rig.stop() } }
        let circuit = try await rig.network.buildCircuit()
        let first = try await circuit.openStream()
        try await first.send(.query(.info(name, nonce: .random())))
        let second = try await circuit.openStream()
        try await second.send(.query(.info(name, nonce: .random())))
        var answers: [PeersmMessage] = []
        for try await m in second.inbound {
            answers.append(try PeersmMessage(command: m.command, body: m.body))
            if case .end = answers.last { break }
        }
        #expect(answers == [.end(DBEnd(reason: .busy))])
        #expect(await rig.service.activeStreams == 1)
        await circuit.close()
        #expect(await eventually { await rig.service.activeStreams == 0 })
    }

    @Test func malformedQueryIsBadRequest() async throws {
        let rig = try LoopbackRig(source: MemoryContentSource(files: [:]))
        defer { Task { await rig.stop() } }
        let circuit = try await rig.network.buildCircuit()
        let stream = try await circuit.openStream()
        try await stream.send(.end(DBEnd(reason: .finished)))  // not a query: ignored (late END)
        let other = try await circuit.openStream()
        var iterator = other.inbound.makeAsyncIterator()
        try await other.send(command: .dbQuery, rawBody: ByteBuffer(bytes: [0x00]))
        let m = try #require(try await iterator.next())
        #expect(try PeersmMessage(command: m.command, body: m.body) == .end(DBEnd(reason: .badRequest)))
    }
}

final class KillOnce: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var fired = false
    func first() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if fired { return false }
        fired = true
        return true
    }
}
