import Crypto
import Logging
import Metrics
import NIOCore
import OnionRouting
import PeersmProtocol

/// How the facilitator's answers leave: the relay runtime that owns the circuit. Calls arrive in the
/// order the messages must be sent and must not block; the runtime hands each body to
/// `OnionRelay.sendApplicationMessage`, whose circuit window holds back what it cannot send yet.
public protocol FacilitatorTransport: Sendable {
    func send(circuit: RelayCircuitID, streamID: UInt16, command: PeersmRelayCommand, body: ByteBuffer)
    /// Several messages for one stream, in order. A bulk answer is hundreds of DB_DATA at a time:
    /// a runtime should move them to its event loop in one hop (the default sends them one by one).
    func send(circuit: RelayCircuitID, streamID: UInt16, batch: [(command: PeersmRelayCommand, body: ByteBuffer)])
    /// Asked after every send: false once the relay holds enough for `circuit` (its window is closed
    /// and its queue full). The service then sends no DB_DATA on the circuit's streams until the runtime
    /// calls `FacilitatorService.circuitWritable(_:)`, which it must do once the queue drains.
    /// Default: always writable (a runtime with its own bound).
    func isWritable(circuit: RelayCircuitID) -> Bool
    /// The stream is over for the service (its DB_END was sent or received): the relay may forget it
    /// without waiting for the requester's RELAY_END. Called after the stream's last `send`.
    func endStream(circuit: RelayCircuitID, streamID: UInt16)
}

extension FacilitatorTransport {
    public func send(circuit: RelayCircuitID, streamID: UInt16, batch: [(command: PeersmRelayCommand, body: ByteBuffer)]) {
        for message in batch { send(circuit: circuit, streamID: streamID, command: message.command, body: message.body) }
    }
    public func isWritable(circuit: RelayCircuitID) -> Bool { true }
    public func endStream(circuit: RelayCircuitID, streamID: UInt16) {}
}

public struct FacilitatorConfiguration: Sendable {
    /// DB streams one circuit may have open; the next query gets DB_END(BUSY).
    public var maxStreamsPerCircuit = 8
    /// DB streams open across all circuits; the next query gets DB_END(BUSY).
    public var maxStreams = 256
    /// How long a hash_name may take to resolve (metadata) before DB_END(UNAVAILABLE).
    public var resolveTimeout: Duration = .seconds(60)
    /// How long the source may deliver nothing while we wait for it before DB_END(TIMEOUT).
    public var stallTimeout: Duration = .seconds(60)
    /// DB_DATA per stream held while the requester's DB window is closed.
    public var maxBufferedMessages = 256
    public init() {}
}

/// The Peersm facilitator at the exit hop: answers DB_QUERY streams from a `ContentSource`, signing
/// every block with one Ed25519 key. One `DBStreamMachine` per stream; this actor owns the content
/// tasks, the deadlines and the metrics, and performs the machines' actions.
public actor FacilitatorService {
    public nonisolated let publicKey: Curve25519.Signing.PublicKey
    public let configuration: FacilitatorConfiguration
    private let source: any ContentSource
    private let key: Curve25519.Signing.PrivateKey
    private let transport: any FacilitatorTransport
    private let logger: Logger
    private let metrics = FacilitatorMetrics()

    private struct StreamKey: Hashable, Sendable, CustomStringConvertible {
        var circuit: RelayCircuitID
        var streamID: UInt16
        var description: String { "\(circuit)#\(streamID)" }
    }

    private final class Entry {
        var machine: DBStreamMachine
        let generation: UInt64
        var file: (any ContentFile)?
        var tasks: [Task<Void, Never>] = []
        var capacityWaiter: CheckedContinuation<Bool, Never>?
        var lastSourceActivity: Duration
        init(machine: DBStreamMachine, generation: UInt64, now: Duration) {
            self.machine = machine
            self.generation = generation
            self.lastSourceActivity = now
        }
    }

    private var streams: [StreamKey: Entry] = [:]
    private var perCircuit: [RelayCircuitID: Int] = [:]
    /// Circuits whose relay queue is full (`FacilitatorTransport.isWritable` said false).
    private var blockedCircuits: Set<RelayCircuitID> = []
    private var nextGeneration: UInt64 = 1
    private var stopped = false
    /// The deadlines' clock (injected so tests drive it): time since the service started, and a sleep.
    private let now: @Sendable () -> Duration
    private let sleep: @Sendable (Duration) async throws -> Void

    public init<C: Clock<Duration>>(source: any ContentSource, signingKey: Curve25519.Signing.PrivateKey,
                                    transport: any FacilitatorTransport,
                                    configuration: FacilitatorConfiguration = FacilitatorConfiguration(),
                                    clock: C = ContinuousClock(),
                                    logger: Logger = Logger(label: "peersm.facilitator")) {
        let origin = clock.now
        self.now = { origin.duration(to: clock.now) }
        self.sleep = { try await clock.sleep(until: clock.now.advanced(by: $0), tolerance: nil) }
        self.source = source
        self.key = signingKey
        self.publicKey = signingKey.publicKey
        self.transport = transport
        self.configuration = configuration
        self.logger = logger
    }

    public var activeStreams: Int { streams.count }

    // MARK: inputs from the relay runtime

    /// A DB_* relay message arrived at this (exit) hop.
    public func received(circuit: RelayCircuitID, streamID: UInt16, command: UInt8, body: ByteBuffer) {
        let key = StreamKey(circuit: circuit, streamID: streamID)
        if let entry = streams[key] {
            perform(entry.machine.received(command, body: body), key, entry)
            return
        }
        guard command == PeersmRelayCommand.dbQuery.rawValue else {
            // DB_SENDME/DB_END for a stream we already closed, or DB_INFO (ORDB only): nothing to do.
            logger.debug("ignored DB command \(command) on \(key)")
            return
        }
        guard streamID != 0 else {
            logger.debug("DB_QUERY on stream 0 from \(circuit): no stream to answer on")
            return
        }
        guard !stopped else { return reply(key, .destroyed) }
        let query: DBQuery
        do {
            query = try DBQuery(decoding: body)
        } catch {
            metrics.requests(kind: "malformed")
            logger.info("malformed DB_QUERY on \(key): \(error)")
            return reply(key, .badRequest)
        }
        metrics.requests(kind: query.isInfoRequest ? "info" : "data")
        guard streams.count < configuration.maxStreams,
              perCircuit[circuit, default: 0] < configuration.maxStreamsPerCircuit else {
            logger.info("busy: refusing \(key) (\(streams.count) streams, \(perCircuit[circuit, default: 0]) on circuit)")
            return reply(key, .busy)
        }
        let entry = Entry(
            machine: DBStreamMachine(query: query, signingKey: self.key, maxBufferedMessages: configuration.maxBufferedMessages),
            generation: nextGeneration, now: now())
        if blockedCircuits.contains(circuit) { entry.machine.transportBlocked() }
        nextGeneration += 1
        streams[key] = entry
        perCircuit[circuit, default: 0] += 1
        metrics.activeStreams(streams.count)
        logger.debug("query on \(key): \(query.hashName) chunks \(query.firstChunk)+\(query.chunkCount) counter \(query.counter)")
        perform(entry.machine.start(), key, entry)
    }

    /// The requester closed the stream with RELAY_END (the relay forgot it).
    public func streamClosed(circuit: RelayCircuitID, streamID: UInt16) {
        let key = StreamKey(circuit: circuit, streamID: streamID)
        guard let entry = streams[key] else { return }
        perform(entry.machine.transportClosed(), key, entry)
    }

    /// The relay's queue for `circuit` drained after `isWritable` said false: its streams send again.
    public func circuitWritable(_ circuit: RelayCircuitID) {
        guard blockedCircuits.remove(circuit) != nil else { return }
        for (key, entry) in streams where key.circuit == circuit {
            // Sending may fill the queue again: the streams not reached yet stay blocked.
            guard !blockedCircuits.contains(circuit) else { break }
            perform(entry.machine.transportWritable(), key, entry)
        }
    }

    /// The circuit is gone (DESTROY, channel lost): every stream on it stops its torrent work.
    public func circuitClosed(_ circuit: RelayCircuitID) {
        blockedCircuits.remove(circuit)
        for (key, entry) in streams where key.circuit == circuit {
            perform(entry.machine.transportClosed(), key, entry)
        }
    }

    /// Ends every stream with DB_END(DESTROYED) and refuses new ones.
    public func shutdown() {
        stopped = true
        for (key, entry) in streams { perform(entry.machine.shutdown(), key, entry) }
    }

    // MARK: performing actions

    private func perform(_ actions: [DBStreamMachine.Action], _ key: StreamKey, _ entry: Entry) {
        // The messages of one call leave together, in order (one hop to the relay's event loop).
        var outgoing: [PeersmMessage] = []
        var released: [StreamKey] = []
        defer {
            send(key, outgoing)
            // After the stream's last message: the relay frees it without the requester's RELAY_END.
            for key in released { transport.endStream(circuit: key.circuit, streamID: key.streamID) }
        }
        for action in actions {
            switch action {
            case .send(let message):
                outgoing.append(message)
            case .openContent(let name):
                startResolving(name, key, entry)
            case .readContent(let range):
                startReading(range, key, entry)
            case .stopContent:
                stopContent(entry)
            case .finished(let reason, let byRequester):
                streams[key] = nil
                released.append(key)
                if let n = perCircuit[key.circuit] { perCircuit[key.circuit] = n > 1 ? n - 1 : nil }
                metrics.ended(reason: reason, byRequester: byRequester)
                metrics.activeStreams(streams.count)
                logger.debug("\(key) ended: \(reason)\(byRequester ? " (requester)" : ""), \(entry.machine.sentData) DB_DATA")
            }
        }
        // Wake the reader when the machine wants bytes again (or the stream ended).
        if let waiter = entry.capacityWaiter, entry.machine.wantsContent || streams[key] == nil {
            entry.capacityWaiter = nil
            waiter.resume(returning: streams[key] != nil)
        }
    }

    private func send(_ key: StreamKey, _ message: PeersmMessage) {
        send(key, [message])
    }

    /// Encodes `messages` into one buffer (the bodies are slices of it: one allocation per batch,
    /// not per 498-byte message) and hands them to the transport together.
    private func send(_ key: StreamKey, _ messages: [PeersmMessage]) {
        guard !messages.isEmpty else { return }
        var buffer = ByteBufferAllocator().buffer(capacity: messages.count * PeersmWire.maxBodyLength)
        var ends: [(command: PeersmRelayCommand, start: Int, end: Int)] = []
        ends.reserveCapacity(messages.count)
        var dataBytes = 0
        for message in messages {
            let start = buffer.writerIndex
            do {
                try message.encode(into: &buffer)
            } catch {
                // Only our own malformed message could get here: a bug, never peer input.
                logger.error("could not encode \(message.command) for \(key): \(error)")
                continue
            }
            if case .data(let data) = message { dataBytes += data.data.readableBytes }
            ends.append((message.command, start, buffer.writerIndex))
        }
        // Sliced only once every body is written: a slice taken earlier would share the storage
        // and make the next write copy the whole buffer.
        let batch = ends.map { (command: $0.command, body: buffer.getSlice(at: $0.start, length: $0.end - $0.start)!) }
        if dataBytes > 0 { metrics.sent(bytes: dataBytes) }
        if batch.count == 1 {
            transport.send(circuit: key.circuit, streamID: key.streamID, command: batch[0].command, body: batch[0].body)
        } else if !batch.isEmpty {
            transport.send(circuit: key.circuit, streamID: key.streamID, batch: batch)
        }
        if !blockedCircuits.contains(key.circuit), !transport.isWritable(circuit: key.circuit) {
            block(key.circuit)
        }
    }

    /// The relay's queue for `circuit` is full: every stream on it holds its DB_DATA (and, once its
    /// buffer is full, stops reading its source) until `circuitWritable`.
    private func block(_ circuit: RelayCircuitID) {
        blockedCircuits.insert(circuit)
        for (key, entry) in streams where key.circuit == circuit { entry.machine.transportBlocked() }
    }

    /// Answers a query that gets no stream of its own (refused), and frees its relay stream.
    private func reply(_ key: StreamKey, _ reason: DBEndReason) {
        send(key, .end(DBEnd(reason: reason)))
        transport.endStream(circuit: key.circuit, streamID: key.streamID)
        metrics.ended(reason: reason, byRequester: false)
    }

    private func stopContent(_ entry: Entry) {
        for task in entry.tasks { task.cancel() }
        entry.tasks.removeAll()
        if let file = entry.file {
            entry.file = nil
            Task { await file.close() }
        }
        if let waiter = entry.capacityWaiter {
            entry.capacityWaiter = nil
            waiter.resume(returning: false)
        }
    }

    /// Looks up the live entry for a callback from a content task (nil once the stream moved on).
    private func live(_ key: StreamKey, _ generation: UInt64) -> Entry? {
        guard let entry = streams[key], entry.generation == generation else { return nil }
        return entry
    }

    private func startResolving(_ name: HashName, _ key: StreamKey, _ entry: Entry) {
        let generation = entry.generation
        let source = self.source
        let query = entry.machine.query
        let readFrom = query.isInfoRequest ? nil : UInt64(query.firstChunk) * UInt64(PeersmWire.chunkSize)
        entry.lastSourceActivity = now()
        entry.tasks.append(Task {
            do {
                let file = try await source.open(name, readFrom: readFrom) { [weak self] state in
                    await self?.progress(key, generation, state)
                }
                self.opened(key, generation, file)
            } catch {
                self.failed(key, generation, error)
            }
        })
        startWatchdog(key, entry)
    }

    private func progress(_ key: StreamKey, _ generation: UInt64, _ state: ProgressState) {
        guard let entry = live(key, generation) else { return }
        entry.lastSourceActivity = now()
        perform(entry.machine.contentProgress(state), key, entry)
    }

    private func opened(_ key: StreamKey, _ generation: UInt64, _ file: any ContentFile) {
        guard let entry = live(key, generation), entry.machine.phase == .resolving else {
            Task { await file.close() }
            return
        }
        entry.file = file
        entry.lastSourceActivity = now()
        perform(entry.machine.contentOpened(size: file.size, mimeType: file.mimeType), key, entry)
    }

    private func failed(_ key: StreamKey, _ generation: UInt64, _ error: Error) {
        guard let entry = live(key, generation) else { return }
        if error is CancellationError { return }
        let reason = (error as? ContentError)?.reason ?? .unavailable
        // The error's text can name the torrent (engine errors carry the magnet or infohash): only the
        // DB_END reason is logged where operators keep logs; the detail is for debugging.
        logger.info("\(key): content failed: DB_END \(reason)")
        logger.debug("\(key): content failure detail: \(error)")
        perform(entry.machine.contentFailed(reason), key, entry)
    }

    private func startReading(_ range: Range<UInt64>, _ key: StreamKey, _ entry: Entry) {
        guard let file = entry.file else {
            perform(entry.machine.contentFailed(.unavailable), key, entry)
            return
        }
        let generation = entry.generation
        entry.tasks.append(Task {
            do {
                for try await bytes in try await file.read(range) {
                    guard await self.deliver(key, generation, bytes) else { return }
                }
                try Task.checkCancellation()
                self.ended(key, generation)
            } catch {
                self.failed(key, generation, error)
            }
        })
    }

    /// Feeds bytes to the machine; suspends while it wants no more. False once the stream is gone.
    private func deliver(_ key: StreamKey, _ generation: UInt64, _ bytes: ByteBuffer) async -> Bool {
        guard let entry = live(key, generation) else { return false }
        entry.lastSourceActivity = now()
        perform(entry.machine.contentData(bytes), key, entry)
        guard live(key, generation) != nil else { return false }
        if entry.machine.wantsContent { return true }
        return await withCheckedContinuation { entry.capacityWaiter = $0 }
    }

    private func ended(_ key: StreamKey, _ generation: UInt64) {
        guard let entry = live(key, generation) else { return }
        perform(entry.machine.contentEnded(), key, entry)
    }

    /// Checks the resolve and stall deadlines while the stream waits for its source.
    private func startWatchdog(_ key: StreamKey, _ entry: Entry) {
        let generation = entry.generation
        let tick = min(configuration.resolveTimeout, configuration.stallTimeout) / 4
        let started = now()
        entry.tasks.append(Task {
            while !Task.isCancelled {
                try? await self.sleep(max(tick, .milliseconds(10)))
                guard self.checkDeadline(key, generation, started: started) else { return }
            }
        })
    }

    private func checkDeadline(_ key: StreamKey, _ generation: UInt64, started: Duration) -> Bool {
        guard let entry = live(key, generation) else { return false }
        let current = now()
        switch entry.machine.phase {
        case .resolving where current - started >= configuration.resolveTimeout,
             .serving where entry.machine.isWaitingForSource && current - entry.lastSourceActivity >= configuration.stallTimeout:
            logger.info("\(key): deadline passed while \(entry.machine.phase) after \(entry.machine.sentData) DB_DATA, \(entry.machine.bufferedMessages) buffered")
            perform(entry.machine.deadlinePassed(), key, entry)
            return false
        case .serving where !entry.machine.isWaitingForSource:
            // Waiting on the requester's window: not the source's fault, restart the stall clock.
            entry.lastSourceActivity = current
            return true
        default:
            return entry.machine.phase != .done
        }
    }
}

/// swift-metrics instruments (the daemon bootstraps a Prometheus backend).
struct FacilitatorMetrics: Sendable {
    private let bytes = Counter(label: "peersm_facilitator_data_bytes_total")
    private let active = Gauge(label: "peersm_facilitator_active_streams")

    func requests(kind: String) {
        Counter(label: "peersm_facilitator_requests_total", dimensions: [("kind", kind)]).increment()
    }
    func sent(bytes count: Int) { bytes.increment(by: count) }
    func activeStreams(_ n: Int) { active.record(n) }
    func ended(reason: DBEndReason, byRequester: Bool) {
        Counter(label: "peersm_facilitator_db_end_total",
                dimensions: [("reason", reason.description), ("by", byRequester ? "requester" : "facilitator")]).increment()
    }
}
