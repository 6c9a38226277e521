// Numbers every Peersm endpoint must agree on. docs/PROTOCOL.md explains each one.

/// Relay commands of the Peersm ORDB messages (node-Tor's numbers, `lib/src/streams.js`).
/// The relay-cell framing is TorCells' business; these values are what goes in its command byte.
public enum PeersmRelayCommand: UInt8, CaseIterable, Sendable {
    case dbInfo = 80
    case dbQuery = 81
    case dbConnected = 82
    case dbData = 83
    case dbEnd = 84
    case dbSendme = 85
}

/// Widths and limits of the wire format and of the chunk/block integrity scheme (version 1).
public enum PeersmWire {
    /// Data bytes of one relay cell (509-byte relay payload minus its 11-byte header).
    public static let maxBodyLength = 498
    /// `[chunk nb 4][signature field 8]` in front of every DB_DATA.
    public static let dataHeaderLength = 12
    /// File bytes per chunk: chunk k covers file bytes [k·486, (k+1)·486).
    public static let chunkSize = maxBodyLength - dataHeaderLength
    /// Width of the DB_DATA signature field; eight of them carry one Ed25519 signature.
    public static let signatureFieldLength = 8
    /// Number of DB_DATA messages that carry one 64-byte signature.
    public static let fragmentsPerSignature = 64 / signatureFieldLength
    /// Chunks per signed block. One Ed25519 verification per 128 × 486 = 62,208 file bytes.
    public static let blockChunks = 128
    /// Ed25519 public key carried in DB_CONNECTED.
    public static let publicKeyLength = 32
    /// Requester-chosen nonce at the end of DB_QUERY; binds signatures to one request.
    public static let requestNonceLength = 16
    /// hash_name has a one-byte length prefix and must not be empty.
    public static let maxHashNameLength = 255
    /// DB_QUERY's chunk number is variable-length big-endian; chunk numbers are 32-bit (DB_DATA has 4 bytes).
    public static let maxChunkNumberLength = 4
    /// DB_CONNECTED's size is variable-length big-endian, at most 8 bytes.
    public static let maxSizeLength = 8
    /// A DB_QUERY whose counter has reached this value is answered with DB_END(LOOP) (seed: "counter equal to 5").
    public static let loopLimit: UInt8 = 5
    /// Largest servable file: every chunk number, and the end-of-response chunk number, fits in 4 bytes.
    public static let maxFileSize = UInt64(UInt32.max) * UInt64(chunkSize)
}
