import Crypto
import NIOCore
import PeersmProtocol

/// One DB stream at the facilitator, from its DB_QUERY to its DB_END (docs/PROTOCOL.md §7).
/// Sans-I/O: the owner feeds it the query, content events and the requester's messages, and performs
/// the returned actions. It reads no clock (the owner decides when a deadline passed) and never traps
/// on peer input.
///
/// Buffering is bounded: the machine asks for content only while fewer than `maxBufferedMessages`
/// DB_DATA wait to be sent (`wantsContent`), and it sends DB_DATA only within the DB stream window and
/// while the transport is not blocked. The DB window alone does not bound what the relay queues: it
/// counts a message as sent when queued, and a requester can send DB_SENDMEs while withholding the
/// circuit SENDMEs that would let the queue drain. So the owner also reports when the relay's
/// circuit queue is full (`transportBlocked`) and when it drained (`transportWritable`).
public struct DBStreamMachine: @unchecked Sendable {
    // @unchecked Sendable: the Ed25519 private key is an immutable swift-crypto value not yet
    // annotated Sendable (as in ChunkSigner).

    public enum Action: Hashable, Sendable {
        /// Send this message to the requester on the stream.
        case send(PeersmMessage)
        /// Resolve the hash_name (`ContentSource.open`); report `contentProgress` and `contentOpened`.
        case openContent(HashName)
        /// Read these file bytes in order; feed them with `contentData`, then `contentEnded`.
        case readContent(Range<UInt64>)
        /// Stop any content work for this stream and release the file.
        case stopContent
        /// The stream is over (after its DB_END, sent or received): forget it. `byRequester` when the
        /// requester ended it (DB_END or circuit gone), for metrics.
        case finished(DBEndReason, byRequester: Bool)
    }

    public enum Phase: Hashable, Sendable { case idle, resolving, serving, done }

    public let query: DBQuery
    public private(set) var phase: Phase = .idle
    private let key: Curve25519.Signing.PrivateKey
    private let maxBufferedMessages: Int
    private var window = DBSendWindow()
    private var signer: ChunkSigner?
    private var outbox: [DBData] = []
    private var outboxHead = 0
    private var sourceDone = false
    /// The relay's queue for this circuit is full: hold DB_DATA (see the type's comment).
    public private(set) var isTransportBlocked = false
    private var lastProgress: ProgressState?
    public private(set) var sentData = 0
    public private(set) var sentDataBytes = 0

    public init(query: DBQuery, signingKey: Curve25519.Signing.PrivateKey, maxBufferedMessages: Int = 256) {
        self.query = query
        self.key = signingKey
        self.maxBufferedMessages = max(1, maxBufferedMessages)
    }

    /// DB_DATA produced and not yet sent (waiting for the DB stream window).
    public var bufferedMessages: Int { outbox.count - outboxHead }

    /// True while the machine wants more file bytes: serving, bytes still owed, and the buffer low.
    public var wantsContent: Bool {
        guard phase == .serving, !sourceDone, let signer, signer.remainingBytes > 0 else { return false }
        return bufferedMessages < maxBufferedMessages
    }

    /// True while waiting for the content to resolve or for bytes the source owes: the owner's
    /// deadlines apply only then (a slow requester is not the source's fault).
    public var isWaitingForSource: Bool { phase == .resolving || wantsContent }

    // MARK: inputs

    /// Starts the stream: the loop guard, then resolution.
    public mutating func start() -> [Action] {
        guard phase == .idle else { return [] }
        if query.hasReachedLoopLimit { return end(.loop) }
        phase = .resolving
        return [.openContent(query.hashName)]
    }

    /// A progress word from the source. Sent only before any DB_DATA and without repeats.
    public mutating func contentProgress(_ state: ProgressState) -> [Action] {
        guard phase == .resolving || (phase == .serving && sentData == 0), state != lastProgress else { return [] }
        lastProgress = state
        return [.send(.connected(.progress(state)))]
    }

    /// The content resolved to a file of `size` bytes and type `mimeType`.
    public mutating func contentOpened(size: UInt64, mimeType: String) -> [Action] {
        guard phase == .resolving else { return [] }
        let type = Self.sanitizedMIMEType(mimeType)
        if query.isInfoRequest {
            guard let info = try? FileInfo(size: size, mimeType: type, publicKey: key.publicKey) else {
                return end(.unavailable)
            }
            return [.send(.connected(.fileInfo(info)))] + end(.finished)
        }
        do {
            signer = try ChunkSigner(signingKey: key, fileSize: size, mimeType: type, query: query)
        } catch ChunkStreamError.rangeNotSatisfiable {
            return end(.range)
        } catch {
            return end(.unavailable)
        }
        phase = .serving
        if signer!.remainingBytes == 0 {
            sourceDone = true
            return finishSigner()
        }
        return [.readContent(signer!.byteRange)]
    }

    /// The next file bytes of the range asked for in `readContent`.
    public mutating func contentData(_ bytes: ByteBuffer) -> [Action] {
        guard phase == .serving, !sourceDone, signer != nil else { return [] }
        compactOutbox()
        do {
            try signer!.feed(bytes, into: &outbox)
        } catch {
            // More bytes than asked for: a broken source; the answer cannot be trusted to be right.
            return end(.unavailable)
        }
        return drain()
    }

    /// The source delivered everything it will.
    public mutating func contentEnded() -> [Action] {
        guard phase == .serving, !sourceDone else { return [] }
        sourceDone = true
        return finishSigner()
    }

    /// The source failed (resolution or reading).
    public mutating func contentFailed(_ reason: DBEndReason) -> [Action] {
        guard phase == .resolving || phase == .serving else { return [] }
        return end(reason)
    }

    /// The owner's deadline passed while `isWaitingForSource`. Resolution that never finished means
    /// nobody could give us the file (UNAVAILABLE); a stalled transfer is a TIMEOUT.
    public mutating func deadlinePassed() -> [Action] {
        switch phase {
        case .resolving: return end(.unavailable)
        case .serving: return end(.timeout)
        case .idle, .done: return []
        }
    }

    /// A message from the requester on this stream (its DB_QUERY was consumed by `init`/`start`).
    public mutating func received(_ command: UInt8, body: ByteBuffer) -> [Action] {
        guard phase != .done else { return [] }
        switch PeersmRelayCommand(rawValue: command) {
        case .dbSendme?:
            do {
                _ = try DBSendme(decoding: body)
                try window.receivedSendme()
            } catch {
                return end(.protocolViolation)
            }
            return drain()
        case .dbEnd?:
            let reason = (try? DBEnd(decoding: body).reason) ?? .protocolViolation
            return requesterWentAway(reason)
        default:
            // A second query on the stream, or a message only the facilitator sends.
            return end(.protocolViolation)
        }
    }

    /// The relay's circuit queue is full: send no more DB_DATA until `transportWritable`. Buffered
    /// messages then fill to `maxBufferedMessages` and `wantsContent` turns false (stop reading).
    public mutating func transportBlocked() {
        isTransportBlocked = true
    }

    /// The relay's circuit queue drained: send what the DB window allows.
    public mutating func transportWritable() -> [Action] {
        guard isTransportBlocked else { return [] }
        isTransportBlocked = false
        guard phase == .serving else { return [] }
        return drain()
    }

    /// The stream or circuit is gone under us (RELAY_END, DESTROY): nothing more can be sent.
    public mutating func transportClosed() -> [Action] {
        guard phase != .done else { return [] }
        return requesterWentAway(.destroyed)
    }

    /// The facilitator shuts down: tell the requester.
    public mutating func shutdown() -> [Action] {
        guard phase != .done else { return [] }
        return end(.destroyed)
    }

    // MARK: internals

    private mutating func requesterWentAway(_ reason: DBEndReason) -> [Action] {
        let hadContent = phase == .resolving || phase == .serving
        phase = .done
        releaseBuffers()
        return (hadContent ? [.stopContent] : []) + [.finished(reason, byRequester: true)]
    }

    private mutating func finishSigner() -> [Action] {
        do {
            let tail = try signer!.finish()
            compactOutbox()
            outbox.append(contentsOf: tail)
        } catch {
            // The source ended before the range was complete (torrent dropped, engine stopped).
            return end(.destroyed)
        }
        return drain()
    }

    /// Sends what the DB window allows; ends the stream once the whole answer is out.
    private mutating func drain() -> [Action] {
        var actions: [Action] = []
        while outboxHead < outbox.count, window.canSend, !isTransportBlocked {
            let message = outbox[outboxHead]
            outboxHead += 1
            try? window.didSend()  // canSend was checked
            sentData += 1
            sentDataBytes += message.data.readableBytes
            actions.append(.send(.data(message)))
        }
        if outboxHead == outbox.count { releaseBuffers() }
        if let signer, signer.isComplete, bufferedMessages == 0 {
            actions += end(.finished)
        }
        return actions
    }

    private mutating func end(_ reason: DBEndReason) -> [Action] {
        let hadContent = phase == .resolving || phase == .serving
        phase = .done
        releaseBuffers()
        return (hadContent ? [.stopContent] : []) + [.send(.end(DBEnd(reason: reason))), .finished(reason, byRequester: false)]
    }

    private mutating func compactOutbox() {
        if outboxHead > 0 && outboxHead * 2 >= outbox.count {
            outbox.removeFirst(outboxHead)
            outboxHead = 0
        }
    }

    private mutating func releaseBuffers() {
        outbox.removeAll(keepingCapacity: phase != .done)
        outboxHead = 0
    }

    /// DB_CONNECTED carries visible ASCII only, at most what fits the cell; anything else is served
    /// as application/octet-stream rather than refused.
    static func sanitizedMIMEType(_ type: String) -> String {
        let bytes = Array(type.utf8)
        guard !bytes.isEmpty, bytes.count <= 200, bytes.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            return "application/octet-stream"
        }
        return type
    }
}
