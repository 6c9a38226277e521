import NetBasics

/// Writes PeerGuardian `.p2p` text (`label:first-last`), the format every client imports.
public enum P2PExporter {
    /// One line per entry. Labels lose control characters (so a line stays a line); the parser
    /// reads the range after the last valid ':' so labels may contain ':'.
    public static func line(label: String, range: IPRange) -> String {
        let clean = String(String.UnicodeScalarView(label.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }))
        return "\(clean):\(range.first)-\(range.last)\n"
    }

    /// The static lists' ranges (labelled `list: label`) and the active spies (`spy: reason`).
    public static func render(entries: [(list: String, entry: BlocklistEntry)], spies: [Detection]) -> String {
        var out = ""
        out.reserveCapacity(entries.count * 48)
        for (list, e) in entries {
            out += line(label: e.label.isEmpty ? list : "\(list): \(e.label)", range: e.range)
        }
        for d in spies.sorted(by: { ($0.address, $0.reason.rawValue) < ($1.address, $1.reason.rawValue) }) {
            out += line(label: "spy: \(d.reason.rawValue)", range: IPRange(d.address))
        }
        return out
    }
}
