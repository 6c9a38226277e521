#ifndef PEERSM_COSSL_TLS_H
#define PEERSM_COSSL_TLS_H
#include <stddef.h>
#include <stdint.h>
#endif
