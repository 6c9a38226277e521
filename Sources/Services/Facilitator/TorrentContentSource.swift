import Foundation
import NIOCore
import PeersmProtocol
import TorrentEngine

/// The production `ContentSource`: the torrent engine, in free-rider mode. A hash_name is a 20-byte
/// infohash or a magnet link (BEP 9; `x.pe` peers are used). The largest file of the torrent is served.
///
/// A torrent stays in the engine while a query uses it. With `linger` > 0 an info query's torrent
/// stays until the data query that usually follows takes it over (no second metadata fetch); after a
/// data query it always goes at once, because the engine does not re-download pieces it already
/// relayed and dropped while a torrent stays open, and a resumed query needs those pieces again.
/// `linger` is 0 by default: with TorrentEngine as of this writing, a torrent held open without a
/// stream can stall the stream that follows (seen with aria2c seeders; engine issue reported). The
/// cost is one metadata fetch per query; transmission-cli seeders can be slow to serve it again.
public struct TorrentContentSource: ContentSource {
    public let engine: TorrentEngine
    public let linger: Duration
    /// Peers added to every torrent (a local seeder in tests and the demo; empty in production).
    public let extraPeers: [PeerEndpoint]

    private let lingering = LingeringHolds()

    public init(engine: TorrentEngine, linger: Duration = .zero, extraPeers: [PeerEndpoint] = []) {
        self.engine = engine
        self.linger = linger
        self.extraPeers = extraPeers
    }

    /// The engine's name for a hash_name: the magnet link, or the infohash as 40 hex digits.
    public static func engineName(_ name: HashName) throws -> String {
        if let magnet = name.magnet {
            guard name.infohash != nil else { throw ContentError(.badRequest, "magnet link without a v1 xt=urn:btih") }
            return magnet
        }
        if name.bytes.count == 20 { return name.bytes.map { String(format: "%02x", $0) }.joined() }
        throw ContentError(.badRequest, "hash_name is neither a 20-byte infohash nor a magnet link")
    }

    public func open(_ name: HashName, progress: @escaping @Sendable (ProgressState) async -> Void) async throws -> any ContentFile {
        let engineName = try Self.engineName(name)
        // `open` holds the torrent and waits for its metadata; the progress words are the engine's
        // stream words (torrent: looking it up; start: metadata in, pieces next). A zero-length range
        // stream is not used for this: its piece deadlines can outlive it and race the real range.
        await progress(.torrent)
        do {
            let (id, metadata) = try await engine.open(engineName, peers: extraPeers)
            // Our own hold now keeps the torrent: give back the one an earlier info query left.
            if let previous = lingering.take(engineName) { await engine.close(previous) }
            guard let file = metadata.largestFile else {
                await engine.close(id)
                throw ContentError(.unavailable, "the torrent has no file")
            }
            await progress(.start)
            return TorrentContentFile(
                engine: engine, torrent: id, name: engineName, fileIndex: file.index,
                size: UInt64(file.size), mimeType: file.mimeType, linger: linger, peers: extraPeers, lingering: lingering)
        } catch {
            throw Self.contentError(error)
        }
    }

    static func contentError(_ error: Error) -> Error {
        guard let e = error as? TorrentEngineError else { return error }
        switch e {
        case .invalidHashName(let why): return ContentError(.badRequest, why)
        case .metadataTimeout, .torrentFailed: return ContentError(.unavailable, e.description)
        case .rangeNotSatisfiable, .noSuchFile: return ContentError(.range, e.description)
        case .torrentRemoved, .engineStopped: return ContentError(.destroyed, e.description)
        case .tooManyTorrents: return ContentError(.busy, e.description)
        case .invalidArgument, .libtorrent: return ContentError(.unavailable, e.description)
        }
    }
}

final class TorrentContentFile: ContentFile, @unchecked Sendable {
    // @unchecked: `held` is guarded by `lock`; everything else is immutable.
    let engine: TorrentEngine
    let torrent: TorrentID
    let name: String
    let fileIndex: Int
    let size: UInt64
    let mimeType: String
    let linger: Duration
    let peers: [PeerEndpoint]
    let lingering: LingeringHolds
    private let lock = NSLock()
    private var held = true
    private var streamed = false

    init(engine: TorrentEngine, torrent: TorrentID, name: String, fileIndex: Int, size: UInt64, mimeType: String,
         linger: Duration, peers: [PeerEndpoint], lingering: LingeringHolds) {
        self.lingering = lingering
        self.engine = engine
        self.torrent = torrent
        self.name = name
        self.fileIndex = fileIndex
        self.size = size
        self.mimeType = mimeType
        self.linger = linger
        self.peers = peers
    }

    /// Our `open` reference, given back exactly once.
    private func takeHold() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let had = held
        held = false
        return had
    }

    func read(_ range: Range<UInt64>) async throws -> AsyncThrowingStream<ByteBuffer, Error> {
        lock.lock()
        streamed = true
        lock.unlock()
        let (engine, name, fileIndex, peers) = (self.engine, self.name, self.fileIndex, self.peers)
        var iterator: AsyncThrowingStream<TorrentStreamEvent, Error>.AsyncIterator?
        return AsyncThrowingStream(unfolding: {
            do {
                if iterator == nil { iterator = try await self.startStream(engine, name, range, fileIndex, peers) }
                while let event = try await iterator!.next() {
                    if case .data(let data) = event {
                        // The stream now holds the torrent: drop our hold so it goes when the stream ends.
                        if self.takeHold() { await engine.close(self.torrent) }
                        return ByteBuffer(bytes: data)
                    }
                }
                return nil
            } catch {
                throw TorrentContentSource.contentError(error)
            }
        })
    }

    /// Starts the range stream and waits for its `ready`. The engine refuses a range whose pieces it
    /// already relayed and dropped while the torrent stayed open (a resumed query right after the
    /// stream it replaces): we wait briefly for that torrent to go, then remove it so the range is
    /// fetched afresh (other streams on it end with DESTROYED and their requesters resume).
    private func startStream(_ engine: TorrentEngine, _ name: String, _ range: Range<UInt64>, _ fileIndex: Int,
                             _ peers: [PeerEndpoint]) async throws -> AsyncThrowingStream<TorrentStreamEvent, Error>.AsyncIterator {
        var attempt = 0
        while true {
            var iterator = try await engine.stream(name, offset: Int64(range.lowerBound), length: Int64(range.count),
                                                   fileIndex: fileIndex, peers: peers).makeAsyncIterator()
            do {
                while let event = try await iterator.next() {
                    if case .ready = event { return iterator }
                }
                throw ContentError(.destroyed, "the torrent stream ended before its range started")
            } catch TorrentEngineError.torrentFailed(_, let reason) where reason.contains("already relayed") && attempt < 6 {
                attempt += 1
                if attempt < 5 {
                    try await Task.sleep(for: .milliseconds(100))
                } else if let id = (await engine.openTorrents).first(where: { $0 == torrent }) {
                    await engine.remove(id)
                }
            }
        }
    }

    func close() async {
        guard takeHold() else { return }
        lock.lock()
        let lingers = !streamed && linger > .zero
        lock.unlock()
        guard lingers else { return await engine.close(torrent) }
        lingering.put(name, torrent, engine: engine, for: linger)
    }
}

/// Torrent holds left by info queries, by engine name: taken over by the next query of the same
/// torrent, or given back after the linger time.
final class LingeringHolds: @unchecked Sendable {
    // @unchecked: all state is guarded by `lock`.
    private let lock = NSLock()
    private var holds: [String: [(id: TorrentID, serial: UInt64)]] = [:]
    private var serial: UInt64 = 0

    func put(_ name: String, _ id: TorrentID, engine: TorrentEngine, for linger: Duration) {
        lock.lock()
        serial += 1
        let mine = serial
        holds[name, default: []].append((id, mine))
        lock.unlock()
        Task {
            try? await Task.sleep(for: linger)
            if self.remove(name, serial: mine) { await engine.close(id) }
        }
    }

    func take(_ name: String) -> TorrentID? {
        lock.lock()
        defer { lock.unlock() }
        guard var list = holds[name], !list.isEmpty else { return nil }
        let first = list.removeFirst()
        holds[name] = list.isEmpty ? nil : list
        return first.id
    }

    private func remove(_ name: String, serial: UInt64) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let index = holds[name]?.firstIndex(where: { $0.serial == serial }) else { return false }
        holds[name]!.remove(at: index)
        if holds[name]!.isEmpty { holds[name] = nil }
        return true
    }
}
