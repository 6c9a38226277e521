import Foundation
import NetBasics
import TestSupport
import Testing
@testable import Blocklists

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite struct BlocklistParserTests {
    @Test func p2pGoodAndBadLinesReportedByLine() throws {
        let text = """
            # PeerGuardian list
            Some Org:1.0.0.0-1.0.0.255
            Label: with colons:2.2.2.0-2.2.2.9
            :3.3.3.3-3.3.3.3
            broken line without range
            Bad Start:1.2.3-1.2.3.4
            // another comment

            Reversed:9.9.9.9-9.9.9.1
            IPv6 Org:2001:db8::-2001:db8::ffff
            Mixed:1.1.1.1-::2\r
            """
        let parsed = try BlocklistParser.parse(bytes(text), source: "lists/x.p2p", format: nil)
        #expect(parsed.format == .p2p)
        #expect(parsed.entries.map(\.label) == ["Some Org", "Label: with colons", "", "IPv6 Org"])
        #expect(parsed.entries[1].range == (try IPRange(parsing: "2.2.2.0-2.2.2.9")))
        #expect(parsed.entries[3].range.first.description == "2001:db8::")
        #expect(parsed.issues.map(\.line) == [5, 6, 9, 11])
        #expect(parsed.issues[0].description == "lists/x.p2p:5: expected 'label:first-last', found no '-'")
        #expect(parsed.issues[1].description == "lists/x.p2p:6: bad range start '1.2.3'")
        #expect(parsed.issues[2].reason.contains("after its end"))
        #expect(parsed.issues[3].reason.contains("mixes IPv4 and IPv6"))
    }

    @Test func emuleDatLevelsCommentsAndLabels() throws {
        let text = """
            // eMule ipfilter
            001.009.096.105 - 001.009.096.105 , 000 , Org, with comma
            002.000.000.000 - 002.000.000.255 , 200 , Allowed (level > 127)
            003.000.000.000 - 003.000.000.255 , 127 , Still blocked
            004.000.000.000 - 004.000.000.255
            005.000.000.000 - 005.000.0.x , 000 , Bad end
            006.000.000.000 - 006.000.000.255 , abc , Bad level
            """
        let parsed = try BlocklistParser.parse(bytes(text), source: "ipfilter.dat", format: nil)
        #expect(parsed.format == .dat)
        #expect(parsed.entries.map(\.label) == ["Org, with comma", "Still blocked", ""])
        #expect(parsed.entries[0].range == IPRange(IPAddress("1.9.96.105")!))
        #expect(parsed.allowedLines == 1)
        #expect(parsed.issues.map(\.line) == [6, 7])
        #expect(parsed.issues[1].reason.hasPrefix("bad access level 'abc'"))
    }

    @Test func plainCIDRLinesWithComments() throws {
        let text = """
            10.0.0.0/8   # private
            192.0.2.7
            2001:db8::/48 # documentation
            198.51.100.1-198.51.100.20
            10.0.0.0/40
            hello
            """
        let parsed = try BlocklistParser.parse(bytes(text), source: "plain.txt", format: nil)
        #expect(parsed.format == .cidr)
        #expect(parsed.entries.count == 4)
        #expect(parsed.entries[0].label == "private" && parsed.entries[0].range.addressCount == 1 << 24)
        #expect(parsed.entries[2].range.last.description == "2001:db8:0:ffff:ffff:ffff:ffff:ffff")
        #expect(parsed.issues.map(\.description) == [
            "plain.txt:5: bad prefix length '40' for IPv4 (0-32)",
            "plain.txt:6: not an address, prefix or range: 'hello'",
        ])
    }

    @Test func aFileWithNothingValidIsAnErrorNotAnEmptyList() throws {
        #expect(throws: BlocklistError.noEntries(source: "junk", badLines: 2)) {
            try BlocklistParser.parse(bytes("junk\nmore junk\n"), source: "junk")
        }
        #expect(throws: BlocklistError.noEntries(source: "c", badLines: 0)) {
            try BlocklistParser.parse(bytes("# only a comment\n\n"), source: "c")
        }
    }

    @Test func gzipIsDetectedByMagicAndBadGzipIsReported() throws {
        let dir = try TemporaryDirectory("blocklist-gz")
        let file = dir.url.appendingPathComponent("l.p2p")
        try "A:1.1.1.0-1.1.1.255\nB:2.2.2.2-2.2.2.2\nnot valid\n".write(to: file, atomically: true, encoding: .utf8)
        try runTool("gzip", ["-9", file.path])
        let gz = try [UInt8](Data(contentsOf: dir.url.appendingPathComponent("l.p2p.gz")))
        #expect(BlocklistParser.isGzip(gz))
        let parsed = try BlocklistParser.parse(gz, source: "l.p2p.gz")
        #expect(parsed.wasGzipped && parsed.entries.count == 2 && parsed.issues.map(\.line) == [3])
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)  // the standard check value
        var flipped = gz
        flipped[flipped.count / 2] ^= 0x01
        var truncated = gz
        truncated.removeLast(8)
        for bad in [flipped, truncated, Array(gz.prefix(12))] {
            #expect(throws: BlocklistError.self) { try BlocklistParser.parse(bad, source: "bad.gz") }
        }
    }

    @Test func mergeOverlapsAdjacencyAndFamilies() throws {
        func e(_ r: String, _ l: String) throws -> BlocklistEntry { BlocklistEntry(range: try IPRange(parsing: r), label: l) }
        let entries = [
            try e("1.0.0.10-1.0.0.20", "A"), try e("1.0.0.0-1.0.0.15", "B"),   // overlap → one range, both labels
            try e("1.0.0.21-1.0.0.30", "A"),                                   // adjacent, label differs → kept apart
            try e("1.0.0.31-1.0.0.40", "A"),                                   // adjacent, same label → merged
            try e("1.0.0.35-1.0.0.36", "C"),                                   // contained
            try e("255.255.255.255", "Top"), try e("::1:0:0:0-::1:0:0:ff", "v6 after v4"),
            try e("2001:db8::/33", "X"), try e("2001:db8:8000::/33", "X"),     // adjacent IPv6 halves
        ]
        let merged = BlocklistEntry.merge(entries)
        #expect(merged.map(\.range.description) == [
            "1.0.0.0-1.0.0.20", "1.0.0.21-1.0.0.40", "255.255.255.255", "::1:0:0:0-::1:0:0:ff",
            "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        ])
        #expect(merged[0].label == "B | A" && merged[1].label == "A | C")
        // The enforced union also merges adjacent ranges whatever their labels, never across families.
        let union = IPRangeSet(merging: entries.map(\.range))
        #expect(union.ranges.map(\.description) == [
            "1.0.0.0-1.0.0.40", "255.255.255.255", "::1:0:0:0-::1:0:0:ff",
            "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        ])
        #expect(union.contains(IPAddress("1.0.0.33")!) && !union.contains(IPAddress("1.0.0.41")!))
        #expect(union.range(containing: IPAddress("2001:db8:1234::")!)?.first.description == "2001:db8::")
        #expect(!union.contains(IPAddress("::1")!) && !union.contains(IPAddress("0.255.255.255")!))
        #expect(union.ipv4AddressCount == 42)
    }

    @Test func p2pExportRoundTrip() throws {
        let text = "Org One:1.2.3.0-1.2.3.255\nWeird: label:9.0.0.1-9.0.0.1\nV6:2001:db8::1-2001:db8::9\n"
        let parsed = try BlocklistParser.parse(bytes(text), source: "a.p2p")
        let spy = Detection(address: IPAddress("5.5.5.5")!, port: 1, reason: .valuesForFakeInfohash, detail: "d",
                            detectedAt: Date(), torrent: TorrentTag(hex: "00"), expiresAt: Date())
        let out = P2PExporter.render(entries: parsed.entries.map { ("l", $0) }, spies: [spy])
        #expect(out.contains("l: Weird: label:9.0.0.1-9.0.0.1\n") && out.hasSuffix("spy: values-for-fake-infohash:5.5.5.5-5.5.5.5\n"))
        let back = try BlocklistParser.parse(bytes(out), source: "export.p2p")
        #expect(back.issues.isEmpty && back.format == .p2p)
        #expect(back.entries.map(\.range) == parsed.entries.map(\.range) + [IPRange(spy.address)])
        #expect(back.entries[1].label == "l: Weird: label")
    }

    @Test func theShippedSampleListImportsCleanly() throws {
        let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("etc/blocklist.sample.p2p")
        let parsed = try BlocklistParser.parse([UInt8](try Data(contentsOf: sample)), source: sample.path)
        #expect(parsed.issues.isEmpty && parsed.entries.count == 4 && parsed.format == .p2p)
        #expect(parsed.entries[1].label == "Example Org: Anti-P2P, Inc.")
        #expect(parsed.entries[3].range == (try IPRange(parsing: "2001:db8:1::/112")))
    }

    @Test func incrementalInsertEqualsAFullMerge() throws {
        var rng = SplitMix64(seed: 42)
        func randomRange() -> IPRange {
            if rng.next() % 5 == 0 {
                let a = IPAddress(high: 0x2001_0db8_0000_0000 | rng.next() % 64, low: rng.next() % 1000)
                return try! IPRange(a, IPAddress(high: a.high, low: a.low + rng.next() % 100))
            }
            let a = UInt32(rng.next() % 10_000)
            return try! IPRange(IPAddress(ipv4: a), IPAddress(ipv4: a + UInt32(rng.next() % 20)))
        }
        for _ in 0..<50 {
            let base = (0..<200).map { _ in randomRange() }, extra = (0..<10).map { _ in randomRange() }
            let incremental = IPRangeSet(merging: base).inserting(extra)
            #expect(incremental == IPRangeSet(merging: base + extra))
            // Disjoint and non-adjacent within a family, sorted.
            for (x, y) in zip(incremental.ranges, incremental.ranges.dropFirst()) {
                #expect(x.last < y.first && (x.isIPv4 != y.isIPv4 || x.last.successor != y.first))
            }
        }
    }
}

