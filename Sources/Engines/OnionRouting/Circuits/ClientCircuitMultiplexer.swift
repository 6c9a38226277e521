import NIOCore
import TorCells

/// All client circuits over one channel: allocates their IDs, routes incoming cells to them by ID, and
/// forgets them once closed. The owner (the channel handler) performs the returned actions.
public struct ClientCircuitMultiplexer {
    /// What happened to one incoming cell.
    public enum Outcome: Hashable, Sendable {
        /// The cell went to this circuit, which returned these actions.
        case circuit(UInt32, [ClientCircuitAction])
        /// The cell was dropped (tor-spec: cells for unknown circuits are ignored). Worth a debug log.
        case dropped(circuitID: UInt32, reason: String)
    }

    private var table: CircuitMultiplexer<ClientCircuit>
    private var rng: any RandomNumberGenerator
    private let makeCircuitRNG: () -> any RandomNumberGenerator
    private let applicationCommands: ApplicationCommands

    /// - Parameters:
    ///   - role: `.initiator` when we opened the channel, as clients always do.
    ///   - rng: picks circuit IDs.
    ///   - makeCircuitRNG: each circuit's own generator for handshake secrets, relay-cell padding and stream
    ///     IDs. Both secrets and padding must be unpredictable (authenticated SENDMEs rely on the padding),
    ///     so production uses the system CSPRNG.
    ///   - applicationCommands: the application's relay commands, passed to every circuit.
    public init(
        role: ChannelRole = .initiator, rng: any RandomNumberGenerator = SystemRandomNumberGenerator(),
        makeCircuitRNG: @escaping () -> any RandomNumberGenerator = { SystemRandomNumberGenerator() },
        applicationCommands: ApplicationCommands = .none
    ) {
        self.table = CircuitMultiplexer(role: role)
        self.rng = rng
        self.makeCircuitRNG = makeCircuitRNG
        self.applicationCommands = applicationCommands
    }

    public var circuitIDs: [UInt32] { Array(self.table.ids) }

    /// Start building a circuit through `path` (path[0] is this channel's peer).
    public mutating func buildCircuit(
        path: [CircuitHop], firstHop: FirstHopHandshake = .ntor, minimumSendmeVersion: UInt8 = 1
    ) throws -> (UInt32, [ClientCircuitAction]) {
        let table = self.table
        guard let id = table.allocator.allocate(using: &self.rng, inUse: { table[$0] != nil }) else {
            throw CircuitIDError.exhausted
        }
        let (circuit, actions) = try ClientCircuit.build(
            circuitID: id, path: path, firstHop: firstHop, rng: self.makeCircuitRNG(),
            minimumSendmeVersion: minimumSendmeVersion, applicationCommands: self.applicationCommands)
        self.table[id] = circuit
        return (id, actions)
    }

    /// Route a cell that arrived on the channel.
    public mutating func receive(_ cell: ChannelCell) -> Outcome {
        guard self.table[cell.circuitID] != nil else {
            return .dropped(circuitID: cell.circuitID, reason: "\(cell.command) for an unknown circuit")
        }
        return .circuit(cell.circuitID, self.withCircuit(cell.circuitID) { $0.receive(cell) }!)
    }

    /// Run an API call (open a stream, send, close, destroy) on one circuit; nil if it does not exist.
    /// The circuit is forgotten if the call closed it.
    public mutating func withCircuit<R>(_ id: UInt32, _ body: (inout ClientCircuit) throws -> R) rethrows -> R? {
        guard var circuit = self.table.remove(id) else { return nil }
        defer { if !circuit.isClosed { self.table[id] = circuit } }
        return try body(&circuit)
    }

    /// The channel is gone: every circuit on it closes.
    public mutating func channelClosed() -> [(UInt32, [ClientCircuitAction])] {
        self.table.removeAll().map { id, circuit in
            var circuit = circuit
            return (id, circuit.channelClosed())
        }
    }
}
