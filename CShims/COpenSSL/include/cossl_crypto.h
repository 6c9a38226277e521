#ifndef PEERSM_COSSL_CRYPTO_H
#define PEERSM_COSSL_CRYPTO_H
#include <stddef.h>
#include <stdint.h>
#endif
