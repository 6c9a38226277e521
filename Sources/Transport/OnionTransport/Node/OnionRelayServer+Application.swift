import Foundation
import Logging
import NIOCore
import NIOPosix
import OnionRouting
import TorCells
import TorCrypto

/// The application hook of a relay: receives the relay messages whose command is in
/// `relay.applicationCommands` that reach this relay as the last hop, and answers
/// through `OnionRelayServer.sendApplicationMessage`.
///
/// Every method is called on `server.eventLoop`, in cell order, and must not block it: hand long work
/// (a torrent fetch) to another task and call back with `server.eventLoop.execute { … }`. The server
/// never calls the delegate for a circuit after `circuitClosed`.
public protocol OnionRelayApplication: AnyObject {
    /// A relay message with an application command. `stream` is 0 for circuit-level messages.
    func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, stream: UInt16, received command: RelayCommand, body: ByteBuffer)
    /// The client ended an application stream (END), or the circuit went away under it.
    func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamClosed stream: UInt16, reason: EndReason)
    /// The circuit is gone; forget everything about it.
    func relay(_ server: OnionRelayServer, circuitClosed circuit: RelayCircuitID, reason: DestroyReason)
    /// A stream on which `sendApplicationMessage` returned false: its circuit's queue has drained
    /// below `relay.queueLimits.pauseBytes`, send more.
    func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamWritable stream: UInt16)
}

extension OnionRelayApplication {
    public func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamWritable stream: UInt16) {}
    public func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamClosed stream: UInt16, reason: EndReason) {}
    public func relay(_ server: OnionRelayServer, circuitClosed circuit: RelayCircuitID, reason: DestroyReason) {}
}

// The application API: application streams at the last hop, paced by `relay.queueLimits.pauseBytes`.
extension OnionRelayServer {
    /// Send a relay message toward the client of `circuit` on `stream` (0: circuit level). DATA and
    /// bulk application commands are flow-controlled: what exceeds the window waits in the circuit's queue. Returns false
    /// once `relay.queueLimits.pauseBytes` or more wait on the circuit: stop producing until the delegate's
    /// `streamWritable` callback (past `relay.queueLimits.maximumBytes` the circuit is destroyed).
    /// Call on `eventLoop`.
    @discardableResult
    public func sendApplicationMessage(_ circuit: RelayCircuitID, stream: UInt16, command: RelayCommand, body: ByteBuffer) throws -> Bool {
        self.eventLoop.preconditionInEventLoop()
        self.perform(try self.relay.sendApplicationMessage(circuit, streamID: stream, command: command, body: body))
        return !self.relay.isProducerPaused(circuit, streamID: stream)
    }

    /// End an application stream with RELAY_END. Call on `eventLoop`.
    public func endApplicationStream(_ circuit: RelayCircuitID, stream: UInt16, reason: EndReason = .done) throws {
        self.eventLoop.preconditionInEventLoop()
        self.perform(try self.relay.closeStream(circuit, streamID: stream, reason: reason))
    }

    /// The application ended an application stream by its own protocol: free it at the relay
    /// without a RELAY_END (see `OnionRelay.releaseApplicationStream`). Call on `eventLoop`.
    public func releaseApplicationStream(_ circuit: RelayCircuitID, stream: UInt16) throws {
        self.eventLoop.preconditionInEventLoop()
        try self.relay.releaseApplicationStream(circuit, streamID: stream)
    }

    /// Bytes waiting for window on all streams of a circuit. Call on `eventLoop`.
    public func queuedBytes(_ circuit: RelayCircuitID) -> Int {
        self.eventLoop.preconditionInEventLoop()
        return self.relay.queuedBytes(circuit)
    }

    /// Streams the circuit holds open at the relay (for tests and metrics). Call on `eventLoop`.
    public func streamCount(_ circuit: RelayCircuitID) -> Int {
        self.eventLoop.preconditionInEventLoop()
        return self.relay.streamCount(circuit)
    }

    /// Bytes of a stream waiting for window (pace application output on it). Call on `eventLoop`.
    public func queuedBytes(_ circuit: RelayCircuitID, stream: UInt16) -> Int {
        self.eventLoop.preconditionInEventLoop()
        return self.relay.queuedBytes(circuit, streamID: stream)
    }

    /// Tear a circuit down, DESTROY both ways. Call on `eventLoop`.
    public func destroyCircuit(_ circuit: RelayCircuitID, reason: DestroyReason = .finished) {
        self.eventLoop.preconditionInEventLoop()
        self.perform(self.relay.destroyCircuit(circuit, reason: reason))
    }
}
