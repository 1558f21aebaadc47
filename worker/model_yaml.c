/* Model yaml parsing and parse_model's channel/depth resolution (see model_yaml.h). */
#include "worker/model_yaml.h"

#include "common/kv.h"
#include "common/log.h"
#include "common/model_file.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

const char *model_module_name(model_module m) {
    static const char *names[] = {"Conv",  "C2f",         "C3k2",   "SPPF",
                                  "C2PSA", "nn.Upsample", "Concat", "Detect"};
    return names[m];
}

/* ---- file lookup ------------------------------------------------------------------------------
 */

static void stem_of(const char *path, char *stem, size_t n) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(stem, n, "%s", b);
    char *dot = strrchr(stem, '.');
    if (dot && (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml"))) *dot = 0;
}

/* ---- libyaml helpers ------------------------------------------------------------------------- */

typedef struct ctx {
    yaml_document_t doc;
    const char *file;
    char *err;
    size_t errlen;
} ctx;

static yaml_node_t *node(ctx *c, int id) {
    return yaml_document_get_node(&c->doc, id);
}
static int line_of(yaml_node_t *n) {
    return n ? (int)n->start_mark.line + 1 : 0;
}
static const char *scalar(yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}
static yaml_node_t *map_get(ctx *c, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(node(c, p->key));
        if (k && !strcmp(k, key)) return node(c, p->value);
    }
    return NULL;
}
static int seq_len(yaml_node_t *n) {
    return n && n->type == YAML_SEQUENCE_NODE
               ? (int)(n->data.sequence.items.top - n->data.sequence.items.start)
               : -1;
}
static yaml_node_t *seq_at(ctx *c, yaml_node_t *n, int i) {
    return node(c, n->data.sequence.items.start[i]);
}

/* A yaml argument evaluated as Ultralytics does (literal_eval, or the name `nc`). */
typedef enum { ARG_NONE, ARG_BOOL, ARG_INT, ARG_FLOAT, ARG_STR } arg_kind;
typedef struct arg {
    arg_kind kind;
    long i;
    double f;
    bool b;
    char s[32];
} arg;

static arg eval_arg(const char *s, int nc) {
    arg a = {0};
    long l;
    double d;
    if (!strcmp(s, "nc")) {
        a.kind = ARG_INT;
        a.i = nc;
    } else if (!strcmp(s, "None") || !strcmp(s, "null") || !strcmp(s, "~")) {
        a.kind = ARG_NONE;
    } else if (!strcmp(s, "True") || !strcmp(s, "true")) {
        a.kind = ARG_BOOL;
        a.b = true;
    } else if (!strcmp(s, "False") || !strcmp(s, "false")) {
        a.kind = ARG_BOOL;
    } else if (parse_long(s, &l)) {
        a.kind = ARG_INT;
        a.i = l;
    } else if (parse_double(s, &d)) {
        a.kind = ARG_FLOAT;
        a.f = d;
    } else {
        a.kind = ARG_STR;
        snprintf(a.s, sizeof a.s, "%s", s);
    }
    return a;
}

static int make_divisible8(double x) {
    return (int)ceil(x / 8.0) * 8;
}

static const char *pybool(bool b) {
    return b ? "True" : "False";
}

/* ---- one layer row ----------------------------------------------------------------------------
 */

static int fail_layer(ctx *c, int idx, yaml_node_t *n, const char *what) {
    return errf(c->err, c->errlen, "%s:%d: layer %d: %s", c->file, line_of(n), idx, what);
}

static int resolve_layer(ctx *c, model_yaml *y, int idx, yaml_node_t *row, int *chs) {
    model_layer *L = &y->layers[idx];
    char msg[200];
    memset(L, 0, sizeof *L);
    L->index = idx;
    L->line = line_of(row);
    if (seq_len(row) != 4) return fail_layer(c, idx, row, "expected [from, repeats, module, args]");
    yaml_node_t *nf = seq_at(c, row, 0), *nr = seq_at(c, row, 1), *nm = seq_at(c, row, 2),
                *na = seq_at(c, row, 3);
    /* from */
    long v;
    if (scalar(nf)) {
        if (!parse_long(scalar(nf), &v) || v < -MODEL_MAX_LAYERS || v > MODEL_MAX_LAYERS)
            return fail_layer(c, idx, nf, "`from` is not a layer index");
        L->nfrom = 1;
        L->from_yaml[0] = (int)v;
    } else {
        int k = seq_len(nf);
        if (k < 1 || k > MODEL_MAX_FROM)
            return fail_layer(c, idx, nf, "`from` must be an integer or a list of 1..8 integers");
        for (int i = 0; i < k; i++) {
            if (!scalar(seq_at(c, nf, i)) || !parse_long(scalar(seq_at(c, nf, i)), &v) ||
                v < -MODEL_MAX_LAYERS || v > MODEL_MAX_LAYERS)
                return fail_layer(c, idx, nf, "`from` list holds a non-index");
            L->from_yaml[i] = (int)v;
        }
        L->nfrom = k;
    }
    for (int i = 0; i < L->nfrom; i++) {
        int f = L->from_yaml[i];
        int a = f < 0 ? idx + f : f;
        if (idx == 0 && f == -1)
            a = -1; /* the input image */
        else if (a < 0 || a >= idx) {
            snprintf(msg, sizeof msg, "`from` %d is out of range (must name an earlier layer)", f);
            return fail_layer(c, idx, nf, msg);
        }
        L->from[i] = a;
    }
    /* repeats */
    if (!scalar(nr) || !parse_long(scalar(nr), &v) || v < 1 || v > 1000)
        return fail_layer(c, idx, nr, "repeats must be an integer in 1..1000");
    L->repeats = (int)v;
    double scaled = v > 1 ? fmax(nearbyint((double)v * y->depth), 1) : (double)v;
    if (scaled > MODEL_MAX_REPEATS) {
        snprintf(msg, sizeof msg, "repeats %ld x depth %g = %.0f is above the supported %d", v,
                 y->depth, scaled, MODEL_MAX_REPEATS);
        return fail_layer(c, idx, nr, msg);
    }
    L->n = (int)scaled;
    /* module */
    const char *mod = scalar(nm);
    if (!mod) return fail_layer(c, idx, nm, "module must be a name");
    snprintf(L->module, sizeof L->module, "%s", mod);
    const char *bare = !strncmp(mod, "torch.nn.", 9) ? mod + 9
                       : !strncmp(mod, "nn.", 3)     ? mod + 3
                                                     : mod;
    static const struct {
        const char *name;
        model_module m;
    } mods[] = {
        {"Conv", MOD_CONV},     {"C2f", MOD_C2F},       {"C3k2", MOD_C3K2},
        {"SPPF", MOD_SPPF},     {"C2PSA", MOD_C2PSA},   {"Upsample", MOD_UPSAMPLE},
        {"Concat", MOD_CONCAT}, {"Detect", MOD_DETECT},
    };
    int found = -1;
    for (size_t i = 0; i < sizeof mods / sizeof *mods; i++)
        if (!strcmp(bare, mods[i].name)) found = (int)i;
    if (found < 0) {
        snprintf(msg, sizeof msg, "unknown module '%.40s'", mod);
        return fail_layer(c, idx, nm, msg);
    }
    L->type = mods[found].m;
    /* args */
    int na_n = seq_len(na);
    if (na_n < 0) return fail_layer(c, idx, na, "args must be a list");
    arg args[8];
    if (na_n > 8) return fail_layer(c, idx, na, "too many args");
    for (int i = 0; i < na_n; i++) {
        const char *s = scalar(seq_at(c, na, i));
        if (!s) return fail_layer(c, idx, na, "args must be scalars");
        args[i] = eval_arg(s, y->nc);
    }
    bool repeat_module = L->type == MOD_C2F || L->type == MOD_C3K2 || L->type == MOD_C2PSA;
    if (L->n > 1 && !repeat_module) {
        snprintf(msg, sizeof msg, "repeats > 1 is not supported for %s", mod);
        return fail_layer(c, idx, nr, msg);
    }
    if (L->type != MOD_CONCAT && L->type != MOD_DETECT && L->nfrom != 1)
        return fail_layer(c, idx, nf, "this module takes exactly one input");
    int c1 = L->from[0] < 0 ? 3 : chs[L->from[0]];
    L->c1 = c1;
    bool isnum0 = na_n >= 1 && (args[0].kind == ARG_INT);
    int c2 = 0;
    if (L->type <= MOD_C2PSA) {
        if (!isnum0)
            return fail_layer(c, idx, na, "first arg (output channels) must be an integer");
        if (args[0].i < 1 || args[0].i > MODEL_MAX_NC)
            return fail_layer(c, idx, na, "output channels must be in 1..1000000");
        c2 = (int)args[0].i;
        if (c2 != y->nc) {
            double scaled = fmin(c2, y->max_channels) * y->width;
            if (scaled > MODEL_MAX_CHANNELS) {
                snprintf(msg, sizeof msg, "%d output channels x width %g is above the supported %d",
                         c2, y->width, MODEL_MAX_CHANNELS);
                return fail_layer(c, idx, na, msg);
            }
            c2 = make_divisible8(scaled);
        }
        L->c2 = c2;
    }
#define NUMARG(j, dflt)                                                                            \
    (na_n > (j) ? (args[j].kind == ARG_INT ? (double)args[j].i : args[j].f) : (dflt))
#define ISNUM(j) (na_n <= (j) || args[j].kind == ARG_INT || args[j].kind == ARG_FLOAT)
#define ISBOOL(j) (na_n <= (j) || args[j].kind == ARG_BOOL)
    char *t = L->args_text;
    size_t tn = sizeof L->args_text;
    switch (L->type) {
    case MOD_CONV:
        if (na_n > 3) return fail_layer(c, idx, na, "Conv: only [c2, k, s] are supported");
        if (!ISNUM(1) || !ISNUM(2)) return fail_layer(c, idx, na, "Conv: k and s must be integers");
        if (!(NUMARG(1, 1) >= 1 && NUMARG(1, 1) <= MODEL_MAX_KERNEL && NUMARG(2, 1) >= 1 &&
              NUMARG(2, 1) <= MODEL_MAX_STRIDE))
            return fail_layer(c, idx, na, "Conv: k must be in 1..15 and s in 1..4");
        L->k = (int)NUMARG(1, 1);
        L->s = (int)NUMARG(2, 1);
        if (na_n == 1)
            snprintf(t, tn, "[%d, %d]", c1, c2);
        else if (na_n == 2)
            snprintf(t, tn, "[%d, %d, %d]", c1, c2, L->k);
        else
            snprintf(t, tn, "[%d, %d, %d, %d]", c1, c2, L->k, L->s);
        break;
    case MOD_C2F:
        if (na_n > 2 || !ISBOOL(1)) return fail_layer(c, idx, na, "C2f: args are [c2, shortcut]");
        L->shortcut = na_n > 1 && args[1].b;
        if (na_n > 1)
            snprintf(t, tn, "[%d, %d, %d, %s]", c1, c2, L->n, pybool(L->shortcut));
        else
            snprintf(t, tn, "[%d, %d, %d]", c1, c2, L->n);
        break;
    case MOD_C3K2:
        if (na_n > 4 || !ISBOOL(1) || !ISNUM(2) || !ISBOOL(3))
            return fail_layer(c, idx, na, "C3k2: args are [c2, c3k, e, attn]");
        L->c3k = na_n > 1 && args[1].b;
        L->e = NUMARG(2, 0.5);
        if (!(L->e > 0 && L->e <= 8)) return fail_layer(c, idx, na, "C3k2: e must be in (0, 8]");
        L->attn = na_n > 3 && args[3].b;
        if (y->scale && strchr("mlx", y->scale)) L->c3k = true;
        y->legacy = false;
        if (na_n <= 1 && !L->c3k)
            snprintf(t, tn, "[%d, %d, %d]", c1, c2, L->n);
        else if (na_n <= 2)
            snprintf(t, tn, "[%d, %d, %d, %s]", c1, c2, L->n, pybool(L->c3k));
        else if (na_n == 3)
            snprintf(t, tn, "[%d, %d, %d, %s, %g]", c1, c2, L->n, pybool(L->c3k), L->e);
        else
            snprintf(t, tn, "[%d, %d, %d, %s, %g, %s]", c1, c2, L->n, pybool(L->c3k), L->e,
                     pybool(L->attn));
        if ((int)(c2 * L->e) < 1) return fail_layer(c, idx, na, "C3k2: hidden width is 0");
        break;
    case MOD_SPPF:
        if (na_n > 4 || !ISNUM(1) || !ISNUM(2) || !ISBOOL(3))
            return fail_layer(c, idx, na, "SPPF: args are [c2, k, n, shortcut]");
        if (!(NUMARG(1, 5) >= 1 && NUMARG(1, 5) <= MODEL_MAX_KERNEL && NUMARG(2, 3) >= 1 &&
              NUMARG(2, 3) <= MODEL_MAX_REPEATS))
            return fail_layer(c, idx, na, "SPPF: k must be in 1..15 and n in 1..16");
        L->k = (int)NUMARG(1, 5);
        L->n_pool = (int)NUMARG(2, 3);
        L->shortcut = na_n > 3 && args[3].b;
        L->sppf_act = na_n <= 2;
        if (L->k % 2 == 0) return fail_layer(c, idx, na, "SPPF: k must be odd");
        if (na_n <= 1)
            snprintf(t, tn, "[%d, %d]", c1, c2);
        else if (na_n == 2)
            snprintf(t, tn, "[%d, %d, %d]", c1, c2, L->k);
        else if (na_n == 3)
            snprintf(t, tn, "[%d, %d, %d, %d]", c1, c2, L->k, L->n_pool);
        else
            snprintf(t, tn, "[%d, %d, %d, %d, %s]", c1, c2, L->k, L->n_pool, pybool(L->shortcut));
        break;
    case MOD_C2PSA:
        if (na_n > 2 || !ISNUM(1)) return fail_layer(c, idx, na, "C2PSA: args are [c2, e]");
        L->e = NUMARG(1, 0.5);
        if (!(L->e > 0 && L->e <= 8)) return fail_layer(c, idx, na, "C2PSA: e must be in (0, 8]");
        if (c1 != c2) return fail_layer(c, idx, na, "C2PSA needs input channels == c2");
        if ((int)(c1 * L->e) < 64)
            return fail_layer(c, idx, na, "C2PSA: hidden width below 64 gives 0 attention heads");
        if (na_n > 1)
            snprintf(t, tn, "[%d, %d, %d, %g]", c1, c2, L->n, L->e);
        else
            snprintf(t, tn, "[%d, %d, %d]", c1, c2, L->n);
        break;
    case MOD_UPSAMPLE:
        if (na_n != 3 || args[0].kind != ARG_NONE || args[1].kind != ARG_INT || args[1].i != 2 ||
            args[2].kind != ARG_STR || strcmp(args[2].s, "nearest"))
            return fail_layer(c, idx, na, "nn.Upsample: only [None, 2, \"nearest\"] is supported");
        L->c2 = c1;
        snprintf(t, tn, "[None, 2, 'nearest']");
        break;
    case MOD_CONCAT:
        if (na_n != 1 || args[0].kind != ARG_INT || args[0].i != 1)
            return fail_layer(c, idx, na, "Concat: only [1] (channels) is supported");
        L->c2 = 0;
        for (int i = 0; i < L->nfrom; i++) L->c2 += L->from[i] < 0 ? 3 : chs[L->from[i]];
        snprintf(t, tn, "[1]");
        break;
    case MOD_DETECT: {
        if (na_n != 1 || args[0].kind != ARG_INT || args[0].i < 1 || args[0].i > MODEL_MAX_NC)
            return fail_layer(c, idx, na, "Detect: args are [nc] with nc in 1..1000000");
        if (L->nfrom != 3) return fail_layer(c, idx, nf, "Detect needs exactly 3 inputs");
        if (idx != y->nlayers - 1) return fail_layer(c, idx, nm, "Detect must be the last layer");
        for (int i = 0; i < 3; i++) {
            if (L->from[i] < 0) return fail_layer(c, idx, nf, "Detect cannot read the image");
            L->ch[i] = chs[L->from[i]];
        }
        y->nc = (int)args[0].i;
        L->c2 = 0;
        snprintf(t, tn, "[%d, %d, %s, [%d, %d, %d]]", y->nc, y->reg_max,
                 y->end2end ? "True" : "None", L->ch[0], L->ch[1], L->ch[2]);
        break;
    }
    }
    chs[idx] = L->c2;
    return 0;
}

/* ---- the file ---------------------------------------------------------------------------------
 */

static int load_doc(ctx *c, model_yaml *y, int nc_override) {
    yaml_node_t *root = yaml_document_get_root_node(&c->doc);
    if (!root || root->type != YAML_MAPPING_NODE)
        return errf(c->err, c->errlen, "%s: not a yaml mapping", c->file);
    yaml_node_t *n;
    long l;
    y->nc = 80;
    if ((n = map_get(c, root, "nc"))) {
        if (!scalar(n) || !parse_long(scalar(n), &l) || l < 1 || l > MODEL_MAX_NC)
            return errf(c->err, c->errlen, "%s:%d: nc must be an integer in 1..%d", c->file,
                        line_of(n), MODEL_MAX_NC);
        y->nc = (int)l;
    }
    if (nc_override > 0) y->nc = nc_override;
    if ((n = map_get(c, root, "activation")))
        return errf(c->err, c->errlen, "%s:%d: activation: only the default SiLU is supported",
                    c->file, line_of(n));
    y->reg_max = 16;
    if ((n = map_get(c, root, "reg_max"))) {
        if (!scalar(n) || !parse_long(scalar(n), &l) || l < 1 || l > 64)
            return errf(c->err, c->errlen, "%s:%d: reg_max must be an integer in 1..64", c->file,
                        line_of(n));
        y->reg_max = (int)l;
    }
    y->end2end = false;
    if ((n = map_get(c, root, "end2end"))) {
        bool b;
        if (!scalar(n) || !parse_bool(scalar(n), &b))
            return errf(c->err, c->errlen, "%s:%d: end2end must be True or False", c->file,
                        line_of(n));
        y->end2end = b;
    }
    y->depth = y->width = 1.0;
    y->max_channels = 1024;
    yaml_node_t *sc = map_get(c, root, "scales");
    /* `scale: n` (what Ultralytics writes into a model's yaml dict) wins over the name's letter */
    if ((n = map_get(c, root, "scale")) && scalar(n) && scalar(n)[0]) {
        if (strlen(scalar(n)) != 1)
            return errf(c->err, c->errlen, "%s:%d: scale must be one letter", c->file, line_of(n));
        y->scale = scalar(n)[0];
    }
    if (sc) {
        if (sc->type != YAML_MAPPING_NODE ||
            sc->data.mapping.pairs.top == sc->data.mapping.pairs.start)
            return errf(c->err, c->errlen, "%s:%d: scales must be a non-empty mapping", c->file,
                        line_of(sc));
        if (!y->scale) {
            const char *first = scalar(node(c, sc->data.mapping.pairs.start->key));
            y->scale = first ? first[0] : 'n';
            log_warn("%s: no scale letter in '%s', using the first scale '%c'", c->file, y->name,
                     y->scale);
        }
        char key[2] = {y->scale, 0};
        yaml_node_t *row = map_get(c, sc, key);
        if (!row)
            return errf(c->err, c->errlen, "%s:%d: scale '%c' not in scales", c->file, line_of(sc),
                        y->scale);
        double v3[3];
        if (seq_len(row) != 3)
            return errf(c->err, c->errlen, "%s:%d: scale '%c' must be [depth, width, max_channels]",
                        c->file, line_of(row), y->scale);
        for (int i = 0; i < 3; i++) {
            const char *s = scalar(seq_at(c, row, i));
            if (!s || !parse_double(s, &v3[i]) || !(v3[i] > 0 && v3[i] <= (i < 2 ? 64 : 1e6)))
                return errf(c->err, c->errlen,
                            "%s:%d: scale '%c': [depth, width, max_channels] must be positive "
                            "numbers (depth, width <= 64)",
                            c->file, line_of(row), y->scale);
        }
        y->depth = v3[0];
        y->width = v3[1];
        y->max_channels = (int)v3[2];
    } else { /* older files: depth_multiple / width_multiple, no max_channels clamp */
        y->scale = 0;
        y->max_channels = 1 << 30;
        const char *keys[2] = {"depth_multiple", "width_multiple"};
        double *dst[2] = {&y->depth, &y->width};
        for (int i = 0; i < 2; i++)
            if ((n = map_get(c, root, keys[i]))) {
                if (!scalar(n) || !parse_double(scalar(n), dst[i]) ||
                    !(*dst[i] > 0 && *dst[i] <= 64))
                    return errf(c->err, c->errlen, "%s:%d: %s must be a number in (0, 64]", c->file,
                                line_of(n), keys[i]);
            }
    }
    yaml_node_t *bb = map_get(c, root, "backbone"), *hd = map_get(c, root, "head");
    if (seq_len(bb) < 0 || seq_len(hd) < 0)
        return errf(c->err, c->errlen, "%s: needs `backbone` and `head` lists", c->file);
    int nb = seq_len(bb), nh = seq_len(hd);
    y->nlayers = nb + nh;
    if (y->nlayers < 1) return errf(c->err, c->errlen, "%s: no layers", c->file);
    if (y->nlayers > MODEL_MAX_LAYERS)
        return errf(c->err, c->errlen, "%s: %d layers, more than the supported %d", c->file,
                    y->nlayers, MODEL_MAX_LAYERS);
    y->layers = xcalloc((size_t)y->nlayers, sizeof *y->layers);
    int *chs = xcalloc((size_t)y->nlayers, sizeof *chs);
    y->legacy = true;
    int rc = 0;
    for (int i = 0; i < y->nlayers && !rc; i++)
        rc = resolve_layer(c, y, i, i < nb ? seq_at(c, bb, i) : seq_at(c, hd, i - nb), chs);
    free(chs);
    if (rc) return rc;
    if (y->layers[y->nlayers - 1].type != MOD_DETECT)
        return errf(c->err, c->errlen, "%s: the last layer must be Detect", c->file);
    return 0;
}

/* Parses text (named `file` in messages, `name` for the scale letter) into y. */
static int load_text(const char *text, const char *file, const char *name, int nc, model_yaml *y,
                     char *err, size_t errlen) {
    stem_of(name, y->name, sizeof y->name);
    y->scale = model_file_scale(y->name);
    yaml_parser_t p;
    ctx c = {.file = file, .err = err, .errlen = errlen};
    if (!yaml_parser_initialize(&p)) return errf(err, errlen, "%s: yaml parser init failed", file);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, strlen(text));
    int rc;
    if (!yaml_parser_load(&p, &c.doc)) {
        rc = errf(err, errlen, "%s:%d: yaml error: %s", file, (int)p.problem_mark.line + 1,
                  p.problem ? p.problem : "malformed");
        yaml_parser_delete(&p);
        return rc;
    }
    rc = load_doc(&c, y, nc);
    yaml_document_delete(&c.doc);
    yaml_parser_delete(&p);
    if (rc) model_yaml_free(y);
    return rc;
}

int model_yaml_load(const char *spec, int nc, model_yaml *y, char *err, size_t errlen) {
    memset(y, 0, sizeof *y);
    char *text = model_file_read(spec, y->path, sizeof y->path, err, errlen);
    if (!text) return -1;
    int rc = load_text(text, y->path, spec, nc, y, err, errlen);
    free(text);
    return rc;
}

int model_yaml_load_text(const char *text, const char *name, int nc, model_yaml *y, char *err,
                         size_t errlen) {
    memset(y, 0, sizeof *y);
    snprintf(y->path, sizeof y->path, "%s", name);
    return load_text(text, name, name, nc, y, err, errlen);
}

int model_yaml_cls_width_rule(const model_yaml *y) {
    const model_layer *d = &y->layers[y->nlayers - 1];
    int c = y->nc < 100 ? y->nc : 100;
    return d->ch[0] > c ? d->ch[0] : c;
}

void model_yaml_free(model_yaml *y) {
    free(y->layers);
    y->layers = NULL;
    y->nlayers = 0;
}
