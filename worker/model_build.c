/* Compiles the resolved yaml layers into primitive ops over tensor slots, registering every
 * parameter under its Ultralytics state_dict name in state_dict (registration) order. Each module
 * first declares its conv units (registration order), then emits ops (execution order). */
#include "common/log.h"
#include "kernels/batchnorm.h"
#include "worker/model_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct builder {
    model *m;
    bool create;
    int pnext, bnext; /* registry cursors when re-building */
    double macs, bias_adds;
    char *err;
    size_t errlen;
    bool failed;
} builder;

/* ---- registry, slots, ops ------------------------------------------------------------------- */

static int reg_tensor(builder *b, bool is_buf, const char *name, int ndim, const int *shape,
                      bool trainable) {
    model *m = b->m;
    model_tensor **arr = is_buf ? &m->bufs : &m->params;
    int *cnt = is_buf ? &m->nbufs : &m->nparams, *cap = is_buf ? &m->cap_bufs : &m->cap_params;
    size_t *tot = is_buf ? &m->nbuf_floats : &m->nparam_floats;
    if (!b->create) {
        int i = is_buf ? b->bnext++ : b->pnext++;
        if (i >= *cnt || strcmp((*arr)[i].name, name))
            FATAL("graph rebuild registered %s, expected %s", name,
                  i < *cnt ? (*arr)[i].name : "end");
        return i;
    }
    if (*cnt == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        *arr = xrealloc(*arr, (size_t)*cap * sizeof **arr);
    }
    model_tensor *t = &(*arr)[*cnt];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i], t->numel *= (size_t)shape[i];
    t->offset = *tot;
    t->trainable = trainable;
    t->ohwi = ndim == 4;
    size_t len = strlen(name);
    if (is_buf)
        t->role = MODEL_BUFFER;
    else if (ndim == 4)
        t->role = MODEL_WEIGHT;
    else if (len > 5 && !strcmp(name + len - 5, ".bias"))
        t->role = MODEL_BIAS;
    else
        t->role = MODEL_BN_WEIGHT;
    *tot += t->numel;
    if (!is_buf && trainable) m->ntrainable += t->numel;
    return (*cnt)++;
}

static int new_slot(builder *b, int n, int h, int w, int c) {
    model *m = b->m;
    if (m->nslots == m->cap_slots) {
        m->cap_slots = m->cap_slots ? 2 * m->cap_slots : 512;
        m->slots = xrealloc(m->slots, (size_t)m->cap_slots * sizeof *m->slots);
    }
    slot *s = &m->slots[m->nslots];
    *s = (slot){n, h, w, c, m->arena_floats, 0, -1, false, false};
    m->arena_floats += (size_t)n * h * w * c;
    return m->nslots++;
}

static op *new_op(builder *b, op_kind k) {
    model *m = b->m;
    if (m->nops == m->cap_ops) {
        m->cap_ops = m->cap_ops ? 2 * m->cap_ops : 512;
        m->ops = xrealloc(m->ops, (size_t)m->cap_ops * sizeof *m->ops);
    }
    op *o = &m->ops[m->nops++];
    memset(o, 0, sizeof *o);
    o->kind = k;
    o->pw = o->pb = o->x2 = o->y2 = o->xb = o->yb = -1;
    return o;
}

static void name_slot(builder *b, int s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void name_slot(builder *b, int s, const char *fmt, ...) {
    model *m = b->m;
    if (m->nnames == m->cap_names) {
        m->cap_names = m->cap_names ? 2 * m->cap_names : 512;
        m->names = xrealloc(m->names, (size_t)m->cap_names * sizeof *m->names);
    }
    act_name *a = &m->names[m->nnames++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->name, sizeof a->name, fmt, ap);
    va_end(ap);
    a->slot = s;
}

static slot S(builder *b, int s) {
    return b->m->slots[s];
}

/* ---- conv units ----------------------------------------------------------------------------- */

typedef struct cunit {
    char name[80];
    int cin, cout, k, s, g;
    bool bn, act, bias;
    int pw, pb, pg, pbeta, bm, bv;
} cunit;

/* Conv (conv + BN [+ SiLU]) when bn; plain Conv2d with bias otherwise. Registers parameters. */
static cunit unit_decl(builder *b, const char *name, int cin, int cout, int k, int s, int g,
                       bool bn, bool act) {
    cunit u = {.cin = cin,
               .cout = cout,
               .k = k,
               .s = s,
               .g = g,
               .bn = bn,
               .act = act,
               .bias = !bn,
               .pb = -1,
               .pg = -1,
               .pbeta = -1,
               .bm = -1,
               .bv = -1};
    snprintf(u.name, sizeof u.name, "%s", name);
    char nm[128];
    int wshape[4] = {cout, cin / g, k, k}, cshape[1] = {cout};
    if (bn) {
        snprintf(nm, sizeof nm, "%s.conv.weight", name);
        u.pw = reg_tensor(b, false, nm, 4, wshape, true);
        snprintf(nm, sizeof nm, "%s.bn.weight", name);
        u.pg = reg_tensor(b, false, nm, 1, cshape, true);
        snprintf(nm, sizeof nm, "%s.bn.bias", name);
        u.pbeta = reg_tensor(b, false, nm, 1, cshape, true);
        snprintf(nm, sizeof nm, "%s.bn.running_mean", name);
        u.bm = reg_tensor(b, true, nm, 1, cshape, false);
        snprintf(nm, sizeof nm, "%s.bn.running_var", name);
        u.bv = reg_tensor(b, true, nm, 1, cshape, false);
    } else {
        snprintf(nm, sizeof nm, "%s.weight", name);
        u.pw = reg_tensor(b, false, nm, 4, wshape, true);
        snprintf(nm, sizeof nm, "%s.bias", name);
        u.pb = reg_tensor(b, false, nm, 1, cshape, true);
    }
    return u;
}

/* The bf16 shadow of slot x (made once): written by a conversion op emitted here, before the
 * first convolution that reads it. */
static int shadow_of(builder *b, int x) {
    model *m = b->m;
    if (m->slots[x].shadow >= 0) return m->slots[x].shadow;
    slot xs = S(b, x);
    int s = new_slot(b, xs.n, xs.h, xs.w, (xs.c + 1) / 2);
    m->slots[s].bf16 = true;
    m->slots[x].shadow = s;
    op *t = new_op(b, OP_TO_BF16);
    t->x = x;
    t->y = s;
    return s;
}

static int unit_emit(builder *b, const cunit *u, int x) {
    slot xs = S(b, x);
    if (u->cin < 1 || u->cout < 1) { /* a width or expansion that rounds a layer down to nothing */
        if (!b->failed)
            errf(b->err, b->errlen,
                 "%s: a convolution with %d input and %d output channels (the yaml's width "
                 "multiple or expansion ratio leaves no channels)",
                 u->name, u->cin, u->cout);
        b->failed = true;
    } else if (xs.c != u->cin) {
        if (!b->failed)
            errf(b->err, b->errlen, "%s: input has %d channels, expected %d", u->name, xs.c,
                 u->cin);
        b->failed = true;
    }
    int pad = u->k / 2;
    int oh = (xs.h + 2 * pad - u->k) / u->s + 1, ow = (xs.w + 2 * pad - u->k) / u->s + 1;
    if (oh < 1 || ow < 1) { /* a yaml whose strides shrink the image to nothing */
        if (!b->failed)
            errf(b->err, b->errlen, "%s: a %dx%d input leaves no pixels after k=%d s=%d", u->name,
                 xs.h, xs.w, u->k, u->s);
        b->failed = true;
        oh = ow = 1;
    }
    /* bf16: the input's shadow (not for the Conv2d with bias of the Detect heads, whose bias
     * gradient needs the float dy: those convert their inputs themselves) */
    bool shadowed = b->m->conv_prec == CONV2D_BF16 && !u->bias;
    int xb = shadowed ? shadow_of(b, x) : -1;
    op *o = new_op(b, OP_CONV);
    o->xb = xb;
    o->x = x;
    o->cd = (conv2d_desc){.n = xs.n,
                          .h = xs.h,
                          .w = xs.w,
                          .cin = xs.c,
                          .cout = u->cout,
                          .kh = u->k,
                          .kw = u->k,
                          .stride = u->s,
                          .pad = pad,
                          .groups = u->g,
                          .oh = oh,
                          .ow = ow,
                          .prec = b->m->conv_prec};
    o->pw = u->pw;
    o->pb = u->pb;
    if (shadowed && (size_t)xs.n * oh * ow * u->cout > b->m->dyb_elems)
        b->m->dyb_elems = (size_t)xs.n * oh * ow * u->cout; /* its dy in bf16: model->dyb */
    int y = new_slot(b, xs.n, oh, ow, u->cout);
    o->y = y;
    double px = (double)oh * ow * xs.n;
    b->macs += px * u->cout * (u->cin / u->g) * u->k * u->k;
    if (u->bias) {
        b->bias_adds += px * u->cout;
        name_slot(b, y, "%s", u->name);
        return y;
    }
    name_slot(b, y, "%s.conv", u->name);
    /* BN + SiLU in one op, unless the BN output is wanted as a slot of its own (keep_grads:
     * inspection): then BN and SiLU apart */
    bool fused = u->act && !b->m->keep_grads;
    op *n = new_op(b, fused ? OP_BN_SILU : OP_BN);
    n->x = y;
    n->pg = u->pg;
    n->pbeta = u->pbeta;
    n->bm = u->bm;
    n->bv = u->bv;
    n->save = b->m->scratch_floats;
    b->m->scratch_floats += 2 * (size_t)u->cout;
    int z = new_slot(b, xs.n, oh, ow, u->cout);
    n->y = z;
    if (!fused) name_slot(b, z, "%s.bn", u->name);
    if (!u->act || fused) {
        name_slot(b, z, "%s", u->name);
        return z;
    }
    op *a = new_op(b, OP_SILU);
    a->x = z;
    a->y = new_slot(b, xs.n, oh, ow, u->cout);
    name_slot(b, a->y, "%s", u->name);
    return a->y;
}

static int conv_decl_emit(builder *b, const char *name, int x, int cout, int k, int s, bool act) {
    cunit u = unit_decl(b, name, S(b, x).c, cout, k, s, 1, true, act);
    return unit_emit(b, &u, x);
}

/* ---- layout ops ----------------------------------------------------------------------------- */

static int add_emit(builder *b, int x, int x2) {
    op *o = new_op(b, OP_ADD);
    o->x = x;
    o->x2 = x2;
    slot s = S(b, x);
    o->y = new_slot(b, s.n, s.h, s.w, s.c);
    return o->y;
}

static int slice_emit(builder *b, int x, int off, int c) {
    op *o = new_op(b, OP_SLICE);
    o->x = x;
    o->off = off;
    slot s = S(b, x);
    o->y = new_slot(b, s.n, s.h, s.w, c);
    return o->y;
}

static int concat_emit(builder *b, int k, const int *ins) {
    if (k > OP_MAX_IN) FATAL("concat of %d inputs (at most %d)", k, OP_MAX_IN);
    op *o = new_op(b, OP_CONCAT);
    o->nin = k;
    int c = 0;
    slot s0 = S(b, ins[0]);
    for (int i = 0; i < k; i++) {
        slot s = S(b, ins[i]);
        if ((s.h != s0.h || s.w != s0.w) && !b->failed) {
            errf(b->err, b->errlen,
                 "Concat of %dx%d and %dx%d maps (image size not a multiple "
                 "of 32?)",
                 s0.h, s0.w, s.h, s.w);
            b->failed = true;
        }
        o->ins[i] = ins[i];
        c += s.c;
    }
    o->y = new_slot(b, s0.n, s0.h, s0.w, c);
    return o->y;
}

/* ---- blocks --------------------------------------------------------------------------------- */

typedef struct bneck {
    cunit cv1, cv2;
    bool add;
} bneck;

static bneck bneck_decl(builder *b, const char *name, int c1, int c2, bool shortcut, double e) {
    char nm[96];
    int h = (int)(c2 * e);
    bneck r;
    snprintf(nm, sizeof nm, "%s.cv1", name);
    r.cv1 = unit_decl(b, nm, c1, h, 3, 1, 1, true, true);
    snprintf(nm, sizeof nm, "%s.cv2", name);
    r.cv2 = unit_decl(b, nm, h, c2, 3, 1, 1, true, true);
    r.add = shortcut && c1 == c2;
    return r;
}

static int bneck_emit(builder *b, const char *name, const bneck *r, int x) {
    int y = unit_emit(b, &r->cv2, unit_emit(b, &r->cv1, x));
    if (r->add) y = add_emit(b, x, y);
    name_slot(b, y, "%s", name);
    return y;
}

typedef struct attn_decl {
    cunit qkv, proj, pe, ffn0, ffn1;
    int heads, kd, hd;
} psa_decl;

static psa_decl psa_declare(builder *b, const char *name, int c, int heads) {
    psa_decl p;
    char nm[96];
    p.heads = heads;
    p.hd = c / heads;
    p.kd = (int)(p.hd * 0.5);
    int h = c + 2 * p.kd * heads;
    snprintf(nm, sizeof nm, "%s.attn.qkv", name);
    p.qkv = unit_decl(b, nm, c, h, 1, 1, 1, true, false);
    snprintf(nm, sizeof nm, "%s.attn.proj", name);
    p.proj = unit_decl(b, nm, c, c, 1, 1, 1, true, false);
    snprintf(nm, sizeof nm, "%s.attn.pe", name);
    p.pe = unit_decl(b, nm, c, c, 3, 1, c, true, false);
    snprintf(nm, sizeof nm, "%s.ffn.0", name);
    p.ffn0 = unit_decl(b, nm, c, 2 * c, 1, 1, 1, true, true);
    snprintf(nm, sizeof nm, "%s.ffn.1", name);
    p.ffn1 = unit_decl(b, nm, 2 * c, c, 1, 1, 1, true, false);
    return p;
}

/* PSABlock: x + attn(x), then + ffn(.). */
static int psa_emit(builder *b, const char *name, const psa_decl *p, int x) {
    slot s = S(b, x);
    int qkv = unit_emit(b, &p->qkv, x);
    op *o = new_op(b, OP_ATTN);
    o->x = qkv;
    o->ad = (attention_desc){.n = s.n,
                             .hw = s.h * s.w,
                             .heads = p->heads,
                             .kd = p->kd,
                             .hd = p->hd,
                             .scale = 1.0f / sqrtf((float)p->kd)};
    o->save = b->m->scratch_floats;
    b->m->scratch_floats += (size_t)s.n * p->heads * s.h * s.w * s.h * s.w;
    int out = new_slot(b, s.n, s.h, s.w, s.c), v = new_slot(b, s.n, s.h, s.w, s.c);
    o->y = out;
    o->y2 = v;
    int pe = unit_emit(b, &p->pe, v);
    int a = unit_emit(b, &p->proj, add_emit(b, out, pe));
    name_slot(b, a, "%s.attn", name);
    int x1 = add_emit(b, x, a);
    int f = unit_emit(b, &p->ffn1, unit_emit(b, &p->ffn0, x1));
    int y = add_emit(b, x1, f);
    name_slot(b, y, "%s", name);
    return y;
}

/* C2f / C3k2: cv1, split in two, chain of n units, concat of all, cv2. */
static int c2f_like(builder *b, const char *pre, const model_layer *L, int x) {
    char nm[96];
    int c = (int)(L->c2 * (L->type == MOD_C2F ? 0.5 : L->e));
    snprintf(nm, sizeof nm, "%s.cv1", pre);
    cunit cv1 = unit_decl(b, nm, L->c1, 2 * c, 1, 1, 1, true, true);
    snprintf(nm, sizeof nm, "%s.cv2", pre);
    cunit cv2 = unit_decl(b, nm, (2 + L->n) * c, L->c2, 1, 1, 1, true, true);
    enum {
        PLAIN,
        C3K,
        ATTN
    } kind = L->type == MOD_C2F ? PLAIN
             : L->attn          ? ATTN
             : L->c3k           ? C3K
                                : PLAIN;
    double be = L->type == MOD_C2F ? 1.0 : 0.5;
    bool sc = L->type == MOD_C2F ? L->shortcut : true;
    bneck bn[16][3];
    cunit k3[16][3];
    psa_decl ps[16];
    if (L->n > 16) FATAL("repeat count %d too large", L->n);
    for (int j = 0; j < L->n; j++) {
        if (kind == PLAIN) {
            snprintf(nm, sizeof nm, "%s.m.%d", pre, j);
            bn[j][0] = bneck_decl(b, nm, c, c, sc, be);
        } else if (kind == ATTN) {
            snprintf(nm, sizeof nm, "%s.m.%d.0", pre, j);
            bn[j][0] = bneck_decl(b, nm, c, c, true, 0.5);
            snprintf(nm, sizeof nm, "%s.m.%d.1", pre, j);
            ps[j] = psa_declare(b, nm, c, c / 64 > 1 ? c / 64 : 1);
        } else { /* C3k(c, c, n=2, shortcut, e=0.5): cv1, cv2, cv3, m.0, m.1 */
            int h = (int)(c * 0.5);
            snprintf(nm, sizeof nm, "%s.m.%d.cv1", pre, j);
            k3[j][0] = unit_decl(b, nm, c, h, 1, 1, 1, true, true);
            snprintf(nm, sizeof nm, "%s.m.%d.cv2", pre, j);
            k3[j][1] = unit_decl(b, nm, c, h, 1, 1, 1, true, true);
            snprintf(nm, sizeof nm, "%s.m.%d.cv3", pre, j);
            k3[j][2] = unit_decl(b, nm, 2 * h, c, 1, 1, 1, true, true);
            for (int q = 0; q < 2; q++) {
                snprintf(nm, sizeof nm, "%s.m.%d.m.%d", pre, j, q);
                bn[j][q] = bneck_decl(b, nm, h, h, true, 1.0);
            }
        }
    }
    int t = unit_emit(b, &cv1, x);
    int parts[2 + 16];
    parts[0] = slice_emit(b, t, 0, c);
    parts[1] = slice_emit(b, t, c, c);
    for (int j = 0; j < L->n; j++) {
        int in = parts[1 + j], y;
        if (kind == PLAIN) {
            snprintf(nm, sizeof nm, "%s.m.%d", pre, j);
            y = bneck_emit(b, nm, &bn[j][0], in);
        } else if (kind == ATTN) {
            snprintf(nm, sizeof nm, "%s.m.%d.0", pre, j);
            y = bneck_emit(b, nm, &bn[j][0], in);
            snprintf(nm, sizeof nm, "%s.m.%d.1", pre, j);
            y = psa_emit(b, nm, &ps[j], y);
            snprintf(nm, sizeof nm, "%s.m.%d", pre, j);
            name_slot(b, y, "%s", nm);
        } else {
            int a = unit_emit(b, &k3[j][0], in);
            for (int q = 0; q < 2; q++) {
                snprintf(nm, sizeof nm, "%s.m.%d.m.%d", pre, j, q);
                a = bneck_emit(b, nm, &bn[j][q], a);
            }
            int cat[2] = {a, unit_emit(b, &k3[j][1], in)};
            y = unit_emit(b, &k3[j][2], concat_emit(b, 2, cat));
            snprintf(nm, sizeof nm, "%s.m.%d", pre, j);
            name_slot(b, y, "%s", nm);
        }
        parts[2 + j] = y;
    }
    return unit_emit(b, &cv2, concat_emit(b, 2 + L->n, parts));
}

static int sppf(builder *b, const char *pre, const model_layer *L, int x) {
    char nm[96];
    int h = L->c1 / 2;
    snprintf(nm, sizeof nm, "%s.cv1", pre);
    cunit cv1 = unit_decl(b, nm, L->c1, h, 1, 1, 1, true, L->sppf_act);
    snprintf(nm, sizeof nm, "%s.cv2", pre);
    cunit cv2 = unit_decl(b, nm, h * (L->n_pool + 1), L->c2, 1, 1, 1, true, true);
    int parts[OP_MAX_IN]; /* cv1 and the pools, concatenated (model_yaml checks n) */
    if (L->n_pool + 1 > OP_MAX_IN) FATAL("SPPF n %d too large", L->n_pool);
    parts[0] = unit_emit(b, &cv1, x);
    for (int i = 0; i < L->n_pool; i++) {
        slot s = S(b, parts[i]);
        op *o = new_op(b, OP_MAXPOOL);
        o->x = parts[i];
        o->k = L->k;
        o->stride = 1;
        o->pad = L->k / 2;
        o->argmax = b->m->scratch_i32;
        b->m->scratch_i32 += (size_t)s.n * s.h * s.w * s.c;
        o->y = new_slot(b, s.n, s.h, s.w, s.c);
        parts[i + 1] = o->y;
        if (i == 0)
            name_slot(b, o->y, "%s.m", pre);
        else
            name_slot(b, o->y, "%s.m#%d", pre, i);
    }
    int y = unit_emit(b, &cv2, concat_emit(b, L->n_pool + 1, parts));
    if (L->shortcut && L->c1 == L->c2) y = add_emit(b, x, y);
    return y;
}

static int c2psa(builder *b, const char *pre, const model_layer *L, int x) {
    char nm[96];
    int c = (int)(L->c1 * L->e);
    snprintf(nm, sizeof nm, "%s.cv1", pre);
    cunit cv1 = unit_decl(b, nm, L->c1, 2 * c, 1, 1, 1, true, true);
    snprintf(nm, sizeof nm, "%s.cv2", pre);
    cunit cv2 = unit_decl(b, nm, 2 * c, L->c1, 1, 1, 1, true, true);
    psa_decl ps[16];
    if (L->n > 16) FATAL("repeat count %d too large", L->n);
    for (int j = 0; j < L->n; j++) {
        snprintf(nm, sizeof nm, "%s.m.%d", pre, j);
        /* 8.4.190's max(c // 64, 1): 8.4.33's c // 64 is 0 heads (a crash) below 64 channels */
        ps[j] = psa_declare(b, nm, c, c / 64 > 1 ? c / 64 : 1);
    }
    int t = unit_emit(b, &cv1, x);
    int parts[2] = {slice_emit(b, t, 0, c), slice_emit(b, t, c, c)};
    for (int j = 0; j < L->n; j++) {
        snprintf(nm, sizeof nm, "%s.m.%d", pre, j);
        parts[1] = psa_emit(b, nm, &ps[j], parts[1]);
    }
    return unit_emit(b, &cv2, concat_emit(b, 2, parts));
}

/* ---- Detect --------------------------------------------------------------------------------- */

typedef struct head_decl {
    cunit box[3][3], cls[3][5];
    int ncls;
} head_decl;

static void head_declare_box(builder *b, const char *pre, const char *br, const int *ch, int c2,
                             int reg_max, head_decl *h) {
    char nm[128];
    for (int i = 0; i < 3; i++) {
        snprintf(nm, sizeof nm, "%s.%s.%d.0", pre, br, i);
        h->box[i][0] = unit_decl(b, nm, ch[i], c2, 3, 1, 1, true, true);
        snprintf(nm, sizeof nm, "%s.%s.%d.1", pre, br, i);
        h->box[i][1] = unit_decl(b, nm, c2, c2, 3, 1, 1, true, true);
        snprintf(nm, sizeof nm, "%s.%s.%d.2", pre, br, i);
        h->box[i][2] = unit_decl(b, nm, c2, 4 * reg_max, 1, 1, 1, false, false);
    }
}

static void head_declare_cls(builder *b, const char *pre, const char *br, const int *ch, int c3,
                             int nc, bool legacy, head_decl *h) {
    char nm[128];
    for (int i = 0; i < 3; i++) {
        if (legacy) {
            h->ncls = 3;
            snprintf(nm, sizeof nm, "%s.%s.%d.0", pre, br, i);
            h->cls[i][0] = unit_decl(b, nm, ch[i], c3, 3, 1, 1, true, true);
            snprintf(nm, sizeof nm, "%s.%s.%d.1", pre, br, i);
            h->cls[i][1] = unit_decl(b, nm, c3, c3, 3, 1, 1, true, true);
            snprintf(nm, sizeof nm, "%s.%s.%d.2", pre, br, i);
            h->cls[i][2] = unit_decl(b, nm, c3, nc, 1, 1, 1, false, false);
        } else {
            h->ncls = 5;
            snprintf(nm, sizeof nm, "%s.%s.%d.0.0", pre, br, i);
            h->cls[i][0] = unit_decl(b, nm, ch[i], ch[i], 3, 1, ch[i], true, true);
            snprintf(nm, sizeof nm, "%s.%s.%d.0.1", pre, br, i);
            h->cls[i][1] = unit_decl(b, nm, ch[i], c3, 1, 1, 1, true, true);
            snprintf(nm, sizeof nm, "%s.%s.%d.1.0", pre, br, i);
            h->cls[i][2] = unit_decl(b, nm, c3, c3, 3, 1, c3, true, true);
            snprintf(nm, sizeof nm, "%s.%s.%d.1.1", pre, br, i);
            h->cls[i][3] = unit_decl(b, nm, c3, c3, 1, 1, 1, true, true);
            snprintf(nm, sizeof nm, "%s.%s.%d.2", pre, br, i);
            h->cls[i][4] = unit_decl(b, nm, c3, nc, 1, 1, 1, false, false);
        }
    }
}

static void head_emit(builder *b, const head_decl *h, const int *feats, int branch) {
    model *m = b->m;
    for (int i = 0; i < 3; i++) {
        int x = feats[i];
        if (branch == MODEL_ONE2ONE) { /* detached copy: no gradient reaches the neck */
            op *d = new_op(b, OP_DETACH);
            slot s = S(b, x);
            d->x = x;
            d->y = new_slot(b, s.n, s.h, s.w, s.c);
            x = d->y;
        }
        int bx = x, cx = x;
        for (int j = 0; j < 3; j++) bx = unit_emit(b, &h->box[i][j], bx);
        for (int j = 0; j < h->ncls; j++) cx = unit_emit(b, &h->cls[i][j], cx);
        int cat[2] = {bx, cx};
        int lv = concat_emit(b, 2, cat);
        op *o = new_op(b, OP_OUTPUT);
        o->x = lv;
        o->branch = branch;
        o->level = i;
        slot s = S(b, lv);
        m->level_h[i] = s.h;
        m->level_w[i] = s.w;
    }
}

static void detect(builder *b, const char *pre, const model_layer *L, const int *feats) {
    model *m = b->m;
    const model_yaml *y = &m->cfg;
    int rm = y->reg_max, nc = y->nc;
    int c2 = 16;
    if (L->ch[0] / 4 > c2) c2 = L->ch[0] / 4;
    if (4 * rm > c2) c2 = 4 * rm;
    int c3 = y->cls_width > 0 ? y->cls_width : model_yaml_cls_width_rule(y);
    head_decl h[2];
    memset(h, 0, sizeof h);
    head_declare_box(b, pre, "cv2", L->ch, c2, rm, &h[0]);
    head_declare_cls(b, pre, "cv3", L->ch, c3, nc, y->legacy, &h[0]);
    if (rm > 1) {
        char nm[96];
        snprintf(nm, sizeof nm, "%s.dfl.conv.weight", pre);
        int sh[4] = {1, rm, 1, 1};
        reg_tensor(b, false, nm, 4, sh, false);
    }
    if (y->end2end) {
        head_declare_box(b, pre, "one2one_cv2", L->ch, c2, rm, &h[1]);
        head_declare_cls(b, pre, "one2one_cv3", L->ch, c3, nc, y->legacy, &h[1]);
    }
    m->nlevels = 3;
    m->no = 4 * rm + nc;
    head_emit(b, &h[0], feats, MODEL_ONE2MANY);
    if (y->end2end) head_emit(b, &h[1], feats, MODEL_ONE2ONE);
}

/* ---- whole graph ---------------------------------------------------------------------------- */

int model_build_graph(model *m, int batch, int h, int w, bool create, double *macs,
                      double *bias_adds, char *err, size_t errlen) {
    builder b = {.m = m, .create = create, .err = err, .errlen = errlen};
    m->nslots = m->nops = m->nnames = 0;
    m->arena_floats = m->scratch_floats = m->scratch_i32 = 0;
    m->dyb_elems = 0;
    const model_yaml *y = &m->cfg;
    int *out = xcalloc((size_t)y->nlayers, sizeof *out);
    int img = new_slot(&b, batch, h, w, 3);
    size_t before = 0;
    for (int i = 0; i < y->nlayers && !b.failed; i++) {
        const model_layer *L = &y->layers[i];
        char pre[32];
        snprintf(pre, sizeof pre, "model.%d", i);
        int x = L->from[0] < 0 ? img : out[L->from[0]];
        int o = -1;
        switch (L->type) {
        case MOD_CONV:
            o = conv_decl_emit(&b, pre, x, L->c2, L->k, L->s, true);
            break;
        case MOD_C2F:
        case MOD_C3K2:
            o = c2f_like(&b, pre, L, x);
            break;
        case MOD_SPPF:
            o = sppf(&b, pre, L, x);
            break;
        case MOD_C2PSA:
            o = c2psa(&b, pre, L, x);
            break;
        case MOD_UPSAMPLE: {
            op *u = new_op(&b, OP_UPSAMPLE);
            slot s = S(&b, x);
            u->x = x;
            u->y = o = new_slot(&b, s.n, 2 * s.h, 2 * s.w, s.c);
            break;
        }
        case MOD_CONCAT: {
            int ins[MODEL_MAX_FROM];
            for (int k = 0; k < L->nfrom; k++) ins[k] = L->from[k] < 0 ? img : out[L->from[k]];
            o = concat_emit(&b, L->nfrom, ins);
            break;
        }
        case MOD_DETECT: {
            int feats[3];
            for (int k = 0; k < 3; k++) feats[k] = out[L->from[k]];
            for (int k = 0; k < 3; k++) {
                slot f = S(&b, feats[k]);
                if (h % f.h || w % f.w || h / f.h != w / f.w) {
                    if (!b.failed)
                        errf(err, errlen, "%s: input %d is %dx%d, not the %dx%d image / a stride",
                             pre, k, f.h, f.w, h, w);
                    b.failed = true;
                }
                m->strides[k] = h / f.h;
            }
            if (!b.failed) detect(&b, pre, L, feats);
            break;
        }
        }
        if (o >= 0) {
            name_slot(&b, o, "%s", pre);
            out[i] = o;
        }
        if (create) {
            m->layer_params[i] = m->nparam_floats - before;
            before = m->nparam_floats;
        }
    }
    free(out);
    if (macs) *macs = b.macs;
    if (bias_adds) *bias_adds = b.bias_adds;
    if (b.failed) return -1;
    if (!create && (b.pnext != m->nparams || b.bnext != m->nbufs))
        FATAL("graph rebuild registered %d/%d tensors", b.pnext, m->nparams);
    if (m->conv_prec == CONV2D_BF16 && !m->bf16_unfused) model_fuse_bf16(m);
    return 0;
}
