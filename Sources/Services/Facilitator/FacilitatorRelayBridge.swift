import NIOCore
import OnionRouting
import OnionTransport
import PeersmProtocol
import TorCells

/// Connects a `FacilitatorService` to an `OnionRelayServer` (the TLS node runtime): relay messages
/// 80–85 reaching the server as last hop go to the service in cell order; the service's answers go
/// back onto the server's event loop in the order they were produced.
public final class FacilitatorRelayBridge: OnionRelayApplication, FacilitatorTransport, @unchecked Sendable {
    // @unchecked Sendable: `server` is written once before any message flows, then only read.
    private enum Event {
        case message(RelayCircuitID, UInt16, UInt8, ByteBuffer)
        case streamClosed(RelayCircuitID, UInt16)
        case circuitClosed(RelayCircuitID)
    }

    private let events: AsyncStream<Event>
    private let sink: AsyncStream<Event>.Continuation
    private weak var server: OnionRelayServer?

    public init() {
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
                case .streamClosed(let circuit, let stream):
                    await service.streamClosed(circuit: circuit, streamID: stream)
                case .circuitClosed(let circuit):
                    await service.circuitClosed(circuit)
                }
            }
        }
    }

    /// The server whose application this is (call once, before clients connect).
    public func attach(_ server: OnionRelayServer) {
        self.server = server
        server.application = self
    }

    public func finish() { sink.finish() }

    // MARK: OnionRelayApplication (on the server's event loop)

    public func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, stream: UInt16, received command: RelayCommand, body: ByteBuffer) {
        sink.yield(.message(circuit, stream, command.rawValue, body))
    }

    public func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamClosed stream: UInt16, reason: EndReason) {
        sink.yield(.streamClosed(circuit, stream))
    }

    public func relay(_ server: OnionRelayServer, circuitClosed circuit: RelayCircuitID, reason: DestroyReason) {
        sink.yield(.circuitClosed(circuit))
    }

    // MARK: FacilitatorTransport

    public func send(circuit: RelayCircuitID, streamID: UInt16, command: PeersmRelayCommand, body: ByteBuffer) {
        guard let server else { return }
        server.eventLoop.execute {
            // The circuit or stream may be gone (DESTROY crossed our answer): dropping is what a relay does.
            _ = try? server.sendApplicationMessage(circuit, stream: streamID, command: RelayCommand(command.rawValue), body: body)
        }
    }

    public func send(circuit: RelayCircuitID, streamID: UInt16, batch: [(command: PeersmRelayCommand, body: ByteBuffer)]) {
        guard let server else { return }
        server.eventLoop.execute {
            for message in batch {
                // A failure means the circuit or stream is gone: the rest would fail alike.
                do {
                    try server.sendApplicationMessage(circuit, stream: streamID, command: RelayCommand(message.command.rawValue), body: message.body)
                } catch {
                    return
                }
            }
        }
    }
}
