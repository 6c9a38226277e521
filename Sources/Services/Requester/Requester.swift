import Foundation
import Logging
import NIOCore
import PeersmCircuits
import PeersmProtocol

public struct FetchOptions: Sendable {
    /// Chunks asked per DB_QUERY (≤ 65 535, i.e. 31.8 MB per query).
    public var chunksPerQuery: UInt16 = .max
    /// New circuits built after losing one, over the whole fetch, before giving up.
    public var maxCircuitRebuilds = 5
    /// The DB_QUERY loop counter we start with (0; the seed allows a random start below 5).
    public var counter: UInt8 = 0
    /// How long a query may go without an answer that moves it forward (file info, DB_DATA, DB_END;
    /// progress words do not count). Past it the circuit is dropped and the fetch resumes on a new one.
    /// Above the facilitator's own resolve and stall timeouts (60 s by default), which it answers
    /// with DB_END, so only a silent or wedged facilitator or path trips it.
    public var idleTimeout: Duration = .seconds(150)
    public init() {}
}

/// Where a fetch stands, for progress displays.
public struct FetchProgress: Sendable {
    public enum Stage: Sendable, Equatable {
        case buildingCircuit(attempt: Int)
        /// A progress word from the facilitator (`torrent`, `dhtready`, `start`, …).
        case facilitator(String)
        case transferring
        case resumed(fromChunk: UInt32)
    }
    public var stage: Stage
    /// Bytes verified and written so far.
    public var verifiedBytes: UInt64
    /// File size once known (0 before the file info).
    public var totalBytes: UInt64
}

public enum FetchError: Error, CustomStringConvertible {
    /// The facilitator ended the request with this reason.
    case refused(DBEndReason, while: String)
    /// Data failed the integrity check (docs/PROTOCOL.md §4): nothing unverified was written.
    case verificationFailed(ChunkStreamError)
    /// The facilitator sent something out of place or malformed.
    case protocolViolation(String)
    /// Circuits kept breaking.
    case circuitsExhausted(rebuilds: Int, last: String)
    case output(String)

    public var description: String {
        switch self {
        case .refused(let reason, let step): return "the facilitator answered DB_END \(reason) to the \(step)\(Self.hint(reason))"
        case .verificationFailed(let e): return "verification failed: \(e) — the data was not written"
        case .protocolViolation(let why): return "protocol violation by the facilitator: \(why)"
        case .circuitsExhausted(let n, let last): return "gave up after \(n) circuit rebuilds; last failure: \(last)"
        case .output(let why): return "cannot write the output file: \(why)"
        }
    }

    private static func hint(_ reason: DBEndReason) -> String {
        switch reason {
        case .unavailable: return " (nobody the facilitator could reach has this torrent)"
        case .busy: return " (the facilitator is at its request limit; try later)"
        case .timeout: return " (the swarm did not deliver in time)"
        case .badRequest: return " (the hash_name is not an infohash or magnet link it understands)"
        case .range: return " (the asked chunk is past the end of the file)"
        case .loop: return " (the query was forwarded too often)"
        default: return ""
        }
    }
}

public struct FetchResult: Sendable {
    public var fileInfo: FileInfo
    /// Bytes fetched and verified by this run (the file size, less what a resumed run found done).
    public var bytes: UInt64
    /// Verified bytes an earlier run left, which this one continued from (0 unless resumed).
    public var resumedBytes: UInt64 = 0
    public var circuitsBuilt: Int
    public var queries: Int
    /// From the start of the fetch: file info received, first DB_DATA received, all verified.
    public var timeToFileInfo: Duration
    public var timeToFirstData: Duration?
    /// From the start of the fetch to the first DB_DATA message's arrival (before verification).
    public var timeToFirstDataMessage: Duration?
    public var elapsed: Duration
}

/// Fetches one file from a facilitator over circuits: file info, then data queries of at most
/// `chunksPerQuery` chunks, each answer verified block by block (ChunkVerifier) and written at its
/// offset. DB_SENDMEs follow consumption. When a circuit breaks, a new one is built and the query
/// resumes from the first unverified chunk with a new nonce; the facilitator key from the first file
/// info stays pinned.
public struct Requester: Sendable {
    public let circuits: any CircuitProvider
    public var options: FetchOptions
    private let logger: Logger

    public init(circuits: any CircuitProvider, options: FetchOptions = FetchOptions(), logger: Logger = Logger(label: "peersm.requester")) {
        self.circuits = circuits
        self.options = options
        self.logger = logger
    }

    public typealias ProgressHandler = @Sendable (FetchProgress) -> Void

    /// Fetches `name` into `output`. The file is complete and verified when this returns.
    ///
    /// Progress is recorded beside the output (`<output>.peersm-part`) as blocks are verified. With
    /// `resume`, a download another process left is continued from its last verified chunk if the
    /// facilitator still describes the same file with the same key; otherwise `output` is created or
    /// truncated and fetched from the start.
    public func fetch(_ name: HashName, to output: URL, resume: Bool = false,
                      progress: @escaping ProgressHandler = { _ in }) async throws -> FetchResult {
        let clock = ContinuousClock()
        let start = clock.now
        var session = Session(requester: self, progress: progress)
        let info = try await session.fileInfo(name)
        let timeToInfo = clock.now - start

        let end = UInt32(info.chunkCount)
        var state = PartialDownload(name: name, info: info, verifiedChunks: 0)
        var next: UInt32 = 0
        if resume, let saved = PartialDownload.load(for: output), saved.continues(state),
           saved.verifiedChunks <= end, FileManager.default.fileExists(atPath: output.path) {
            next = saved.verifiedChunks
            logger.info("resuming \(output.lastPathComponent) from chunk \(next) of \(end)")
        } else if !FileManager.default.createFile(atPath: output.path, contents: nil) {
            throw FetchError.output("cannot create \(output.path)")
        }
        let handle: FileHandle
        do { handle = try FileHandle(forWritingTo: output) } catch { throw FetchError.output("\(error)") }
        defer { try? handle.close() }
        if next > 0 { progress(FetchProgress(stage: .resumed(fromChunk: next), verifiedBytes: 0, totalBytes: info.size)) }

        let resumedBytes = min(UInt64(next) * UInt64(PeersmWire.chunkSize), info.size)
        var verified = resumedBytes
        progress(FetchProgress(stage: .transferring, verifiedBytes: verified, totalBytes: info.size))
        var unsaved = 0
        var firstData: Duration?
        while next < end {
            let count = UInt16(min(UInt32(max(options.chunksPerQuery, 1)), end - next))
            next = try await session.data(name, info: info, first: next, count: count) { block in
                if firstData == nil { firstData = clock.now - start }
                do {
                    try handle.seek(toOffset: block.fileOffset)
                    try handle.write(contentsOf: Data(block.bytes.readableBytesView))
                } catch {
                    throw FetchError.output("\(error)")
                }
                verified += UInt64(block.bytes.readableBytes)
                progress(FetchProgress(stage: .transferring, verifiedBytes: verified, totalBytes: info.size))
                // The state vouches only for bytes already handed to the file; about every 4 MiB.
                unsaved += 1
                if unsaved >= 64 {
                    unsaved = 0
                    state.verifiedChunks = block.chunks.upperBound
                    // On disk first (a power cut must not leave the state ahead of the data).
                    if (try? handle.synchronize()) != nil { try? state.save(for: output) }
                }
            }
        }
        do { try handle.truncate(atOffset: info.size) } catch { throw FetchError.output("\(error)") }
        PartialDownload.remove(for: output)
        await session.close()
        return FetchResult(fileInfo: info, bytes: verified - resumedBytes, resumedBytes: resumedBytes, circuitsBuilt: session.circuitsBuilt, queries: session.queries,
                           timeToFileInfo: timeToInfo, timeToFirstData: firstData,
                           timeToFirstDataMessage: session.firstDataMessage.map { $0 - start }, elapsed: clock.now - start)
    }

    /// Asks only for the file info (size, MIME type, facilitator key).
    public func fileInfo(_ name: HashName, progress: @escaping ProgressHandler = { _ in }) async throws -> FileInfo {
        var session = Session(requester: self, progress: progress)
        defer { Task { [session] in await session.close() } }
        return try await session.fileInfo(name)
    }

    /// The circuit in use and the rebuild budget, across the queries of one fetch.
    private struct Session {
        let requester: Requester
        let progress: ProgressHandler
        var circuit: (any FacilitatorCircuit)?
        var circuitsBuilt = 0
        var queries = 0
        var lastFailure = ""
        var firstDataMessage: ContinuousClock.Instant?

        init(requester: Requester, progress: @escaping ProgressHandler) {
            self.requester = requester
            self.progress = progress
        }

        func close() async { await circuit?.close() }

        mutating func currentCircuit() async throws -> any FacilitatorCircuit {
            while true {
                if let circuit { return circuit }
                guard circuitsBuilt <= requester.options.maxCircuitRebuilds else {
                    throw FetchError.circuitsExhausted(rebuilds: circuitsBuilt - 1, last: lastFailure)
                }
                circuitsBuilt += 1
                progress(FetchProgress(stage: .buildingCircuit(attempt: circuitsBuilt), verifiedBytes: 0, totalBytes: 0))
                do {
                    circuit = try await requester.circuits.buildCircuit()
                } catch {
                    lastFailure = "building a circuit: \(error)"
                    requester.logger.info("\(lastFailure)")
                }
            }
        }

        mutating func circuitBroke(_ why: String) async {
            lastFailure = why
            requester.logger.info("circuit lost: \(why)")
            await circuit?.close()
            circuit = nil
        }

        mutating func fileInfo(_ name: HashName) async throws -> FileInfo {
            while true {
                let circuit = try await currentCircuit()
                do {
                    return try await infoQuery(name, on: circuit)
                } catch let lost as CircuitLost {
                    await circuitBroke(lost.reason)
                }
            }
        }

        private mutating func infoQuery(_ name: HashName, on circuit: any FacilitatorCircuit) async throws -> FileInfo {
            let stream = try await circuit.openStream()
            queries += 1
            try await stream.send(.query(.info(name, counter: requester.options.counter, nonce: .random())))
            var info: FileInfo?
            let watchdog = IdleWatchdog(requester.options.idleTimeout) { await circuit.close() }
            defer { watchdog.cancel() }
            do {
                for try await message in stream.inbound {
                    switch try await decode(message, stream) {
                    case .connected(.progress(let state)):
                        progress(FetchProgress(stage: .facilitator(state.rawValue), verifiedBytes: 0, totalBytes: 0))
                    case .connected(.fileInfo(let fileInfo)) where info == nil:
                        watchdog.touch()
                        info = fileInfo
                    case .end(let end):
                        await stream.close()
                        guard end.reason == .finished, let info else { throw FetchError.refused(end.reason, while: "info query") }
                        return info
                    default:
                        try await violation("unexpected \(message.command) in the answer to an info query", stream)
                    }
                }
            } catch let lost as CircuitLost {
                throw watchdog.explain(lost)
            }
            throw watchdog.explain(CircuitLost("the stream closed before DB_END"))
        }

        /// Runs one data query from `first`, resuming on new circuits; returns the chunk after the last verified one.
        mutating func data(_ name: HashName, info: FileInfo, first: UInt32, count: UInt16,
                           write: (VerifiedBlock) throws -> Void) async throws -> UInt32 {
            let end = first + UInt32(count)
            var next = first
            while next < end {
                let circuit = try await currentCircuit()
                let query = DBQuery(hashName: name, firstChunk: next, chunkCount: UInt16(end - next),
                                    counter: requester.options.counter, nonce: .random())
                var verifier = try ChunkVerifier(fileInfo: info, query: query)
                do {
                    try await dataQuery(query, verifier: &verifier, on: circuit, write: write)
                    return end
                } catch let lost as CircuitLost {
                    next = verifier.resumeChunk
                    await circuitBroke(lost.reason)
                    progress(FetchProgress(stage: .resumed(fromChunk: next), verifiedBytes: 0, totalBytes: info.size))
                } catch FetchError.refused(.destroyed, _) {
                    // The facilitator dropped the torrent or restarts: a new circuit may do better.
                    next = verifier.resumeChunk
                    await circuitBroke("DB_END DESTROYED")
                }
            }
            return end
        }

        private mutating func dataQuery(_ query: DBQuery, verifier: inout ChunkVerifier, on circuit: any FacilitatorCircuit,
                                        write: (VerifiedBlock) throws -> Void) async throws {
            let stream = try await circuit.openStream()
            queries += 1
            var window = DBReceiveWindow()
            try await stream.send(.query(query))
            let watchdog = IdleWatchdog(requester.options.idleTimeout) { await circuit.close() }
            defer { watchdog.cancel() }
            do {
                for try await message in stream.inbound {
                    switch try await decode(message, stream) {
                    case .connected(.progress(let state)):
                        progress(FetchProgress(stage: .facilitator(state.rawValue), verifiedBytes: 0, totalBytes: 0))
                    case .data(let data):
                        watchdog.touch()
                        if firstDataMessage == nil { firstDataMessage = ContinuousClock.now }
                        do { try window.didReceive() } catch {
                            try await violation("DB_DATA beyond the DB stream window", stream)
                        }
                        let block: VerifiedBlock?
                        do { block = try verifier.receive(data) } catch let error as ChunkStreamError {
                            try? await stream.send(.end(DBEnd(reason: .protocolViolation)))
                            await stream.close()
                            throw FetchError.verificationFailed(error)
                        }
                        guard let block else { continue }
                        try write(block)
                        let sendmes = window.didConsume(verifier.plan.messageCount(ofBlock: block.block))
                        for _ in 0..<sendmes { try await stream.send(.sendme(DBSendme())) }
                    case .end(let end):
                        await stream.close()
                        guard end.reason == .finished else { throw FetchError.refused(end.reason, while: "data query") }
                        do { try verifier.finish() } catch let error as ChunkStreamError { throw FetchError.verificationFailed(error) }
                        return
                    default:
                        try await violation("unexpected \(message.command) in the answer to a data query", stream)
                    }
                }
            } catch let lost as CircuitLost {
                throw watchdog.explain(lost)
            }
            throw watchdog.explain(CircuitLost("the stream closed before DB_END"))
        }

        private func decode(_ message: DBInbound, _ stream: DBStreamChannel) async throws -> PeersmMessage {
            do {
                return try PeersmMessage(command: message.command, body: message.body)
            } catch {
                try await violation("undecodable DB message \(message.command): \(error)", stream)
            }
        }

        private func violation(_ why: String, _ stream: DBStreamChannel) async throws -> Never {
            try? await stream.send(.end(DBEnd(reason: .protocolViolation)))
            await stream.close()
            throw FetchError.protocolViolation(why)
        }
    }
}

/// Drops a query's circuit when the facilitator has said nothing useful for `timeout`, so a silent
/// facilitator or a wedged path reads as a lost circuit (resumed on a new one, within the rebuild
/// budget) instead of a fetch that waits forever.
final class IdleWatchdog: @unchecked Sendable {
    // @unchecked: `last` and `fired` are only touched under `lock`.
    private let lock = NSLock()
    private let timeout: Duration
    private var last = ContinuousClock.now
    private var fired = false
    private var task: Task<Void, Never>?

    init(_ timeout: Duration, onIdle: @escaping @Sendable () async -> Void) {
        self.timeout = timeout
        task = Task { [weak self] in
            while !Task.isCancelled {
                guard let deadline = self?.deadline() else { return }
                if ContinuousClock.now >= deadline {
                    self?.lock.withLock { self?.fired = true }
                    await onIdle()
                    return
                }
                try? await Task.sleep(until: deadline, clock: .continuous)
            }
        }
    }

    private func deadline() -> ContinuousClock.Instant { lock.withLock { last } + timeout }

    func touch() { lock.withLock { last = .now } }

    func cancel() { task?.cancel() }

    /// The loss as the user should read it: ours, if the watchdog closed the circuit.
    func explain(_ lost: CircuitLost) -> CircuitLost {
        lock.withLock { fired } ? CircuitLost("no answer from the facilitator for \(timeout)") : lost
    }
}
