/* Version references: "P/N", "P/N:v3", "P/N@tag", files (ckpt_ref.h). */
#include "coordinator/ckpt_ref.h"

#include "common/log.h"
#include "coordinator/ckpt_store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* A file inside <run>/weights/: the run folder (as the path spells it) and the version the name
 * (or, for last.h5 / best.h5 / epoch{e}.h5, the link) names. */
static void run_of_file(const char *file, ckpt_ref *out) {
    char real[PATH_MAX];
    out->version = 0;
    out->run_dir[0] = 0;
    if (!realpath(file, real)) return;
    out->version = ckpt_store_parse_name(real);
    char *slash = strrchr(real, '/');
    if (!slash) return;
    *slash = 0;
    slash = strrchr(real, '/');
    if (!slash || strcmp(slash + 1, "weights")) return;
    /* the run folder as given: the path up to "/weights/" when it is spelled that way */
    const char *w = strstr(file, "/weights/");
    if (w && !strchr(w + 9, '/'))
        snprintf(out->run_dir, sizeof out->run_dir, "%.*s", (int)(w - file), file);
    else if (w == NULL && !strncmp(file, "weights/", 8) && !strchr(file + 8, '/'))
        snprintf(out->run_dir, sizeof out->run_dir, ".");
    else {
        *slash = 0;
        snprintf(out->run_dir, sizeof out->run_dir, "%s", real[0] ? real : "/");
    }
}

static void make_label(ckpt_ref *out) {
    if (out->run_dir[0] && out->version)
        snprintf(out->label, sizeof out->label, "%s:v%04d", out->run_dir, out->version);
    else
        snprintf(out->label, sizeof out->label, "%s", out->path);
}

/* A reference inside run_dir. */
static int in_run(const char *run_dir, const char *ref, ckpt_ref *out, char *err, size_t errlen) {
    if (snprintf(out->run_dir, sizeof out->run_dir, "%s", run_dir) >= (int)sizeof out->run_dir)
        return errf(err, errlen, "%.60s...: path too long", run_dir);
    for (size_t k = strlen(out->run_dir); k > 1 && out->run_dir[k - 1] == '/'; k--)
        out->run_dir[k - 1] = 0; /* "runs/a/" labels as runs/a:v0003 */
    run_dir = out->run_dir;
    if (ckpt_store_resolve(run_dir, ref, out->path, sizeof out->path, err, errlen) != 0) return -1;
    out->version = ckpt_store_parse_name(out->path);
    char mine[4300];
    ckpt_store_version_path(run_dir, out->version, mine, sizeof mine);
    if (!out->version || strcmp(mine, out->path)) run_of_file(out->path, out); /* ref was a path */
    make_label(out);
    return 0;
}

int ckpt_ref_resolve(const char *spec, const char *ref, const char *deflt, ckpt_ref *out, char *err,
                     size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) return errf(err, errlen, "empty version reference");
    if (is_dir(spec)) {
        if (!ref && !deflt)
            return errf(err, errlen, "%s is a run folder: name a version (v3, best, last, a tag)",
                        spec);
        return in_run(spec, ref ? ref : deflt, out, err, errlen);
    }
    if (is_file(spec)) {
        if (ref)
            return errf(err, errlen, "%s is a version file: '%s' would name another version", spec,
                        ref);
        if (snprintf(out->path, sizeof out->path, "%s", spec) >= (int)sizeof out->path)
            return errf(err, errlen, "%.60s...: path too long", spec);
        run_of_file(spec, out);
        if (out->run_dir[0] && out->version) /* last.h5, best.h5, epoch4.h5: the version itself */
            ckpt_store_version_path(out->run_dir, out->version, out->path, sizeof out->path);
        make_label(out);
        return 0;
    }
    /* P/N:ref or P/N@ref: the last ':' or '@' whose left side is a folder */
    for (const char *p = spec + strlen(spec); p > spec; p--) {
        if (p[-1] != ':' && p[-1] != '@') continue;
        char run[2048];
        if (snprintf(run, sizeof run, "%.*s", (int)(p - 1 - spec), spec) >= (int)sizeof run ||
            !is_dir(run))
            continue;
        if (ref)
            return errf(err, errlen, "%s already names a version: '%s' would name another", spec,
                        ref);
        if (!*p) return errf(err, errlen, "%s: nothing after '%c'", spec, p[-1]);
        return in_run(run, p, out, err, errlen);
    }
    return errf(err, errlen, "%s: no such run folder or version file", spec);
}

bool ckpt_ref_parent(const ckpt_meta *m, char *path, size_t n) {
    if (!m->parent_version[0]) return false;
    const char *run = m->parent_run && m->parent_run[0] ? m->parent_run : ".";
    char name[48];
    snprintf(name, sizeof name, "%s.h5", m->parent_version);
    if (!ckpt_store_parse_name(name)) { /* a file outside any run's weights/: run is its folder */
        snprintf(path, n, "%s/%s", run, m->parent_version);
        return true;
    }
    snprintf(path, n, "%s/weights/%s", run, name); /* "v0004": a version of parent_run */
    char alt[4400];
    if (access(path, F_OK) != 0 &&
        snprintf(alt, sizeof alt, "%s/%s", run, name) < (int)sizeof alt &&
        access(alt, F_OK) == 0) /* a version file kept outside a weights/ folder */
        snprintf(path, n, "%s", alt);
    return true;
}
