import Crypto
import Facilitator
import Foundation
import PeersmProtocol
import Requester
import TestSupport
import Testing
import TorrentEngine

/// A third-party seeder → our torrent engine → facilitator → our relays (3 hops) → requester.
/// These start BitTorrent peers: private network namespace only (scripts/in-private-net).
@Suite(.serialized) struct SeederFetchTests {
    struct Setup {
        let scratch: TemporaryDirectory
        let fixture: TorrentFixture
        let seeder: Seeder
        let engine: TorrentEngine
        let rig: LoopbackRig

        /// Everything the engine (the facilitator's only writer) keeps on disk.
        var engineDirectory: URL { scratch.url.appendingPathComponent("engine") }

        init<C: Clock<Duration>>(_ kind: Seeder.Kind, size: Int, resolveTimeout: Duration = .seconds(30),
                                 clock: C = ContinuousClock()) async throws {
            scratch = try TemporaryDirectory("peersm-facilitator")
            fixture = try TorrentFixture(in: scratch.url, name: "payload.bin", size: size, pieceKiB: 64)
            seeder = try await Seeder.start(kind, seeding: fixture, directory: scratch.url)
            engine = try TorrentEngine(settings: .loopbackTest(dataDirectory: scratch.url.appendingPathComponent("engine").path))
            var config = FacilitatorConfiguration()
            config.resolveTimeout = resolveTimeout
            rig = try LoopbackRig(source: TorrentContentSource(engine: engine), configuration: config, clock: clock)
        }

        /// The fixture's magnet link with the seeder as its `x.pe` peer (BEP 9).
        var magnet: HashName { get throws { try HashName(magnet: "\(fixture.magnet)&x.pe=\(seeder.host):\(seeder.port)") } }

        func stop() async {
            await rig.stop()
            await engine.shutdown()
            seeder.stop()
        }
    }

    /// Byte-exact, and the relayed content never touched the facilitator's disk: no file in the
    /// engine's data directory holds any of it, while the torrent is open or after shutdown.
    @Test(.privateNetwork, arguments: [Seeder.Kind.aria2, .libtorrent])
    func thirdPartySeederToRequesterByteExact(_ kind: Seeder.Kind) async throws {
        let setup = try await Setup(kind, size: 5 * 1024 * 1024 + 777)
        let out = setup.scratch.url.appendingPathComponent("fetched.bin")
        let words = WordLog()
        let result: FetchResult
        let content = try setup.fixture.contents(ofFile: 0)
        do {
            result = try await setup.rig.requester().fetch(try setup.magnet, to: out) { p in
                if case .facilitator(let w) = p.stage { words.add(w) }
            }
        } catch {
            await setup.stop()
            throw error
        }
        let whileOpen = filesHoldingContent(content, under: [setup.engineDirectory])
        await setup.stop()
        #expect(whileOpen.isEmpty, "relayed content on the facilitator's disk: \(whileOpen)")
        #expect(filesHoldingContent(content, under: [setup.engineDirectory]).isEmpty)
        #expect(try Data(contentsOf: out) == content)
        #expect(result.fileInfo.size == UInt64(5 * 1024 * 1024 + 777))
        #expect(words.words.contains("torrent"))
        #expect(words.words.contains("start"))
    }

    @Test(.privateNetwork)
    func circuitKilledMidTransferResumesByteExact() async throws {
        let setup = try await Setup(.aria2, size: 8 * 1024 * 1024)
        let out = setup.scratch.url.appendingPathComponent("fetched.bin")
        let killed = KillOnce()
        let network = setup.rig.network
        let result: FetchResult
        do {
            result = try await setup.rig.requester { $0.chunksPerQuery = 4096 }.fetch(try setup.magnet, to: out) { p in
                if case .transferring = p.stage, p.verifiedBytes > 1024 * 1024, killed.first() {
                    Task { if let id = await network.openCircuits.first { await network.killCircuit(id) } }
                }
            }
        } catch {
            await setup.stop()
            throw error
        }
        await setup.stop()
        #expect(killed.fired)
        #expect(result.circuitsBuilt == 2)
        #expect(try Data(contentsOf: out) == (try setup.fixture.contents(ofFile: 0)))
    }

    /// Consecutive data queries continue the engine stream of the one before (parked when its range
    /// was read) instead of adding the torrent again: only the info query and the first data query
    /// resolve the torrent, so the progress words `torrent` and `start` come twice, not once per query.
    @Test(.privateNetwork)
    func consecutiveQueriesContinueOneEngineStream() async throws {
        let setup = try await Setup(.aria2, size: 6 * 1024 * 1024 + 1234)
        let out = setup.scratch.url.appendingPathComponent("fetched.bin")
        let words = WordLog()
        let result: FetchResult
        do {
            // 3000 chunks (1.46 MB) per query: 5 data queries, none on a piece boundary.
            result = try await setup.rig.requester { $0.chunksPerQuery = 3000 }.fetch(try setup.magnet, to: out) { p in
                if case .facilitator(let w) = p.stage { words.add(w) }
            }
        } catch {
            await setup.stop()
            throw error
        }
        await setup.stop()
        #expect(try Data(contentsOf: out) == (try setup.fixture.contents(ofFile: 0)))
        #expect(result.queries == 6)
        #expect(words.words.filter { $0 == "torrent" }.count == 2, "\(words.words)")
        #expect(words.words.filter { $0 == "start" }.count == 2, "\(words.words)")
    }

    @Test(.privateNetwork)
    func unknownInfohashIsUnavailableWithinTheConfiguredTimeout() async throws {
        // On the service's own (manual) clock: open at 1999 ms, UNAVAILABLE at 2 s, however loaded
        // the machine is.
        let clock = ManualClock()
        let setup = try await Setup(.aria2, size: 100_000, resolveTimeout: .seconds(2), clock: clock)
        // An infohash nobody seeds; the seeder is offered as a peer but does not have it.
        let unknown = try HashName(magnet: "magnet:?xt=urn:btih:\(String(repeating: "ab", count: 20))&x.pe=\(setup.seeder.host):\(setup.seeder.port)")
        let requester = setup.rig.requester()
        let answer = Task { () -> DBEndReason? in
            do {
                _ = try await requester.fileInfo(unknown)
            } catch FetchError.refused(let r, _) {
                return r
            }
            return nil
        }
        // The stream's watchdog wakes every quarter of the timeout (500 ms) to check the deadline.
        for step in [Duration.milliseconds(500), .milliseconds(500), .milliseconds(500), .milliseconds(499)] {
            #expect(await eventually { clock.sleeping == 1 }, "the watchdog is not waiting")
            clock.advance(by: step)
        }
        #expect(await eventually { clock.sleeping == 1 })
        #expect(await setup.rig.service.activeStreams == 1, "answered before the resolve timeout")
        clock.advance(by: .milliseconds(1))
        let answered = await eventually { await setup.rig.service.activeStreams == 0 }
        #expect(answered, "no answer at the resolve timeout")
        let reason = answered ? try await answer.value : nil
        await setup.stop()
        #expect(reason == .unavailable)
    }

    @Test(.privateNetwork)
    func badMagnetIsBadRequestAtOnce() async throws {
        let setup = try await Setup(.aria2, size: 1000)
        let started = ContinuousClock.now
        var reason: DBEndReason?
        do {
            _ = try await setup.rig.requester().fileInfo(try HashName(magnet: "magnet:?dn=no-infohash"))
        } catch FetchError.refused(let r, _) {
            reason = r
        }
        let elapsed = seconds(ContinuousClock.now - started)
        await setup.stop()
        #expect(reason == .badRequest)
        #expect(elapsed < 2)
    }
}

/// Info queries leave a torrent hold for the data query that usually follows; idle holds must never
/// make a live query BUSY. An engine with room for one torrent: the second name's query evicts the
/// first name's hold instead of being refused.
@Suite(.serialized) struct IdleHoldSeederTests {
    @Test(.privateNetwork)
    func anIdleInfoHoldNeverMakesALiveQueryBusy() async throws {
        let scratch = try TemporaryDirectory("peersm-idle-holds")
        var fixtures: [TorrentFixture] = []
        var seeders: [Seeder] = []
        defer { for seeder in seeders { seeder.stop() } }
        for i in 0..<2 {
            let dir = scratch.url.appendingPathComponent("seed\(i)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let fixture = try TorrentFixture(in: dir, name: "payload\(i).bin", size: 100_000 + i, pieceKiB: 64)
            fixtures.append(fixture)
            seeders.append(try await Seeder.start(.aria2, seeding: fixture, directory: dir))
        }
        var settings = TorrentEngineSettings.loopbackTest(dataDirectory: scratch.url.appendingPathComponent("engine").path)
        settings.maxConcurrentTorrents = 1
        let engine = try TorrentEngine(settings: settings)
        let rig = try LoopbackRig(source: TorrentContentSource(engine: engine, linger: .seconds(60)))
        let outcome: Result<[FileInfo], Error> = await Result(asyncCatching: {
            var infos: [FileInfo] = []
            for (fixture, seeder) in zip(fixtures, seeders) {
                let name = try HashName(magnet: "\(fixture.magnet)&x.pe=\(seeder.host):\(seeder.port)")
                infos.append(try await rig.requester().fileInfo(name))
            }
            return infos
        })
        await rig.stop()
        await engine.shutdown()
        let infos = try outcome.get()
        #expect(infos.map(\.size) == [100_000, 100_001])
    }
}

/// The disk check itself finds content where it is, in part or whole, at any depth.
@Test func contentOnDiskCheckFindsAnyWrittenPiece() throws {
    let scratch = try TemporaryDirectory("content-on-disk")
    let content = Data(testBytes(300_000, seed: 8))
    let nested = scratch.url.appendingPathComponent("a/.b")
    try FileManager.default.createDirectory(at: nested, withIntermediateDirectories: true)
    try Data(testBytes(100_000, seed: 9)).write(to: nested.appendingPathComponent("other.bin"))
    #expect(filesHoldingContent(content, under: [scratch.url]).isEmpty)
    let piece = nested.appendingPathComponent(".piece")
    try (Data("header".utf8) + content.subdata(in: 200_000..<232_768)).write(to: piece)
    #expect(filesHoldingContent(content, under: [scratch.url]) == [piece.path])
    let tail = scratch.url.appendingPathComponent("tail")
    try content.suffix(100).write(to: tail)
    #expect(filesHoldingContent(content, under: [scratch.url, scratch.url.appendingPathComponent("missing")]).count == 2)
}

final class WordLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ w: String) { lock.lock(); list.append(w); lock.unlock() }
    var words: [String] { lock.lock(); defer { lock.unlock() }; return list }
}
