#include "tests/fuzz/fuzz_common.h"

#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch[256];

static void remove_scratch(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (scratch[0] && system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", scratch);
}

const char *fuzz_scratch(void) {
    if (!scratch[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(scratch, sizeof scratch, "%s/yolo-fuzz-XXXXXX", base);
        if (!mkdtemp(scratch)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(remove_scratch);
    }
    return scratch;
}

const char *fuzz_path(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", fuzz_scratch(), name);
    return p;
}

const char *fuzz_write(const char *name, const uint8_t *data, size_t size) {
    const char *p = fuzz_path(name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(p);
        abort();
    }
    return p;
}

uint8_t *fuzz_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) {
        perror(path);
        abort();
    }
    long len = ftell(f);
    rewind(f);
    uint8_t *buf = len > 0 ? malloc((size_t)len) : NULL;
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) abort();
    fclose(f);
    *n = (size_t)len;
    return buf;
}

const char *fuzz_edited_copy(const char *name, const uint8_t *base, size_t base_n,
                             void (*edit)(const char *path, const uint8_t *data, size_t size),
                             const uint8_t *data, size_t size) {
    static char path[512];
    snprintf(path, sizeof path, "%s", fuzz_write(name, base, base_n));
    edit(path, data, size);
    return path;
}

char *fuzz_text(const uint8_t *data, size_t size) {
    char *t = malloc(size + 1);
    if (!t) abort();
    memcpy(t, data, size);
    t[size] = 0;
    return t;
}

void fuzz_check_one_line(const char *err) {
    if (strchr(err, '\n')) {
        fprintf(stderr, "fuzz: an error message spans lines: %s\n", err);
        __builtin_trap();
    }
}

void fuzz_init(void) {
    log_set_quiet(true);
    fuzz_scratch();
}
