import ArgumentParser
import Blocklists
import NetBasics
import FacilitatorNode
import Foundation
import Logging

/// Where the daemon keeps its state; shared by every administration command.
struct DatabaseOptions: ParsableArguments {
    static var environmentKey: String { BlocklistDatabase.environmentKey }
    static var defaultPath: String { BlocklistDatabase.defaultPath }

    @Option(name: .customLong("db"), help: ArgumentHelp(
        "SQLite database of the facilitator (created if missing).",
        discussion: "Default: $\(environmentKey) if set, else \(defaultPath).", valueName: "path"))
    var path: String?

    var resolvedPath: String { BlocklistDatabase.resolve(path) }

    func openStore() throws -> BlocklistStore {
        try BlocklistDatabase.open(resolvedPath)
    }

    /// The CLI prints its own results; the service's log lines are for the daemon.
    func openService() throws -> BlocklistService {
        var quiet = Logger(label: "peersm.blocklists")
        quiet.logLevel = .critical
        return try BlocklistService(store: openStore(), logger: quiet)
    }
}

/// An error whose text is the whole message (ArgumentParser prints it after "Error: ").
struct CleanError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

struct BlocklistCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blocklist",
        abstract: "Manage the IP blocklists applied to every BitTorrent session.",
        discussion: """
            Peers are refused when their address is in an imported list or was
            detected as a spy (a DHT node answering for a fake infohash, a sybil
            node ID, one IP with many ports, repeated timeouts or bad pieces).
            A running daemon applies changes without restarting torrents.

            Formats (from the file name, else detected; .gz is gunzipped):
              p2p   PeerGuardian   Some Org:1.2.3.0-1.2.3.255
              dat   eMule          001.002.003.000 - 001.002.003.255 , 000 , Org
                                   (access level > 127 = allowed: line skipped)
              cidr  plain          1.2.3.0/24  2001:db8::/32  1.2.3.4-1.2.3.9
                                   (optionally followed by # label)
            Lines starting with # or // are comments. Malformed lines are
            reported as file:line: reason and skipped; the rest is imported.

            Examples:
              facilitatord blocklist import /etc/peersm/level1.p2p.gz
              facilitatord blocklist import https://example.org/f.dat --name emule
              facilitatord blocklist check 1.2.3.4
              facilitatord blocklist export > all.p2p
            """,
        subcommands: [Import.self, List.self, Check.self, Export.self, Remove.self])
}

extension BlocklistCommand {
    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import (or refresh) a list from a file or an http(s) URL.",
            discussion: "Importing under an existing name replaces that list's ranges and keeps its first import time.")

        @Argument(help: ArgumentHelp("A file path or an http(s):// URL.", valueName: "file|url"))
        var source: String

        @Option(help: "List name (default: the file name without extensions).")
        var name: String?

        @Option(help: ArgumentHelp("Force a format instead of detecting it.", valueName: "p2p|dat|cidr"))
        var format: BlocklistFormat?

        @Option(help: "Show at most this many malformed lines (all are counted).")
        var maxIssues = 50

        @Flag(help: "Print where the time went (load, parse, merge, store).")
        var timings = false

        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let service = try database.openService()
            let src: BlocklistSource
            do { src = try BlocklistSource(source) } catch { throw CleanError("\(error)") }
            let report: ImportReport
            do {
                report = try await service.importList(from: src, name: name, format: format)
            } catch let error as BlocklistError {
                throw CleanError(error.description)
            }
            let l = report.list
            for issue in report.issues.prefix(maxIssues) { printError("\(issue)") }
            if report.issues.count > maxIssues { printError("… and \(report.issues.count - maxIssues) more malformed lines") }
            var summary = "imported '\(l.name)' from \(l.source): \(l.rangeCount) ranges (\(l.entryCount) entries"
            if report.mergedAway > 0 { summary += ", \(report.mergedAway) merged into overlapping ones" }
            summary += "), \(l.ipv4Addresses) IPv4 addresses, \(l.ipv6Ranges) IPv6 ranges; format \(l.format.rawValue)"
            if l.gzipped { summary += " (gzip)" }
            if l.allowedLines > 0 { summary += "; \(l.allowedLines) 'allowed' lines skipped" }
            if l.badLines > 0 { summary += "; \(l.badLines) malformed line\(l.badLines == 1 ? "" : "s") skipped" }
            print(summary)
            if timings {
                let t = report.timings
                func ms(_ d: Duration) -> String { String(format: "%.0f ms", Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15) }
                print("timings: load \(ms(t.load)), parse \(ms(t.parse)), merge \(ms(t.merge)), store \(ms(t.store))")
                // What a running daemon does next: read every list back and build the enforced union.
                let start = ContinuousClock.now
                let union = try await service.enforcedRanges()
                print("union of all lists and spies: \(union.count) ranges, built in \(ms(ContinuousClock.now - start))")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the imported lists and the active spy detections.")

        @Flag(help: "Also list each active spy detection.")
        var spies = false

        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let store = try database.openStore()
            let lists = try store.lists()
            if lists.isEmpty {
                print("no lists imported (facilitatord blocklist import <file|url>)")
            } else {
                let rows = lists.map { l in
                    [l.name, l.format.rawValue + (l.gzipped ? ".gz" : ""), String(l.rangeCount), String(l.ipv4Addresses),
                     String(l.ipv6Ranges), String(l.badLines), iso(l.refreshedAt), l.source]
                }
                printTable(header: ["NAME", "FORMAT", "RANGES", "IPV4-ADDRESSES", "IPV6-RANGES", "BAD-LINES", "REFRESHED", "SOURCE"],
                           rows: rows)
            }
            let active = try store.spies(activeAt: Date())
            print("\(Set(active.map(\.address)).count) spy address(es) blocked (\(active.count) active detections)")
            if spies && !active.isEmpty {
                printTable(header: ["ADDRESS", "REASON", "DETECTED", "EXPIRES", "TORRENT", "DETAIL"], rows: active.map { d in
                    [d.address.description, d.reason.rawValue, iso(d.detectedAt), iso(d.expiresAt), d.torrent.description, d.detail]
                })
            }
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Tell whether an address is blocked, by which list and why.",
            discussion: "Exit status: 0 when blocked, 1 when not blocked, other values on errors (like grep).")

        @Argument(help: ArgumentHelp("An IPv4 or IPv6 address.", valueName: "ip"))
        var address: String

        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard IPAddress(address) != nil else { throw ValidationError("'\(address)' is not an IPv4 or IPv6 address") }
        }

        func run() async throws {
            guard let ip = IPAddress(address) else { throw ValidationError("'\(address)' is not an IPv4 or IPv6 address") }
            let result = try await database.openService().check(ip)
            guard result.isBlocked else {
                print("\(ip): not blocked")
                throw ExitCode(1)
            }
            print("\(ip): blocked")
            for m in result.lists {
                print("  list '\(m.list)' range \(m.range.first)-\(m.range.last)\(m.label.isEmpty ? "" : " \"\(m.label)\"") (source \(m.source))")
            }
            for d in result.spies {
                print("  spy: \(d.reason.rawValue) — \(d.detail); detected \(iso(d.detectedAt)), expires \(iso(d.expiresAt)), torrent \(d.torrent)")
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the blocklist in PeerGuardian .p2p form (to standard output or a file).",
            discussion: "Every stored range is written with its list and label; active spies follow as 'spy: reason'.")

        @Option(help: "Only this list (spies are then left out).")
        var list: String?

        @Flag(help: "Leave out the spy detections.")
        var noSpies = false

        @Option(name: .shortAndLong, help: ArgumentHelp("Write to this file instead of standard output.", valueName: "file"))
        var output: String?

        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let store = try database.openStore()
            if let list, try store.list(named: list) == nil { throw CleanError(BlocklistError.unknownList(list).description) }
            let entries = try store.entries(list: list)
            let spies = (list != nil || noSpies) ? [] : try store.spies(activeAt: Date())
            let text = P2PExporter.render(entries: entries, spies: spies)
            if let output {
                do {
                    try text.write(toFile: output, atomically: true, encoding: .utf8)
                } catch {
                    throw CleanError("cannot write \(output): \(error.localizedDescription)")
                }
                printError("wrote \(entries.count + spies.count) ranges to \(output)")
            } else {
                FileHandle.standardOutput.write(Data(text.utf8))
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an imported list and its ranges.")

        @Argument(help: "The list's name (see 'blocklist list').")
        var name: String

        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            guard try await database.openService().removeList(named: name) else {
                throw CleanError(BlocklistError.unknownList(name).description)
            }
            print("removed '\(name)'")
        }
    }
}

extension BlocklistFormat: ExpressibleByArgument {}

private func iso(_ date: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    return f.string(from: date)
}

private func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

private func printTable(header: [String], rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
    for row in all {
        let cells = row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
        print(cells.joined(separator: "  "))
    }
}
