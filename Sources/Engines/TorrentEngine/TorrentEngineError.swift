import CTorrent

/// Errors of the engine. Descriptions never name the torrent (no info-hash, magnet text or torrent
/// name), because callers log them at default levels; `infoHash` gives it to callers that need it.
public enum TorrentEngineError: Error, Equatable, CustomStringConvertible {
    /// The hash_name is neither a magnet link nor a 40-hex info-hash (or libtorrent refused it).
    case invalidHashName(String)
    /// No peer delivered the metadata in time (nobody has this torrent, or nobody we can reach).
    case metadataTimeout(infoHash: String, seconds: Double)
    /// The asked range does not lie inside the file.
    case rangeNotSatisfiable(offset: Int64, length: Int64?, fileSize: Int64)
    case noSuchFile(index: Int, fileCount: Int)
    /// The torrent was removed (by `remove`, shutdown, or libtorrent) while a stream needed it.
    case torrentRemoved(infoHash: String)
    /// libtorrent stopped the torrent on an error.
    case torrentFailed(infoHash: String, reason: String)
    /// No piece arrived for `stallTimeout` while the consumer waited.
    case stalled(infoHash: String, piece: Int, seconds: Double)
    case tooManyTorrents(limit: Int)
    case invalidArgument(String)
    case engineStopped
    /// A C-shim call failed: the shim's code and message.
    case libtorrent(code: Int32, message: String)

    public var description: String {
        switch self {
        case .invalidHashName(let why): return "invalid hash_name: \(why)"
        case .metadataTimeout(_, let s): return "no metadata for the torrent within \(s) s"
        case .rangeNotSatisfiable(let o, let l, let size):
            return "range offset \(o) length \(l.map(String.init) ?? "to end") is outside the file (\(size) bytes)"
        case .noSuchFile(let i, let n): return "file index \(i) does not exist (torrent has \(n) files)"
        case .torrentRemoved: return "the torrent was removed"
        case .torrentFailed(_, let why): return "the torrent failed: \(why)"
        case .stalled(_, let p, let s): return "piece \(p) did not arrive within \(s) s"
        case .tooManyTorrents(let n): return "already \(n) torrents open (maxConcurrentTorrents)"
        case .invalidArgument(let why): return "invalid argument: \(why)"
        case .engineStopped: return "the torrent engine has been shut down"
        case .libtorrent(let c, let m): return "libtorrent error \(c): \(m)"
        }
    }

    /// The info-hash (lowercase hex) of the torrent the error concerns, when known. Kept out of
    /// `description` so that logging an error does not record what a requester asked for.
    public var infoHash: String? {
        switch self {
        case .metadataTimeout(let ih, _), .torrentRemoved(let ih), .torrentFailed(let ih, _), .stalled(let ih, _, _):
            return TorrentSource.isInfoHash(ih) ? ih : nil
        default: return nil
        }
    }

    /// A stream's range needs a piece that another stream of the same torrent already relayed and
    /// dropped from memory. Not a swarm failure: retry once that stream has ended (the torrent is
    /// then removed, and the next stream starts it afresh). Thrown as `torrentFailed` so callers
    /// that switch over every case keep compiling; test it with `isPieceAlreadyRelayed`.
    public static func pieceAlreadyRelayed(infoHash: String, piece: Int) -> TorrentEngineError {
        .torrentFailed(infoHash: infoHash, reason: "piece \(piece) \(alreadyRelayedMark)")
    }

    /// Whether this is `pieceAlreadyRelayed` (retry later rather than report the torrent failed).
    public var isPieceAlreadyRelayed: Bool {
        guard case .torrentFailed(_, let why) = self else { return false }
        return why.hasSuffix(Self.alreadyRelayedMark)
    }

    /// Still contains "already relayed", which callers matched before `isPieceAlreadyRelayed`.
    static let alreadyRelayedMark = "was already relayed and dropped by another stream"

    /// Turns a shim return code + message into an error (nil on success).
    static func check(_ rc: Int32, _ err: ct_error) -> TorrentEngineError? {
        guard rc != 0 else { return nil }
        let message = withUnsafeBytes(of: err.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        if rc == Int32(CT_EINVAL) { return .invalidArgument(message) }
        return .libtorrent(code: rc, message: message)
    }
}

/// Reads a NUL-terminated fixed-size C char array.
func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self) }
}
