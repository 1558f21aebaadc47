/* build/tests/ckpt-check: what the cluster tests' shell scripts ask of checkpoint versions, through
 * the reader API (coordinator/ckpt_file.h), until the `ckpt` CLI offers the same.
 *
 *   ckpt-check verify FILE...   every tensor re-hashed and the content listing checked; one line
 *                               per file ("FILE: ok", or each problem); exit 1 when any fails
 *   ckpt-check same A B         A and B verify and hold the same tensors (names, dtypes, shapes and
 *                               bytes, through their verified sha256s); exit 1 naming the first
 *                               difference */
#include "coordinator/ckpt_file.h"

#include <stdio.h>
#include <string.h>

static void print_line(void *ctx, const char *line) {
    printf("%s: %s\n", (const char *)ctx, line);
}

/* Opens and verifies path: the file, or NULL after printing why. */
static ckpt_file *open_verified(const char *path) {
    char err[1024];
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    if (!f) {
        printf("%s: %s\n", path, err);
        return NULL;
    }
    if (ckpt_verify(f, print_line, (void *)path, err, sizeof err) != 0) {
        ckpt_close(f);
        return NULL;
    }
    return f;
}

static int verify(int n, char **paths) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        ckpt_file *f = open_verified(paths[i]);
        if (f) printf("%s: ok (%d tensors)\n", paths[i], ckpt_num_tensors(f));
        bad += !f;
        ckpt_close(f);
    }
    return bad ? 1 : 0;
}

static bool same_tensor(const ckpt_tensor *a, const ckpt_tensor *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim || strcmp(a->sha256, b->sha256)) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

static int same(const char *pa, const char *pb) {
    ckpt_file *a = open_verified(pa), *b = a ? open_verified(pb) : NULL;
    int rc = !a || !b;
    for (int i = 0; !rc && i < ckpt_num_tensors(a); i++) {
        const ckpt_tensor *t = ckpt_tensor_at(a, i);
        int j = ckpt_find_tensor(b, t->name);
        if (j < 0 || !same_tensor(t, ckpt_tensor_at(b, j))) {
            printf("differ: tensor %s (%s)\n", t->name, j < 0 ? "missing in the second" : "values");
            rc = 1;
        }
    }
    if (!rc && ckpt_num_tensors(a) != ckpt_num_tensors(b)) {
        printf("differ: %d tensors vs %d\n", ckpt_num_tensors(a), ckpt_num_tensors(b));
        rc = 1;
    }
    if (!rc) printf("same: %d tensors\n", ckpt_num_tensors(a));
    ckpt_close(a);
    ckpt_close(b);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "verify")) return verify(argc - 2, argv + 2);
    if (argc == 4 && !strcmp(argv[1], "same")) return same(argv[2], argv[3]);
    fprintf(stderr, "usage: ckpt-check verify FILE... | same A B\n");
    return 2;
}
