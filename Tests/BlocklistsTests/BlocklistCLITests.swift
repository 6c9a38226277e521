import Foundation
import NetBasics
import TestSupport
import Testing
@testable import Blocklists

/// Runs the built `facilitatord` binary (it sits beside the test bundle in .build/<config>/).
struct CLI {
    static var binary: String? { builtExecutable("facilitatord") }

    struct Result { var status: Int32; var out: String; var err: String }

    static func run(_ args: [String], env: [String: String] = [:]) throws -> Result {
        let exe = try #require(binary, "facilitatord is not built beside the tests (swift build --product facilitatord)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        var environment = ProcessInfo.processInfo.environment
        environment["PEERSM_FACILITATOR_DB"] = nil
        p.environment = environment.merging(env) { $1 }
        // stderr goes to a file so that neither stream can fill a pipe while the other is read.
        let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("cli-err-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errURL) }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = try FileHandle(forWritingTo: errURL)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self),
                      err: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }
}
@Suite(.serialized) struct BlocklistCLITests {
    @Test func importListCheckExportEndToEnd() throws {
        let dir = try TemporaryDirectory("blocklist-cli")
        let db = dir.url.appendingPathComponent("state/facilitator.sqlite").path
        let dat = try writeFile(dir, "ipfilter.dat", """
            // eMule list with two bad lines
            127.000.000.002 - 127.000.000.002 , 000 , Listed seeder
            010.000.000.000 - 010.255.255.255 , 255 , allowed range
            not a line
            192.000.002.000 - 192.000.002.255 , 100 , Doc net
            192.000.002.300 - 192.000.002.255 , 100 , Bad
            """)
        let imp = try CLI.run(["blocklist", "import", dat, "--db", db])
        #expect(imp.status == 0, "\(imp.err)")
        #expect(imp.out.contains("imported 'ipfilter' from \(dat): 2 ranges") && imp.out.contains("2 malformed lines skipped"))
        #expect(imp.out.contains("1 'allowed' lines skipped"))
        #expect(imp.err == "\(dat):4: expected 'first - last , level , label', found no '-'\n\(dat):6: bad range start '192.000.002.300'\n")

        // Each command is a new process on the same file: state survives restarts by construction.
        let list = try CLI.run(["blocklist", "list", "--db", db])
        #expect(list.status == 0 && list.out.contains("ipfilter") && list.out.contains("dat") && list.out.contains("257"))

        let hit = try CLI.run(["blocklist", "check", "127.0.0.2", "--db", db])
        #expect(hit.status == 0 && hit.out.contains("127.0.0.2: blocked") && hit.out.contains("list 'ipfilter'"))
        #expect(hit.out.contains("\"Listed seeder\""))
        let miss = try CLI.run(["blocklist", "check", "127.0.0.3", "--db", db])
        #expect(miss.status == 1 && miss.out == "127.0.0.3: not blocked\n")
        let bad = try CLI.run(["blocklist", "check", "127.0.0.300", "--db", db])
        #expect(bad.status == 64 && bad.err.contains("'127.0.0.300' is not an IPv4 or IPv6 address"))

        let exported = dir.url.appendingPathComponent("out.p2p").path
        let exp = try CLI.run(["blocklist", "export", "-o", exported, "--db", db])
        #expect(exp.status == 0)
        #expect(try String(contentsOfFile: exported, encoding: .utf8) ==
                "ipfilter: Listed seeder:127.0.0.2-127.0.0.2\nipfilter: Doc net:192.0.2.0-192.0.2.255\n")
        // The export imports cleanly into another database (through the environment variable this time).
        let db2 = dir.url.appendingPathComponent("other.sqlite").path
        let re = try CLI.run(["blocklist", "import", exported, "--name", "copy"], env: ["PEERSM_FACILITATOR_DB": db2])
        #expect(re.status == 0 && re.err.isEmpty && re.out.contains("imported 'copy'"))
        let hit2 = try CLI.run(["blocklist", "check", "192.0.2.77"], env: ["PEERSM_FACILITATOR_DB": db2])
        #expect(hit2.status == 0 && hit2.out.contains("\"ipfilter: Doc net\""))
        let stdoutExport = try CLI.run(["blocklist", "export", "--db", db2])
        #expect(stdoutExport.out == "copy: ipfilter: Listed seeder:127.0.0.2-127.0.0.2\ncopy: ipfilter: Doc net:192.0.2.0-192.0.2.255\n")

        // A spy recorded by the daemon (here: the store, on the same file) shows in list, check and export.
        do {
            let store = try BlocklistStore(path: db)
            try store.record([Detection(address: IPAddress("127.0.0.9")!, port: 6881, reason: .valuesForFakeInfohash,
                                        detail: "returned 2 peer(s) for a hash nobody has", detectedAt: Date(),
                                        torrent: TorrentTag(infohash: realHash, salt: try store.salt()),
                                        expiresAt: Date() + 3600)])
        }
        let spies = try CLI.run(["blocklist", "list", "--spies", "--db", db])
        #expect(spies.out.contains("1 spy address(es) blocked") && spies.out.contains("127.0.0.9  values-for-fake-infohash"))
        let spyCheck = try CLI.run(["blocklist", "check", "127.0.0.9", "--db", db])
        #expect(spyCheck.status == 0 && spyCheck.out.contains("spy: values-for-fake-infohash — returned 2 peer(s)"))
        #expect(try CLI.run(["blocklist", "export", "--db", db]).out.hasSuffix("spy: values-for-fake-infohash:127.0.0.9-127.0.0.9\n"))
        #expect(try CLI.run(["blocklist", "export", "--no-spies", "--db", db]).out.contains("127.0.0.9") == false)

        let rm = try CLI.run(["blocklist", "remove", "ipfilter", "--db", db])
        #expect(rm.status == 0)
        #expect(try CLI.run(["blocklist", "check", "127.0.0.2", "--db", db]).status == 1)
    }

    @Test func clearErrors() throws {
        let dir = try TemporaryDirectory("blocklist-cli-err")
        let db = dir.url.appendingPathComponent("f.sqlite").path
        let missing = try CLI.run(["blocklist", "import", "/nonexistent/list.p2p", "--db", db])
        #expect(missing.status != 0 && missing.err.contains("Error: /nonexistent/list.p2p: no such file"))
        let junk = try CLI.run(["blocklist", "import", try writeFile(dir, "j.p2p", "x\ny\n"), "--db", db])
        #expect(junk.status != 0 && junk.err.contains("no valid range in the file (2 malformed lines)"))
        let scheme = try CLI.run(["blocklist", "import", "ftp://example.org/x.p2p", "--db", db])
        #expect(scheme.status != 0 && scheme.err.contains("only file paths and http(s) URLs are supported"))
        let noList = try CLI.run(["blocklist", "export", "--list", "nope", "--db", db])
        #expect(noList.status != 0 && noList.err.contains("no list named 'nope'"))
        let dbDir = try CLI.run(["blocklist", "list", "--db", "/proc/nope/f.sqlite"])
        #expect(dbDir.status != 0 && dbDir.err.contains("cannot create /proc/nope for the database"))
        let help = try CLI.run(["blocklist", "--help"])
        #expect(help.status == 0 && help.out.contains("PeerGuardian") && help.out.contains("import"))
    }
}
