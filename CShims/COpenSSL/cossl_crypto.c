// The low-level SHA1_* API is deprecated in OpenSSL 3 but is the only one whose state is a plain struct:
// relay crypto checkpoints the running digest on every recognized cell, and EVP_MD_CTX_copy allocates.
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "cossl_crypto.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

// MARK: AES-CTR

struct cossl_aes_ctr { EVP_CIPHER_CTX *ctx; };

cossl_aes_ctr *cossl_aes_ctr_new(const uint8_t *key, size_t key_len, const uint8_t *iv) {
    const EVP_CIPHER *cipher = key_len == 16 ? EVP_aes_128_ctr() : key_len == 32 ? EVP_aes_256_ctr() : NULL;
    if (cipher == NULL || key == NULL || iv == NULL) return NULL;
    cossl_aes_ctr *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->ctx = EVP_CIPHER_CTX_new();
    if (s->ctx == NULL || EVP_EncryptInit_ex(s->ctx, cipher, NULL, key, iv) != 1) {
        cossl_aes_ctr_free(s);
        return NULL;
    }
    return s;
}

int cossl_aes_ctr_xor(cossl_aes_ctr *s, uint8_t *buf, size_t len) {
    if (s == NULL || len > INT32_MAX) return 0;
    int outl = 0;
    // CTR mode is a stream cipher: in-place EVP_EncryptUpdate is supported and outputs exactly len bytes.
    return EVP_EncryptUpdate(s->ctx, buf, &outl, buf, (int)len) == 1 && (size_t)outl == len;
}

void cossl_aes_ctr_free(cossl_aes_ctr *s) {
    if (s == NULL) return;
    EVP_CIPHER_CTX_free(s->ctx);
    free(s);
}

// MARK: SHA-1

struct cossl_sha1 { SHA_CTX c; };

cossl_sha1 *cossl_sha1_new(void) {
    cossl_sha1 *s = calloc(1, sizeof *s);
    if (s != NULL) SHA1_Init(&s->c);
    return s;
}

void cossl_sha1_free(cossl_sha1 *s) {
    if (s == NULL) return;
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

void cossl_sha1_update(cossl_sha1 *s, const uint8_t *data, size_t len) { SHA1_Update(&s->c, data, len); }

void cossl_sha1_peek(const cossl_sha1 *s, uint8_t *out) {
    SHA_CTX tmp = s->c;
    SHA1_Final(out, &tmp);
    OPENSSL_cleanse(&tmp, sizeof tmp);
}

void cossl_sha1_copy(cossl_sha1 *dst, const cossl_sha1 *src) { dst->c = src->c; }

// MARK: SHAKE-256

int cossl_shake256(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return 0;
    int ok = EVP_DigestInit_ex(ctx, EVP_shake256(), NULL) == 1 && EVP_DigestUpdate(ctx, in, in_len) == 1 &&
             EVP_DigestFinalXOF(ctx, out, out_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

// MARK: RSA

// The opaque type is an EVP_PKEY holding an RSA key.
#define PKEY(k) ((EVP_PKEY *)(k))

cossl_rsa *cossl_rsa_generate(int bits) {
    if (bits < 1024 || bits > 8192) return NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
    EVP_PKEY *pkey = NULL;
    BIGNUM *e = BN_new();
    int ok = ctx != NULL && e != NULL && BN_set_word(e, RSA_F4) == 1 && EVP_PKEY_keygen_init(ctx) == 1 &&
             EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits) == 1 && EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e) == 1 &&
             EVP_PKEY_keygen(ctx, &pkey) == 1;
    BN_free(e);
    EVP_PKEY_CTX_free(ctx);
    if (!ok) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    return (cossl_rsa *)pkey;
}

void cossl_rsa_free(cossl_rsa *key) { EVP_PKEY_free(PKEY(key)); }

int cossl_rsa_bits(const cossl_rsa *key) { return EVP_PKEY_get_bits(PKEY(key)); }

int cossl_rsa_has_private(const cossl_rsa *key) {
    BIGNUM *d = NULL;
    int has = EVP_PKEY_get_bn_param(PKEY(key), "d", &d) == 1 && d != NULL;
    BN_clear_free(d);
    return has;
}

int cossl_rsa_public_der(const cossl_rsa *key, uint8_t *out, size_t out_cap) {
    // i2d_PublicKey emits the type-specific encoding: PKCS#1 RSAPublicKey, which is what Tor hashes.
    int len = i2d_PublicKey(PKEY(key), NULL);
    if (len <= 0) return -1;
    if (out == NULL) return len;
    if ((size_t)len > out_cap) return -1;
    unsigned char *p = out;
    return i2d_PublicKey(PKEY(key), &p) == len ? len : -1;
}

cossl_rsa *cossl_rsa_from_public_der(const uint8_t *der, size_t len) {
    if (der == NULL || len == 0 || len > INT32_MAX) return NULL;
    const unsigned char *p = der;
    EVP_PKEY *pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)len);
    if (pkey != NULL && p != der + len) {  // trailing garbage is not a valid key encoding
        EVP_PKEY_free(pkey);
        return NULL;
    }
    return (cossl_rsa *)pkey;
}

int cossl_rsa_private_pem(const cossl_rsa *key, uint8_t *out, size_t out_cap) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) return -1;
    int result = -1;
    if (PEM_write_bio_PrivateKey(bio, PKEY(key), NULL, NULL, 0, NULL, NULL) == 1) {
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0 && n <= INT32_MAX) {
            if (out == NULL) result = (int)n;
            else if ((size_t)n <= out_cap) {
                memcpy(out, data, (size_t)n);
                result = (int)n;
            }
        }
    }
    BIO_free(bio);  // BIO_s_mem cleanses nothing; acceptable: the key lives in process memory anyway
    return result;
}

cossl_rsa *cossl_rsa_from_private_pem(const uint8_t *pem, size_t len) {
    if (pem == NULL || len == 0 || len > INT32_MAX) return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) return NULL;
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (pkey != NULL && EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    return (cossl_rsa *)pkey;
}

int cossl_rsa_sign_raw(const cossl_rsa *key, const uint8_t *msg, size_t msg_len, uint8_t *sig, size_t sig_cap) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(PKEY(key), NULL);
    if (ctx == NULL) return -1;
    size_t siglen = sig_cap;
    // No signature digest is set, so OpenSSL pads the raw bytes (Tor signs a bare digest, without DigestInfo).
    int ok = EVP_PKEY_sign_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_sign(ctx, sig, &siglen, msg, msg_len) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok && siglen <= INT32_MAX ? (int)siglen : -1;
}

int cossl_rsa_verify_recover(const cossl_rsa *key, const uint8_t *sig, size_t sig_len, uint8_t *out,
                             size_t out_cap) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(PKEY(key), NULL);
    if (ctx == NULL) return -1;
    // OpenSSL wants room for a whole modulus even though the payload is shorter.
    size_t mod = (size_t)EVP_PKEY_get_size(PKEY(key));
    uint8_t *buf = malloc(mod);
    size_t n = mod;
    int ok = buf != NULL && EVP_PKEY_verify_recover_init(ctx) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_verify_recover(ctx, buf, &n, sig, sig_len) == 1 && n <= out_cap;
    if (ok) memcpy(out, buf, n);
    free(buf);
    EVP_PKEY_CTX_free(ctx);
    return ok ? (int)n : -1;
}

// MARK: X.509

static int set_cn(X509_NAME *name, const char *cn) {
    return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) == 1;
}

int cossl_x509_self_signed(const cossl_rsa *key, const char *cn, const char *issuer_cn, int64_t not_before,
                           int64_t not_after, uint8_t *out, size_t out_cap) {
    if (key == NULL || cn == NULL) return -1;
    X509 *x = X509_new();
    X509_NAME *subject = X509_NAME_new(), *issuer = X509_NAME_new();
    ASN1_INTEGER *serial = ASN1_INTEGER_new();
    BIGNUM *bn = BN_new();
    int result = -1;
    // Random 64-bit positive serial, as C tor does for its link and identity certs.
    int ok = x && subject && issuer && serial && bn && BN_rand(bn, 64, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
             BN_to_ASN1_INTEGER(bn, serial) != NULL && X509_set_version(x, 2) == 1 &&
             X509_set_serialNumber(x, serial) == 1 && set_cn(subject, cn) &&
             set_cn(issuer, issuer_cn != NULL ? issuer_cn : cn) && X509_set_subject_name(x, subject) == 1 &&
             X509_set_issuer_name(x, issuer) == 1 && ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) &&
             ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) && X509_set_pubkey(x, PKEY(key)) == 1 &&
             X509_sign(x, PKEY(key), EVP_sha256()) > 0;
    if (ok) {
        int len = i2d_X509(x, NULL);
        if (len > 0 && out == NULL) result = len;
        else if (len > 0 && (size_t)len <= out_cap) {
            unsigned char *p = out;
            result = i2d_X509(x, &p) == len ? len : -1;
        }
    }
    BN_free(bn);
    ASN1_INTEGER_free(serial);
    X509_NAME_free(subject);
    X509_NAME_free(issuer);
    X509_free(x);
    return result;
}

static int asn1_time_to_unix(const ASN1_TIME *t, int64_t *out) {
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
    *out = (int64_t)timegm(&tm);
    return 1;
}

static X509 *parse_x509(const uint8_t *der, size_t len) {
    if (der == NULL || len == 0 || len > INT32_MAX) return NULL;
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x != NULL && p != der + len) {
        X509_free(x);
        return NULL;
    }
    return x;
}

cossl_rsa *cossl_x509_rsa_key(const uint8_t *der, size_t len, int64_t *not_before, int64_t *not_after) {
    X509 *x = parse_x509(der, len);
    if (x == NULL) return NULL;
    EVP_PKEY *pkey = NULL;
    if (asn1_time_to_unix(X509_get0_notBefore(x), not_before) && asn1_time_to_unix(X509_get0_notAfter(x), not_after)) {
        pkey = X509_get_pubkey(x);  // new reference
        if (pkey != NULL && EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
    }
    X509_free(x);
    return (cossl_rsa *)pkey;
}

int cossl_x509_verify_signature(const uint8_t *der, size_t len, const cossl_rsa *key) {
    X509 *x = parse_x509(der, len);
    if (x == NULL) return 0;
    int ok = X509_verify(x, PKEY(key)) == 1;
    X509_free(x);
    return ok;
}
