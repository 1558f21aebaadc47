#include "common/sha256.h"

#include "common/log.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

struct sha256_ctx {
    EVP_MD_CTX *md;
};

sha256_ctx *sha256_begin(void) {
    sha256_ctx *c = xmalloc(sizeof *c);
    c->md = EVP_MD_CTX_new();
    if (!c->md || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1)
        FATAL("EVP sha256 init failed");
    return c;
}

void sha256_update(sha256_ctx *c, const void *data, size_t n) {
    if (n && EVP_DigestUpdate(c->md, data, n) != 1) FATAL("EVP sha256 update failed");
}

void sha256_end(sha256_ctx *c, char hex[65]) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(c->md, d, &n) != 1 || n != 32) FATAL("EVP sha256 final failed");
    for (unsigned i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    EVP_MD_CTX_free(c->md);
    free(c);
}

void sha256_hex(const void *data, size_t n, char hex[65]) {
    sha256_ctx *c = sha256_begin();
    sha256_update(c, data, n);
    sha256_end(c, hex);
}
