#ifndef PEERSM_COSSL_CRYPTO_H
#define PEERSM_COSSL_CRYPTO_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

// Crypto half of the OpenSSL shim, used only by TorCrypto. Every function returns 1 on success and
// 0 on failure (or a length / NULL as documented); none aborts on bad input. Buffers are caller-owned.

// MARK: AES-128/256-CTR continuous keystream (relay crypto needs a stream that never resets per cell).
typedef struct cossl_aes_ctr cossl_aes_ctr;
/// key_len is 16 or 32; iv is 16 bytes (Tor uses all zero).
cossl_aes_ctr *cossl_aes_ctr_new(const uint8_t *key, size_t key_len, const uint8_t *iv);
/// XORs the next len keystream bytes into buf, in place.
int cossl_aes_ctr_xor(cossl_aes_ctr *ctx, uint8_t *buf, size_t len);
void cossl_aes_ctr_free(cossl_aes_ctr *ctx);

// MARK: SHA-1 running digest with cheap checkpoints (plain struct copy, no allocation).
typedef struct cossl_sha1 cossl_sha1;
cossl_sha1 *cossl_sha1_new(void);
void cossl_sha1_free(cossl_sha1 *ctx);
void cossl_sha1_update(cossl_sha1 *ctx, const uint8_t *data, size_t len);
/// Writes the digest of everything added so far into out[20] without disturbing the running state.
void cossl_sha1_peek(const cossl_sha1 *ctx, uint8_t *out);
void cossl_sha1_copy(cossl_sha1 *dst, const cossl_sha1 *src);

// MARK: SHAKE-256 (test vectors, future ntor-v3).
int cossl_shake256(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len);

// MARK: RSA keys (EVP_PKEY *, passed around as opaque pointers).
typedef struct cossl_rsa cossl_rsa;
cossl_rsa *cossl_rsa_generate(int bits);  // e = 65537
void cossl_rsa_free(cossl_rsa *key);
int cossl_rsa_bits(const cossl_rsa *key);
int cossl_rsa_has_private(const cossl_rsa *key);
/// PKCS#1 RSAPublicKey DER. Call with out=NULL to learn the length. Returns length, or -1.
int cossl_rsa_public_der(const cossl_rsa *key, uint8_t *out, size_t out_cap);
cossl_rsa *cossl_rsa_from_public_der(const uint8_t *der, size_t len);
/// PKCS#8 PEM of the private key. Returns length, or -1 (out=NULL to learn the length).
int cossl_rsa_private_pem(const cossl_rsa *key, uint8_t *out, size_t out_cap);
cossl_rsa *cossl_rsa_from_private_pem(const uint8_t *pem, size_t len);
/// Tor-style signature: PKCS#1 v1.5 type-1 padding over the raw bytes (no DigestInfo). Returns sig length or -1.
int cossl_rsa_sign_raw(const cossl_rsa *key, const uint8_t *msg, size_t msg_len, uint8_t *sig, size_t sig_cap);
/// Recovers the signed bytes into out. Returns their length, or -1 if the signature is invalid.
int cossl_rsa_verify_recover(const cossl_rsa *key, const uint8_t *sig, size_t sig_len, uint8_t *out, size_t out_cap);

// MARK: X.509
/// Self-signed certificate (SHA-256 signature) valid [not_before, not_after] with subject = issuer = CN cn.
/// Returns DER length or -1 (out=NULL to learn the length; generation is randomised, so call once with a
/// large enough buffer — 4096 bytes is ample for RSA ≤ 4096).
int cossl_x509_self_signed(const cossl_rsa *key, const char *cn, const char *issuer_cn, int64_t not_before,
                           int64_t not_after, uint8_t *out, size_t out_cap);
/// Parses a DER certificate; returns its subject public key (RSA only; NULL otherwise) and validity.
cossl_rsa *cossl_x509_rsa_key(const uint8_t *der, size_t len, int64_t *not_before, int64_t *not_after);
/// 1 if the DER certificate's signature verifies under key.
int cossl_x509_verify_signature(const uint8_t *der, size_t len, const cossl_rsa *key);

#endif
