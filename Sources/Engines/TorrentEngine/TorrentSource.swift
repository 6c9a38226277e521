import Foundation
import NetBasics

/// What a requester names: a magnet link, a bare 40-hex BitTorrent v1 info-hash, or .torrent bytes.
public enum TorrentSource: Sendable, Equatable {
    case magnet(String)
    case infoHash(String)
    case torrentFile([UInt8])

    /// Parses a Peersm hash_name: `magnet:?…` or 40 hexadecimal digits (case-insensitive).
    /// Anything else is refused here, before libtorrent sees it.
    public init(hashName: String) throws {
        let s = hashName.trimmingCharacters(in: .whitespacesAndNewlines)
        if s.lowercased().hasPrefix("magnet:?") {
            // Read as libtorrent reads it. A btih that is malformed or ambiguous is refused here:
            // libtorrent would fetch a hash that the rest (the spy hunt) cannot know.
            guard try Self.btih(s) != nil || Self.xtValues(s).contains(where: { $0.hasPrefix("urn:btmh:") }) else {
                throw TorrentEngineError.invalidHashName("magnet link without an xt=urn:btih/btmh info-hash")
            }
            self = .magnet(s)
        } else if TorrentSource.isInfoHash(s) {
            self = .infoHash(s.lowercased())
        } else {
            throw TorrentEngineError.invalidHashName(
                "expected a magnet link or a 40-hex-digit info-hash, got \(s.count) characters")
        }
    }

    static func isInfoHash(_ s: String) -> Bool {
        s.utf8.count == 40 && Hex.decode(s) != nil
    }

    /// The v1 info-hash of a magnet link's `xt=urn:btih:`, lowercase hex, read as libtorrent reads
    /// it (NetBasics' `MagnetLink`, which PeersmProtocol's `HashName.infohash` uses too); nil when
    /// it names none. A btih libtorrent would misread (malformed, or two different) is refused.
    static func btih(_ uri: String) throws(TorrentEngineError) -> String? {
        do { return try MagnetLink.btih(uri).map { Hex.encode($0) } } catch { throw .invalidHashName(error.description) }
    }

    static func xtValues(_ uri: String) throws(TorrentEngineError) -> [String] {
        do { return try MagnetLink.xtValues(uri) } catch { throw .invalidHashName(error.description) }
    }
}

/// Maps file names to MIME types for DB_CONNECTED. Only the types a streaming client cares about;
/// the rest is application/octet-stream.
public enum MIMEType {
    static let table: [String: String] = [
        "mp4": "video/mp4", "m4v": "video/mp4", "webm": "video/webm", "mkv": "video/x-matroska",
        "avi": "video/x-msvideo", "mov": "video/quicktime", "ogv": "video/ogg", "mpg": "video/mpeg",
        "mpeg": "video/mpeg", "ts": "video/mp2t", "flv": "video/x-flv", "wmv": "video/x-ms-wmv",
        "mp3": "audio/mpeg", "m4a": "audio/mp4", "aac": "audio/aac", "ogg": "audio/ogg", "oga": "audio/ogg",
        "opus": "audio/opus", "flac": "audio/flac", "wav": "audio/wav", "weba": "audio/webm",
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
        "svg": "image/svg+xml", "pdf": "application/pdf", "txt": "text/plain", "html": "text/html",
        "htm": "text/html", "css": "text/css", "js": "text/javascript", "json": "application/json",
        "epub": "application/epub+zip", "zip": "application/zip", "gz": "application/gzip",
        "tar": "application/x-tar", "iso": "application/x-iso9660-image", "srt": "application/x-subrip",
        "vtt": "text/vtt",
    ]

    public static func forFileName(_ name: String) -> String {
        let base = name.split(separator: "/").last.map(String.init) ?? name
        guard let dot = base.lastIndex(of: "."), dot != base.startIndex else { return "application/octet-stream" }
        return table[base[base.index(after: dot)...].lowercased()] ?? "application/octet-stream"
    }
}
