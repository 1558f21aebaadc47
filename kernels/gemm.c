#include "kernels/gemm.h"

#include "common/log.h"

#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>

void gemm_f32(bool trans_a, bool trans_b, long m, long n, long k, float alpha, const float *a,
              long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda,
                                  b, ldb, beta, c, ldc);
    if (st != dnnl_success)
        FATAL("dnnl_sgemm(%c%c, m=%ld n=%ld k=%ld, lda=%ld ldb=%ld ldc=%ld) failed: status %d",
              trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, lda, ldb, ldc, (int)st);
}

const char *gemm_backend(void) {
    const dnnl_version_t *v = dnnl_version();
    static char name[64];
    if (!name[0])
        snprintf(name, sizeof name, "dnnl_sgemm (oneDNN %d.%d.%d)", v->major, v->minor, v->patch);
    return name;
}
