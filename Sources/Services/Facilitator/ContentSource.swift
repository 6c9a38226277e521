import NIOCore
import PeersmProtocol

/// Where a facilitator gets file bytes from. The torrent engine is the production source
/// (`TorrentContentSource`); the state machine and the service only see this protocol, so they can be
/// tested without libtorrent.
public protocol ContentSource: Sendable {
    /// Resolves `name` to one file (for a torrent: its metadata, then the file served). Calls
    /// `progress` with the seed's progress words while it works. Throws `ContentError` (or any error,
    /// read as UNAVAILABLE) when the name cannot be resolved.
    ///
    /// `readFrom` is where the one `read` that may follow will start (a data query), nil for an info
    /// query: a source may start fetching from there at once.
    func open(_ name: HashName, readFrom: UInt64?, progress: @escaping @Sendable (ProgressState) async -> Void) async throws -> any ContentFile
}

/// One resolved file. `close` must be called once the facilitator is done with it.
public protocol ContentFile: Sendable {
    var size: UInt64 { get }
    var mimeType: String { get }
    /// Streams exactly the bytes of `range` (starting at `open`'s `readFrom`), in order, in pieces of
    /// any size. Called at most once. Cancelling the consuming task stops the work behind the stream.
    func read(_ range: Range<UInt64>) async throws -> AsyncThrowingStream<ByteBuffer, Error>
    func close() async
}

/// A content failure with the DB_END reason it is reported with.
public struct ContentError: Error, Equatable, CustomStringConvertible {
    public var reason: DBEndReason
    public var detail: String
    public init(_ reason: DBEndReason, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }
    public var description: String { "\(reason): \(detail)" }
}
