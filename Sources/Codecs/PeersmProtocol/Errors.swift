/// The field of a DB_* message a codec error refers to.
public enum PeersmField: String, Sendable, CaseIterable {
    case hashNameLength, hashName
    case chunkNumberLength, chunkNumber, chunkCount, counter, requestNonce
    case sizeLength, size, typeLength, type, publicKeyLength, publicKey
    case part, facilitator
    case reason
    case signatureField, data
}

/// Why a DB_* body could not be decoded or encoded. Every malformed field maps to one of these;
/// the codec never traps on input.
public enum PeersmProtocolError: Error, Equatable, Sendable {
    /// The relay command is not one of 80…85.
    case unknownCommand(UInt8)
    /// The body is longer than one relay cell's data (498 bytes).
    case bodyTooLong(Int)
    /// The body ended before or inside this field.
    case truncated(PeersmField)
    /// A length prefix, or a field's length, is outside what the format allows.
    case invalidLength(PeersmField, Int)
    /// A numeric field holds a value the format does not allow.
    case invalidValue(PeersmField, UInt64)
    /// A text field is not valid (not UTF-8, or not printable ASCII where ASCII is required).
    case invalidText(PeersmField)
    /// Bytes left over after the last field.
    case trailingBytes(Int)
}
