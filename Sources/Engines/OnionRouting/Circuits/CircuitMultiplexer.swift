// Circuit IDs and the per-channel table of circuits (tor-spec §5.1.1), the way swift-nio-ssh's
// `SSHChannelMultiplexer` owns the channel-number table of one connection.

/// Which end of a channel (TLS link) we are. With link protocol ≥ 4, circuit IDs are 4 bytes and the
/// end that opened the connection allocates IDs with the most significant bit set, the other end IDs
/// with it clear, so the two ends can never pick the same ID.
public enum ChannelRole: Hashable, Sendable {
    case initiator
    case responder

    var peer: ChannelRole { self == .initiator ? .responder : .initiator }
}

/// Allocates circuit IDs for our end of a channel and checks the IDs the peer picks.
public struct CircuitIDAllocator: Sendable {
    public let role: ChannelRole
    private static let highBit: UInt32 = 1 << 31

    public init(role: ChannelRole) {
        self.role = role
    }

    /// Whether `id` lies in the half of the ID space that `role` allocates from. 0 is never valid.
    public static func belongs(_ id: UInt32, to role: ChannelRole) -> Bool {
        guard id != 0 else { return false }
        return (id & highBit != 0) == (role == .initiator)
    }

    /// Whether the peer may open a circuit with this ID.
    public func isValidPeerID(_ id: UInt32) -> Bool {
        Self.belongs(id, to: self.role.peer)
    }

    /// A fresh random ID in our half for which `inUse` is false. Random rather than sequential, as in C tor,
    /// so IDs do not reveal how many circuits a channel has carried. Returns nil only if every try hit a
    /// used ID, which with 2^31 IDs means the table is absurdly full.
    public func allocate(
        using rng: inout some RandomNumberGenerator,
        inUse: (UInt32) -> Bool
    ) -> UInt32? {
        for _ in 0..<64 {
            var id = UInt32.random(in: 1..<Self.highBit, using: &rng)
            if self.role == .initiator { id |= Self.highBit }
            if !inUse(id) { return id }
        }
        return nil
    }
}

/// Why the multiplexer refused to register a circuit the peer asked for.
public enum CircuitIDError: Error, Hashable, Sendable {
    /// The peer used an ID from our half of the space, or 0.
    case idNotInPeerRange(UInt32)
    /// The peer reused an ID of a circuit that is still open.
    case idInUse(UInt32)
    /// We could not find a free ID.
    case exhausted
}

/// The circuits of one channel, keyed by circuit ID. `Entry` is whatever the owner keeps per circuit.
public struct CircuitMultiplexer<Entry> {
    public let allocator: CircuitIDAllocator
    public private(set) var circuits: [UInt32: Entry] = [:]

    public init(role: ChannelRole) {
        self.allocator = CircuitIDAllocator(role: role)
    }

    public var count: Int { self.circuits.count }
    public var ids: Dictionary<UInt32, Entry>.Keys { self.circuits.keys }

    public subscript(id: UInt32) -> Entry? {
        get { self.circuits[id] }
        set { self.circuits[id] = newValue }
    }

    /// Open an outbound circuit on this channel: pick an ID in our half and register `entry` under it.
    public mutating func openOutbound(
        _ entry: Entry, using rng: inout some RandomNumberGenerator
    ) throws(CircuitIDError) -> UInt32 {
        let table = self.circuits
        guard let id = self.allocator.allocate(using: &rng, inUse: { table[$0] != nil }) else {
            throw .exhausted
        }
        self.circuits[id] = entry
        return id
    }

    /// Register a circuit the peer opened (a CREATE/CREATE2/CREATE_FAST with this ID).
    public mutating func acceptInbound(_ id: UInt32, _ entry: Entry) throws(CircuitIDError) {
        guard self.allocator.isValidPeerID(id) else { throw .idNotInPeerRange(id) }
        guard self.circuits[id] == nil else { throw .idInUse(id) }
        self.circuits[id] = entry
    }

    /// Forget a circuit (after DESTROY either way). Returns its entry if it was known.
    @discardableResult
    public mutating func remove(_ id: UInt32) -> Entry? {
        self.circuits.removeValue(forKey: id)
    }

    /// Forget every circuit (the channel closed); returns what was open so the owner can tear it down.
    public mutating func removeAll() -> [(UInt32, Entry)] {
        let all = self.circuits.map { ($0.key, $0.value) }
        self.circuits.removeAll()
        return all
    }
}
