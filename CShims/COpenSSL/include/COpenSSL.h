// Thin C shim over the system OpenSSL (libssl/libcrypto 3.0): only what swift-crypto and
// swift-nio-ssl do not offer (continuous AES-CTR keystreams, RSA-1024 identity keys and X.509,
// TLS with the RFC 5705 exporter that Tor's AUTHENTICATE needs). One header per concern.
#ifndef PEERSM_COPENSSL_H
#define PEERSM_COPENSSL_H
#include "cossl_crypto.h"
#include "cossl_tls.h"
#endif
