import Blocklists
import Foundation
import Logging
import TorrentEngine

/// A value as the config file writes it.
public enum ConfigValue: Equatable, Sendable, CustomStringConvertible {
    case string(String)
    case int(Int)
    case bool(Bool)
    case strings([String])

    /// TOML text of the value.
    public var description: String {
        switch self {
        case .string(let s): return Self.quote(s)
        case .int(let i): return String(i)
        case .bool(let b): return String(b)
        case .strings(let a): return "[" + a.map(Self.quote).joined(separator: ", ") + "]"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += String(format: "\\u%04X", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// One key of the config file: where it lives, what it accepts, what it means, and how it maps
/// onto `FacilitatorNodeSettings`. Its default is what `read` gives for `FacilitatorNodeSettings()`.
public struct ConfigKey: Sendable {
    public enum Kind: Sendable, Equatable {
        case string
        case bool
        case int(ClosedRange<Int>)
        case strings
        /// A string, one of these.
        case choice([String])
    }

    /// "" for the top level, else the `[section]` name.
    public let section: String
    public let name: String
    public let kind: Kind
    /// What the key does (the sample's trailing comment; a "\n" continues it on the next line).
    public let doc: String
    /// A comment block written above the key in the sample.
    public let note: String?
    /// For a key unset by default: the value the sample shows commented out.
    public let example: ConfigValue?
    /// The settings' value; nil when unset.
    let read: @Sendable (FacilitatorNodeSettings) -> ConfigValue?
    /// The value in effect when unset (`--print-config` writes every key).
    let fallback: (@Sendable (FacilitatorNodeSettings) -> ConfigValue)?
    /// Stores a value of the key's kind; throws `Rejected` for values the kind alone does not rule out.
    let write: @Sendable (inout FacilitatorNodeSettings, ConfigValue) throws -> Void

    /// "section.name" (or "name" at the top level), as error messages say it.
    public var path: String { section.isEmpty ? name : "\(section).\(name)" }
    public var defaultValue: ConfigValue? { read(FacilitatorNodeSettings()) }
    public func value(in settings: FacilitatorNodeSettings) -> ConfigValue? { read(settings) }
    public func effectiveValue(in settings: FacilitatorNodeSettings) -> ConfigValue {
        read(settings) ?? fallback?(settings) ?? .string("")
    }

    /// What a value must be, when its kind is right but the value is not (the error says
    /// "KEY must be <expected>").
    struct Rejected: Error { let expected: String }

    /// What a value of the wrong kind is told it must be.
    var expectedKind: String {
        switch kind {
        case .string, .choice: return "a string"
        case .bool: return "true or false"
        case .int(let r): return "an integer in \(r.lowerBound)…\(r.upperBound)"
        case .strings: return "an array of strings"
        }
    }
}

/// A `[section]` of the file and the comment block under its header.
public struct ConfigSection: Sendable {
    public let name: String
    public let doc: String?
}

/// The daemon's config file, declared once: this table drives parsing (`ConfigFile`), the
/// unknown-key error, `facilitatord run --print-config` and `etc/facilitatord.toml`
/// (`facilitatord config sample`).
public enum ConfigTable {
    typealias S = FacilitatorNodeSettings

    public static let header = """
        facilitatord run --config /etc/peersm/facilitatord.toml
        Every key is optional; the values below are the defaults. Defaults bind loopback only:
        listening on a public address (relay.public, torrent.listen, accept_incoming, dht) is explicit.
        This file is the output of `facilitatord config sample` (a test keeps the two equal).
        """

    /// In file order; "" (the top level) first.
    public static let sections: [ConfigSection] = [
        ConfigSection(name: "", doc: nil),
        ConfigSection(name: "relay", doc: nil),
        ConfigSection(name: "facilitator", doc: nil),
        ConfigSection(name: "torrent", doc: nil),
        ConfigSection(name: "metrics", doc: """
            Prometheus scrape endpoint (GET /metrics): facilitator streams and DB_END reasons, blocklist
            ranges, blocked peers and spies, torrent engine counters (payload uploaded must stay 0).
            """),
        ConfigSection(name: "blocklists", doc: """
            SQLite database of static lists and live spy detections, shared with `facilitatord blocklist …`.
            Unset (the default), daemon and CLI resolve it the same way: $\(BlocklistDatabase.environmentKey) if set, else
            \(BlocklistDatabase.defaultPath). If you set it here, give the CLI the same path (--db or the
            variable), or its imports go to another database. Its union is applied to the engine before the
            relay accepts circuits; imports made while the daemon runs are picked up within poll_seconds.
            """),
    ]

    public static let keys: [ConfigKey] = [
        string("", "data_directory", \.dataDirectory,
               "signing key (facilitator_ed25519.key, 0600), relay keys, engine scratch"),
        choice("", "log_level", \.logLevel, "trace, debug, info, notice, warning, error, critical"),

        string("relay", "host", \.relayHost, "ORPort address; a non-loopback address needs public = true"),
        int("relay", "port", 1...65535, \.relayPort, "ORPort (TLS link); requesters and relays connect here"),
        bool("relay", "public", \.relayPublic, "allow a non-loopback host (going public is explicit)"),
        bool("relay", "extend_to_private_addresses", \.extendToPrivateAddresses,
             "allow EXTEND2 to non-public addresses: 127/8, 10/8, TEST-NETs, … (test networks only)"),

        int("facilitator", "max_streams", 1...100_000, \.facilitator.maxStreams, "DB streams open at once; more → DB_END BUSY"),
        int("facilitator", "max_streams_per_circuit", 1...10_000, \.facilitator.maxStreamsPerCircuit,
            "per circuit; more → DB_END BUSY"),
        seconds("facilitator", "resolve_timeout_seconds", 1...3600, \.facilitator.resolveTimeout,
                "metadata not found in time → DB_END UNAVAILABLE"),
        seconds("facilitator", "stall_timeout_seconds", 1...3600, \.facilitator.stallTimeout,
                "no bytes from the swarm for this long → DB_END TIMEOUT"),
        int("facilitator", "max_buffered_messages", 8...100_000, \.facilitator.maxBufferedMessages,
            "DB_DATA held per stream while the requester's window is closed"),

        string("torrent", "listen", \.torrent.listenInterfaces, "e.g. \"0.0.0.0:6881\" to be reachable (explicit)"),
        bool("torrent", "accept_incoming", \.torrent.acceptIncoming, "accept peers' connections (we only connect out when off)"),
        bool("torrent", "utp", \.torrent.enableUTP, "uTP as well as TCP to peers"),
        bool("torrent", "dht", \.torrent.dhtEnabled, """
            libtorrent's read-only DHT (BEP 43), unfiltered by the blocklists;
            prefer [blocklists] hunt (cannot be combined with it)
            """),
        strings("torrent", "dht_bootstrap_nodes", \.torrent.dhtBootstrapNodes, "e.g. [\"router.bittorrent.com:6881\"]"),
        bool("torrent", "use_trackers", \.torrent.useTrackers, "keep trackers named in magnets (announces our address)"),
        choice("torrent", "magnet_peers", \.torrent.magnetPeers, """
            peers (x.pe) and DHT nodes (dht=) written in a requester's magnet,
            and peers the spy hunt's DHT lookup returns:
            "public" dials only globally routable addresses (never loopback,
            RFC 1918, ULA, link-local, CGNAT, multicast…), "none" ignores
            them, "any" dials whatever the link names (local test networks only)
            """),
        ConfigKey(section: "torrent", name: "memory_budget_mib", kind: .int(4...65536),
                  doc: "pieces held in memory across all streams (content never touches disk)", note: nil, example: nil,
                  read: { .int($0.torrent.memoryBudget >> 20) }, fallback: nil,
                  write: { s, v in if case .int(let i) = v { s.torrent.memoryBudget = i << 20 } }),
        seconds("torrent", "metadata_timeout_seconds", 1...3600, \.torrent.metadataTimeout,
                "how long to wait for a magnet's metadata"),
        int("torrent", "max_torrents", 1...10_000, \.torrent.maxConcurrentTorrents, "torrents open at once"),
        int("torrent", "connections_limit", 0...100_000, \.torrent.connectionsLimit, "0: libtorrent default"),

        ConfigKey(section: "metrics", name: "listen", kind: .string,
                  doc: "\"\" turns it off; a non-loopback address needs public = true", note: nil, example: nil,
                  read: { .string($0.metricsListen?.description ?? "") }, fallback: nil,
                  write: { s, v in
                      guard case .string(let text) = v else { return }
                      if text.isEmpty { s.metricsListen = nil; return }
                      guard let address = ListenAddress(parsing: text) else {
                          throw ConfigKey.Rejected(expected: "\"host:port\" (e.g. \"127.0.0.1:9474\"), or \"\" to turn it off")
                      }
                      s.metricsListen = address
                  }),
        bool("metrics", "public", \.metricsPublic, "allow a non-loopback listen address (explicit)"),

        ConfigKey(section: "blocklists", name: "database", kind: .string,
                  doc: "unset: $\(BlocklistDatabase.environmentKey), else the path shown", note: nil,
                  example: .string(BlocklistDatabase.defaultPath),
                  read: { $0.blocklistDatabase.map(ConfigValue.string) },
                  fallback: { .string($0.blocklistDatabasePath) },
                  write: { s, v in
                      guard case .string(let path) = v else { return }
                      guard !path.isEmpty else { throw ConfigKey.Rejected(expected: "a non-empty path") }
                      s.blocklistDatabase = path
                  }),
        seconds("blocklists", "poll_seconds", 1...3600, \.blocklistPoll, "pick up CLI imports, expire spy detections"),
        seconds("blocklists", "refresh_hours", 1...8760, \.blocklistRefresh, unit: 3600, "re-fetch the lists imported from URLs"),
        bool("blocklists", "hunt", \.hunt.enabled, "find peers with the spy hunt (talks to the DHT)", note: """
            Spy hunting: before each query, a second DHT-only engine (no torrents, read-only) walks the DHT for
            a fake info-hash (the real one's first 32 bits, then random), convicts the nodes that answer values
            for it, sybil IDs and duplicate IPs near it, records them here (so the fetch's ip_filter refuses
            them), then asks only the nodes that passed for the real info-hash and hands the fetch the peers.
            A blocked or convicted node is never sent a query (libtorrent 2.0.8 does not filter DHT traffic,
            so our code checks every query). Off by default, like torrent.dht: it sends UDP to the DHT.
            It requires torrent.dht = false (libtorrent's own DHT lookups are unfiltered and would give the
            real info-hash to spies) and at least one bootstrap node.
            """),
        strings("blocklists", "hunt_bootstrap_nodes", \.hunt.bootstrapNodes, check: { nodes in
            nodes.first { DHTBootstrap.split($0) == nil }.map { "an array of \"host:port\" (found \"\($0)\")" }
        }, """
            where each walk starts, "host:port" (names resolved at each hunt),
            e.g. ["router.bittorrent.com:6881", "dht.transmissionbt.com:6881"].
            Separate from torrent.dht_bootstrap_nodes, which belongs to the
            fetching engine's DHT (off whenever hunting is on).
            """),
        string("blocklists", "hunt_listen", \.hunt.listen, check: { v in
            guard let colon = v.lastIndex(of: ":"), colon != v.startIndex, UInt16(v[v.index(after: colon)...]) != nil
            else { return "\"address:port\" (port 0: any free port)" }
            return nil
        }, "the hunt engine's DHT socket; the public DHT needs e.g. \"0.0.0.0:0\""),
        seconds("blocklists", "hunt_timeout_seconds", 1...600, \.hunt.timeout, """
            bound on one hunt; must be below facilitator.resolve_timeout_seconds.
            A hunt that fails or times out is logged and the query goes on with
            its other peers (e.g. a magnet's x.pe); not retried for 15 s.
            """),
        seconds("blocklists", "hunt_reuse_seconds", 0...86_400, \.hunt.reuse, """
            a hunt's peers serve further queries of the same torrent (the data
            queries that follow an info query) for this long
            """),
    ]

    /// The keys of one section, in file order.
    public static func keys(in section: String) -> [ConfigKey] { keys.filter { $0.section == section } }

    // MARK: key builders (each ties a key to one settings field)

    static func string(_ section: String, _ name: String, _ field: WritableKeyPath<S, String> & Sendable,
                       check: (@Sendable (String) -> String?)? = nil, _ doc: String, note: String? = nil) -> ConfigKey {
        ConfigKey(section: section, name: name, kind: .string, doc: doc, note: note, example: nil,
                  read: { .string($0[keyPath: field]) }, fallback: nil,
                  write: { s, v in
                      guard case .string(let text) = v else { return }
                      if let expected = check?(text) { throw ConfigKey.Rejected(expected: expected) }
                      s[keyPath: field] = text
                  })
    }

    static func strings(_ section: String, _ name: String, _ field: WritableKeyPath<S, [String]> & Sendable,
                        check: (@Sendable ([String]) -> String?)? = nil, _ doc: String) -> ConfigKey {
        ConfigKey(section: section, name: name, kind: .strings, doc: doc, note: nil, example: nil,
                  read: { .strings($0[keyPath: field]) }, fallback: nil,
                  write: { s, v in
                      guard case .strings(let list) = v else { return }
                      if let expected = check?(list) { throw ConfigKey.Rejected(expected: expected) }
                      s[keyPath: field] = list
                  })
    }

    static func bool(_ section: String, _ name: String, _ field: WritableKeyPath<S, Bool> & Sendable, _ doc: String,
                     note: String? = nil) -> ConfigKey {
        ConfigKey(section: section, name: name, kind: .bool, doc: doc, note: note, example: nil,
                  read: { .bool($0[keyPath: field]) }, fallback: nil,
                  write: { s, v in if case .bool(let b) = v { s[keyPath: field] = b } })
    }

    static func int(_ section: String, _ name: String, _ range: ClosedRange<Int>, _ field: WritableKeyPath<S, Int> & Sendable,
                    _ doc: String) -> ConfigKey {
        ConfigKey(section: section, name: name, kind: .int(range), doc: doc, note: nil, example: nil,
                  read: { .int($0[keyPath: field]) }, fallback: nil,
                  write: { s, v in if case .int(let i) = v { s[keyPath: field] = i } })
    }

    /// A duration written as a whole number of `unit` seconds.
    static func seconds(_ section: String, _ name: String, _ range: ClosedRange<Int>,
                        _ field: WritableKeyPath<S, Duration> & Sendable, unit: Int64 = 1, _ doc: String) -> ConfigKey {
        ConfigKey(section: section, name: name, kind: .int(range), doc: doc, note: nil, example: nil,
                  read: { .int(Int($0[keyPath: field].components.seconds / unit)) }, fallback: nil,
                  write: { s, v in if case .int(let i) = v { s[keyPath: field] = .seconds(Int64(i) * unit) } })
    }

    /// A string naming one case of `T` by its raw value.
    static func choice<T: RawRepresentable & CaseIterable & Sendable>(
        _ section: String, _ name: String, _ field: WritableKeyPath<S, T> & Sendable, _ doc: String
    ) -> ConfigKey where T.RawValue == String {
        ConfigKey(section: section, name: name, kind: .choice(T.allCases.map(\.rawValue)), doc: doc, note: nil, example: nil,
                  read: { .string($0[keyPath: field].rawValue) }, fallback: nil,
                  write: { s, v in
                      if case .string(let text) = v, let value = T(rawValue: text) { s[keyPath: field] = value }
                  })
    }
}
