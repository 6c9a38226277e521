#include "cossl_tls.h"

#include <string.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct cossl_tls_ctx {
    SSL_CTX *ssl_ctx;
    int is_server;
};

struct cossl_tls_conn {
    SSL *ssl;
    BIO *rbio; // ciphertext from the peer (owned by ssl)
    BIO *wbio; // ciphertext for the peer (owned by ssl)
    int is_server;
};

// Writes "reason: <drained OpenSSL error queue>" into err (the queue is always drained, so a stale
// entry cannot be blamed on the next connection that uses this thread).
static void set_error(char *err, size_t cap, const char *reason) {
    size_t used = 0;
    if (err && cap > 0) {
        int n = snprintf(err, cap, "%s", reason);
        used = n < 0 ? 0 : ((size_t)n >= cap ? cap - 1 : (size_t)n);
    }
    unsigned long code;
    int first = 1;
    while ((code = ERR_get_error()) != 0) {
        if (!err || cap == 0 || used + 4 >= cap) continue;
        char line[256];
        ERR_error_string_n(code, line, sizeof line);
        int n = snprintf(err + used, cap - used, "%s%s", first ? ": " : "; ", line);
        if (n > 0) used = (size_t)n >= cap - used ? cap - 1 : used + (size_t)n;
        first = 0;
    }
}

// Never prompt for a passphrase on a terminal: an encrypted key is simply an error.
static int no_password(char *buf, int size, int rwflag, void *u) {
    (void)buf; (void)size; (void)rwflag; (void)u;
    return 0;
}

// Tor link policy (tor-spec §2.2): TLS 1.2–1.3, no compression, no session tickets or resumption,
// no renegotiation. Peer certificates are not verified here: Tor authenticates in-protocol.
static int apply_link_policy(SSL_CTX *c) {
    if (!SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION)) return 0;
    if (!SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION)) return 0;
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    if (!SSL_CTX_set_num_tickets(c, 0)) return 0;
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    return 1;
}

static cossl_tls_ctx *wrap_ctx(SSL_CTX *c, int is_server, char *err, size_t cap) {
    cossl_tls_ctx *ctx = OPENSSL_zalloc(sizeof *ctx);
    if (!ctx) {
        SSL_CTX_free(c);
        set_error(err, cap, "out of memory");
        return NULL;
    }
    ctx->ssl_ctx = c;
    ctx->is_server = is_server;
    return ctx;
}

cossl_tls_ctx *cossl_tls_ctx_new_server(const uint8_t *key_pem, size_t key_len,
                                        const uint8_t *cert_pem, size_t cert_len,
                                        char *err, size_t err_cap) {
    ERR_clear_error();
    if (!key_pem || !cert_pem || key_len > INT32_MAX || cert_len > INT32_MAX) {
        set_error(err, err_cap, "missing or oversized key/certificate PEM");
        return NULL;
    }
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (!c) { set_error(err, err_cap, "SSL_CTX_new failed"); return NULL; }
    if (!apply_link_policy(c)) { set_error(err, err_cap, "cannot apply TLS policy"); SSL_CTX_free(c); return NULL; }

    BIO *kb = BIO_new_mem_buf(key_pem, (int)key_len);
    EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL) : NULL;
    BIO_free(kb);
    if (!key) { set_error(err, err_cap, "cannot parse private key PEM"); SSL_CTX_free(c); return NULL; }
    int ok = SSL_CTX_use_PrivateKey(c, key);
    EVP_PKEY_free(key);
    if (!ok) { set_error(err, err_cap, "cannot use private key"); SSL_CTX_free(c); return NULL; }

    BIO *cb = BIO_new_mem_buf(cert_pem, (int)cert_len);
    X509 *leaf = cb ? PEM_read_bio_X509(cb, NULL, no_password, NULL) : NULL;
    if (!leaf) { BIO_free(cb); set_error(err, err_cap, "cannot parse certificate PEM"); SSL_CTX_free(c); return NULL; }
    ok = SSL_CTX_use_certificate(c, leaf);
    X509_free(leaf);
    if (!ok) { BIO_free(cb); set_error(err, err_cap, "cannot use certificate"); SSL_CTX_free(c); return NULL; }
    X509 *extra;
    while ((extra = PEM_read_bio_X509(cb, NULL, no_password, NULL)) != NULL) {
        if (!SSL_CTX_add0_chain_cert(c, extra)) { // takes ownership on success only
            X509_free(extra);
            BIO_free(cb);
            set_error(err, err_cap, "cannot add chain certificate");
            SSL_CTX_free(c);
            return NULL;
        }
    }
    BIO_free(cb);
    ERR_clear_error(); // the loop above ends on a harmless "no start line"

    if (!SSL_CTX_check_private_key(c)) {
        set_error(err, err_cap, "private key does not match certificate");
        SSL_CTX_free(c);
        return NULL;
    }
    return wrap_ctx(c, 1, err, err_cap);
}

cossl_tls_ctx *cossl_tls_ctx_new_client(char *err, size_t err_cap) {
    ERR_clear_error();
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c) { set_error(err, err_cap, "SSL_CTX_new failed"); return NULL; }
    if (!apply_link_policy(c)) { set_error(err, err_cap, "cannot apply TLS policy"); SSL_CTX_free(c); return NULL; }
    return wrap_ctx(c, 0, err, err_cap);
}

void cossl_tls_ctx_free(cossl_tls_ctx *ctx) {
    if (!ctx) return;
    SSL_CTX_free(ctx->ssl_ctx);
    OPENSSL_free(ctx);
}

cossl_tls_conn *cossl_tls_conn_new(cossl_tls_ctx *ctx, const char *server_name, char *err, size_t err_cap) {
    ERR_clear_error();
    if (!ctx) { set_error(err, err_cap, "no context"); return NULL; }
    cossl_tls_conn *conn = OPENSSL_zalloc(sizeof *conn);
    if (!conn) { set_error(err, err_cap, "out of memory"); return NULL; }
    conn->is_server = ctx->is_server;
    conn->ssl = SSL_new(ctx->ssl_ctx);
    conn->rbio = BIO_new(BIO_s_mem());
    conn->wbio = BIO_new(BIO_s_mem());
    if (!conn->ssl || !conn->rbio || !conn->wbio) {
        set_error(err, err_cap, "cannot allocate SSL or memory BIOs");
        BIO_free(conn->rbio);
        BIO_free(conn->wbio);
        SSL_free(conn->ssl);
        OPENSSL_free(conn);
        return NULL;
    }
    // An empty memory BIO reports "retry" (not EOF): more ciphertext may arrive later.
    BIO_set_mem_eof_return(conn->rbio, -1);
    BIO_set_mem_eof_return(conn->wbio, -1);
    SSL_set_bio(conn->ssl, conn->rbio, conn->wbio);
    if (conn->is_server) {
        SSL_set_accept_state(conn->ssl);
    } else {
        SSL_set_connect_state(conn->ssl);
        if (server_name && server_name[0] && !SSL_set_tlsext_host_name(conn->ssl, server_name)) {
            set_error(err, err_cap, "cannot set server name");
            cossl_tls_conn_free(conn);
            return NULL;
        }
    }
    return conn;
}

void cossl_tls_conn_free(cossl_tls_conn *conn) {
    if (!conn) return;
    SSL_free(conn->ssl); // frees both BIOs
    OPENSSL_free(conn);
}

int cossl_tls_conn_is_server(const cossl_tls_conn *conn) { return conn->is_server; }

// Maps an SSL_* return value to a status, filling err on failure.
static int status_after(cossl_tls_conn *conn, int ret, const char *what, char *err, size_t cap) {
    int e = SSL_get_error(conn->ssl, ret);
    switch (e) {
    case SSL_ERROR_NONE: return COSSL_TLS_OK;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: // the output BIO grows without bound, so this means "wait for the peer"
        return COSSL_TLS_WANT_READ;
    case SSL_ERROR_ZERO_RETURN: return COSSL_TLS_CLOSED;
    case SSL_ERROR_SSL: set_error(err, cap, what); return COSSL_TLS_ERROR;
    case SSL_ERROR_SYSCALL: set_error(err, cap, what); return COSSL_TLS_ERROR;
    default: {
        char reason[128];
        snprintf(reason, sizeof reason, "%s (SSL error %d)", what, e);
        set_error(err, cap, reason);
        return COSSL_TLS_ERROR;
    }
    }
}

int cossl_tls_handshake(cossl_tls_conn *conn, char *err, size_t err_cap) {
    ERR_clear_error();
    if (SSL_is_init_finished(conn->ssl)) return COSSL_TLS_OK;
    int ret = SSL_do_handshake(conn->ssl);
    if (ret == 1) return COSSL_TLS_OK;
    int st = status_after(conn, ret, "TLS handshake failed", err, err_cap);
    if (st == COSSL_TLS_CLOSED) { // close_notify during the handshake is a failure, not a clean end
        set_error(err, err_cap, "peer closed the TLS connection during the handshake");
        return COSSL_TLS_ERROR;
    }
    return st;
}

int cossl_tls_handshake_done(const cossl_tls_conn *conn) { return SSL_is_init_finished(conn->ssl) ? 1 : 0; }

int cossl_tls_feed(cossl_tls_conn *conn, const uint8_t *data, size_t len, char *err, size_t err_cap) {
    ERR_clear_error();
    while (len > 0) {
        int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
        int n = BIO_write(conn->rbio, data, chunk);
        if (n <= 0) { set_error(err, err_cap, "cannot buffer received ciphertext"); return COSSL_TLS_ERROR; }
        data += n;
        len -= (size_t)n;
    }
    return COSSL_TLS_OK;
}

int cossl_tls_read(cossl_tls_conn *conn, uint8_t *out, size_t cap, size_t *got, char *err, size_t err_cap) {
    ERR_clear_error();
    *got = 0;
    if (cap == 0) return COSSL_TLS_OK;
    size_t n = 0;
    int ret = SSL_read_ex(conn->ssl, out, cap, &n);
    if (ret == 1) { *got = n; return COSSL_TLS_OK; }
    return status_after(conn, ret, "TLS read failed", err, err_cap);
}

int cossl_tls_write(cossl_tls_conn *conn, const uint8_t *data, size_t len, char *err, size_t err_cap) {
    ERR_clear_error();
    if (!SSL_is_init_finished(conn->ssl)) {
        set_error(err, err_cap, "TLS write before the handshake completed");
        return COSSL_TLS_ERROR;
    }
    while (len > 0) {
        size_t n = 0;
        int ret = SSL_write_ex(conn->ssl, data, len, &n);
        if (ret != 1) {
            int st = status_after(conn, ret, "TLS write failed", err, err_cap);
            if (st != COSSL_TLS_ERROR) set_error(err, err_cap, "TLS write could not complete");
            return COSSL_TLS_ERROR;
        }
        data += n;
        len -= n;
    }
    return COSSL_TLS_OK;
}

size_t cossl_tls_pending_output(const cossl_tls_conn *conn) { return BIO_ctrl_pending(conn->wbio); }

size_t cossl_tls_take_output(cossl_tls_conn *conn, uint8_t *out, size_t cap) {
    size_t total = 0;
    while (total < cap) {
        size_t want = cap - total;
        int n = BIO_read(conn->wbio, out + total, want > INT32_MAX ? INT32_MAX : (int)want);
        if (n <= 0) break;
        total += (size_t)n;
    }
    return total;
}

int cossl_tls_shutdown(cossl_tls_conn *conn, char *err, size_t err_cap) {
    ERR_clear_error();
    if (!SSL_is_init_finished(conn->ssl)) return COSSL_TLS_OK;
    if (SSL_get_shutdown(conn->ssl) & SSL_SENT_SHUTDOWN) return COSSL_TLS_OK;
    int ret = SSL_shutdown(conn->ssl); // 0: close_notify queued, peer's not yet seen; 1: both done
    if (ret >= 0) return COSSL_TLS_OK;
    int st = status_after(conn, ret, "TLS shutdown failed", err, err_cap);
    return st == COSSL_TLS_ERROR ? COSSL_TLS_ERROR : COSSL_TLS_OK;
}

static size_t copy_der(X509 *x, uint8_t *out, size_t cap) {
    if (!x) return 0;
    int len = i2d_X509(x, NULL);
    if (len <= 0) return 0;
    if (out && cap >= (size_t)len) {
        unsigned char *p = out;
        i2d_X509(x, &p);
    }
    return (size_t)len;
}

size_t cossl_tls_peer_certificate_der(const cossl_tls_conn *conn, uint8_t *out, size_t cap) {
    X509 *peer = SSL_get1_peer_certificate(conn->ssl);
    size_t len = copy_der(peer, out, cap);
    X509_free(peer);
    return len;
}

size_t cossl_tls_local_certificate_der(const cossl_tls_conn *conn, uint8_t *out, size_t cap) {
    return copy_der(SSL_get_certificate(conn->ssl), out, cap); // not a new reference
}

int cossl_tls_export_keying_material(const cossl_tls_conn *conn,
                                     const char *label, size_t label_len,
                                     const uint8_t *context, size_t context_len, int use_context,
                                     uint8_t *out, size_t out_len,
                                     char *err, size_t err_cap) {
    ERR_clear_error();
    if (!SSL_is_init_finished(conn->ssl)) {
        set_error(err, err_cap, "keying-material export before the handshake completed");
        return COSSL_TLS_ERROR;
    }
    if (out_len == 0) { set_error(err, err_cap, "keying-material export of zero bytes"); return COSSL_TLS_ERROR; }
    static const uint8_t empty = 0;
    if (!SSL_export_keying_material(conn->ssl, out, out_len, label, label_len,
                                    context ? context : &empty, use_context ? context_len : 0,
                                    use_context ? 1 : 0)) {
        set_error(err, err_cap, "keying-material export failed");
        return COSSL_TLS_ERROR;
    }
    return COSSL_TLS_OK;
}

const char *cossl_tls_protocol_version(const cossl_tls_conn *conn) {
    const char *v = SSL_get_version(conn->ssl);
    return v ? v : "unknown";
}

const char *cossl_tls_cipher_name(const cossl_tls_conn *conn) {
    const SSL_CIPHER *c = SSL_get_current_cipher(conn->ssl);
    const char *name = c ? SSL_CIPHER_get_name(c) : NULL;
    return name ? name : "(none)";
}
