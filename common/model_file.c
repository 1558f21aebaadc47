#include "common/model_file.h"

#include "common/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The unified name: the first "digits + scale letter" has its letter removed (yolov8n -> yolov8).
 * Returns false when there is nothing to remove. */
static bool unified_name(const char *path, char *out, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (const char *p = base; *p; p++) {
        if (!isdigit((unsigned char)*p)) continue;
        const char *q = p;
        while (isdigit((unsigned char)*q)) q++;
        if (*q && strchr("nslmx", *q)) {
            snprintf(out, n, "%.*s%s", (int)(q - path), path, q + 1);
            return true;
        }
        p = q - 1;
    }
    return false;
}

static bool readable(const char *p) {
    return access(p, R_OK) == 0;
}

/* A bare name is looked up in ./models, then in the models folder of the checkout the program
 * was built in: the nearest <dir>/models above the binary (bin/, build/tests/, build/asan/bin/). */
bool model_file_find(const char *spec, char *out, size_t n) {
    char dirs[2][512];
    int nd = 0;
    if (strchr(spec, '/')) {
        snprintf(dirs[nd++], sizeof dirs[0], "%s", "");
    } else {
        snprintf(dirs[nd++], sizeof dirs[0], "models/");
        char exe[400];
        ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (k > 0) {
            exe[k] = 0;
            char *s = strrchr(exe, '/');
            if (s) *s = 0;
            for (int up = 1; up <= 3; up++) {
                int len = snprintf(dirs[nd], sizeof dirs[0], "%s", exe);
                for (int i = 0; i < up; i++)
                    len += snprintf(dirs[nd] + len, sizeof dirs[0] - (size_t)len, "/..");
                snprintf(dirs[nd] + len, sizeof dirs[0] - (size_t)len, "/models/");
                struct stat sb;
                if (stat(dirs[nd], &sb) == 0 && S_ISDIR(sb.st_mode)) {
                    nd++;
                    break;
                }
            }
        }
    }
    for (int i = 0; i < nd; i++) {
        char cand[1024], uni[1024];
        snprintf(cand, sizeof cand, "%.500s%.500s", dirs[i], spec);
        if (readable(cand)) return snprintf(out, n, "%s", cand) < (int)n;
        if (unified_name(cand, uni, sizeof uni) && readable(uni))
            return snprintf(out, n, "%s", uni) < (int)n;
    }
    return false;
}

char *model_file_read(const char *spec, char *path, size_t n, char *err, size_t errlen) {
    if (!model_file_find(spec, path, n)) {
        errf(err, errlen, "%s: model yaml not found (looked in models/ and as a path)", spec);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap + 1);
    size_t k;
    while ((k = fread(buf + len, 1, cap - len, f)) > 0) {
        len += k;
        if (len == cap) buf = xrealloc(buf, (cap *= 2) + 1);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errf(err, errlen, "%s: read error", path);
        return NULL;
    }
    buf[len] = 0;
    return buf;
}

char model_file_scale(const char *name) {
    const char *b = strrchr(name, '/');
    char stem[512];
    snprintf(stem, sizeof stem, "%s", b ? b + 1 : name);
    char *dot = strrchr(stem, '.');
    if (dot) *dot = 0;
    for (const char *p = strstr(stem, "yolo"); p; p = strstr(p + 1, "yolo")) {
        const char *q = p + 4;
        if (!strncmp(q, "e-", 2)) q += 2;
        if (*q == 'v') q++;
        if (!isdigit((unsigned char)*q)) continue;
        while (isdigit((unsigned char)*q)) q++;
        if (*q && strchr("nslmx", *q)) return *q;
    }
    return 0;
}
