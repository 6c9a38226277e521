import FacilitatorNode
import Foundation
import Testing
import TOMLKit
import TorrentEngine

/// The key table is the one description of the config file: the sample in etc/ is its output, and
/// parsing, its errors and `--print-config` follow it.
struct ConfigTableTests {
    static let sampleURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("etc/facilitatord.toml")

    /// The TOML value as the table writes it (for comparing the file's values with the defaults).
    static func value(_ v: TOMLValueConvertible) -> ConfigValue? {
        if let s = v.string { return .string(s) }
        if let b = v.bool { return .bool(b) }
        if let i = v.int { return .int(i) }
        if let a = v.array { return .strings(a.compactMap { $0.string }) }
        return nil
    }

    func parse(_ text: String) throws -> FacilitatorNodeSettings { try ConfigFile.parse(text, file: "test.toml") }

    /// The message a refused config gets.
    func refusal(_ text: String) -> String {
        do {
            _ = try parse(text)
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test func sampleFileHasEveryKeyOfTheTableAtItsDefault() throws {
        let text = try String(contentsOf: Self.sampleURL, encoding: .utf8)
        let root = try TOMLTable(string: text)
        var inFile: [String: ConfigValue] = [:]
        for name in root.keys {
            guard let value = root[name] else { continue }
            if let table = value.table {
                for key in table.keys { inFile["\(name).\(key)"] = table[key].flatMap(Self.value) }
            } else {
                inFile[name] = Self.value(value)
            }
        }
        // Keys unset by default are in the file commented out.
        let set = ConfigTable.keys.filter { $0.defaultValue != nil }
        let unset = ConfigTable.keys.filter { $0.defaultValue == nil }
        #expect(Set(inFile.keys) == Set(set.map(\.path)), "etc/facilitatord.toml and ConfigTable name different keys")
        for key in set {
            #expect(inFile[key.path] == key.defaultValue, "\(key.path): the file says \(String(describing: inFile[key.path])), the table \(String(describing: key.defaultValue))")
        }
        for key in unset {
            #expect(text.contains("\n# \(key.name) = "), "\(key.path) (unset by default) is not shown commented out")
        }
        // And the file is exactly what `facilitatord config sample` prints.
        #expect(text == ConfigFile.sample(), "regenerate: facilitatord config sample > etc/facilitatord.toml")
    }

    @Test func everyKeyIsDocumentedAndNamedOnce() {
        let paths = ConfigTable.keys.map(\.path)
        #expect(Set(paths).count == paths.count)
        for key in ConfigTable.keys {
            #expect(!key.doc.isEmpty, "\(key.path) has no doc line")
            #expect(ConfigTable.sections.contains { $0.name == key.section }, "\(key.path): no such section")
        }
    }

    @Test func theSampleParsesToTheDefaults() throws {
        let text = try String(contentsOf: Self.sampleURL, encoding: .utf8)
        #expect(ConfigFile.effective(try parse(text)) == ConfigFile.effective(FacilitatorNodeSettings()))
        #expect(ConfigFile.effective(try parse("")) == ConfigFile.effective(FacilitatorNodeSettings()))
    }

    @Test func unknownKeysAreRefusedByName() {
        #expect(refusal("[blocklists]\ndatabse = \"x\"\n")
                    .hasPrefix("test.toml: unknown key blocklists.databse (known: database, poll_seconds, refresh_hours, hunt,"))
        #expect(refusal("datadir = \"/x\"\n").hasPrefix("test.toml: unknown key datadir (known: data_directory, log_level, relay,"))
        #expect(refusal("[relays]\nport = 1\n").contains("unknown key relays "))
    }

    @Test func outOfRangeValuesAreRefused() {
        #expect(refusal("[blocklists]\npoll_seconds = 0\n") == "test.toml: blocklists.poll_seconds must be an integer in 1…3600")
        #expect(refusal("[relay]\nport = 70000\n") == "test.toml: relay.port must be an integer in 1…65535")
        #expect(refusal("[torrent]\nmemory_budget_mib = 2\n") == "test.toml: torrent.memory_budget_mib must be an integer in 4…65536")
        #expect(refusal("[torrent]\nmagnet_peers = \"all\"\n") == "test.toml: torrent.magnet_peers must be one of \"public\", \"any\", \"none\"")
        #expect(refusal("log_level = \"loud\"\n").hasPrefix("test.toml: log_level must be one of \"trace\", \"debug\","))
        #expect(refusal("[metrics]\nlisten = \"localhost\"\n").hasPrefix("test.toml: metrics.listen must be \"host:port\""))
        #expect(refusal("[blocklists]\ndatabase = \"\"\n") == "test.toml: blocklists.database must be a non-empty path")
    }

    @Test func valuesOfTheWrongTypeAreRefused() {
        #expect(refusal("[relay]\nport = \"9001\"\n") == "test.toml: relay.port must be an integer in 1…65535")
        #expect(refusal("[relay]\npublic = 1\n") == "test.toml: relay.public must be true or false")
        #expect(refusal("[torrent]\nmagnet_peers = true\n") == "test.toml: torrent.magnet_peers must be a string")
        #expect(refusal("[torrent]\ndht_bootstrap_nodes = [1]\n") == "test.toml: torrent.dht_bootstrap_nodes must be an array of strings")
        #expect(refusal("[torrent]\ndht_bootstrap_nodes = \"a:1\"\n") == "test.toml: torrent.dht_bootstrap_nodes must be an array of strings")
        #expect(refusal("relay = 5\n") == "test.toml: relay must be a table")
        #expect(refusal("data_directory = 5\n") == "test.toml: data_directory must be a string")
    }

    @Test func crossKeyChecksRun() {
        #expect(refusal("[relay]\nhost = \"0.0.0.0\"\n").contains("relay.host must be a loopback address unless relay.public = true"))
        #expect(refusal("[relay]\nhost = \"0.0.0.0\"\npublic = true\n") == "accepted")
        #expect(refusal("[blocklists]\nhunt = true\n").contains("blocklists.hunt_bootstrap_nodes must be non-empty"))
    }

    @Test func valuesReachTheSettings() throws {
        let s = try parse("""
            log_level = "debug"
            [relay]
            port = 9100
            [facilitator]
            stall_timeout_seconds = 7
            [torrent]
            memory_budget_mib = 8
            magnet_peers = "any"
            dht_bootstrap_nodes = ["a.example:1"]
            [metrics]
            listen = "[::1]:9500"
            [blocklists]
            refresh_hours = 2
            """)
        #expect(s.logLevel == .debug && s.relayPort == 9100 && s.facilitator.stallTimeout == .seconds(7))
        #expect(s.torrent.memoryBudget == 8 << 20 && s.torrent.magnetPeers == .any && s.torrent.dhtBootstrapNodes == ["a.example:1"])
        #expect(s.metricsListen == ListenAddress(host: "::1", port: 9500) && s.blocklistRefresh == .seconds(7200))
        // --print-config: every key, valid TOML, read back to the same settings.
        let printed = ConfigFile.effective(s)
        #expect(printed.contains("[metrics]\nlisten = \"[::1]:9500\"\npublic = false"), "\(printed)")
        #expect(printed.contains("refresh_hours = 2\n") && printed.contains("memory_budget_mib = 8\n"), "\(printed)")
        #expect(ConfigFile.effective(try parse(printed)) == printed)
        let lines = printed.split(separator: "\n").filter { !$0.hasPrefix("[") }
        #expect(lines.count == ConfigTable.keys.count)
    }
}
