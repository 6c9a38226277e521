// Tor links use TLS through a thin C shim over the system OpenSSL (CShims/COpenSSL/cossl_tls.c)
// with memory BIOs, not swift-nio-ssl: a relay that initiates a link must send AUTHENTICATE type 3,
// whose TLSSECRETS field is the RFC 5705 keying-material exporter, and swift-nio-ssl exposes no
// exporter while OpenSSL 3 has SSL_export_keying_material. The shim only moves bytes; the policy
// (when to handshake, send, close) lives here in Swift.
import COpenSSL

/// A TLS failure, with OpenSSL's own error text where there is one.
public struct TLSError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// A key, certificate or context could not be set up.
        case configuration
        /// The handshake failed (bad peer bytes, alert, unsupported protocol…).
        case handshake
        /// A record could not be decrypted or written after the handshake.
        case protocolFailure
        /// The transport ended before the handshake completed.
        case closedDuringHandshake
        /// The handshake did not complete in the allowed time.
        case handshakeTimeout
        /// The operation needs a completed handshake.
        case handshakeNotComplete
        /// The engine already failed or was closed; it cannot be used again.
        case unusable
        /// The keying-material exporter failed.
        case exporter
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "TLS \(kind.rawValue) error: \(message)" }
}

/// Capacity of the error text the shim writes (OpenSSL's queue can hold a few long lines).
let tlsErrorCapacity = 1024

/// Calls a shim function that reports failures through an error buffer; returns its result and the text.
func withTLSErrorBuffer<R>(_ body: (UnsafeMutablePointer<CChar>, Int) -> R) -> (R, String) {
    var buffer = [CChar](repeating: 0, count: tlsErrorCapacity)
    let result = buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    let message = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return (result, message.isEmpty ? "unknown OpenSSL error" : message)
}

/// Immutable TLS configuration for Tor links: TLS 1.2–1.3, no session tickets or resumption, no
/// compression, no renegotiation, and no certificate verification (Tor authenticates the peer
/// in-protocol, from its CERTS cell and a hash of its TLS leaf certificate). Safe to share between
/// connections and threads: OpenSSL's SSL_CTX is only read once built.
public final class TLSContext: @unchecked Sendable {
    let raw: OpaquePointer
    public let isServer: Bool

    private init(raw: OpaquePointer, isServer: Bool) {
        self.raw = raw
        self.isServer = isServer
    }

    /// A responder (server) context presenting `certificatePEM` (the leaf first, then any chain)
    /// with the unencrypted `privateKeyPEM`. C tor requires an RSA leaf key.
    public static func server(privateKeyPEM: String, certificatePEM: String) throws -> TLSContext {
        let key = Array(privateKeyPEM.utf8), cert = Array(certificatePEM.utf8)
        let (raw, message) = withTLSErrorBuffer { err, cap in
            key.withUnsafeBufferPointer { k in
                cert.withUnsafeBufferPointer { c in
                    cossl_tls_ctx_new_server(k.baseAddress, k.count, c.baseAddress, c.count, err, cap)
                }
            }
        }
        guard let raw else { throw TLSError(.configuration, message) }
        return TLSContext(raw: raw, isServer: true)
    }

    /// An initiator (client) context. It presents no certificate: Tor's initiator authenticates,
    /// if at all, with AUTHENTICATE cells inside the link.
    public static func client() throws -> TLSContext {
        let (raw, message) = withTLSErrorBuffer { err, cap in cossl_tls_ctx_new_client(err, cap) }
        guard let raw else { throw TLSError(.configuration, message) }
        return TLSContext(raw: raw, isServer: false)
    }

    deinit { cossl_tls_ctx_free(raw) }
}
