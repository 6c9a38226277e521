/// Everything that can go wrong while decoding or encoding cells.
///
/// The cases are precise so that the channel and circuit state machines can map them to the right
/// reaction (typically DESTROY with reason PROTOCOL for channel-level errors, or END with reason
/// TORPROTOCOL for stream-level ones). Decoding never traps; it throws one of these.
public enum CellError: Error, Hashable, Sendable {
    /// The input ended before `field` could be read completely.
    case truncated(field: String)
    /// A variable-length cell announced a payload longer than the decoder accepts.
    case oversizedVariableCell(length: Int, limit: Int)
    /// An encoded payload does not fit its container (a fixed cell, a length field, a relay cell).
    case payloadTooLong(length: Int, limit: Int)
    /// A circuit ID does not fit the circuit ID width in use (2-byte IDs on link protocol ≤ 3).
    case circuitIDOutOfRange(UInt32, width: CircuitIDWidth)
    /// A VERSIONS payload must be a list of 16-bit integers.
    case oddVersionsLength(Int)
    /// A CERTS cell carried two certificates of the same type.
    case duplicateCertType(CertType)
    /// A CERTS cell to encode has more certificates than the 1-byte count allows.
    case tooManyEntries(field: String, count: Int)
    /// An address of known type (4 = IPv4, 6 = IPv6) had the wrong length, or an unknown type
    /// appeared where only IPv4/IPv6 are allowed. `type` is 0 where the format has no type byte
    /// (END EXITPOLICY, whose address kind is implied by its length).
    case badAddress(type: UInt8, length: Int)
    /// An address value that cannot be encoded (e.g. IPv4 0.0.0.0 in CONNECTED, which the wire
    /// format reserves to announce the IPv6 form).
    case unencodableAddress(String)
    /// A relay cell's Length field exceeds the 498 bytes available for data.
    case relayDataTooLong(Int)
    /// A relay cell body must be exactly 509 bytes.
    case badRelayBodyLength(Int)
    /// A NUL-terminated string (BEGIN's ADDRPORT) had no terminator.
    case missingNulTerminator(field: String)
    /// A BEGIN target is not a valid `host:port` / `[ipv6]:port` (reason says which part is wrong).
    case badStreamTarget(reason: String)
    /// A link specifier of known type had the wrong length (or an encoded identity the wrong size).
    case badLinkSpecifier(type: UInt8, length: Int)
    /// A SENDME v1 body whose DATA_LEN is not 20.
    case badSendmeDigestLength(Int)
    /// A fixed-size field given to an encoder has the wrong number of bytes.
    case badFieldLength(field: String, expected: Int, actual: Int)
    /// PADDING_NEGOTIATE with a version other than 0.
    case unsupportedPaddingNegotiateVersion(UInt8)
    /// A negative length passed to an encoder (e.g. VPADDING).
    case negativeLength(Int)
}

extension CellError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .truncated(let field): return "truncated: input ended inside \(field)"
        case .oversizedVariableCell(let length, let limit):
            return "variable-length cell payload of \(length) bytes exceeds the \(limit)-byte limit"
        case .payloadTooLong(let length, let limit): return "payload of \(length) bytes exceeds \(limit)"
        case .circuitIDOutOfRange(let id, let width): return "circuit ID \(id) does not fit \(width)"
        case .oddVersionsLength(let n): return "VERSIONS payload has odd length \(n)"
        case .duplicateCertType(let t): return "CERTS cell has two certificates of type \(t)"
        case .tooManyEntries(let field, let count): return "\(count) entries do not fit \(field)"
        case .badAddress(let type, let length): return "bad address: type \(type) with length \(length)"
        case .unencodableAddress(let why): return "address cannot be encoded: \(why)"
        case .relayDataTooLong(let n): return "relay cell Length \(n) exceeds 498"
        case .badRelayBodyLength(let n): return "relay cell body is \(n) bytes, expected 509"
        case .missingNulTerminator(let field): return "\(field) is not NUL-terminated"
        case .badStreamTarget(let reason): return "bad stream target: \(reason)"
        case .badLinkSpecifier(let type, let length): return "link specifier type \(type) has bad length \(length)"
        case .badSendmeDigestLength(let n): return "SENDME v1 DATA_LEN is \(n), expected 20"
        case .badFieldLength(let field, let expected, let actual):
            return "\(field) must be \(expected) bytes, got \(actual)"
        case .unsupportedPaddingNegotiateVersion(let v): return "PADDING_NEGOTIATE version \(v) unsupported"
        case .negativeLength(let n): return "negative length \(n)"
        }
    }
}
