import CompressNIO
import Foundation
import NIOCore
import NetBasics

/// The text blocklist formats home-router users know from qBittorrent, Transmission and Deluge.
public enum BlocklistFormat: String, CaseIterable, Sendable, Codable {
    /// PeerGuardian text: `Some Org:1.0.0.0-1.255.255.255` (the label may itself contain ':'; IPv6 allowed).
    case p2p
    /// eMule `ipfilter.dat`: `001.009.096.105 - 001.009.096.105 , 000 , Org`; access level > 127 means
    /// "allowed", so such lines are skipped (qBittorrent's rule).
    case dat
    /// One `ip`, `ip/prefix` or `ip-ip` per line, optionally followed by `# comment` (used as the label).
    case cidr
}

/// One range of a list with the list's own words for it (the organisation, or why it is listed).
public struct BlocklistEntry: Hashable, Sendable {
    public var range: IPRange
    public var label: String
    public init(range: IPRange, label: String) {
        self.range = range
        self.label = label
    }
}

/// A line that was skipped, reported the way compilers do: `file:line: reason`.
public struct ParseIssue: Hashable, Sendable, CustomStringConvertible {
    public let source: String
    public let line: Int
    public let reason: String
    public var description: String { "\(source):\(line): \(reason)" }
}

public struct ParsedBlocklist: Sendable {
    public let format: BlocklistFormat
    public let entries: [BlocklistEntry]
    public let issues: [ParseIssue]
    /// Lines of the eMule format whose access level says "allowed" (skipped on purpose, not errors).
    public let allowedLines: Int
    public let wasGzipped: Bool
}

public enum BlocklistError: Error, Equatable, CustomStringConvertible {
    case gzip(source: String, reason: String)
    case tooLarge(source: String, limit: Int)
    case noEntries(source: String, badLines: Int)
    case fetch(source: String, reason: String)
    case unknownList(String)
    case invalidName(String)

    public var description: String {
        switch self {
        case .gzip(let s, let r): return "\(s): not a readable gzip stream (\(r))"
        case .tooLarge(let s, let limit): return "\(s): larger than the \(limit / 1_048_576) MiB limit for a blocklist"
        case .noEntries(let s, let bad):
            return bad > 0 ? "\(s): no valid range in the file (\(bad) malformed line\(bad == 1 ? "" : "s"))"
                : "\(s): the file has no ranges (only blank lines or comments)"
        case .fetch(let s, let r): return "\(s): \(r)"
        case .unknownList(let n): return "no list named '\(n)'"
        case .invalidName(let n): return "bad list name '\(n)': use 1-64 characters, no newline"
        }
    }
}

/// Pure parser: bytes in, entries and per-line issues out. No I/O.
public enum BlocklistParser {
    /// Decompressed size cap: the largest public lists are ~20 MB of text; this bounds a hostile gzip bomb.
    public static let maxTextBytes = 512 * 1_048_576

    /// Parses a list, gunzipping first when the bytes start with the gzip magic. `format` nil means
    /// detect it from the first significant lines. Throws only when nothing usable is in the file.
    public static func parse(_ data: [UInt8], source: String, format: BlocklistFormat? = nil) throws -> ParsedBlocklist {
        var text = data
        let gzipped = isGzip(data)
        if gzipped { text = try gunzip(data, source: source) }
        return try text.withUnsafeBufferPointer { buf in
            let lines = splitLines(buf)
            let chosen = format ?? detectFormat(lines)
            var entries: [BlocklistEntry] = []
            entries.reserveCapacity(lines.count)
            var issues: [ParseIssue] = []
            var allowed = 0
            for (index, line) in lines.enumerated() {
                let trimmed = trim(line)
                if trimmed.isEmpty || isComment(trimmed) { continue }
                switch parseLine(trimmed, format: chosen) {
                case .entry(let e): entries.append(e)
                case .allowed: allowed += 1
                case .bad(let reason): issues.append(ParseIssue(source: source, line: index + 1, reason: reason))
                }
            }
            if entries.isEmpty && allowed == 0 { throw BlocklistError.noEntries(source: source, badLines: issues.count) }
            return ParsedBlocklist(format: chosen, entries: entries, issues: issues, allowedLines: allowed, wasGzipped: gzipped)
        }
    }

    public static func isGzip(_ data: [UInt8]) -> Bool { data.count >= 2 && data[0] == 0x1F && data[1] == 0x8B }

    static func gunzip(_ data: [UInt8], source: String) throws -> [UInt8] {
        var buffer = ByteBuffer(bytes: data)
        do {
            var out = try buffer.decompress(with: .gzip(), maxSize: maxTextBytes)
            let text = out.readBytes(length: out.readableBytes) ?? []
            // zlib stops at the end of the deflate data without insisting on the trailer, so a
            // truncated or corrupted download would import silently: check CRC-32 and length (RFC 1952 §2.3.1).
            guard data.count >= 18 else { throw BlocklistError.gzip(source: source, reason: "truncated") }
            let t = data.count - 8
            let crc = UInt32(data[t]) | UInt32(data[t + 1]) << 8 | UInt32(data[t + 2]) << 16 | UInt32(data[t + 3]) << 24
            let size = UInt32(data[t + 4]) | UInt32(data[t + 5]) << 8 | UInt32(data[t + 6]) << 16 | UInt32(data[t + 7]) << 24
            guard size == UInt32(truncatingIfNeeded: text.count), crc == CRC32.checksum(text) else {
                throw BlocklistError.gzip(source: source, reason: "checksum or length mismatch: truncated or corrupt")
            }
            return text
        } catch let error as BlocklistError {
            throw error
        } catch let error as CompressNIOError where error == .bufferOverflow {
            throw BlocklistError.tooLarge(source: source, limit: maxTextBytes)
        } catch {
            throw BlocklistError.gzip(source: source, reason: "\(error)")
        }
    }

    /// Tries every format on the first 64 significant lines and keeps the one that reads most of them.
    static func detectFormat(_ lines: [UnsafeBufferPointer<UInt8>]) -> BlocklistFormat {
        var score: [BlocklistFormat: Int] = [:]
        var seen = 0
        for line in lines {
            let t = trim(line)
            if t.isEmpty || isComment(t) { continue }
            for f in BlocklistFormat.allCases {
                if case .bad = parseLine(t, format: f) { continue }
                score[f, default: 0] += 1
            }
            seen += 1
            if seen == 64 { break }
        }
        // On a tie prefer the stricter format: a dat line is rarely also valid p2p, and p2p rarely plain.
        return [BlocklistFormat.dat, .p2p, .cidr].max { score[$0, default: 0] < score[$1, default: 0] } ?? .p2p
    }

    enum LineResult {
        case entry(BlocklistEntry)
        case allowed
        case bad(String)
    }

    static func parseLine(_ line: UnsafeBufferPointer<UInt8>, format: BlocklistFormat) -> LineResult {
        switch format {
        case .p2p: return parseP2P(line)
        case .dat: return parseDat(line)
        case .cidr: return parseCIDR(line)
        }
    }

    // `label:first-last`. The range starts after the ':' that is followed by a valid address: the last
    // ':' for IPv4, else the first ':' from the left whose remainder parses (IPv6 contains ':' itself).
    static func parseP2P(_ line: UnsafeBufferPointer<UInt8>) -> LineResult {
        guard let dash = line.lastIndex(of: UInt8(ascii: "-")) else { return .bad("expected 'label:first-last', found no '-'") }
        let endText = trim(slice(line, dash + 1, line.count))
        guard let last = IPAddress.parse(endText, allowingLeadingZeros: true) else { return .bad("bad range end '\(string(endText))'") }
        let head = slice(line, 0, dash)
        guard let lastColon = head.lastIndex(of: UInt8(ascii: ":")) else {
            return .bad("expected 'label:first-last', found no ':' before the range")
        }
        var startColon = -1
        var first: IPAddress? = nil
        if let a = IPAddress.parse(trim(slice(head, lastColon + 1, head.count)), allowingLeadingZeros: true) {
            startColon = lastColon; first = a
        } else {
            for i in 0..<lastColon where head[i] == UInt8(ascii: ":") {
                if let a = IPAddress.parse(trim(slice(head, i + 1, head.count)), allowingLeadingZeros: true) { startColon = i; first = a; break }
            }
        }
        guard let first else { return .bad("bad range start '\(string(trim(slice(head, lastColon + 1, head.count))))'") }
        return makeEntry(first, last, label: string(trim(slice(head, 0, startColon))))
    }

    // `first - last , level , label` (label may contain commas; level and label are optional).
    static func parseDat(_ line: UnsafeBufferPointer<UInt8>) -> LineResult {
        let comma = line.firstIndex(of: UInt8(ascii: ",")) ?? line.count
        let rangePart = slice(line, 0, comma)
        guard let dash = rangePart.firstIndex(of: UInt8(ascii: "-")) else {
            return .bad("expected 'first - last , level , label', found no '-'")
        }
        let a = trim(slice(rangePart, 0, dash)), b = trim(slice(rangePart, dash + 1, rangePart.count))
        guard let first = IPAddress.parse(a, allowingLeadingZeros: true) else { return .bad("bad range start '\(string(a))'") }
        guard let last = IPAddress.parse(b, allowingLeadingZeros: true) else { return .bad("bad range end '\(string(b))'") }
        var label = ""
        if comma < line.count {
            let rest = slice(line, comma + 1, line.count)
            let comma2 = rest.firstIndex(of: UInt8(ascii: ",")) ?? rest.count
            let levelText = trim(slice(rest, 0, comma2))
            guard let level = Int(string(levelText)), level >= 0 else {
                return .bad("bad access level '\(string(levelText))' (expected a number 0-255)")
            }
            if level > 127 { return .allowed }
            if comma2 < rest.count { label = string(trim(slice(rest, comma2 + 1, rest.count))) }
        }
        return makeEntry(first, last, label: label)
    }

    // `ip`, `ip/prefix` or `ip-ip`, then optionally `# label`.
    static func parseCIDR(_ line: UnsafeBufferPointer<UInt8>) -> LineResult {
        var body = line, label = ""
        if let hash = line.firstIndex(of: UInt8(ascii: "#")) {
            body = trim(slice(line, 0, hash))
            label = string(trim(slice(line, hash + 1, line.count)))
        }
        if let slash = body.firstIndex(of: UInt8(ascii: "/")) {
            let a = trim(slice(body, 0, slash)), p = trim(slice(body, slash + 1, body.count))
            guard let address = IPAddress.parse(a, allowingLeadingZeros: true) else { return .bad("bad address '\(string(a))'") }
            guard let prefix = Int(string(p)), let range = try? IPRange(address: address, prefixLength: prefix) else {
                return .bad("bad prefix length '\(string(p))' for \(address.isIPv4 ? "IPv4 (0-32)" : "IPv6 (0-128)")")
            }
            return .entry(BlocklistEntry(range: range, label: label))
        }
        if let dash = body.firstIndex(of: UInt8(ascii: "-")) {
            let a = trim(slice(body, 0, dash)), b = trim(slice(body, dash + 1, body.count))
            guard let first = IPAddress.parse(a, allowingLeadingZeros: true) else { return .bad("bad range start '\(string(a))'") }
            guard let last = IPAddress.parse(b, allowingLeadingZeros: true) else { return .bad("bad range end '\(string(b))'") }
            return makeEntry(first, last, label: label)
        }
        guard let address = IPAddress.parse(body, allowingLeadingZeros: true) else { return .bad("not an address, prefix or range: '\(string(body))'") }
        return .entry(BlocklistEntry(range: IPRange(address), label: label))
    }

    static func makeEntry(_ first: IPAddress, _ last: IPAddress, label: String) -> LineResult {
        do {
            return .entry(BlocklistEntry(range: try IPRange(first, last), label: label))
        } catch {
            return .bad("\(error)")
        }
    }

    // MARK: byte helpers

    static func splitLines(_ buf: UnsafeBufferPointer<UInt8>) -> [UnsafeBufferPointer<UInt8>] {
        var lines: [UnsafeBufferPointer<UInt8>] = []
        var start = 0
        if buf.count >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF { start = 3 }  // UTF-8 BOM
        var i = start
        while i < buf.count {
            if buf[i] == UInt8(ascii: "\n") {
                lines.append(slice(buf, start, i))
                start = i + 1
            }
            i += 1
        }
        if start < buf.count { lines.append(slice(buf, start, buf.count)) }
        return lines
    }

    static func slice(_ b: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: b[from..<to])
    }

    static func trim(_ b: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        var s = 0, e = b.count
        while s < e && isSpace(b[s]) { s += 1 }
        while e > s && isSpace(b[e - 1]) { e -= 1 }
        return slice(b, s, e)
    }

    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0B || c == 0x0C }

    static func isComment(_ t: UnsafeBufferPointer<UInt8>) -> Bool {
        t[0] == UInt8(ascii: "#") || (t.count >= 2 && t[0] == UInt8(ascii: "/") && t[1] == UInt8(ascii: "/"))
    }

    /// Text for labels and messages: invalid UTF-8 is replaced, control characters dropped (they
    /// would break the `.p2p` export and terminal output), long labels cut.
    static func string(_ b: UnsafeBufferPointer<UInt8>) -> String {
        var s = String(decoding: b, as: UTF8.self)
        if s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            s = String(String.UnicodeScalarView(s.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }))
        }
        return s.count > 200 ? String(s.prefix(200)) + "…" : s
    }
}

extension BlocklistEntry {
    /// Merges one list's entries for storage: overlapping ranges always merge (their labels are
    /// joined, so `check` still says every reason), adjacent ranges merge only when their labels are
    /// equal, so a lookup keeps naming the right organisation. The enforced union (`IPRangeSet`)
    /// merges adjacency regardless of labels.
    public static func merge(_ entries: [BlocklistEntry]) -> [BlocklistEntry] {
        let sorted = entries.sorted { $0.range.first < $1.range.first }
        var out: [BlocklistEntry] = []
        out.reserveCapacity(sorted.count)
        for e in sorted {
            guard var cur = out.last, cur.range.isIPv4 == e.range.isIPv4 else { out.append(e); continue }
            let overlaps = e.range.first <= cur.range.last
            let adjacentSame = cur.range.last.successor == e.range.first && cur.label == e.label
            guard overlaps || adjacentSame else { out.append(e); continue }
            if e.range.last > cur.range.last { cur.range = IPRange(unchecked: cur.range.first, e.range.last) }
            cur.label = joinLabels(cur.label, e.label)
            out[out.count - 1] = cur
        }
        return out
    }

    static func joinLabels(_ a: String, _ b: String) -> String {
        if b.isEmpty || a == b { return a }
        if a.isEmpty { return b }
        let parts = a.components(separatedBy: " | ")
        if parts.contains(b) { return a }
        // Bounded: a /8 covering thousands of small entries must not make a megabyte label.
        if parts.count >= 4 || a.count > 300 { return a.hasSuffix(" | …") ? a : a + " | …" }
        return a + " | " + b
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as the gzip trailer uses.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        bytes.withUnsafeBufferPointer { buf in
            for b in buf { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return c ^ 0xFFFF_FFFF
    }
}
