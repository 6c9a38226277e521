import Foundation

/// Everything the daemon can set. Defaults are the safe ones: loopback only, no DHT, no incoming
/// connections, nothing from the swarm kept beyond the memory budget.
public struct TorrentEngineSettings: Sendable {
    /// libtorrent `listen_interfaces`. Going public is an explicit choice (e.g. "0.0.0.0:6881").
    public var listenInterfaces = "127.0.0.1:0"
    /// Accept incoming peer connections. Off: we only connect out, so we are not listed as reachable.
    public var acceptIncoming = false
    /// Use uTP as well as TCP. On loopback uTP's congestion control caps throughput far below TCP.
    public var enableUTP = true
    /// Run a read-only (BEP 43) DHT node; torrents never announce. Off by default.
    public var dhtEnabled = false
    /// DHT bootstrap routers as "host:port"; empty by default (tests must keep it empty).
    public var dhtBootstrapNodes: [String] = []
    /// DHT nodes added to the routing table at start ("host:port"), e.g. local test nodes.
    public var dhtNodes: [String] = []
    /// Let DHT routing and lookups use several nodes per IP / private addresses (loopback tests).
    public var dhtAllowLocalNodes = false
    /// Keep the trackers named in a magnet/.torrent. Any announce lists our address, so off by default.
    public var useTrackers = false
    /// Which peers (x.pe) and DHT nodes (dht=) written inside a magnet link are used. The link may
    /// come from an anonymous requester: by default only public addresses are dialled, never
    /// loopback or the LAN. Under `.publicOnly` the engine's ip_filter also blocks every non-public
    /// range, whatever the source (DHT, trackers, the API), so nobody can point the exit at the LAN;
    /// `.any` and `.ignored` leave peers from other sources alone.
    public var magnetPeers: MagnetPeerPolicy = .publicOnly
    /// Bytes of pieces held in memory across all streams; bounds the read-ahead window.
    public var memoryBudget = 64 << 20
    /// Most pieces one stream asks for ahead of its consumer (also bounded by the memory budget).
    public var maxReadAheadPieces = 64
    /// How long to wait for a magnet's metadata before giving up.
    public var metadataTimeout: Duration = .seconds(60)
    /// How long a stream waits for its next piece before failing with `stalled`.
    public var stallTimeout: Duration = .seconds(120)
    /// How many torrents may be open at once; further requests fail with `tooManyTorrents`.
    public var maxConcurrentTorrents = 16
    /// Largest `.data` chunk a stream yields.
    public var chunkSize = 256 << 10
    /// libtorrent needs a save path; the in-memory store never writes to it.
    public var dataDirectory: String = FileManager.default.temporaryDirectory.appendingPathComponent("peersm-torrent").path
    /// Peer connection limit (0: libtorrent default).
    public var connectionsLimit = 0

    public init() {}

    /// Settings for loopback tests: TCP only, everything local (a magnet's x.pe seeder is on loopback).
    public static func loopbackTest(dataDirectory: String) -> TorrentEngineSettings {
        var s = TorrentEngineSettings()
        s.enableUTP = false
        s.magnetPeers = .any
        s.dataDirectory = dataDirectory
        s.dhtAllowLocalNodes = true
        s.stallTimeout = .seconds(60)
        return s
    }
}
