import Foundation
import Logging
import NIOCore
import NIOPosix
import OnionRouting
import TorCells
import TorCrypto

/// Why a client operation failed. Circuit and stream failures carry the DESTROY / END reason.
public enum OnionClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The link to the first hop failed or closed (handshake error, identity mismatch, TCP/TLS error).
    case link(String)
    /// The circuit was destroyed (by a relay's DESTROY, by us after bad input, or its link closed).
    case circuitClosed(DestroyReason, failure: CircuitFailure?)
    /// The exit (or application peer) ended the stream with this END.
    case streamEnded(End)
    case timeout(String)
    /// A call the circuit state machine refused (stream unknown, circuit not open, …).
    case refused(ClientCircuitError)
    case clientClosed

    public var description: String {
        switch self {
        case .link(let why): "link failed: \(why)"
        case .circuitClosed(let reason, let failure):
            "circuit closed (\(reason))" + (failure.map { ": \($0)" } ?? "")
        case .streamEnded(let end): "stream ended: \(end.reason)"
        case .timeout(let what): "timed out: \(what)"
        case .refused(let error): "refused: \(error)"
        case .clientClosed: "client closed"
        }
    }
}

/// A relay message on an application stream (the application's commands) or at circuit level.
public struct ApplicationMessage: Hashable, Sendable {
    public var command: RelayCommand
    public var body: ByteBuffer
    public init(command: RelayCommand, body: ByteBuffer) {
        self.command = command
        self.body = body
    }
}

/// A Tor client (OP) over one link to its first hop: builds circuits through `CircuitHop`s and opens
/// streams on them. The state machines (`ClientCircuitMultiplexer`) take every protocol decision; this
/// class moves cells and turns events into async results. All state is confined to `eventLoop`.
public final class OnionClient: @unchecked Sendable {
    public let eventLoop: EventLoop
    public let firstHop: CircuitHop
    let logger: Logger
    /// Per-stream limits: writes wait while more than `writeQueueLimit` bytes wait for window; the
    /// exit is stopped (SENDMEs withheld) while more than `readBufferLimit` bytes are unread.
    let writeQueueLimit: Int
    let readBufferLimit: Int

    private var link: OnionLink!
    private var mux: ClientCircuitMultiplexer
    private var circuits: [UInt32: OnionCircuit] = [:]
    private var openPromise: EventLoopPromise<Void>
    private var closedError: OnionClientError?

    /// Connect to `firstHop`, run the link handshake as a client and check the relay's identity.
    /// - Parameter webSocket: reach the first hop through its WebSocket bridge listener (node-Tor's
    ///   transport) at this port and path, instead of its ORPort.
    /// - Parameter applicationCommands: the application's relay commands (their flow control and splitting).
    public static func connect(
        to firstHop: CircuitHop, on eventLoop: EventLoop, webSocket: (port: UInt16, path: String)? = nil,
        applicationCommands: ApplicationCommands = .none,
        timeout: TimeAmount = .seconds(30),
        writeQueueLimit: Int = 256 * 1024, readBufferLimit: Int = 1 << 20,
        logger: Logger = Logger(label: "onion.client")
    ) async throws -> OnionClient {
        let client = OnionClient(
            firstHop: firstHop, eventLoop: eventLoop, writeQueueLimit: writeQueueLimit,
            readBufferLimit: readBufferLimit, applicationCommands: applicationCommands, logger: logger)
        let link = OnionLink(
            id: ChannelID(0),
            endpoint: .client(expecting: ExpectedPeerIdentity(
                rsaIdentity: firstHop.ntorKey.identity, ed25519Identity: firstHop.ed25519Identity)),
            delegate: client)
        try await eventLoop.submit { client.link = link }.get()
        let connected = OnionLinkConnector.connect(
            host: "\(firstHop.address)", port: Int(webSocket?.port ?? firstHop.port), link: link, on: eventLoop,
            timeout: timeout, handshakeTimeout: timeout, webSocketPath: webSocket?.path)
        connected.whenFailure { error in client.linkClosed(link, error: error) }
        try await client.openPromise.futureResult.get()
        return client
    }

    private init(
        firstHop: CircuitHop, eventLoop: EventLoop, writeQueueLimit: Int, readBufferLimit: Int,
        applicationCommands: ApplicationCommands, logger: Logger
    ) {
        self.firstHop = firstHop
        self.eventLoop = eventLoop
        self.writeQueueLimit = writeQueueLimit
        self.readBufferLimit = readBufferLimit
        self.logger = logger
        self.openPromise = eventLoop.makePromise()
        self.mux = ClientCircuitMultiplexer(
            role: .initiator, rng: FastRandomNumberGenerator(), makeCircuitRNG: { FastRandomNumberGenerator() },
            applicationCommands: applicationCommands)
    }

    /// Build a circuit through `path` (`path[0]` must be this client's first hop). Returns once every
    /// hop answered. `firstHop: .createFast` skips ntor with the first hop (the TLS link authenticated it).
    public func buildCircuit(
        through path: [CircuitHop], firstHop: FirstHopHandshake = .ntor, timeout: TimeAmount = .seconds(60)
    ) async throws -> OnionCircuit {
        let future: EventLoopFuture<OnionCircuit> = self.eventLoop.flatSubmit {
            if let error = self.closedError { return self.eventLoop.makeFailedFuture(error) }
            guard let first = path.first, first.ntorKey == self.firstHop.ntorKey else {
                return self.eventLoop.makeFailedFuture(OnionClientError.refused(.emptyPath))
            }
            let id: UInt32
            let actions: [ClientCircuitAction]
            do { (id, actions) = try self.mux.buildCircuit(path: path, firstHop: firstHop) } catch let error as ClientCircuitError {
                return self.eventLoop.makeFailedFuture(OnionClientError.refused(error))
            } catch {
                return self.eventLoop.makeFailedFuture(OnionClientError.refused(.noFreeStreamID))
            }
            let circuit = OnionCircuit(id: id, client: self)
            self.circuits[id] = circuit
            let built = circuit.buildPromise.futureResult
            let timer = self.eventLoop.scheduleTask(in: timeout) {
                circuit.completeBuild(OnionClientError.timeout("building a \(path.count)-hop circuit"))
                self.destroy(circuit, reason: .finished)
            }
            built.whenComplete { _ in timer.cancel() }
            self.perform(id, actions)
            return built.map { circuit }
        }
        return try await future.get()
    }

    /// Close the link: every circuit on it fails with `.circuitClosed(.channelClosed)`.
    public func close() async {
        try? await self.eventLoop.submit { self.link.close() }.get()
    }

    // MARK: internals (event loop)

    func withCircuit<R>(_ circuit: OnionCircuit, _ body: (inout ClientCircuit) throws -> R) throws -> R {
        if let error = self.closedError { throw error }
        do {
            guard let result = try self.mux.withCircuit(circuit.id, body) else {
                throw circuit.closeError ?? OnionClientError.circuitClosed(.none, failure: nil)
            }
            return result
        } catch let error as ClientCircuitError {
            throw OnionClientError.refused(error)
        }
    }

    func destroy(_ circuit: OnionCircuit, reason: DestroyReason) {
        let actions = (try? self.withCircuit(circuit) { $0.destroy(reason: reason) }) ?? []
        self.perform(circuit.id, actions)
    }

    func perform(_ id: UInt32, _ actions: [ClientCircuitAction]) {
        for action in actions {
            switch action {
            case .send(let cell):
                self.link.send(cell)
            case .event(let event):
                guard let circuit = self.circuits[id] else { continue }
                if case .closed = event { self.circuits[id] = nil }
                circuit.handle(event)
            }
        }
    }

    func queuedBytes(_ circuit: OnionCircuit, stream: UInt16) -> Int {
        (try? self.withCircuit(circuit) { $0.queuedBytes(onStream: stream) }) ?? 0
    }
}

extension OnionClient: OnionLinkDelegate {
    func linkOpened(_ link: OnionLink, peer: ChannelPeer) {
        self.openPromise.succeed(())
    }

    func link(_ link: OnionLink, received cell: ChannelCell) {
        switch self.mux.receive(cell) {
        case .circuit(let id, let actions):
            self.perform(id, actions)
            self.circuits[id]?.releaseWriters()
        case .dropped(let circuitID, let reason):
            self.logger.trace("dropped cell for circuit \(circuitID): \(reason)")
        }
    }

    func linkClosed(_ link: OnionLink, error: Error?) {
        guard self.closedError == nil else { return }
        let failure = OnionClientError.link(error.map { "\($0)" } ?? "closed")
        self.closedError = failure
        self.openPromise.fail(failure)
        for (id, actions) in self.mux.channelClosed() { self.perform(id, actions) }
    }
}

/// A built circuit. Streams end at its last hop.
public final class OnionCircuit: @unchecked Sendable {
    public let id: UInt32
    let client: OnionClient
    var eventLoop: EventLoop { self.client.eventLoop }
    let buildPromise: EventLoopPromise<Void>
    private var buildPending = true
    fileprivate var streams: [UInt16: StreamEntry] = [:]
    /// Circuit-level (stream 0) application messages.
    let circuitMessages: Inbox<ApplicationMessage>
    private(set) var closeError: OnionClientError?
    private let closedPromise: EventLoopPromise<OnionClientError>

    fileprivate struct StreamEntry {
        var connect: EventLoopPromise<Void>?
        var data: Inbox<ByteBuffer>?
        var messages: Inbox<ApplicationMessage>?
        var writers: [EventLoopPromise<Void>] = []
    }

    init(id: UInt32, client: OnionClient) {
        self.id = id
        self.client = client
        self.buildPromise = client.eventLoop.makePromise()
        self.closedPromise = client.eventLoop.makePromise()
        self.circuitMessages = Inbox(eventLoop: client.eventLoop, highWatermark: .max, lowWatermark: .max) { $0.body.readableBytes }
    }

    /// Completes with the reason once the circuit is gone.
    public var closed: EventLoopFuture<OnionClientError> { self.closedPromise.futureResult }

    /// Open a stream to `host:port` at the exit (RELAY_BEGIN). Fails with `.streamEnded` carrying the
    /// exit's END (e.g. EXITPOLICY) or `.circuitClosed`.
    public func openStream(host: String, port: UInt16, timeout: TimeAmount = .seconds(30)) async throws -> OnionStream {
        let future: EventLoopFuture<OnionStream> = self.eventLoop.flatSubmit {
            do {
                let (sid, actions) = try self.client.withCircuit(self) { try $0.openStream(host: host, port: port) }
                let promise = self.eventLoop.makePromise(of: Void.self)
                let inbox = self.makeDataInbox(sid)
                self.streams[sid] = StreamEntry(connect: promise, data: inbox)
                self.client.perform(self.id, actions)
                let timer = self.eventLoop.scheduleTask(in: timeout) {
                    guard let pending = self.streams[sid]?.connect else { return }
                    self.streams[sid]?.connect = nil
                    pending.fail(OnionClientError.timeout("BEGIN \(host):\(port)"))
                    self.streams[sid] = nil
                    let actions = (try? self.client.withCircuit(self) { try $0.closeStream(sid, reason: .timeout) }) ?? []
                    self.client.perform(self.id, actions)
                }
                return promise.futureResult.always { _ in timer.cancel() }.map { OnionStream(circuit: self, id: sid, inbox: inbox) }
            } catch {
                return self.eventLoop.makeFailedFuture(error)
            }
        }
        return try await future.get()
    }

    /// Reserve a stream for an application protocol that opens streams implicitly (a command that opens a stream).
    public func openApplicationStream() async throws -> OnionApplicationStream {
        try await self.eventLoop.submit {
            let sid = try self.client.withCircuit(self) { try $0.openApplicationStream() }
            let inbox = Inbox<ApplicationMessage>(eventLoop: self.eventLoop, highWatermark: .max, lowWatermark: .max) {
                $0.body.readableBytes
            }
            self.streams[sid] = StreamEntry(messages: inbox)
            return OnionApplicationStream(circuit: self, id: sid, inbox: inbox)
        }.get()
    }

    /// Send a circuit-level (stream 0) application message.
    public func send(command: RelayCommand, body: ByteBuffer) async throws {
        try await self.write(command: command, body: body, stream: 0)
    }

    /// Circuit-level application messages from the last hop.
    public var messages: InboxSequence<ApplicationMessage> { InboxSequence(inbox: self.circuitMessages) }

    /// Tear the circuit down (DESTROY to the first hop).
    public func destroy(reason: DestroyReason = .finished) async {
        try? await self.eventLoop.submit { self.client.destroy(self, reason: reason) }.get()
    }

    // MARK: internals (event loop)

    func completeBuild(_ error: Error?) {
        guard self.buildPending else { return }
        self.buildPending = false
        if let error { self.buildPromise.fail(error) } else { self.buildPromise.succeed(()) }
    }

    private func makeDataInbox(_ sid: UInt16) -> Inbox<ByteBuffer> {
        let inbox = Inbox<ByteBuffer>(
            eventLoop: self.eventLoop, highWatermark: self.client.readBufferLimit,
            lowWatermark: self.client.readBufferLimit / 4,
            merge: { into, next in
                var next = next
                into.writeBuffer(&next)
            }) { $0.readableBytes }
        inbox.onPressure = { [weak self] paused in
            guard let self else { return }
            let actions = (try? self.client.withCircuit(self) { try $0.setStreamPaused(sid, paused) }) ?? []
            self.client.perform(self.id, actions)
        }
        return inbox
    }

    func write(command: RelayCommand, body: ByteBuffer, stream: UInt16) async throws {
        try await self.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            do {
                let actions = try self.client.withCircuit(self) { try $0.send(command: command, body: body, onStream: stream) }
                self.client.perform(self.id, actions)
            } catch {
                return self.eventLoop.makeFailedFuture(error)
            }
            guard stream != 0, self.client.queuedBytes(self, stream: stream) > self.client.writeQueueLimit else {
                return self.eventLoop.makeSucceededVoidFuture()
            }
            // Wait for SENDMEs to drain the queue: the caller's writes are paced by the circuit.
            let promise = self.eventLoop.makePromise(of: Void.self)
            self.streams[stream]?.writers.append(promise)
            if self.streams[stream] == nil { promise.fail(self.closeError ?? OnionClientError.refused(.unknownStream(stream))) }
            return promise.futureResult
        }.get()
    }

    func closeStream(_ sid: UInt16, reason: EndReason) async throws {
        try await self.eventLoop.submit {
            guard self.streams.removeValue(forKey: sid) != nil else { return }
            let actions = try self.client.withCircuit(self) { try $0.closeStream(sid, reason: reason) }
            self.client.perform(self.id, actions)
        }.get()
    }

    /// Resume writers whose stream queue drained below the limit.
    func releaseWriters() {
        for (sid, entry) in self.streams where !entry.writers.isEmpty {
            guard self.client.queuedBytes(self, stream: sid) <= self.client.writeQueueLimit else { continue }
            let writers = entry.writers
            self.streams[sid]!.writers = []
            for writer in writers { writer.succeed(()) }
        }
    }

    func handle(_ event: ClientCircuitEvent) {
        switch event {
        case .opened:
            self.completeBuild(nil)
        case .streamConnected(let sid, _):
            self.streams[sid]?.connect?.succeed(())
            self.streams[sid]?.connect = nil
        case .streamData(let sid, let data):
            self.streams[sid]?.data?.push(data)
        case .streamMessage(let sid, let command, let body):
            if sid == 0 {
                self.circuitMessages.push(ApplicationMessage(command: command, body: body))
            } else {
                self.streams[sid]?.messages?.push(ApplicationMessage(command: command, body: body))
            }
        case .streamEnded(let sid, let end):
            guard let entry = self.streams.removeValue(forKey: sid) else { return }
            let error = OnionClientError.streamEnded(end)
            entry.connect?.fail(error)
            let clean = end.reason == .done
            entry.data?.finish(clean ? nil : error)
            entry.messages?.finish(clean ? nil : error)
            for writer in entry.writers { writer.fail(error) }
        case .closed(let reason, let failure):
            let error = OnionClientError.circuitClosed(reason, failure: failure)
            self.closeError = error
            self.completeBuild(error)
            let streams = self.streams
            self.streams = [:]
            for entry in streams.values {
                entry.connect?.fail(error)
                entry.data?.finish(error)
                entry.messages?.finish(error)
                for writer in entry.writers { writer.fail(error) }
            }
            self.circuitMessages.finish(error)
            self.closedPromise.succeed(error)
        }
    }
}

/// A TCP stream through a circuit: read with `for try await chunk in stream`, write with `write`.
/// A clean END (DONE) ends the sequence; any other END or a circuit failure throws.
public final class OnionStream: AsyncSequence, @unchecked Sendable {
    public typealias Element = ByteBuffer
    public let id: UInt16
    public let circuit: OnionCircuit
    private let inbox: Inbox<ByteBuffer>

    init(circuit: OnionCircuit, id: UInt16, inbox: Inbox<ByteBuffer>) {
        self.circuit = circuit
        self.id = id
        self.inbox = inbox
    }

    /// Send bytes; returns once they are queued within the circuit's pacing limit.
    public func write(_ bytes: ByteBuffer) async throws {
        try await self.circuit.write(command: .data, body: bytes, stream: self.id)
    }

    /// RELAY_END (after the queued data).
    public func close(reason: EndReason = .done) async throws {
        try await self.circuit.closeStream(self.id, reason: reason)
    }

    public func makeAsyncIterator() -> InboxSequence<ByteBuffer>.AsyncIterator {
        InboxSequence(inbox: self.inbox).makeAsyncIterator()
    }
}

/// A stream carrying arbitrary relay commands (an application protocol's).
public final class OnionApplicationStream: AsyncSequence, @unchecked Sendable {
    public typealias Element = ApplicationMessage
    public let id: UInt16
    public let circuit: OnionCircuit
    private let inbox: Inbox<ApplicationMessage>

    init(circuit: OnionCircuit, id: UInt16, inbox: Inbox<ApplicationMessage>) {
        self.circuit = circuit
        self.id = id
        self.inbox = inbox
    }

    /// Send one relay message (bodies over 498 bytes become several cells of the same command).
    public func send(command: RelayCommand, body: ByteBuffer) async throws {
        try await self.circuit.write(command: command, body: body, stream: self.id)
    }

    public func close(reason: EndReason = .done) async throws {
        try await self.circuit.closeStream(self.id, reason: reason)
    }

    public func makeAsyncIterator() -> InboxSequence<ApplicationMessage>.AsyncIterator {
        InboxSequence(inbox: self.inbox).makeAsyncIterator()
    }

    /// Every message that arrived since the last call (at least one; waits for one if none), in
    /// order; nil once the stream ended cleanly. Bulk consumers (bulk application commands, one message per
    /// cell) should read this way: one hop to the event loop per batch rather than per message.
    /// Do not mix with iterating the stream from another task.
    public func nextBatch() async throws -> [ApplicationMessage]? {
        try await self.inbox.nextBatch()
    }
}

/// The async sequence view of an `Inbox`.
public struct InboxSequence<Element>: AsyncSequence, @unchecked Sendable {
    let inbox: Inbox<Element>

    public struct AsyncIterator: AsyncIteratorProtocol {
        let inbox: Inbox<Element>
        public mutating func next() async throws -> Element? { try await self.inbox.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(inbox: self.inbox) }
}
