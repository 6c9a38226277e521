import CTorrent
import Foundation

/// A libtorrent alert as the engine uses it: one case per kind, each with only the fields that
/// kind fills in (the shim's `ct_alert` is one C struct whose fields mean different things per kind).
enum LibtorrentAlert: Sendable {
    /// Where a peer alert came from. `torrent` is nil for session-level alerts (e.g. a blocked
    /// incoming connection).
    struct Peer: Sendable {
        let torrent: UInt64?
        let address: String
        let port: UInt16
        let message: String
    }

    enum PeerKind: Sendable, Equatable {
        case connected, disconnected, connectFailed, error, snubbed, blockTimeout, banned
        /// `reason` is libtorrent's peer_blocked_alert::reason_t (0: the ip_filter).
        case blocked(reason: Int32)
    }

    case metadataReceived(torrent: UInt64)
    /// A peer sent metadata that failed its check.
    case metadataFailed(message: String)
    case pieceFinished(torrent: UInt64, piece: Int)
    case hashFailed(Peer, piece: Int)
    /// libtorrent stopped the torrent (a torrent or file error).
    case torrentFailed(torrent: UInt64, message: String)
    case peer(PeerKind, Peer)
    case listenSucceeded
    /// A peer found by a `dhtGetPeers` lookup.
    case dhtPeer(infoHash: [UInt8], peer: PeerEndpoint)
    /// A node answered a direct get_peers (`answered` false: it answered with an error).
    case dhtNodeReply(cookie: UInt64, nodeID: [UInt8], answered: Bool)
    /// A peer the node returned.
    case dhtNodePeer(cookie: UInt64, peer: PeerEndpoint)
    /// A closer node the node named.
    case dhtNodeContact(cookie: UInt64, nodeID: [UInt8], node: PeerEndpoint)
    case dhtNodeTimeout(cookie: UInt64)
    /// libtorrent's alert queue overflowed: some alerts were lost.
    case alertsDropped
    case other(kind: Int32)

    init(_ a: ct_alert) {
        let torrent = a.torrent
        let peer = Peer(torrent: torrent == 0 ? nil : torrent, address: cString(a.address), port: a.port,
                        message: cString(a.message))
        let second = PeerEndpoint(host: cString(a.address2), port: a.port2)
        let nodeID = withUnsafeBytes(of: a.node_id) { Array($0) }
        switch Int(a.kind) {
        case Int(CT_ALERT_METADATA_RECEIVED): self = .metadataReceived(torrent: torrent)
        case Int(CT_ALERT_METADATA_FAILED): self = .metadataFailed(message: peer.message)
        case Int(CT_ALERT_PIECE_FINISHED): self = .pieceFinished(torrent: torrent, piece: Int(a.piece))
        case Int(CT_ALERT_HASH_FAILED): self = .hashFailed(peer, piece: Int(a.piece))
        case Int(CT_ALERT_TORRENT_ERROR), Int(CT_ALERT_FILE_ERROR): self = .torrentFailed(torrent: torrent, message: peer.message)
        case Int(CT_ALERT_PEER_CONNECTED): self = .peer(.connected, peer)
        case Int(CT_ALERT_PEER_DISCONNECTED): self = .peer(.disconnected, peer)
        case Int(CT_ALERT_PEER_CONNECT_FAILED): self = .peer(.connectFailed, peer)
        case Int(CT_ALERT_PEER_BLOCKED): self = .peer(.blocked(reason: a.reason), peer)
        case Int(CT_ALERT_PEER_ERROR): self = .peer(.error, peer)
        case Int(CT_ALERT_PEER_SNUBBED): self = .peer(.snubbed, peer)
        case Int(CT_ALERT_BLOCK_TIMEOUT): self = .peer(.blockTimeout, peer)
        case Int(CT_ALERT_PEER_BANNED): self = .peer(.banned, peer)
        case Int(CT_ALERT_LISTEN_SUCCEEDED): self = .listenSucceeded
        case Int(CT_ALERT_DHT_PEER):
            self = .dhtPeer(infoHash: withUnsafeBytes(of: a.info_hash) { Array($0) },
                            peer: PeerEndpoint(host: peer.address, port: peer.port))
        case Int(CT_ALERT_DHT_NODE_REPLY): self = .dhtNodeReply(cookie: a.cookie, nodeID: nodeID, answered: a.error_code == 0)
        case Int(CT_ALERT_DHT_NODE_PEER): self = .dhtNodePeer(cookie: a.cookie, peer: second)
        case Int(CT_ALERT_DHT_NODE_CONTACT): self = .dhtNodeContact(cookie: a.cookie, nodeID: nodeID, node: second)
        case Int(CT_ALERT_DHT_NODE_TIMEOUT): self = .dhtNodeTimeout(cookie: a.cookie)
        case Int(CT_ALERT_ALERTS_DROPPED): self = .alertsDropped
        default: self = .other(kind: a.kind)
        }
    }
}

/// A dedicated thread that blocks in libtorrent's wait_for_alert and hands batches, in order, to
/// the engine through an AsyncStream. (Blocking must not happen on Swift's cooperative pool.)
final class AlertPump: @unchecked Sendable {
    private let session: LibtorrentSession
    private let continuation: AsyncStream<[LibtorrentAlert]>.Continuation
    private let lock = NSLock()
    private var stopping = false
    private let stopped = DispatchSemaphore(value: 0)

    init(session: LibtorrentSession, continuation: AsyncStream<[LibtorrentAlert]>.Continuation) {
        self.session = session
        self.continuation = continuation
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "libtorrent-alerts"
        thread.start()
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private func run() {
        let capacity = 512
        var buffer = [ct_alert](repeating: ct_alert(), count: capacity)
        while !isStopping {
            guard session.waitForAlerts(timeoutMilliseconds: 100) else { continue }
            while true {
                let batch = session.popAlerts(&buffer)
                if batch.isEmpty { break }
                continuation.yield(batch)
                if batch.count < capacity { break }
            }
        }
        continuation.finish()
        stopped.signal()
    }

    /// Stops the thread and waits for it (at most one wait_for_alert period).
    func stop() {
        lock.lock()
        let already = stopping
        stopping = true
        lock.unlock()
        if !already { stopped.wait() }
    }
}
