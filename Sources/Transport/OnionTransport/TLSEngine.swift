// Wraps the OpenSSL shim (CShims/COpenSSL/cossl_tls.c) rather than swift-nio-ssl because Tor's
// AUTHENTICATE type 3 needs the RFC 5705 exporter, which swift-nio-ssl does not expose and OpenSSL 3
// has (SSL_export_keying_material). See TLSContext.swift.
import COpenSSL
import NIOCore
import TorCrypto

/// A sans-I/O TLS connection: received ciphertext goes in through `feed(ciphertext:)`, plaintext
/// to send goes in through `write(plaintext:)`, and the ciphertext to put on the wire comes out of
/// `drainOutbound()`. It does no I/O and reads no clock.
///
/// Not thread-safe by design: it belongs to exactly one owner (one `TLSLinkHandler`, on one event
/// loop) and must only be used from there. After any thrown error the engine is unusable; the
/// owner should send what `drainOutbound()` still holds (possibly an alert) and drop the transport.
public final class TLSEngine {
    /// The RFC 5705 label of Tor's AUTHENTICATE type 3 (Ed25519-SHA256-RFC5705), output length 32. The
    /// context C tor really uses is the SHA-256 of the initiator's RSA identity key, not the Ed25519
    /// identity tor-spec names: see `LinkAuth3.exporterContext`, which owns both values.
    public static var torAuth0003ExporterLabel: String { LinkAuth3.exporterLabel }

    /// What one `feed(ciphertext:)` produced.
    public struct FeedResult {
        /// Decrypted application bytes, if any (all records completed by this feed, in order).
        public var plaintext: ByteBuffer?
        /// True exactly once: on the feed that completed the handshake (plaintext may follow it).
        public var handshakeCompleted: Bool
        /// The peer sent close_notify; nothing more will be decrypted.
        public var receivedCloseNotify: Bool
    }

    public let isServer: Bool
    public private(set) var isHandshakeComplete = false
    public private(set) var receivedCloseNotify = false
    /// We queued close_notify: no more writes (reads go on; the peer may still be sending).
    public private(set) var isClosed = false
    private var failure: TLSError?
    private let conn: OpaquePointer
    private let context: TLSContext // keeps the SSL_CTX alive as long as the connection
    private let allocator: ByteBufferAllocator

    /// One TLS record holds at most 16 KiB of plaintext; reading in such steps avoids re-asking.
    private static let readChunk = 16 * 1024

    /// `serverName` (client only) is sent as SNI; Tor does not need it.
    public init(context: TLSContext, serverName: String? = nil, allocator: ByteBufferAllocator = ByteBufferAllocator()) throws {
        let (raw, message) = withTLSErrorBuffer { err, cap in
            if let serverName { return cossl_tls_conn_new(context.raw, serverName, err, cap) }
            return cossl_tls_conn_new(context.raw, nil, err, cap)
        }
        guard let raw else { throw TLSError(.configuration, message) }
        conn = raw
        self.context = context
        self.allocator = allocator
        isServer = context.isServer
    }

    deinit { cossl_tls_conn_free(conn) }

    /// Starts the handshake: a client queues its ClientHello (take it with `drainOutbound()`); a
    /// server has nothing to say until the peer speaks.
    public func startHandshake() throws {
        try checkUsable()
        _ = try stepHandshake()
    }

    /// Consumes ciphertext from the peer; advances the handshake and decrypts what it can.
    public func feed(ciphertext: ByteBuffer) throws -> FeedResult {
        try checkUsable()
        var result = FeedResult(plaintext: nil, handshakeCompleted: false, receivedCloseNotify: false)
        if receivedCloseNotify { return result } // the peer promised to send nothing more
        let (status, message) = withTLSErrorBuffer { err, cap in
            ciphertext.withUnsafeReadableBytes { bytes in
                cossl_tls_feed(conn, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, err, cap)
            }
        }
        if status != Int32(COSSL_TLS_OK) { throw fail(.protocolFailure, message) }

        if !isHandshakeComplete {
            guard try stepHandshake() else { return result }
            result.handshakeCompleted = true
        }
        result.plaintext = try readPlaintext()
        result.receivedCloseNotify = receivedCloseNotify
        return result
    }

    /// Encrypts application bytes; the records wait in `drainOutbound()`.
    public func write(plaintext: ByteBuffer) throws {
        try checkUsable()
        guard !isClosed else { throw TLSError(.unusable, "cannot send after close_notify") }
        guard isHandshakeComplete else {
            throw TLSError(.handshakeNotComplete, "cannot send application data before the TLS handshake completes")
        }
        guard plaintext.readableBytes > 0 else { return }
        let (status, message) = withTLSErrorBuffer { err, cap in
            plaintext.withUnsafeReadableBytes { bytes in
                cossl_tls_write(conn, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, err, cap)
            }
        }
        if status != Int32(COSSL_TLS_OK) { throw fail(.protocolFailure, message) }
    }

    /// The ciphertext waiting to be sent (handshake messages, records, alerts), or nil if none.
    /// Still works after a failure so that a fatal alert can reach the peer.
    public func drainOutbound() -> ByteBuffer? {
        let pending = cossl_tls_pending_output(conn)
        guard pending > 0 else { return nil }
        var buffer = allocator.buffer(capacity: pending)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { out in
            cossl_tls_take_output(conn, out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count)
        }
        return buffer
    }

    /// Queues close_notify (nothing before the handshake completes: there is no session to end).
    /// The engine accepts no further writes afterwards.
    public func close() {
        guard failure == nil, !isClosed else { return }
        isClosed = true
        if isHandshakeComplete {
            let (status, message) = withTLSErrorBuffer { err, cap in cossl_tls_shutdown(conn, err, cap) }
            if status != Int32(COSSL_TLS_OK) { _ = fail(.protocolFailure, message) }
        }
    }

    /// DER of the peer's leaf certificate (nil until the peer sent one; a Tor initiator sends none).
    public var peerCertificateDER: [UInt8]? { certificateDER(cossl_tls_peer_certificate_der) }

    /// DER of our own certificate (nil for a client).
    public var localCertificateDER: [UInt8]? { certificateDER(cossl_tls_local_certificate_der) }

    /// Negotiated protocol, e.g. "TLSv1.3".
    public var protocolVersion: String { String(cString: cossl_tls_protocol_version(conn)) }

    /// Negotiated cipher suite, e.g. "TLS_AES_256_GCM_SHA384".
    public var cipherSuite: String { String(cString: cossl_tls_cipher_name(conn)) }

    /// RFC 5705 (TLS 1.2) / RFC 8446 §7.5 (TLS 1.3) exported keying material. A nil `context`
    /// means "no context", which in TLS 1.2 differs from an empty one (Tor always passes one).
    /// Works after close too: the secrets outlive the record layer.
    public func exportKeyingMaterial(label: String, context: [UInt8]?, length: Int) throws -> [UInt8] {
        guard isHandshakeComplete else {
            throw TLSError(.handshakeNotComplete, "keying-material export needs a completed TLS handshake")
        }
        guard length > 0 else { throw TLSError(.exporter, "cannot export \(length) bytes") }
        var out = [UInt8](repeating: 0, count: length)
        let labelBytes = Array(label.utf8)
        let (status, message) = withTLSErrorBuffer { err, cap in
            labelBytes.withUnsafeBufferPointer { l in
                (context ?? []).withUnsafeBufferPointer { c in
                    out.withUnsafeMutableBufferPointer { o in
                        l.withMemoryRebound(to: CChar.self) { lc in
                            cossl_tls_export_keying_material(conn, lc.baseAddress, lc.count, c.baseAddress, c.count,
                                                             context == nil ? 0 : 1,
                                                             o.baseAddress, o.count, err, cap)
                        }
                    }
                }
            }
        }
        guard status == Int32(COSSL_TLS_OK) else { throw TLSError(.exporter, message) }
        return out
    }

    // MARK: private

    private func checkUsable() throws {
        if let failure { throw failure }
    }

    /// Records the failure so later calls throw it too; returns it for throwing.
    private func fail(_ kind: TLSError.Kind, _ message: String) -> TLSError {
        let error = TLSError(kind, message)
        failure = error
        return error
    }

    /// Returns true once the handshake is complete.
    private func stepHandshake() throws -> Bool {
        let (status, message) = withTLSErrorBuffer { err, cap in cossl_tls_handshake(conn, err, cap) }
        switch status {
        case Int32(COSSL_TLS_OK):
            isHandshakeComplete = true
            return true
        case Int32(COSSL_TLS_WANT_READ):
            return false
        default:
            throw fail(.handshake, message)
        }
    }

    private func readPlaintext() throws -> ByteBuffer? {
        var buffer: ByteBuffer?
        while true {
            var out = buffer ?? allocator.buffer(capacity: Self.readChunk)
            var status: Int32 = 0
            var message = ""
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.readChunk) { space in
                var got = 0
                (status, message) = withTLSErrorBuffer { err, cap in
                    cossl_tls_read(conn, space.baseAddress!.assumingMemoryBound(to: UInt8.self), space.count, &got, err, cap)
                }
                return got
            }
            switch status {
            case Int32(COSSL_TLS_OK):
                buffer = out
            case Int32(COSSL_TLS_WANT_READ):
                return buffer
            case Int32(COSSL_TLS_CLOSED):
                receivedCloseNotify = true
                return buffer
            default:
                throw fail(.protocolFailure, message)
            }
        }
    }

    private func certificateDER(_ get: (OpaquePointer?, UnsafeMutablePointer<UInt8>?, Int) -> Int) -> [UInt8]? {
        let length = get(conn, nil, 0)
        guard length > 0 else { return nil }
        var der = [UInt8](repeating: 0, count: length)
        let copied = der.withUnsafeMutableBufferPointer { get(conn, $0.baseAddress, $0.count) }
        return copied == length ? der : nil
    }
}
