import Foundation
import NIOCore
import PeersmProtocol
import TorrentEngine

/// The production `ContentSource`: the torrent engine, in free-rider mode. A hash_name is a 20-byte
/// infohash or a magnet link (BEP 9; `x.pe` peers are used). The largest file of the torrent is served.
///
/// Each query runs exactly one engine range stream, which holds the torrent for as long as it runs:
/// an info query a zero-length range (the engine's progress words, then the file's size and type),
/// a data query the range from its first byte to the end of the file, of which only the bytes the
/// answer needs are consumed before the stream is dropped. The engine starts fetching as soon as the
/// metadata is in, with no gap between resolution and reading. (Holding a torrent with
/// `TorrentEngine.open` and streaming later can stall the stream: the pieces are downloaded while no
/// stream waits and are never handed over — engine issue reported.)
public struct TorrentContentSource: ContentSource {
    public let engine: TorrentEngine
    /// Peers added to every torrent (a local seeder in tests; empty in production).
    public let extraPeers: [PeerEndpoint]
    /// How long an info query's torrent is kept for the data query that usually follows.
    public let linger: Duration
    /// Finds peers for an infohash before its torrent is added (the daemon's spy-aware DHT lookup,
    /// which runs outside the engine so that libtorrent's own unfiltered DHT can stay off). Called
    /// once per query; it reports its own failures and returns what it found, possibly nothing.
    public let peerDiscovery: PeerDiscovery?
    public typealias PeerDiscovery = @Sendable (_ infohash: [UInt8]) async -> [PeerEndpoint]
    private let lingering = LingeringHolds()

    public init(engine: TorrentEngine, extraPeers: [PeerEndpoint] = [], linger: Duration = .seconds(30),
                peerDiscovery: PeerDiscovery? = nil) {
        self.engine = engine
        self.extraPeers = extraPeers
        self.linger = linger
        self.peerDiscovery = peerDiscovery
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

    public func open(_ name: HashName, readFrom: UInt64?, progress: @escaping @Sendable (ProgressState) async -> Void) async throws -> any ContentFile {
        let engineName = try Self.engineName(name)
        let offset = readFrom ?? 0
        var peers = extraPeers
        if let discover = peerDiscovery, let infohash = name.infohash {
            peers += await discover(infohash).filter { !peers.contains($0) }
        }
        var attempt = 0
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
                            // and re-adding the same torrent at once has stalled range streams.
                            if let (id, _) = try? await engine.open(engineName, peers: peers) {
                                lingering.put(engineName, id, engine: engine, for: linger)
                            }
                        } else if let held = lingering.take(engineName) {
                            // Our range stream holds the torrent now: give back the info query's hold.
                            await engine.close(held)
                        }
                        return TorrentRangeFile(size: UInt64(info.fileSize), mimeType: info.mimeType,
                                                start: offset, iterator: readFrom == nil ? nil : iterator)
                    }
                }
                throw ContentError(.unavailable, "the torrent stream ended before its metadata")
            } catch TorrentEngineError.rangeNotSatisfiable(_, _, let fileSize) where fileSize >= 0 {
                // Reading from the end or past it: the size is all the answer needs (empty or RANGE).
                return TorrentRangeFile(size: UInt64(fileSize), mimeType: "application/octet-stream", start: offset, iterator: nil)
            } catch TorrentEngineError.torrentFailed(_, let reason) where reason.contains("already relayed") && attempt < 20 {
                // A resumed query can arrive while the stream it replaces still holds the torrent with
                // pieces the engine dropped after relaying them; once that stream ends the torrent goes.
                attempt += 1
                try await Task.sleep(for: .milliseconds(100))
            } catch {
                throw Self.contentError(error)
            }
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
        case .stalled: return ContentError(.timeout, e.description)   // the swarm stopped delivering
        case .invalidArgument, .libtorrent: return ContentError(.unavailable, e.description)
        }
    }
}


/// One query's view of the engine stream: the file's size and type, and (data queries) the live
/// range stream from `start`.
final class TorrentRangeFile: ContentFile, @unchecked Sendable {
    // @unchecked: the iterator is taken once under `lock`, then owned by the reading task.
    let size: UInt64
    let mimeType: String
    let start: UInt64
    private let lock = NSLock()
    private var iterator: AsyncThrowingStream<TorrentStreamEvent, Error>.AsyncIterator?

    init(size: UInt64, mimeType: String, start: UInt64, iterator: AsyncThrowingStream<TorrentStreamEvent, Error>.AsyncIterator?) {
        self.size = size
        self.mimeType = mimeType
        self.start = start
        self.iterator = iterator
    }

    private func takeIterator() -> AsyncThrowingStream<TorrentStreamEvent, Error>.AsyncIterator? {
        lock.lock()
        defer { lock.unlock() }
        let it = iterator
        iterator = nil
        return it
    }

    func read(_ range: Range<UInt64>) async throws -> AsyncThrowingStream<ByteBuffer, Error> {
        guard range.lowerBound == start else { throw ContentError(.unavailable, "read from \(range.lowerBound), opened at \(start)") }
        if range.isEmpty { return AsyncThrowingStream { $0.finish() } }
        guard var events = takeIterator() else { throw ContentError(.unavailable, "no range stream for this file") }
        var remaining = UInt64(range.count)
        return AsyncThrowingStream(unfolding: {
            guard remaining > 0 else { return nil }
            do {
                while let event = try await events.next() {
                    guard case .data(let data) = event else { continue }
                    let take = Int(min(UInt64(data.count), remaining))
                    remaining -= UInt64(take)
                    return ByteBuffer(bytes: take == data.count ? data : data.prefix(take))
                }
                throw ContentError(.destroyed, "the torrent stream ended \(remaining) bytes early")
            } catch {
                throw TorrentContentSource.contentError(error)
            }
        })
    }

    /// Drops the range stream (the engine ends it and lets the torrent go).
    func close() async { _ = takeIterator() }
}

/// Torrent holds left by info queries, by engine name: given back by the next query of the same
/// torrent once its own stream holds it, or after the linger time.
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
