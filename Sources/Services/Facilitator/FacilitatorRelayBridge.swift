import Foundation
import NIOCore
import OnionRouting
import OnionTransport
import PeersmProtocol
import TorCells

/// Connects a `FacilitatorService` to an `OnionRelayServer` (the TLS node runtime): relay messages
/// (`applicationCommands`) reaching the server as last hop go to the service in cell order; the service's answers go
/// back onto the server's event loop in the order they were produced.
///
/// Both directions are bounded. Toward the service: DB_QUERY, DB_SENDME and DB_END count against no
/// window and the ORPort always reads, so messages a circuit has waiting for the (busy) service are
/// capped per circuit and in total; a circuit over its share is destroyed with RESOURCELIMIT and its
/// excess dropped. Toward the client: a `CircuitSendGate` stops the service's streams on a circuit
/// whose relay queue is full and resumes them when the relay reports the queue drained.
public final class FacilitatorRelayBridge: OnionRelayApplication, FacilitatorTransport, @unchecked Sendable {
    // @unchecked Sendable: `server` and `gate` are written once before any message flows, then only
    // read; `pending` is behind `lock`.
    private enum Event {
        case message(RelayCircuitID, UInt16, UInt8, ByteBuffer)
        case streamClosed(RelayCircuitID, UInt16)
        case circuitClosed(RelayCircuitID)
        case writable(RelayCircuitID)
    }

    /// The relay commands the server must hand to this bridge: set them as the server's
    /// `relay.applicationCommands` (the Tor layers know no Peersm command).
    public static let applicationCommands = ApplicationCommands.peersm

    /// Messages one circuit may have waiting for the service.
    public let maximumPendingPerCircuit: Int
    /// Messages all circuits together may have waiting for the service.
    public let maximumPending: Int

    private let events: AsyncStream<Event>
    private let sink: AsyncStream<Event>.Continuation
    private weak var server: OnionRelayServer?
    private var gate = CircuitSendGate(pauseBytes: CircuitQueueLimits.standard.pauseBytes)
    private let lock = NSLock()
    private var pending: [RelayCircuitID: Int] = [:]
    private var pendingTotal = 0

    public init(maximumPendingPerCircuit: Int = 256, maximumPending: Int = 16384) {
        self.maximumPendingPerCircuit = max(1, maximumPendingPerCircuit)
        self.maximumPending = max(1, maximumPending)
        (events, sink) = AsyncStream.makeStream()
    }

    /// Starts delivering the relay's events to `service` (call once).
    public func attach(_ service: FacilitatorService) {
        let events = self.events
        Task {
            for await event in events {
                switch event {
                case .message(let circuit, let stream, let command, let body):
                    await service.received(circuit: circuit, streamID: stream, command: command, body: body)
                    self.delivered(circuit)
                case .streamClosed(let circuit, let stream):
                    await service.streamClosed(circuit: circuit, streamID: stream)
                case .circuitClosed(let circuit):
                    await service.circuitClosed(circuit)
                case .writable(let circuit):
                    await service.circuitWritable(circuit)
                }
            }
        }
    }

    /// The server whose application this is (call once, before clients connect).
    public func attach(_ server: OnionRelayServer) {
        self.server = server
        self.gate = CircuitSendGate(pauseBytes: server.configuration.relay.queueLimits.pauseBytes)
        server.application = self
    }

    public func finish() { sink.finish() }

    /// Messages waiting for the service (for tests and metrics).
    public var pendingMessages: Int { lock.withLock { pendingTotal } }

    private func delivered(_ circuit: RelayCircuitID) {
        lock.withLock {
            pendingTotal -= 1
            if let n = pending[circuit] { pending[circuit] = n > 1 ? n - 1 : nil }
        }
    }

    // MARK: OnionRelayApplication (on the server's event loop)

    public func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, stream: UInt16, received command: RelayCommand, body: ByteBuffer) {
        let admitted = lock.withLock {
            let n = pending[circuit, default: 0]
            guard n < maximumPendingPerCircuit, pendingTotal < maximumPending else { return false }
            pending[circuit] = n + 1
            pendingTotal += 1
            return true
        }
        guard admitted else {
            // A flood (or a service far behind): the circuit that overflows goes, not everyone's memory.
            // Destroyed on the next loop turn: we are inside the server's handling of this cell.
            server.eventLoop.execute { server.destroyCircuit(circuit, reason: .resourceLimit) }
            return
        }
        sink.yield(.message(circuit, stream, command.rawValue, body))
    }

    public func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamClosed stream: UInt16, reason: EndReason) {
        sink.yield(.streamClosed(circuit, stream))
    }

    public func relay(_ server: OnionRelayServer, circuitClosed circuit: RelayCircuitID, reason: DestroyReason) {
        gate.remove(circuit)
        sink.yield(.circuitClosed(circuit))
    }

    public func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamWritable stream: UInt16) {
        if gate.queueChanged(circuit, queued: server.queuedBytes(circuit)) { sink.yield(.writable(circuit)) }
    }

    // MARK: FacilitatorTransport

    public func send(circuit: RelayCircuitID, streamID: UInt16, command: PeersmRelayCommand, body: ByteBuffer) {
        send(circuit: circuit, streamID: streamID, batch: [(command, body)])
    }

    public func send(circuit: RelayCircuitID, streamID: UInt16, batch: [(command: PeersmRelayCommand, body: ByteBuffer)]) {
        guard let server else { return }
        let bytes = batch.reduce(0) { $0 + $1.body.readableBytes }
        _ = gate.submitted(circuit, bytes: bytes)
        let gate = self.gate
        server.eventLoop.execute {
            // A `false` from the server needs no action here: the gate already counts these bytes and
            // the server calls `streamWritable` on the relay's `resumeProducer`.
            let resumed = gate.deliver(circuit, bytes: bytes, batch, send: { message in
                try server.sendApplicationMessage(circuit, stream: streamID, command: RelayCommand(message.command.rawValue), body: message.body)
            }, queued: { server.queuedBytes(circuit) })
            if resumed { self.sink.yield(.writable(circuit)) }
        }
    }

    public func isWritable(circuit: RelayCircuitID) -> Bool { gate.isWritable(circuit) }

    public func endStream(circuit: RelayCircuitID, streamID: UInt16) {
        guard let server else { return }
        server.eventLoop.execute {
            // Already gone if the client sent RELAY_END or the circuit closed.
            try? server.releaseApplicationStream(circuit, stream: streamID)
        }
    }
}
