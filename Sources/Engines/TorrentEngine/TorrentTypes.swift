import Foundation

/// A torrent in this engine's session (ids are never reused).
public struct TorrentID: Hashable, Sendable, CustomStringConvertible {
    public let raw: UInt64
    public var description: String { "torrent#\(raw)" }
}

public struct PeerEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    public init(host: String, port: UInt16) { self.host = host; self.port = port }
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct TorrentFile: Sendable, Equatable {
    public let index: Int
    public let path: String
    public let size: Int64
    /// Byte offset of the file inside the torrent's concatenated data.
    public let offset: Int64
    public let isPadding: Bool
    public var mimeType: String { MIMEType.forFileName(path) }
}

public struct TorrentMetadata: Sendable, Equatable {
    public let infoHash: String
    public let name: String
    public let pieceLength: Int
    public let pieceCount: Int
    public let totalSize: Int64
    public let files: [TorrentFile]

    /// The file a stream serves by default: the largest non-padding file (as node-Tor did).
    public var largestFile: TorrentFile? {
        files.filter { !$0.isPadding }.max { $0.size < $1.size }
    }
}

/// The seed's status messages while a stream starts (node-Tor's DB_CONNECTED(0, type)).
public enum TorrentProgress: String, Sendable {
    /// The torrent is in the session; looking for peers and metadata.
    case torrent
    /// A DHT lookup for the info-hash has answered (only with the DHT enabled).
    case dhtReady = "dhtready"
    /// Metadata arrived; pieces are being fetched.
    case start
}

public struct TorrentStreamInfo: Sendable, Equatable {
    public let torrent: TorrentID
    public let infoHash: String
    public let fileIndex: Int
    public let fileName: String
    public let fileSize: Int64
    public let mimeType: String
    /// The delivered range, relative to the file.
    public let offset: Int64
    public let length: Int64
}

public enum TorrentStreamEvent: Sendable {
    case progress(TorrentProgress)
    /// The file is chosen and the range checked; `.data` follows, in order.
    case ready(TorrentStreamInfo)
    case data(Data)
}

public struct PeerEvent: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case connected, disconnected
        /// An outgoing connection attempt failed.
        case connectFailed
        /// Refused by the IP filter (or another libtorrent rule; `detail` says which).
        case blocked
        /// A piece failed its hash check (torrent-level, no address) or smart_ban banned the sender.
        case badPiece
        /// The peer stopped answering requests (snubbed) or a block request timed out.
        case requestTimeout
        case error
    }
    public let kind: Kind
    public let address: String
    public let port: UInt16
    public let torrent: TorrentID?
    /// The torrent's v1 info-hash (lowercase hex) when the event concerns one still in the session,
    /// so a consumer can attribute the event after the torrent is gone.
    public let infoHash: String?
    public let detail: String
    public var description: String { "\(kind.rawValue) \(address):\(port) \(detail)" }
}

public struct TorrentStats: Sendable {
    public let state: Int32
    public let paused: Bool
    public let hasMetadata: Bool
    public let peers: Int
    public let seeds: Int
    public let piecesHave: Int
    public let payloadUploaded: Int64
    public let payloadDownloaded: Int64
    public let downloadRate: Int
    public let error: String?
}

public struct PeerStats: Sendable {
    public let endpoint: PeerEndpoint
    public let isSeed: Bool
    public let isUTP: Bool
    public let isIncoming: Bool
    public let weChoke: Bool
    public let peerInterested: Bool
    public let payloadUploaded: Int64
    public let payloadDownloaded: Int64
    public let client: String
}

public struct SessionStats: Sendable {
    /// Payload bytes we sent to anyone, over every torrent ever added (the free-rider invariant: 0).
    public let payloadUploaded: Int64
    public let payloadDownloaded: Int64
    /// Bytes held by the in-memory piece store right now, and at most so far.
    public let storeBytes: Int64
    public let storePeakBytes: Int64
    /// Piece requests that reached the free-rider plugin and were swallowed.
    public let requestsRefused: Int64
    public let torrents: Int
}

/// Per-address counters from peer events, so tests and the blocklist can show who got through.
public struct PeerCounters: Sendable, Equatable {
    public var connected = 0
    public var blocked = 0
    public var connectFailed = 0
}

/// What one DHT node answered to get_peers.
public struct DHTNodeReply: Sendable {
    public let node: PeerEndpoint
    /// The node's id (20 bytes), empty if it did not answer.
    public let nodeID: [UInt8]
    public let answered: Bool
    /// Peers it returned as values for the info-hash.
    public let peers: [PeerEndpoint]
    /// Closer nodes it named (id, endpoint).
    public let closerNodes: [(id: [UInt8], endpoint: PeerEndpoint)]
}
