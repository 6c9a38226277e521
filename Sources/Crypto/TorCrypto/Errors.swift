/// Every failure TorCrypto reports. Bad input from the network or disk ends up here, never in a trap.
public enum TorCryptoError: Error, Equatable, Sendable {
    /// A byte string had the wrong length for what it encodes.
    case badLength(what: String, expected: Int, actual: Int)
    /// A circuit operation named a hop the circuit does not have.
    case noSuchHop(Int)
    /// A KDF was asked for more output than it can produce.
    case kdfOutputTooLong(requested: Int, maximum: Int)
    /// A Diffie-Hellman result was all zero (peer sent a low-order point).
    case nonContributoryDH
    /// ntor: the CREATE2 onionskin named a different relay identity or an onion key we do not hold.
    case unknownNtorKey
    /// ntor/CREATE_FAST: the server's AUTH / KH did not verify.
    case handshakeAuthFailed
    /// A key encoding could not be parsed.
    case badKey(String)
    /// A certificate could not be parsed.
    case malformedCertificate(String)
    /// A certificate's signature did not verify.
    case badSignature
    /// A certificate has expired at the checked time.
    case expired
    /// A certificate is of a different type or certifies a different key than required.
    case certificateMismatch(String)
    /// An extension flagged AFFECTS_VALIDATION that we do not understand.
    case unrecognizedCriticalExtension(UInt8)
    /// OpenSSL reported a failure.
    case openSSL(String)
    /// Reading or writing key files failed.
    case io(String)
}
