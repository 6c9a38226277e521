import Blocklists
import Facilitator
import Foundation
import Logging
import NetBasics
import TorrentEngine

/// Everything a facilitator node is built from. The defaults are the config file's defaults
/// (`ConfigTable` reads them from here) and bind loopback only; `facilitatord` fills the struct from
/// its TOML file, the demo and the tests set fields directly.
public struct FacilitatorNodeSettings: Sendable {
    /// Signing key, relay keys, engine scratch (created 0700).
    public var dataDirectory = "/var/lib/peersm-facilitator"
    public var logLevel: Logger.Level = .info
    public var relayHost = "127.0.0.1"
    /// 0: any free port (programmatic use only; the config file asks for 1…65535).
    public var relayPort = 9001
    /// Binding a non-loopback relay address needs this set (explicit decision to go public).
    public var relayPublic = false
    public var extendToPrivateAddresses = false
    public var facilitator = FacilitatorConfiguration()
    /// The fetching engine; its `dataDirectory` is replaced by `<dataDirectory>/torrent`.
    public var torrent = TorrentEngineSettings()
    /// [blocklists] hunt… (SpyHunting.swift).
    public var hunt = HuntSettings()
    /// nil: the CLI's rule (`BlocklistDatabase.resolve`).
    public var blocklistDatabase: String?
    public var blocklistPoll: Duration = .seconds(10)
    public var blocklistRefresh: Duration = .seconds(86_400)
    /// Prometheus scrape address; nil turns the endpoint off. Non-loopback needs metricsPublic.
    public var metricsListen: ListenAddress? = ListenAddress(host: "127.0.0.1", port: 9474)
    public var metricsPublic = false

    public init() {}

    /// The database both `run` and `blocklist …` use for these settings.
    public var blocklistDatabasePath: String { BlocklistDatabase.resolve(blocklistDatabase) }

    /// The checks that span keys, run after every key is read: going public is explicit, and the
    /// spy hunt's requirements.
    public func validate() throws(ConfigError) {
        if hunt.enabled {
            if torrent.dhtEnabled {
                throw ConfigError("torrent.dht = true cannot be combined with blocklists.hunt = true: "
                    + "libtorrent's own DHT lookups are not filtered by the blocklist and would send the real info-hash "
                    + "to spies. Set torrent.dht = false (the hunt finds the peers) or blocklists.hunt = false.")
            }
            if hunt.bootstrapNodes.isEmpty {
                throw ConfigError(key: "blocklists.hunt_bootstrap_nodes",
                                  expected: "non-empty when blocklists.hunt = true (where the hunt's DHT walk starts)")
            }
            if hunt.timeout >= facilitator.resolveTimeout {
                throw ConfigError(key: "blocklists.hunt_timeout_seconds", expected: "below facilitator.resolve_timeout_seconds "
                    + "(\(facilitator.resolveTimeout.components.seconds)): the hunt runs inside a query's resolution")
            }
        }
        if !relayPublic && !AddressClass.isLoopback(host: relayHost) {
            throw ConfigError(key: "relay.host", expected: "a loopback address unless relay.public = true (going public is explicit)")
        }
        if let metricsListen, !metricsPublic, !AddressClass.isLoopback(host: metricsListen.host) {
            throw ConfigError(key: "metrics.listen",
                              expected: "a loopback address unless metrics.public = true (going public is explicit)")
        }
    }

}

/// A TCP listening address, written "host:port" ("[v6]:port" for IPv6) in the config.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// "host:port" or "[v6]:port", port 0…65535.
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port)
        else { return nil }
        self.init(host: String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: port)
    }

    public var description: String { "\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

/// Where the blocklist database lives: one rule for the daemon and `facilitatord blocklist …`, so
/// the CLI's imports reach the running daemon.
public enum BlocklistDatabase {
    public static let environmentKey = "PEERSM_FACILITATOR_DB"
    public static let defaultPath = "/var/lib/peersm/facilitator.sqlite"

    /// `explicit` if given, else $PEERSM_FACILITATOR_DB if set and non-empty, else `defaultPath`.
    public static func resolve(_ explicit: String?) -> String {
        explicit ?? ProcessInfo.processInfo.environment[environmentKey].flatMap { $0.isEmpty ? nil : $0 } ?? defaultPath
    }

    /// Opens (creating it and its directory if missing) the database at `path`.
    public static func open(_ path: String) throws -> BlocklistStore {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            } catch {
                throw NodeError("cannot create \(dir) for the database: \(error.localizedDescription) (use --db PATH or $\(environmentKey))")
            }
        }
        do {
            return try BlocklistStore(path: path)
        } catch {
            throw NodeError("cannot open the database \(path): \(error)")
        }
    }
}

/// A failure whose text is the whole message (a start-up step that could not be done).
public struct NodeError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
