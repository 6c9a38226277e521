import Foundation
import Logging
import Metrics
import NetBasics

/// Where the enforced union goes: every libtorrent session (the engine's shim replace call,
/// `session::set_ip_filter` with each range marked blocked). Replacing the filter does not restart
/// torrents; libtorrent disconnects already-connected peers that the new filter blocks.
public protocol IPFilterSink: AnyObject, Sendable {
    /// Replaces the whole filter with `ranges` (sorted, disjoint; IPv4 as IPv4-mapped addresses,
    /// see `IPAddress.isIPv4`/`ipv4`).
    func replaceIPFilter(_ ranges: IPRangeSet) async throws
}

/// The result of importing one list.
public struct ImportReport: Sendable {
    public var list: ListInfo
    /// Malformed lines, as `file:line: reason`.
    public var issues: [ParseIssue]
    /// Valid entries absorbed by merging overlapping ranges.
    public var mergedAway: Int
    public var timings: Timings

    /// Where an import's time went (the benchmark prints these).
    public struct Timings: Sendable {
        public var load, parse, merge, store: Duration
        /// Rebuilding the union and pushing it to the registered sessions.
        public var apply: Duration
    }
}

/// Why an address is (or is not) blocked.
public struct CheckResult: Sendable {
    public var address: IPAddress
    public var lists: [ListMatch]
    public var spies: [Detection]
    public var isBlocked: Bool { !lists.isEmpty || !spies.isEmpty }
}

/// Owns the blocklist state of the daemon: imports static lists, records live detections, and
/// keeps every registered libtorrent session's ip_filter equal to the union of both.
public actor BlocklistService {
    public nonisolated let store: BlocklistStore
    public nonisolated let hunter: SpyHunter
    private let salt: [UInt8]
    private let now: @Sendable () -> Date
    let logger: Logger
    private var sinks: [ObjectIdentifier: any IPFilterSink] = [:]
    private var unionCache: IPRangeSet?
    /// The store generation the cached union was built from.
    private var cachedGeneration: Int64 = -1
    private var tracker: PeerMisbehaviourTracker

    /// Where this service's metrics go; nil: the process-wide `MetricsSystem` (the daemon's backend).
    /// A test gives its own, so counts from other suites running at once do not mix in.
    private nonisolated let metrics: (any MetricsFactory)?
    private let rangesGauge: Gauge
    private let spiesGauge: Gauge

    public init(store: BlocklistStore, config: SpyDetectorConfiguration = .init(),
                logger: Logger = Logger(label: "peersm.blocklists"), metrics: (any MetricsFactory)? = nil,
                now: @escaping @Sendable () -> Date = { Date() }) throws {
        self.metrics = metrics
        self.rangesGauge = Gauge(label: "peersm_blocklist_enforced_ranges", factory: metrics ?? MetricsSystem.factory)
        self.spiesGauge = Gauge(label: "peersm_blocklist_active_spies", factory: metrics ?? MetricsSystem.factory)
        self.store = store
        self.hunter = SpyHunter(detector: SpyDetector(config: config))
        self.salt = try store.salt()
        self.now = now
        self.logger = logger
        self.tracker = PeerMisbehaviourTracker(config: config)
    }

    // MARK: static lists

    /// Loads, parses (gunzipping if needed), merges and stores a list, then pushes the new union.
    /// Malformed lines are skipped and returned; a file with no valid line is an error and leaves
    /// any previous version of the list in place.
    public func importList(from source: BlocklistSource, name: String? = nil,
                           format: BlocklistFormat? = nil) async throws -> ImportReport {
        let listName = name ?? source.defaultListName
        try Self.validate(name: listName)
        let clock = ContinuousClock()
        var t = clock.now
        func lap() -> Duration { let n = clock.now; defer { t = n }; return n - t }
        let bytes = try await source.load()
        let loaded = lap()
        let parsed = try BlocklistParser.parse(bytes, source: source.description, format: format ?? source.impliedFormat)
        let parsing = lap()
        let merged = BlocklistEntry.merge(parsed.entries)
        let merging = lap()
        let info = try store.saveList(name: listName, source: source.description, parsed: parsed, merged: merged, now: now())
        let storing = lap()
        for issue in parsed.issues.prefix(20) { logger.warning("\(issue)") }
        logger.info("imported list", metadata: ["list": "\(listName)", "ranges": "\(merged.count)", "bad-lines": "\(parsed.issues.count)"])
        try await changed()
        return ImportReport(list: info, issues: parsed.issues, mergedAway: parsed.entries.count - merged.count,
                            timings: .init(load: loaded, parse: parsing, merge: merging, store: storing, apply: lap()))
    }

    /// Re-imports every list whose source is a URL (refresh); returns the failures by list name.
    public func refreshRemoteLists() async -> [String: Error] {
        var failures: [String: Error] = [:]
        for list in (try? store.lists()) ?? [] {
            guard let source = try? BlocklistSource(list.source), case .url = source else { continue }
            do { _ = try await importList(from: source, name: list.name, format: list.format) } catch { failures[list.name] = error }
        }
        return failures
    }

    @discardableResult
    public func removeList(named name: String) async throws -> Bool {
        let removed = try store.removeList(named: name)
        if removed { try await changed() }
        return removed
    }

    public static func validate(name: String) throws {
        guard (1...64).contains(name.count), !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw BlocklistError.invalidName(name)
        }
    }

    // MARK: enforcement

    /// Adds a session; it receives the current union at once (and throws if that push fails).
    public func register(_ sink: any IPFilterSink) async throws {
        sinks[ObjectIdentifier(sink)] = sink
        try await sink.replaceIPFilter(try enforcedRanges())
    }

    public func unregister(_ sink: any IPFilterSink) {
        sinks[ObjectIdentifier(sink)] = nil
    }

    /// The union of every static list and every unexpired spy, merged.
    public func enforcedRanges() throws -> IPRangeSet {
        if let unionCache { return unionCache }
        let generation = try store.generation()
        let spies = try store.spies(activeAt: now())
        let union = IPRangeSet(merging: try store.allRanges() + spies.map { IPRange($0.address) })
        unionCache = union
        cachedGeneration = generation
        rangesGauge.record(union.count)
        spiesGauge.record(Set(spies.map(\.address)).count)
        return union
    }

    public func isBlocked(_ address: IPAddress) throws -> Bool { try enforcedRanges().contains(address) }

    /// Which lists and which detections block `address`.
    public func check(_ address: IPAddress) throws -> CheckResult {
        CheckResult(address: address, lists: try store.matches(address), spies: try store.spies(activeAt: now(), address: address))
    }

    /// The engine calls this on each `peer_blocked_alert`, so blocked connections show in metrics
    /// (`reason`: the alert's reason, e.g. "ip_filter").
    public nonisolated func peerBlocked(_ address: IPAddress, reason: String = "ip_filter") {
        counter("peersm_blocklist_blocked_peers_total", [("reason", reason)]).increment()
    }

    private nonisolated func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
        Counter(label: label, dimensions: dimensions, factory: metrics ?? MetricsSystem.factory)
    }

    /// Rebuilds the union from the store and pushes it. `added` (addresses just recorded) lets the
    /// common case, new spies and nothing else changed, skip re-reading every stored range.
    private func changed(added: [IPRange]? = nil) async throws {
        if let added, let cached = unionCache, try store.generation() == cachedGeneration + 1 {
            unionCache = cached.inserting(added)
            cachedGeneration += 1
        } else {
            unionCache = nil
        }
        guard !sinks.isEmpty else { return }
        let union = try enforcedRanges()
        for sink in sinks.values {
            do {
                try await sink.replaceIPFilter(union)
            } catch {
                // One failing session must not keep the others on a stale filter.
                logger.error("could not update an ip_filter", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: live detection

    /// The salted hash under which detections for this torrent are stored.
    public func torrentTag(for infohash: [UInt8]) -> TorrentTag { TorrentTag(infohash: infohash, salt: salt) }

    /// Runs the fake-infohash hunt before a fetch, records what it finds as it finds it (pushing the
    /// new union each time, so a hunt cut short keeps its verdicts), and returns the peers the
    /// engine may connect to for the real infohash.
    public func hunt(infohash: [UInt8], lookup: some DHTPeerLookup) async throws -> HuntResult {
        let blocked = try enforcedRanges()
        let clock = now
        let result = try await hunter.hunt(infohash: infohash, torrent: torrentTag(for: infohash), lookup: lookup,
                                           isBlocked: { blocked.contains($0) }, now: clock,
                                           verdicts: { [weak self] in try await self?.record($0) })
        logger.debug("spy hunt done", metadata: [
            "spies": "\(Set(result.detections.map(\.address)).count)", "peers": "\(result.peers.count)",
            "trusted-nodes": "\(result.trustedNodes.count)",
        ])
        return result
    }

    /// Records detections (from a hunt, or the engine's own observations) and pushes the union.
    public func record(_ detections: [Detection]) async throws {
        guard !detections.isEmpty else { return }
        try store.record(detections)
        for d in detections {
            counter("peersm_spies_detected_total", [("reason", d.reason.rawValue)]).increment()
            logger.notice("spy detected", metadata: ["address": "\(d.address)", "reason": "\(d.reason.rawValue)",
                                                      "torrent": "\(d.torrent)"])
        }
        try await changed(added: detections.map { IPRange($0.address) })
    }

    /// The engine reports request timeouts and hash failures; a peer over its limit is recorded and blocked.
    @discardableResult
    public func peerEvent(_ event: PeerMisbehaviour, from peer: IPEndpoint, infohash: [UInt8]) async throws -> Detection? {
        guard let d = tracker.record(event, from: peer, torrent: torrentTag(for: infohash), now: now()) else { return nil }
        // libtorrent may report one offence several times (a ban per failed piece in flight): a peer
        // already convicted for this reason is already blocked everywhere.
        if try store.spies(activeAt: now(), address: d.address).contains(where: { $0.reason == d.reason }) { return nil }
        try await record([d])
        return d
    }

    /// Drops expired detections and forgets stale peer events; pushes the union when it shrank.
    @discardableResult
    public func expire() async throws -> Int {
        tracker.prune(now: now())
        let purged = try store.purgeExpiredSpies(now: now())
        if purged > 0 { try await changed() }
        return purged
    }

    /// Picks up changes another process made to the database (`facilitatord blocklist import` while
    /// the daemon runs) and pushes the new union. Returns whether anything changed.
    @discardableResult
    public func syncWithStore() async throws -> Bool {
        guard try store.generation() != cachedGeneration || unionCache == nil else { return false }
        try await changed()
        if sinks.isEmpty { _ = try enforcedRanges() }
        return true
    }

    /// The daemon's housekeeping, until cancelled: every `poll`, pick up changes from other processes
    /// and expire detections; every `refresh`, re-fetch the lists imported from URLs.
    public func maintain(poll: Duration = .seconds(10), refresh: Duration = .seconds(86_400)) async {
        let clock = ContinuousClock()
        var nextRefresh = clock.now + refresh
        while !Task.isCancelled {
            do {
                try await expire()
                try await syncWithStore()
            } catch {
                logger.error("blocklist maintenance failed", metadata: ["error": "\(error)"])
            }
            if clock.now >= nextRefresh {
                for (list, error) in await refreshRemoteLists() {
                    logger.error("could not refresh list", metadata: ["list": "\(list)", "error": "\(error)"])
                }
                nextRefresh = clock.now + refresh
            }
            try? await Task.sleep(for: poll)
        }
    }
}
