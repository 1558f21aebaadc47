/* SHA-256 (OpenSSL's EVP underneath), incremental, with a hex digest helper. */
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx sha256_ctx;

sha256_ctx *sha256_begin(void);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
/* Writes 64 hex characters and a NUL into hex[65]; frees the context. */
void sha256_end(sha256_ctx *c, char hex[65]);
void sha256_hex(const void *data, size_t n, char hex[65]);
