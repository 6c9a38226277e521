import Foundation
import NIOCore
import NetBasics
import PeersmProtocol
import TorrentEngine

/// The production `ContentSource`: the torrent engine, in free-rider mode. A hash_name is a 20-byte
/// infohash or a magnet link (BEP 9; its `x.pe` peers as the engine's `magnetPeers` policy allows). The largest file of the torrent is served.
///
/// Each query runs on one engine range stream, which holds the torrent for as long as it runs:
/// an info query a zero-length range (the engine's progress words, then the file's size and type),
/// a data query the range from its first byte to the end of the file, of which only the bytes the
/// answer needs are consumed. The engine starts fetching as soon as the metadata is in, with no gap
/// between resolution and reading. (Holding a torrent with `TorrentEngine.open` and streaming later
/// can stall the stream: the pieces are downloaded while no stream waits and are never handed over —
/// engine issue reported.)
///
/// A file larger than one query (31.8 MB) is fetched as consecutive queries. When a data query has
/// read its whole range, its engine stream is parked for `linger`, still fetching ahead; a data query
/// that starts exactly where it stopped continues it instead of opening a new stream. Without that,
/// every query re-added the torrent (metadata, peer connections, the pieces the last one had read
/// ahead): about a second per 31.8 MB on loopback.
public struct TorrentContentSource: ContentSource {
    public let engine: TorrentEngine
    /// Peers added to every torrent (a local seeder in tests; empty in production).
    public let extraPeers: [PeerEndpoint]
    /// How long an info query's torrent, or a finished data query's stream, is kept for the query
    /// that usually follows.
    public let linger: Duration
    /// Finds peers for an infohash before its torrent is added (the daemon's spy-aware DHT lookup,
    /// which runs outside the engine so that libtorrent's own unfiltered DHT can stay off). Called
    /// once per query; it reports its own failures and returns what it found, possibly nothing. A
    /// query that continues a parked stream does not wait for it: the peers it finds join the
    /// running torrent.
    public let peerDiscovery: PeerDiscovery?
    public typealias PeerDiscovery = @Sendable (_ infohash: [UInt8]) async -> [PeerEndpoint]
    /// Info-query holds and parked streams, together at most `maxIdleTorrents`.
    private let idle: IdleTorrents

    /// - Parameter maxIdleTorrents: holds and parked streams kept at once (keep it below the engine's
    ///   `maxConcurrentTorrents`; a live query the engine has no room for evicts them anyway).
    public init(engine: TorrentEngine, extraPeers: [PeerEndpoint] = [], linger: Duration = .seconds(30),
                maxIdleTorrents: Int = 8, peerDiscovery: PeerDiscovery? = nil) {
        self.engine = engine
        self.extraPeers = extraPeers
        self.linger = linger
        self.peerDiscovery = peerDiscovery
        self.idle = IdleTorrents(capacity: maxIdleTorrents) { [engine] id in await engine.close(id) }
    }

    /// The engine's name for a hash_name: the magnet link, or the infohash as 40 hex digits.
    public static func engineName(_ name: HashName) throws -> String {
        if let magnet = name.magnet {
            guard name.infohash != nil else { throw ContentError(.badRequest, "magnet link without a v1 xt=urn:btih") }
            return magnet
        }
        if name.bytes.count == 20 { return Hex.encode(name.bytes) }
        throw ContentError(.badRequest, "hash_name is neither a 20-byte infohash nor a magnet link")
    }

    public func open(_ name: HashName, readFrom: UInt64?, progress: @escaping @Sendable (ProgressState) async -> Void) async throws -> any ContentFile {
        let engineName = try Self.engineName(name)
        let offset = readFrom ?? 0
        if readFrom != nil, let reader = idle.takeParked(engineName, at: offset) {
            if let discover = peerDiscovery, let infohash = name.infohash {
                let (engine, torrent, known) = (engine, reader.torrent, extraPeers)
                Task {
                    for peer in await discover(infohash) where !known.contains(peer) {
                        try? await engine.connectPeer(torrent, peer)
                    }
                }
            }
            return TorrentRangeFile(size: reader.size, mimeType: reader.mimeType, start: offset, reader: reader,
                                    park: parkHook(engineName))
        }
        var peers = extraPeers
        if let discover = peerDiscovery, let infohash = name.infohash {
            peers += await discover(infohash).filter { !peers.contains($0) }
        }
        var attempt = 0
        var busyAttempts = 0
        while true {
            do {
                let events = try await engine.stream(engineName, offset: Int64(clamping: offset),
                                                     length: readFrom == nil ? 0 : nil, peers: peers)
                var iterator = events.makeAsyncIterator()
                while let event = try await iterator.next() {
                    switch event {
                    case .progress(let p): await progress(ProgressState(rawValue: p.rawValue))
                    case .data: continue
                    case .ready(let info):
                        if readFrom == nil, linger > .zero {
                            // Keep the torrent (and its peer connections) for the data query: removing
                            // and re-adding the same torrent at once has stalled range streams. One
                            // hold per name: a repeated info query only extends it.
                            if !idle.refreshHold(engineName, for: linger),
                               let (id, _) = try? await engine.open(engineName, peers: peers) {
                                idle.putHold(engineName, id, for: linger)
                            }
                        } else if let held = idle.takeHold(engineName) {
                            // Our range stream holds the torrent now: give back the info query's hold.
                            await engine.close(held)
                        }
                        let reader = readFrom == nil ? nil : RangeReader(
                            iterator: iterator, torrent: info.torrent, size: UInt64(info.fileSize),
                            mimeType: info.mimeType, position: offset)
                        return TorrentRangeFile(size: UInt64(info.fileSize), mimeType: info.mimeType,
                                                start: offset, reader: reader, park: parkHook(engineName))
                    }
                }
                throw ContentError(.unavailable, "the torrent stream ended before its metadata")
            } catch TorrentEngineError.rangeNotSatisfiable(_, _, let fileSize) where fileSize >= 0 {
                // Reading from the end or past it: the size is all the answer needs (empty or RANGE).
                return TorrentRangeFile(size: UInt64(fileSize), mimeType: "application/octet-stream", start: offset,
                                        reader: nil, park: nil)
            } catch let error as TorrentEngineError where error.isPieceAlreadyRelayed && attempt < 20 {
                // A resumed query can arrive while the stream it replaces still holds the torrent with
                // pieces the engine dropped after relaying them; once that stream ends the torrent goes.
                // A parked stream of this torrent is past those pieces and would hold it for `linger`.
                attempt += 1
                idle.dropParked(engineName)
                try await Task.sleep(for: .milliseconds(100))
            } catch TorrentEngineError.tooManyTorrents(let limit) where busyAttempts < 20 {
                // Idle holds and parked streams must not make a live query BUSY: free the oldest and
                // retry (the engine lets a torrent go shortly after its last stream ends). With nothing
                // idle to free on the first refusal, live queries fill the engine: BUSY it is.
                busyAttempts += 1
                let freed = await idle.evictOldest()
                guard freed || busyAttempts > 1 else { throw Self.contentError(TorrentEngineError.tooManyTorrents(limit: limit)) }
                try await Task.sleep(for: .milliseconds(50))
            } catch {
                throw Self.contentError(error)
            }
        }
    }

    private func parkHook(_ engineName: String) -> @Sendable (RangeReader) -> Void {
        let (idle, linger) = (idle, linger)
        return { reader in idle.park(engineName, reader, for: linger) }
    }

    static func contentError(_ error: Error) -> Error {
        guard let e = error as? TorrentEngineError else { return error }
        switch e {
        case .invalidHashName(let why): return ContentError(.badRequest, why)
        case .metadataTimeout, .torrentFailed: return ContentError(.unavailable, e.description)
        case .rangeNotSatisfiable, .noSuchFile: return ContentError(.range, e.description)
        case .torrentRemoved, .engineStopped: return ContentError(.destroyed, e.description)
        case .tooManyTorrents: return ContentError(.busy, e.description)
        case .stalled: return ContentError(.timeout, e.description)   // the swarm stopped delivering
        case .invalidArgument, .libtorrent: return ContentError(.unavailable, e.description)
        }
    }
}


/// A data query's engine range stream and how far it has been read: handed from one query to the
/// next (through `IdleTorrents`) when they are consecutive. Used by one reading task at a time.
final class RangeReader: @unchecked Sendable {
    // @unchecked: owned by one query's reading task, or by `IdleTorrents` (under its lock) between queries.
    var iterator: AsyncThrowingStream<TorrentStreamEvent, Error>.AsyncIterator
    /// Bytes of the last engine chunk beyond what the previous answer needed.
    var leftover = ByteBuffer()
    let torrent: TorrentID
    let size: UInt64
    let mimeType: String
    /// File offset of the next byte `next` returns.
    private(set) var position: UInt64

    init(iterator: AsyncThrowingStream<TorrentStreamEvent, Error>.AsyncIterator, torrent: TorrentID, size: UInt64,
         mimeType: String, position: UInt64) {
        self.iterator = iterator
        self.torrent = torrent
        self.size = size
        self.mimeType = mimeType
        self.position = position
    }

    /// The next file bytes, at most `limit`.
    func next(limit: UInt64) async throws -> ByteBuffer {
        if leftover.readableBytes == 0 {
            while true {
                guard let event = try await iterator.next() else {
                    throw ContentError(.destroyed, "the torrent stream ended at byte \(position) of \(size)")
                }
                if case .data(let data) = event {
                    leftover = ByteBuffer(bytes: data)
                    break
                }
            }
        }
        let take = Int(min(UInt64(leftover.readableBytes), limit))
        position += UInt64(take)
        return leftover.readSlice(length: take)!
    }
}

/// One query's view of the engine stream: the file's size and type, and (data queries) the live
/// range stream from `start`.
final class TorrentRangeFile: ContentFile, @unchecked Sendable {
    // @unchecked: the reader is taken once under `lock`, then owned by the reading task.
    let size: UInt64
    let mimeType: String
    let start: UInt64
    private let lock = NSLock()
    private var reader: RangeReader?
    /// Where a reader that delivered its whole range goes, for a query that continues from there.
    private let park: (@Sendable (RangeReader) -> Void)?

    init(size: UInt64, mimeType: String, start: UInt64, reader: RangeReader?, park: (@Sendable (RangeReader) -> Void)?) {
        self.size = size
        self.mimeType = mimeType
        self.start = start
        self.reader = reader
        self.park = park
    }

    private func takeReader() -> RangeReader? {
        lock.lock()
        defer { lock.unlock() }
        let it = reader
        reader = nil
        return it
    }

    func read(_ range: Range<UInt64>) async throws -> AsyncThrowingStream<ByteBuffer, Error> {
        guard range.lowerBound == start else { throw ContentError(.unavailable, "read from \(range.lowerBound), opened at \(start)") }
        if range.isEmpty { return AsyncThrowingStream { $0.finish() } }
        guard let reader = takeReader() else { throw ContentError(.unavailable, "no range stream for this file") }
        var remaining = UInt64(range.count)
        let park = self.park
        return AsyncThrowingStream(unfolding: {
            guard remaining > 0 else { return nil }
            do {
                let bytes = try await reader.next(limit: remaining)
                remaining -= UInt64(bytes.readableBytes)
                // Parked before the last bytes are handed over: the next query can only arrive after
                // the requester got them.
                if remaining == 0, reader.position < reader.size { park?(reader) }
                return bytes
            } catch {
                throw TorrentContentSource.contentError(error)
            }
        })
    }

    /// Drops the range stream (the engine ends it and lets the torrent go) unless it was parked.
    func close() async { _ = takeReader() }
}
