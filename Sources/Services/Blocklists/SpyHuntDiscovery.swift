import Foundation
import Logging
import Metrics
import NetBasics
import TorrentEngine

/// The daemon's peer discovery: before a torrent is added, hunt spies for its info-hash (the fake
/// hash walk, probes, then the real hash asked only of nodes that passed; `SpyHunter`) and hand the
/// surviving peers to the fetch. What it convicts is recorded in the `BlocklistService` before this
/// returns, so the fetching engine's ip_filter already refuses it when the torrent is added.
///
/// It never fails a fetch: a hunt is bounded by `timeout`, and a hunt that fails or times out is
/// logged and yields no peers (the query keeps whatever other peers it has, e.g. a magnet's x.pe).
/// An info query is usually followed by data queries for the same torrent, so a hunt's outcome is
/// reused for `reuseWindow`, and concurrent queries for one info-hash share one hunt.
public actor SpyHuntDiscovery {
    public struct Configuration: Sendable {
        /// Upper bound on one hunt, walk and probes included.
        public var timeout: Duration = .seconds(20)
        /// How long a finished hunt's peers serve further queries of the same info-hash.
        public var reuseWindow: Duration = .seconds(120)
        /// How long a failed or timed-out hunt is not retried (a data query right after a failed
        /// info query should not pay the timeout again).
        public var retryAfterFailure: Duration = .seconds(15)
        public init() {}
    }

    /// What one call to `discover` did.
    public enum Outcome: Sendable, Equatable {
        /// A hunt ran: `detections` verdicts recorded, `trustedNodes` asked for the real hash.
        case hunted(detections: Int, trustedNodes: Int)
        /// A recent hunt's result was used again.
        case reused
        case timedOut
        case failed(String)
        /// A recent hunt failed or timed out; not retried yet.
        case backingOff
    }

    public struct Discovery: Sendable {
        public var peers: [IPEndpoint]
        public var outcome: Outcome
        /// Wall time of the hunt this answer comes from (zero when reused).
        public var duration: Duration
    }

    /// Builds the DHT lookup for one hunt; `realInfohash` is the hash it must never send to a
    /// convicted node (see `GuardedDHTLookup`).
    public typealias LookupFactory = @Sendable (_ realInfohash: [UInt8]) async throws -> any DHTPeerLookup

    public nonisolated let configuration: Configuration
    private let service: BlocklistService
    private let makeLookup: LookupFactory
    private let logger: Logger
    /// The timeout's and reuse windows' clock (injected so tests drive it): time since `init`, and a sleep.
    private let now: @Sendable () -> Duration
    private let sleep: @Sendable (Duration) async throws -> Void
    private var recent: [[UInt8]: (result: Discovery, at: Duration)] = [:]
    private var running: [[UInt8]: Task<Discovery, Never>] = [:]

    public init<C: Clock<Duration>>(service: BlocklistService, configuration: Configuration = .init(),
                                    clock: C = ContinuousClock(),
                                    logger: Logger = Logger(label: "peersm.blocklists.hunt"), lookup: @escaping LookupFactory) {
        let origin = clock.now
        self.now = { origin.duration(to: clock.now) }
        self.sleep = { try await clock.sleep(until: clock.now.advanced(by: $0), tolerance: nil) }
        self.service = service
        self.configuration = configuration
        self.logger = logger
        self.makeLookup = lookup
    }

    /// The daemon's hunt: through `engine`'s DHT node (DHT on, no torrents), starting at
    /// `bootstrap` ("host:port"; names are resolved at each hunt), guarded by the blocklist.
    public init(service: BlocklistService, engine: TorrentEngine, bootstrap: [String],
                configuration: Configuration = .init(), queryTimeout: Duration = .seconds(5),
                logger: Logger = Logger(label: "peersm.blocklists.hunt")) {
        self.init(service: service, configuration: configuration, logger: logger) { [service] realInfohash in
            let nodes = try await DHTBootstrap.resolve(bootstrap)
            guard !nodes.isEmpty else { throw DHTBootstrap.Failure(description: "no hunt bootstrap node resolved") }
            return GuardedDHTLookup(engine: engine, bootstrap: nodes, service: service, protecting: realInfohash,
                                    queryTimeout: queryTimeout)
        }
    }

    /// For `TorrentContentSource(peerDiscovery:)`: the peers, in the engine's terms.
    public func peers(for infohash: [UInt8]) async -> [PeerEndpoint] {
        await discover(infohash).peers.map(PeerEndpoint.init)
    }

    public func discover(_ infohash: [UInt8]) async -> Discovery {
        let current = now()
        recent = recent.filter { current - $0.value.at < max(configuration.reuseWindow, configuration.retryAfterFailure) }
        if let (last, at) = recent[infohash] {
            switch last.outcome {
            case .hunted where current - at < configuration.reuseWindow:
                // Peers convicted since (e.g. misbehaving in the previous query) are left out.
                var peers: [IPEndpoint] = []
                for p in last.peers where !((try? await service.isBlocked(p.address)) ?? true) { peers.append(p) }
                count("reused")
                logger.debug("spy hunt reused", metadata: ["peers": "\(peers.count)"])
                return Discovery(peers: peers, outcome: .reused, duration: .zero)
            case .timedOut, .failed:
                guard current - at < configuration.retryAfterFailure else { break }
                count("backing-off")
                logger.debug("spy hunt failed recently; not retried yet")
                return Discovery(peers: [], outcome: .backingOff, duration: .zero)
            default: break
            }
        }
        if let shared = running[infohash] { return await shared.value }
        let task = Task { await self.hunt(infohash) }
        running[infohash] = task
        let result = await task.value
        running[infohash] = nil
        recent[infohash] = (result, now())
        return result
    }

    /// One hunt, bounded by the timeout whether or not the lookup honours cancellation.
    private func hunt(_ infohash: [UInt8]) async -> Discovery {
        let started = now()
        let work = Task { [service, makeLookup] in
            let lookup = try await makeLookup(infohash)
            return try await Self.hunt(infohash, lookup, service)
        }
        let outcome: Result<HuntResult, Error>? = await withCheckedContinuation { continuation in
            let once = ResumeOnce(continuation)
            Task { once.resume(await work.result) }
            Task { [timeout = configuration.timeout, sleep] in
                try? await sleep(timeout)
                once.resume(nil)
            }
        }
        let took = now() - started
        Timer(label: "peersm_spy_hunt_duration_seconds").recordNanoseconds(took.components.seconds * 1_000_000_000 + took.components.attoseconds / 1_000_000_000)
        // Tag only: the log never names the content a requester asked for.
        let tag = await service.torrentTag(for: infohash)
        switch outcome {
        case .success(let r)?:
            count("hunted")
            logger.info("spy hunt found peers", metadata: [
                "torrent": "\(tag)", "peers": "\(r.peers.count)", "spies": "\(Set(r.detections.map(\.address)).count)",
                "trusted-nodes": "\(r.trustedNodes.count)", "ms": "\(took.milliseconds)",
            ])
            return Discovery(peers: r.peers, outcome: .hunted(detections: r.detections.count, trustedNodes: r.trustedNodes.count),
                             duration: took)
        case .failure(let error)?:
            count("failed")
            logger.warning("spy hunt failed; the query goes on with its other peers",
                           metadata: ["torrent": "\(tag)", "error": "\(error)", "ms": "\(took.milliseconds)"])
            return Discovery(peers: [], outcome: .failed("\(error)"), duration: took)
        case nil:
            work.cancel()
            count("timed-out")
            logger.warning("spy hunt timed out; the query goes on with its other peers",
                           metadata: ["torrent": "\(tag)", "ms": "\(took.milliseconds)"])
            return Discovery(peers: [], outcome: .timedOut, duration: took)
        }
    }

    /// Opens the existential lookup for the generic hunt.
    private static func hunt<L: DHTPeerLookup>(_ infohash: [UInt8], _ lookup: L, _ service: BlocklistService) async throws -> HuntResult {
        try await service.hunt(infohash: infohash, lookup: lookup)
    }

    private nonisolated func count(_ outcome: String) {
        Counter(label: "peersm_spy_hunts_total", dimensions: [("outcome", outcome)]).increment()
    }
}

/// Resumes a continuation once; later calls are ignored (the hunt/timeout race).
private final class ResumeOnce<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Never>?
    init(_ c: CheckedContinuation<T, Never>) { continuation = c }
    func resume(_ value: T) {
        let c: CheckedContinuation<T, Never>? = lock.withLock { defer { continuation = nil }; return continuation }
        c?.resume(returning: value)
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}

/// Where a hunt's walk starts: "host:port" entries, IP literals or names.
public enum DHTBootstrap {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Splits "host:port" / "[v6]:port"; nil when malformed (config validation uses this).
    public static func split(_ entry: String) -> (host: String, port: UInt16)? { HostPort.parse(entry) }

    /// Every address each entry names (names through the system resolver, off the cooperative
    /// pool). An entry that does not resolve is skipped; malformed entries throw.
    public static func resolve(_ entries: [String]) async throws -> [IPEndpoint] {
        var out: [IPEndpoint] = []
        for entry in entries {
            guard let (host, port) = split(entry) else { throw Failure(description: "bad DHT node '\(entry)': expected host:port") }
            if let ip = IPAddress(host) {
                out.append(IPEndpoint(address: ip, port: port))
                continue
            }
            for ip in await lookUp(host) where !out.contains(IPEndpoint(address: ip, port: port)) {
                out.append(IPEndpoint(address: ip, port: port))
            }
        }
        return out
    }

    private static func lookUp(_ host: String) async -> [IPAddress] {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var hints = addrinfo()
                hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
                var list: UnsafeMutablePointer<addrinfo>?
                guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else {
                    continuation.resume(returning: [])
                    return
                }
                defer { freeaddrinfo(first) }
                var out: [IPAddress] = []
                var cursor: UnsafeMutablePointer<addrinfo>? = first
                while let ai = cursor {
                    var buf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                    if getnameinfo(ai.pointee.ai_addr, ai.pointee.ai_addrlen, &buf, socklen_t(buf.count), nil, 0, NI_NUMERICHOST) == 0,
                       let ip = IPAddress(String(cString: buf)), !out.contains(ip) {
                        out.append(ip)
                    }
                    cursor = ai.pointee.ai_next
                }
                continuation.resume(returning: out)
            }
        }
    }
}
