import Foundation
import NIOCore
import PeersmProtocol
import TorrentEngine

/// The production `ContentSource`: the torrent engine, in free-rider mode. A hash_name is a 20-byte
/// infohash or a magnet link (BEP 9; `x.pe` peers are used). The largest file of the torrent is served.
///
/// An opened torrent stays in the engine for `linger` after its file is closed, so the data queries
/// that follow an info query (and resumed queries) find the metadata without asking the swarm again.
public struct TorrentContentSource: ContentSource {
    public let engine: TorrentEngine
    public let linger: Duration
    /// Peers added to every torrent (a local seeder in tests and the demo; empty in production).
    public let extraPeers: [PeerEndpoint]

    public init(engine: TorrentEngine, linger: Duration = .seconds(30), extraPeers: [PeerEndpoint] = []) {
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
        do {
            // A zero-length stream reports the progress words and the chosen file; the torrent is then
            // held with `open` (metadata is there, so it returns at once) before that stream ends.
            var events = try await engine.stream(engineName, offset: 0, length: 0, peers: extraPeers).makeAsyncIterator()
            while let event = try await events.next() {
                switch event {
                case .progress(let p): await progress(ProgressState(rawValue: p.rawValue))
                case .data: continue
                case .ready(let info):
                    let (id, _) = try await engine.open(engineName, peers: extraPeers)
                    while try await events.next() != nil {}
                    return TorrentContentFile(
                        engine: engine, torrent: id, name: engineName, fileIndex: info.fileIndex,
                        size: UInt64(info.fileSize), mimeType: info.mimeType, linger: linger, peers: extraPeers)
                }
            }
            throw ContentError(.unavailable, "the torrent stream ended before its metadata")
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

struct TorrentContentFile: ContentFile {
    let engine: TorrentEngine
    let torrent: TorrentID
    let name: String
    let fileIndex: Int
    let size: UInt64
    let mimeType: String
    let linger: Duration
    let peers: [PeerEndpoint]

    func read(_ range: Range<UInt64>) async throws -> AsyncThrowingStream<ByteBuffer, Error> {
        let events: AsyncThrowingStream<TorrentStreamEvent, Error>
        do {
            events = try await engine.stream(name, offset: Int64(range.lowerBound), length: Int64(range.count),
                                             fileIndex: fileIndex, peers: peers)
        } catch {
            throw TorrentContentSource.contentError(error)
        }
        var iterator = events.makeAsyncIterator()
        return AsyncThrowingStream(unfolding: {
            do {
                while let event = try await iterator.next() {
                    if case .data(let data) = event { return ByteBuffer(bytes: data) }
                }
                return nil
            } catch {
                throw TorrentContentSource.contentError(error)
            }
        })
    }

    func close() async {
        let (engine, torrent, linger) = (self.engine, self.torrent, self.linger)
        Task {
            try? await Task.sleep(for: linger)
            await engine.close(torrent)
        }
    }
}
