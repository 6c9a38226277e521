import NIOCore

/// The 509-byte payload of a RELAY / RELAY_EARLY cell, encrypted or decrypted.
///
/// Layout once decrypted (tor-spec §6.1):
/// `Command(1) Recognized(2) StreamID(2) Digest(4) Length(2) Data(≤498) Padding`.
///
/// The header accessors read and write the buffer in place, so relay crypto can zero the digest,
/// hash, and write the digest back without copying the cell. ByteBuffer is copy-on-write: a body
/// decoded from `ChannelCellDecoder` shares storage with the decoder's buffer, so the first write
/// (typically the in-place decryption) copies its 509 bytes once; every later write is in place.
public struct RelayCellBody: Hashable, Sendable {
    public static let length = 509
    public static let headerLength = 11
    public static let maximumDataLength = length - headerLength  // 498

    @usableFromInline static let recognizedOffset = 1
    @usableFromInline static let streamIDOffset = 3
    @usableFromInline static let digestOffset = 5
    @usableFromInline static let lengthOffset = 9

    /// Exactly 509 readable bytes.
    @usableFromInline internal var storage: ByteBuffer

    /// The 509 bytes (a cheap, copy-on-write handle).
    @inlinable public var bytes: ByteBuffer { storage }

    /// Wraps `bytes`, which must hold exactly 509 readable bytes.
    public init(_ bytes: ByteBuffer) throws(CellError) {
        guard bytes.readableBytes == Self.length else { throw .badRelayBodyLength(bytes.readableBytes) }
        self.storage = bytes
    }

    /// Copies 509 raw bytes (e.g. after decryption into a scratch array).
    public init(copying raw: UnsafeRawBufferPointer) throws(CellError) {
        guard raw.count == Self.length else { throw .badRelayBodyLength(raw.count) }
        var buffer = ByteBufferAllocator().buffer(capacity: Self.length)
        buffer.writeBytes(raw)
        self.storage = buffer
    }

    /// For encoders that have just written exactly 509 bytes.
    init(unchecked bytes: ByteBuffer) { self.storage = bytes }

    @inlinable var base: Int { storage.readerIndex }

    /// The relay command byte (meaningful only once decrypted).
    @inlinable public var command: RelayCommand {
        RelayCommand(storage.getInteger(at: base, as: UInt8.self) ?? 0)
    }

    /// The Recognized field; zero on a cell addressed to this hop (then check the digest).
    @inlinable public var recognized: UInt16 {
        get { storage.getInteger(at: base + Self.recognizedOffset, as: UInt16.self) ?? 0 }
        set { storage.setInteger(newValue, at: base + Self.recognizedOffset) }
    }

    @inlinable public var streamID: UInt16 {
        get { storage.getInteger(at: base + Self.streamIDOffset, as: UInt16.self) ?? 0 }
        set { storage.setInteger(newValue, at: base + Self.streamIDOffset) }
    }

    /// The 4-byte Digest field, big-endian: the first four bytes of the running SHA-1 digest.
    @inlinable public var digest: UInt32 {
        get { storage.getInteger(at: base + Self.digestOffset, as: UInt32.self) ?? 0 }
        set { storage.setInteger(newValue, at: base + Self.digestOffset) }
    }

    /// The Length field as sent (not validated here; `RelayCell(decoding:)` validates it).
    @inlinable public var dataLength: UInt16 {
        storage.getInteger(at: base + Self.lengthOffset, as: UInt16.self) ?? 0
    }

    /// Read-only view of all 509 bytes (to feed a digest or a cipher without copying).
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeReadableBytes(body)
    }

    /// Mutable view of all 509 bytes (for in-place encryption / decryption).
    @inlinable
    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeMutableReadableBytes(body)
    }
}
