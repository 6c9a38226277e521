import CTorrent
import Foundation

/// A libtorrent alert copied out of the shim into Swift values.
struct EngineAlert: Sendable {
    let kind: Int32
    let torrent: UInt64
    let piece: Int
    let cookie: UInt64
    let errorCode: Int32
    let reason: Int32
    let count: Int32
    let address: String
    let port: UInt16
    let address2: String
    let port2: UInt16
    let nodeID: [UInt8]
    let infoHash: [UInt8]
    let message: String

    init(_ a: ct_alert) {
        kind = a.kind
        torrent = a.torrent
        piece = Int(a.piece)
        cookie = a.cookie
        errorCode = a.error_code
        reason = a.reason
        count = a.count
        address = cString(a.address)
        port = a.port
        address2 = cString(a.address2)
        port2 = a.port2
        nodeID = withUnsafeBytes(of: a.node_id) { Array($0) }
        infoHash = withUnsafeBytes(of: a.info_hash) { Array($0) }
        message = cString(a.message)
    }
}

/// The raw session pointer, shared by the engine actor and the pump thread. The shim is
/// thread-safe; the engine destroys the session only after the pump has stopped.
final class SessionHandle: @unchecked Sendable {
    let raw: OpaquePointer
    init(_ raw: OpaquePointer) { self.raw = raw }
}

/// A dedicated thread that blocks in libtorrent's wait_for_alert and hands batches, in order, to
/// the engine through an AsyncStream. (Blocking must not happen on Swift's cooperative pool.)
final class AlertPump: @unchecked Sendable {
    private let session: SessionHandle
    private let continuation: AsyncStream<[EngineAlert]>.Continuation
    private let lock = NSLock()
    private var stopping = false
    private let stopped = DispatchSemaphore(value: 0)

    init(session: SessionHandle, continuation: AsyncStream<[EngineAlert]>.Continuation) {
        self.session = session
        self.continuation = continuation
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "libtorrent-alerts"
        thread.start()
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private func run() {
        var buffer = [ct_alert](repeating: ct_alert(), count: 512)
        while !isStopping {
            guard ct_wait_alerts(session.raw, 100) != 0 else { continue }
            while true {
                let n = buffer.withUnsafeMutableBufferPointer { ct_pop_alerts(session.raw, $0.baseAddress, $0.count) }
                if n == 0 { break }
                continuation.yield(buffer[0..<n].map(EngineAlert.init))
                if n < buffer.count { break }
            }
        }
        continuation.finish()
        stopped.signal()
    }

    /// Stops the thread and waits for it (at most one wait_for_alert period).
    func stop() {
        lock.lock()
        let already = stopping
        stopping = true
        lock.unlock()
        if !already { stopped.wait() }
    }
}
