import Blocklists
import Foundation
import Logging
import TorrentEngine

/// `[blocklists] hunt…` settings: the spy hunt that finds peers before each fetch.
public struct HuntSettings: Sendable {
    /// Off by default: hunting talks to the DHT (UDP to the bootstrap nodes and whoever they name),
    /// and a default config must not send a packet beyond loopback. Turn it on, rather than
    /// torrent.dht, whenever the facilitator should find peers on the DHT.
    public var enabled = false
    /// Where each hunt's walk starts ("host:port"; names resolved at each hunt). Required when enabled.
    public var bootstrapNodes: [String] = []
    /// The hunt engine's DHT socket. Loopback by default; a public DHT needs e.g. "0.0.0.0:0".
    public var listen = "127.0.0.1:0"
    public var timeout: Duration = .seconds(20)
    public var reuse: Duration = .seconds(120)

    public init() {}

    /// The second engine's settings: DHT on (read-only, BEP 43, as every engine of ours), no
    /// torrents ever, no incoming connections, and no bootstrap of its own: libtorrent's routing
    /// table maintenance is not filtered by the blocklist (2.0.8), so the only DHT queries this
    /// node sends are the hunt's own, each checked against the blocklist first. `addresses` is the
    /// daemon's `[torrent] magnet_peers`, so both engines share one address policy.
    func engineSettings(dataDirectory: URL, addresses: MagnetPeerPolicy) -> TorrentEngineSettings {
        var s = TorrentEngineSettings()
        s.magnetPeers = addresses
        s.listenInterfaces = listen
        s.dhtEnabled = true
        s.dhtBootstrapNodes = []
        s.acceptIncoming = false
        s.enableUTP = false
        s.useTrackers = false
        s.maxConcurrentTorrents = 1
        s.memoryBudget = 4 << 20
        s.dataDirectory = dataDirectory.appendingPathComponent("hunt").path
        return s
    }
}

/// The running hunt: its engine, its link to the blocklists, and the discovery handed to
/// `TorrentContentSource(peerDiscovery:)`.
struct SpyHunting {
    let engine: TorrentEngine
    let discovery: SpyHuntDiscovery
    private let link: Task<Void, Never>

    static func start(_ settings: HuntSettings, addresses: MagnetPeerPolicy, blocklists: BlocklistService,
                      dataDirectory: URL) async throws -> SpyHunting {
        let engine = try TorrentEngine(settings: settings.engineSettings(dataDirectory: dataDirectory, addresses: addresses),
                                       logger: Logger(label: "peersm.torrent.hunt"))
        // Its ip_filter holds the union too: libtorrent 2.0.11+ applies it to DHT traffic as well
        // (2.0.8 does not; GuardedDHTLookup checks every query itself).
        let link: Task<Void, Never>
        do { link = try await blocklists.attach(engine) } catch {
            await engine.shutdown()
            throw error
        }
        var config = SpyHuntDiscovery.Configuration()
        config.timeout = settings.timeout
        config.reuseWindow = settings.reuse
        // 2 s per node: a walk waits for the slowest of each round of 3 queries, so a long per-query
        // timeout would let a few dead nodes eat the whole hunt budget.
        let discovery = SpyHuntDiscovery(service: blocklists, engine: engine, bootstrap: settings.bootstrapNodes,
                                         configuration: config, queryTimeout: .seconds(2))
        return SpyHunting(engine: engine, discovery: discovery, link: link)
    }

    /// The hunt's peers, under the same address policy as a magnet's own peers: DHT values come from
    /// nodes anyone can run, so a poisoned answer must not make the exit dial its LAN either.
    func peerDiscovery(allowing policy: MagnetPeerPolicy) -> @Sendable ([UInt8]) async -> [PeerEndpoint] {
        { [discovery] in await discovery.peers(for: $0).filter { policy.allows(host: $0.host) } }
    }

    func shutdown() async {
        link.cancel()
        await engine.shutdown()
    }
}
