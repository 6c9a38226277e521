/// An inclusive address range `first...last` of one family (both ends IPv4, or both IPv6).
public struct IPRange: Hashable, Sendable, CustomStringConvertible {
    public let first: IPAddress
    public let last: IPAddress

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case reversed(IPAddress, IPAddress)
        case mixedFamilies(IPAddress, IPAddress)
        case badPrefix(String)
        case badAddress(String)

        public var description: String {
            switch self {
            case .reversed(let a, let b): return "range start \(a) is after its end \(b)"
            case .mixedFamilies(let a, let b): return "range mixes IPv4 and IPv6 (\(a) - \(b))"
            case .badPrefix(let p): return "bad prefix length '\(p)'"
            case .badAddress(let a): return "not an IP address: '\(a)'"
            }
        }
    }

    public init(_ first: IPAddress, _ last: IPAddress) throws {
        guard first.isIPv4 == last.isIPv4 else { throw Error.mixedFamilies(first, last) }
        guard first <= last else { throw Error.reversed(first, last) }
        self.first = first
        self.last = last
    }

    /// A single address.
    public init(_ address: IPAddress) {
        first = address
        last = address
    }

    /// Trusted construction for already-validated ends (merging, decoding stored rows): the caller
    /// guarantees one family and `first <= last`.
    public init(unchecked first: IPAddress, _ last: IPAddress) {
        self.first = first
        self.last = last
    }

    /// `a.b.c.d/p` or `x:y::/p`. Host bits below the prefix are ignored, as routers do.
    public init(address: IPAddress, prefixLength: Int) throws {
        let width = address.isIPv4 ? 32 : 128
        guard (0...width).contains(prefixLength) else { throw Error.badPrefix(String(prefixLength)) }
        let hostBits = width - prefixLength
        // Host mask over the 128-bit value; IPv4 host bits are in the low word only.
        let lowMask: UInt64 = hostBits >= 64 ? .max : (hostBits == 0 ? 0 : (UInt64(1) << UInt64(hostBits)) - 1)
        let highMask: UInt64 = hostBits <= 64 ? 0 : (hostBits >= 128 ? .max : (UInt64(1) << UInt64(hostBits - 64)) - 1)
        first = IPAddress(high: address.high & ~highMask, low: address.low & ~lowMask)
        last = IPAddress(high: address.high | highMask, low: address.low | lowMask)
    }

    /// Parses `ip`, `ip/prefix`, or `ip-ip` (spaces around `-` allowed). Addresses are strict unless
    /// `allowingLeadingZeros` (blocklist files zero-pad).
    public init(parsing text: some StringProtocol, allowingLeadingZeros: Bool = false) throws {
        let t = text.trimmingASCIIWhitespace()
        if let slash = t.firstIndex(of: "/") {
            let addrText = t[..<slash], prefixText = t[t.index(after: slash)...]
            guard let address = IPAddress(addrText, allowingLeadingZeros: allowingLeadingZeros) else { throw Error.badAddress(String(addrText)) }
            guard let p = Int(prefixText) else { throw Error.badPrefix(String(prefixText)) }
            try self.init(address: address, prefixLength: p)
        } else if let dash = t.lastIndex(of: "-") {
            let a = t[..<dash].trimmingASCIIWhitespace(), b = t[t.index(after: dash)...].trimmingASCIIWhitespace()
            guard let first = IPAddress(a, allowingLeadingZeros: allowingLeadingZeros) else { throw Error.badAddress(String(a)) }
            guard let last = IPAddress(b, allowingLeadingZeros: allowingLeadingZeros) else { throw Error.badAddress(String(b)) }
            try self.init(first, last)
        } else {
            guard let address = IPAddress(t, allowingLeadingZeros: allowingLeadingZeros) else { throw Error.badAddress(String(t)) }
            self.init(address)
        }
    }

    public var isIPv4: Bool { first.isIPv4 }

    public func contains(_ address: IPAddress) -> Bool { first <= address && address <= last }

    public func overlaps(_ other: IPRange) -> Bool { first <= other.last && other.first <= last }

    /// Overlapping or directly adjacent (`last + 1 == other.first` or the reverse), so one range can cover both.
    public func touches(_ other: IPRange) -> Bool {
        if overlaps(other) { return true }
        if let next = last.successor, next == other.first { return true }
        if let next = other.last.successor, next == first { return true }
        return false
    }

    /// Number of addresses, saturating at UInt64.max (an IPv6 /64 or larger saturates).
    public var addressCount: UInt64 {
        let d: UInt64  // last - first, when it fits in 64 bits
        if first.high == last.high {
            d = last.low - first.low
        } else if last.high - first.high == 1 && last.low < first.low {
            d = (UInt64.max - first.low) + last.low + 1
        } else {
            return .max
        }
        return d == .max ? .max : d + 1
    }

    /// `first-last`, the form `.p2p` and plain range lines use.
    public var description: String { first == last ? "\(first)" : "\(first)-\(last)" }
}

/// A set of addresses kept as sorted, disjoint, non-adjacent ranges: the union that is enforced.
/// Lookup is a binary search; building is a sort and one merge pass.
public struct IPRangeSet: Sendable, Equatable, Sequence {
    public private(set) var ranges: [IPRange]

    public init() { ranges = [] }

    /// Sorts and merges overlapping and adjacent ranges (IPv4 and IPv6 never merge across families:
    /// the IPv4-mapped block is bounded by non-IPv4 addresses on both sides, and ranges never mix families).
    public init<S: Sequence>(merging input: S) where S.Element == IPRange {
        var sorted = Array(input)
        sorted.sort { $0.first < $1.first }
        self.init(mergingSorted: sorted)
    }

    /// Merges ranges already sorted by their first address.
    init(mergingSorted sorted: [IPRange]) {
        var out: [IPRange] = []
        out.reserveCapacity(sorted.count)
        for r in sorted {
            if let lastRange = out.last, lastRange.isIPv4 == r.isIPv4,
               r.first <= lastRange.last || lastRange.last.successor == r.first {
                if r.last > lastRange.last { out[out.count - 1] = IPRange(unchecked: lastRange.first, r.last) }
            } else {
                out.append(r)
            }
        }
        ranges = out
    }

    public var count: Int { ranges.count }
    public var isEmpty: Bool { ranges.isEmpty }

    public func makeIterator() -> IndexingIterator<[IPRange]> { ranges.makeIterator() }

    /// The range holding `address`, if any.
    public func range(containing address: IPAddress) -> IPRange? {
        var lo = 0, hi = ranges.count
        while lo < hi {  // first index whose `first` > address
            let mid = (lo + hi) / 2
            if ranges[mid].first <= address { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0, ranges[lo - 1].last >= address else { return nil }
        return ranges[lo - 1]
    }

    public func contains(_ address: IPAddress) -> Bool { range(containing: address) != nil }

    public func union(_ other: IPRangeSet) -> IPRangeSet { inserting(other.ranges) }

    /// This set plus a few more ranges: one linear merge of two sorted runs instead of a full
    /// re-sort, so adding a spy to a 500,000-range union stays cheap.
    public func inserting(_ extra: [IPRange]) -> IPRangeSet {
        let added = extra.sorted { $0.first < $1.first }
        var merged: [IPRange] = []
        merged.reserveCapacity(ranges.count + added.count)
        var i = 0, j = 0
        while i < ranges.count || j < added.count {
            if j == added.count || (i < ranges.count && ranges[i].first <= added[j].first) {
                merged.append(ranges[i]); i += 1
            } else {
                merged.append(added[j]); j += 1
            }
        }
        return IPRangeSet(mergingSorted: merged)
    }

    /// The IPv4 ranges as host-order integers: what an `lt::address_v4` rule takes.
    public var ipv4Pairs: [(first: UInt32, last: UInt32)] {
        ranges.compactMap { r in r.first.ipv4.flatMap { a in r.last.ipv4.map { (a, $0) } } }
    }

    /// The IPv6 ranges as 16 network-order bytes each: what an `lt::address_v6` rule takes.
    public var ipv6Pairs: [(first: [UInt8], last: [UInt8])] {
        ranges.filter { !$0.isIPv4 }.map { ($0.first.bytes, $0.last.bytes) }
    }

    public var ipv4AddressCount: UInt64 {
        ranges.lazy.filter(\.isIPv4).reduce(0) { $0 &+ $1.addressCount }
    }
}

extension StringProtocol {
    fileprivate func trimmingASCIIWhitespace() -> SubSequence {
        var s = self[...]
        while let c = s.first, c == " " || c == "\t" || c == "\r" || c == "\n" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" || c == "\n" { s = s.dropLast() }
        return s
    }
}
