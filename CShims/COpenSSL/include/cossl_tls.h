#ifndef PEERSM_COSSL_TLS_H
#define PEERSM_COSSL_TLS_H
// TLS over the system OpenSSL with memory BIOs, for Tor links. Fixed-argument functions only
// (Swift cannot call variadic or macro APIs). No I/O happens here: the caller feeds received
// ciphertext in and takes ciphertext to send out. Policy (when to send, what to check) lives in Swift.
//
// Error reporting: every function that can fail takes `err`/`err_cap` and, on failure, writes a
// NUL-terminated message there (the OpenSSL error queue, drained, or the shim's own reason).
// `err` may be NULL. The OpenSSL error queue is per thread and shared by all connections on that
// thread, so each call clears it first and drains it on failure.
//
// A connection is not thread-safe: one owner at a time. A context may be shared.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cossl_tls_ctx cossl_tls_ctx;
typedef struct cossl_tls_conn cossl_tls_conn;

/// Status codes.
enum {
    COSSL_TLS_OK = 0,          // done (handshake finished, data read, …)
    COSSL_TLS_WANT_READ = 1,   // needs more ciphertext from the peer (after sending what is pending)
    COSSL_TLS_CLOSED = 2,      // the peer sent close_notify
    COSSL_TLS_ERROR = -1,      // fatal: see err; the connection is unusable (pending output may hold an alert)
};

/// A server context: TLS 1.2–1.3, no tickets/resumption/compression/renegotiation, one RSA (or
/// other) certificate. `cert_pem` may hold further certificates after the leaf; they are sent as
/// the chain. Returns NULL on failure.
cossl_tls_ctx *cossl_tls_ctx_new_server(const uint8_t *key_pem, size_t key_len,
                                        const uint8_t *cert_pem, size_t cert_len,
                                        char *err, size_t err_cap);

/// A client context with the same protocol policy and no certificate verification: Tor checks
/// the peer in-protocol (CERTS cell; it hashes the leaf certificate).
cossl_tls_ctx *cossl_tls_ctx_new_client(char *err, size_t err_cap);

void cossl_tls_ctx_free(cossl_tls_ctx *ctx);

/// A connection over a pair of memory BIOs. Server or client follows the context's kind.
/// `server_name` (client only, may be NULL) is sent as SNI.
cossl_tls_conn *cossl_tls_conn_new(cossl_tls_ctx *ctx, const char *server_name, char *err, size_t err_cap);

void cossl_tls_conn_free(cossl_tls_conn *conn);

/// 1 for a server connection, 0 for a client.
int cossl_tls_conn_is_server(const cossl_tls_conn *conn);

/// Advances the handshake with what has been fed so far: COSSL_TLS_OK once complete,
/// COSSL_TLS_WANT_READ while waiting for the peer, COSSL_TLS_ERROR on failure.
int cossl_tls_handshake(cossl_tls_conn *conn, char *err, size_t err_cap);

/// 1 once the handshake has completed.
int cossl_tls_handshake_done(const cossl_tls_conn *conn);

/// Appends received ciphertext (the memory BIO grows; it never refuses). Returns OK or ERROR.
int cossl_tls_feed(cossl_tls_conn *conn, const uint8_t *data, size_t len, char *err, size_t err_cap);

/// Decrypts into `out` (at most `cap` bytes; *got is set). OK with *got > 0, WANT_READ when no
/// complete record is buffered, CLOSED after the peer's close_notify, ERROR on a fatal alert or
/// corrupt record.
int cossl_tls_read(cossl_tls_conn *conn, uint8_t *out, size_t cap, size_t *got, char *err, size_t err_cap);

/// Encrypts all of `data` into pending output (handshake must be complete). OK or ERROR.
int cossl_tls_write(cossl_tls_conn *conn, const uint8_t *data, size_t len, char *err, size_t err_cap);

/// Bytes of ciphertext waiting to be sent.
size_t cossl_tls_pending_output(const cossl_tls_conn *conn);

/// Moves up to `cap` bytes of pending ciphertext into `out`; returns how many.
size_t cossl_tls_take_output(cossl_tls_conn *conn, uint8_t *out, size_t cap);

/// Queues close_notify (a no-op before the handshake completes). OK or ERROR.
int cossl_tls_shutdown(cossl_tls_conn *conn, char *err, size_t err_cap);

/// DER of the peer's leaf certificate: returns its length (0 if there is none) and copies it into
/// `out` when `cap` is large enough (call with out=NULL, cap=0 to learn the length).
size_t cossl_tls_peer_certificate_der(const cossl_tls_conn *conn, uint8_t *out, size_t cap);

/// DER of our own certificate, same convention as above.
size_t cossl_tls_local_certificate_der(const cossl_tls_conn *conn, uint8_t *out, size_t cap);

/// RFC 5705 / RFC 8446 §7.5 keying-material exporter. `use_context` 0 means "no context" (which
/// differs from an empty one in TLS 1.2 only; Tor always uses one). The handshake must be
/// complete. OK or ERROR.
int cossl_tls_export_keying_material(const cossl_tls_conn *conn,
                                     const char *label, size_t label_len,
                                     const uint8_t *context, size_t context_len, int use_context,
                                     uint8_t *out, size_t out_len,
                                     char *err, size_t err_cap);

/// Negotiated protocol ("TLSv1.3") and cipher suite names; static strings, never NULL.
const char *cossl_tls_protocol_version(const cossl_tls_conn *conn);
const char *cossl_tls_cipher_name(const cossl_tls_conn *conn);

#ifdef __cplusplus
}
#endif
#endif
