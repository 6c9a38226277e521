import NIOCore
import PeersmProtocol

/// One relay message on a DB stream: its relay command and data.
public struct DBInbound: Sendable {
    public var command: UInt8
    public var body: ByteBuffer
    public init(command: UInt8, body: ByteBuffer) {
        self.command = command
        self.body = body
    }
}

/// The circuit under a DB stream went away (DESTROY, TRUNCATED, channel lost, or a protocol failure).
public struct CircuitLost: Error, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "circuit lost: \(reason)" }
}

/// A built circuit whose last hop is a facilitator.
public protocol FacilitatorCircuit: Sendable {
    /// Reserves a fresh stream ID for one DB_QUERY (nothing is sent yet). Throws `CircuitLost` if the
    /// circuit is gone.
    func openStream() async throws -> DBStreamChannel
    /// Tears the circuit down (DESTROY).
    func close() async
}

/// Builds circuits to the facilitator; called again after a circuit breaks.
public protocol CircuitProvider: Sendable {
    func buildCircuit() async throws -> any FacilitatorCircuit
}

/// One DB stream over a circuit: send DB_* messages, read the facilitator's answers.
public struct DBStreamChannel: Sendable {
    public let streamID: UInt16
    /// The facilitator's messages in order. Finishes when the relay ends the stream (RELAY_END); throws
    /// `CircuitLost` when the circuit goes.
    public let inbound: AsyncThrowingStream<DBInbound, Error>
    private let sendBody: @Sendable (PeersmRelayCommand, ByteBuffer) async throws -> Void
    private let closeStream: @Sendable () async -> Void

    public init(streamID: UInt16, inbound: AsyncThrowingStream<DBInbound, Error>,
                send: @escaping @Sendable (PeersmRelayCommand, ByteBuffer) async throws -> Void,
                close: @escaping @Sendable () async -> Void) {
        self.streamID = streamID
        self.inbound = inbound
        self.sendBody = send
        self.closeStream = close
    }

    public func send(_ message: PeersmMessage) async throws {
        try await sendBody(message.command, try message.encoded())
    }

    /// Sends a body as given, unchecked (for tools and tests that probe a facilitator with bad input).
    public func send(command: PeersmRelayCommand, rawBody: ByteBuffer) async throws {
        try await sendBody(command, rawBody)
    }

    /// Closes the stream at the relay level (RELAY_END), after the DB exchange is over.
    public func close() async { await closeStream() }
}
