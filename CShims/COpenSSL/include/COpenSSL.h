// Thin C shim over the system OpenSSL (libssl/libcrypto 3.0).
// Only what swift-crypto and swift-nio-ssl do not offer lives here.
#ifndef PEERSM_COPENSSL_H
#define PEERSM_COPENSSL_H
#include <stddef.h>
#include <stdint.h>
#endif
