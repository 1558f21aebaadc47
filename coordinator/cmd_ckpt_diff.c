/* coordinator ckpt diff <run> <a> <b> | <run:a> <run2:b>: what differs between two versions (of
 * one run or of two): arguments, dataset, model, position, metric deltas, and per tensor the
 * relative L2 change ||b - a|| / ||a||, largest first. */
#include "coordinator/ckpt_cli.h"

#include "common/log.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cli_spec diff_spec = {
    "ckpt diff",
    "<run> <a> <b> | <run:a> <run2:b> [group=ema|model|optimizer|all] [top=N] [--all] "
    "[--json]",
    "Compares two versions, of one run (ckpt diff runs/a v2 v5) or of two (ckpt diff runs/a:v2\n"
    "runs/b:best; a run alone means its last version):\n"
    "  the args.yaml keys whose values differ, the dataset (sha256), the model yaml, the code\n"
    "  version, the position (epoch, step), every results.csv metric of both and the change\n"
    "  (b - a), and per tensor the relative L2 change ||b - a|| / ||a|| (absolute ||b|| when a is\n"
    "  all zero), largest first; tensors only in one, or of another shape, are listed.\n"
    "group=: which tensors (default ema: the weights that are validated and exported).\n"
    "top=N: how many tensors to print (default 20); --all: every one. --json: all of it.",
    "all,json",
    "group,top",
    2,
    3};

typedef struct tdiff {
    const char *name;
    const ckpt_tensor *t;
    double rel, diff, norm_a;
} tdiff;

static int by_rel_desc(const void *x, const void *y) {
    const tdiff *a = x, *b = y;
    if (a->rel != b->rel) return a->rel < b->rel ? 1 : -1;
    return strcmp(a->name, b->name);
}

static bool in_group(const char *name, const char *group) {
    if (!strcmp(group, "all")) return true;
    size_t n = strlen(group);
    return !strncmp(name, group, n) && name[n] == '/';
}

static bool same_shape(const ckpt_tensor *a, const ckpt_tensor *b) {
    if (a->ndim != b->ndim || a->dtype != b->dtype) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

/* The relative L2 change of every tensor of `group` in both; the names only in one or of another
 * shape into the three lists. -1 when a tensor cannot be read (its hash named in err). */
static int tensor_diffs(ckpt_file *fa, ckpt_file *fb, const char *group, tdiff **out, int *n,
                        cJSON *only_a, cJSON *only_b, cJSON *reshaped, char *err, size_t errlen) {
    *out = xcalloc((size_t)ckpt_num_tensors(fa) + 1, sizeof **out);
    *n = 0;
    for (int i = 0; i < ckpt_num_tensors(fa); i++) {
        const ckpt_tensor *ta = ckpt_tensor_at(fa, i);
        if (!in_group(ta->name, group)) continue;
        int j = ckpt_find_tensor(fb, ta->name);
        if (j < 0) {
            cJSON_AddItemToArray(only_a, cJSON_CreateString(ta->name));
            continue;
        }
        if (!same_shape(ta, ckpt_tensor_at(fb, j))) {
            cJSON_AddItemToArray(reshaped, cJSON_CreateString(ta->name));
            continue;
        }
        int64_t na, nb;
        double *va = ckpt_cli_read_values(fa, i, &na, err, errlen);
        double *vb = va ? ckpt_cli_read_values(fb, j, &nb, err, errlen) : NULL;
        if (!vb) {
            free(va);
            return -1;
        }
        double d2 = 0, a2 = 0, b2 = 0;
        for (int64_t k = 0; k < na; k++) {
            d2 += (vb[k] - va[k]) * (vb[k] - va[k]);
            a2 += va[k] * va[k];
            b2 += vb[k] * vb[k];
        }
        free(va);
        free(vb);
        tdiff *t = &(*out)[(*n)++];
        t->name = ta->name;
        t->t = ta;
        t->diff = sqrt(d2);
        t->norm_a = sqrt(a2);
        t->rel = a2 > 0 ? t->diff / t->norm_a : sqrt(b2);
    }
    for (int j = 0; j < ckpt_num_tensors(fb); j++) {
        const ckpt_tensor *tb = ckpt_tensor_at(fb, j);
        if (in_group(tb->name, group) && ckpt_find_tensor(fa, tb->name) < 0)
            cJSON_AddItemToArray(only_b, cJSON_CreateString(tb->name));
    }
    qsort(*out, (size_t)*n, sizeof **out, by_rel_desc);
    return 0;
}

/* args.yaml keys whose values differ (save_dir always does between runs: left out). */
static cJSON *args_diff(const ckpt_meta *a, const ckpt_meta *b) {
    kv_args ka, kb;
    kv_from_args_yaml(a->args_yaml, &ka);
    kv_from_args_yaml(b->args_yaml, &kb);
    cJSON *out = cJSON_CreateArray();
    for (int pass = 0; pass < 2; pass++) {
        kv_args *x = pass ? &kb : &ka, *y = pass ? &ka : &kb;
        for (int i = 0; i < x->n; i++) {
            const char *k = x->items[i].key, *v = x->items[i].val, *w = NULL;
            if (!strcmp(k, "save_dir")) continue;
            for (int j = 0; j < y->n; j++)
                if (!strcmp(y->items[j].key, k)) w = y->items[j].val;
            if (pass == 1 && w) continue; /* both have it: the first pass saw it */
            if (w && !strcmp(v, w)) continue;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "key", k);
            cJSON_AddStringToObject(e, "a", pass ? "(absent)" : v);
            cJSON_AddStringToObject(e, "b", pass ? v : w ? w : "(absent)");
            cJSON_AddItemToArray(out, e);
        }
    }
    kv_free(&ka);
    kv_free(&kb);
    return out;
}

static cJSON *metrics_diff(const ckpt_meta *a, const ckpt_meta *b) {
    cJSON *ra = ckpt_row_json(a), *rb = ckpt_row_json(b), *out = cJSON_CreateArray();
    cJSON *it;
    if (cJSON_IsObject(ra) || cJSON_IsObject(rb)) {
        cJSON *names = cJSON_IsObject(ra) ? ra : rb;
        cJSON_ArrayForEach(it, names) {
            cJSON *x = cJSON_GetObjectItemCaseSensitive(ra, it->string);
            cJSON *y = cJSON_GetObjectItemCaseSensitive(rb, it->string);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", it->string);
            if (cJSON_IsNumber(x))
                cJSON_AddNumberToObject(e, "a", x->valuedouble);
            else
                cJSON_AddNullToObject(e, "a");
            if (cJSON_IsNumber(y))
                cJSON_AddNumberToObject(e, "b", y->valuedouble);
            else
                cJSON_AddNullToObject(e, "b");
            if (cJSON_IsNumber(x) && cJSON_IsNumber(y))
                cJSON_AddNumberToObject(e, "delta", y->valuedouble - x->valuedouble);
            else
                cJSON_AddNullToObject(e, "delta");
            cJSON_AddItemToArray(out, e);
        }
    }
    cJSON_Delete(ra);
    cJSON_Delete(rb);
    return out;
}

static cJSON *same_or_not(const char *a, const char *b) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "same", !strcmp(a ? a : "", b ? b : ""));
    cJSON_AddStringToObject(j, "a", a ? a : "");
    cJSON_AddStringToObject(j, "b", b ? b : "");
    return j;
}

static void print_list(const char *title, cJSON *list) {
    int n = cJSON_GetArraySize(list);
    if (!n) return;
    printf("%s (%d):", title, n);
    int k = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, list) {
        if (k++ == 8) {
            printf(" ...");
            break;
        }
        printf(" %s", it->valuestring);
    }
    printf("\n");
}

static void print_text(const ckpt_ref *ra, const ckpt_ref *rb, const ckpt_meta *a,
                       const ckpt_meta *b, cJSON *j, const tdiff *t, int nt, int top,
                       const char *group) {
    printf("a: %s (epoch %d, step %d/%d, %s)\nb: %s (epoch %d, step %d/%d, %s)\n", ra->label,
           a->epoch, a->step, a->steps, a->created, rb->label, b->epoch, b->step, b->steps,
           b->created);
    cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "args"), *it;
    printf("\narguments that differ:%s\n", cJSON_GetArraySize(args) ? "" : " none");
    cJSON_ArrayForEach(it, args) {
        printf("  %-20s %s -> %s\n", cJSON_GetObjectItem(it, "key")->valuestring,
               cJSON_GetObjectItem(it, "a")->valuestring,
               cJSON_GetObjectItem(it, "b")->valuestring);
    }
    const char *what[] = {"dataset", "model_yaml", "code_version"};
    const char *label[] = {"dataset sha256", "model yaml", "code version"};
    printf("\n");
    for (int i = 0; i < 3; i++) {
        cJSON *s = cJSON_GetObjectItemCaseSensitive(j, what[i]);
        bool same = cJSON_IsTrue(cJSON_GetObjectItem(s, "same"));
        const char *va = cJSON_GetObjectItem(s, "a")->valuestring;
        const char *vb = cJSON_GetObjectItem(s, "b")->valuestring;
        if (i == 1)
            printf("%-15s %s\n", label[i], same ? "same" : "DIFFERS");
        else if (same)
            printf("%-15s same (%s)\n", label[i], va);
        else
            printf("%-15s DIFFERS: %s -> %s\n", label[i], va, vb);
    }
    cJSON *mets = cJSON_GetObjectItemCaseSensitive(j, "metrics");
    printf("\nmetrics (results.csv row of each; b - a):%s\n",
           cJSON_GetArraySize(mets) ? "" : " none");
    cJSON_ArrayForEach(it, mets) {
        cJSON *x = cJSON_GetObjectItem(it, "a"), *y = cJSON_GetObjectItem(it, "b"),
              *d = cJSON_GetObjectItem(it, "delta");
        char sa[32] = "-", sb[32] = "-", sd[32] = "-";
        if (cJSON_IsNumber(x)) snprintf(sa, sizeof sa, "%.5g", x->valuedouble);
        if (cJSON_IsNumber(y)) snprintf(sb, sizeof sb, "%.5g", y->valuedouble);
        if (cJSON_IsNumber(d)) snprintf(sd, sizeof sd, "%+.5g", d->valuedouble);
        printf("  %-22s %12s %12s %13s\n", cJSON_GetObjectItem(it, "name")->valuestring, sa, sb,
               sd);
    }
    int same = 0;
    for (int i = 0; i < nt; i++) same += t[i].diff == 0;
    printf("\ntensors (%s): %d compared, %d identical; relative L2 change ||b - a|| / ||a||, "
           "largest first:\n",
           group, nt, same);
    for (int i = 0; i < nt && (top < 0 || i < top); i++) {
        if (t[i].diff == 0) break;
        char shape[64];
        size_t k = (size_t)snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t[i].t->ndim; d++)
            k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%lld", d ? "," : "",
                                  (long long)t[i].t->shape[d]);
        snprintf(shape + k, sizeof shape - k, "]");
        printf("  %-58s %-16s %.6g\n", t[i].name, shape, t[i].rel);
    }
    if (top >= 0 && nt - same > top) printf("  ... %d more (--all)\n", nt - same - top);
    print_list("only in a", cJSON_GetObjectItemCaseSensitive(j, "only_in_a"));
    print_list("only in b", cJSON_GetObjectItemCaseSensitive(j, "only_in_b"));
    print_list("shape differs", cJSON_GetObjectItemCaseSensitive(j, "shape_differs"));
}

int ckpt_cmd_diff(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&diff_spec, argc, argv, &a);
    if (rc || a.help) return rc ? rc : cli_help(&diff_spec);
    ckpt_ref ra, rb;
    const char *group = kv_get(&a.kv, "group"), *tops = kv_get(&a.kv, "top");
    long top = 20;
    if (!group) group = "ema";
    if (strcmp(group, "ema") && strcmp(group, "model") && strcmp(group, "optimizer") &&
        strcmp(group, "all"))
        rc = cli_usage_error(&diff_spec, "group=%s: expected ema, model, optimizer or all", group);
    else if (tops && (!parse_long(tops, &top) || top < 0))
        rc = cli_usage_error(&diff_spec, "top=%s: expected a whole number >= 0", tops);
    else if (a.npos == 3) {
        cli_args x = a;
        x.pos[1] = a.pos[2];
        rc = ckpt_cli_resolve(&diff_spec, &a, 0, true, "last", &ra);
        if (rc == 0) rc = ckpt_cli_resolve(&diff_spec, &x, 0, true, "last", &rb);
    } else {
        rc = ckpt_cli_resolve(&diff_spec, &a, 0, false, "last", &ra);
        if (rc == 0) rc = ckpt_cli_resolve(&diff_spec, &a, 1, false, "last", &rb);
    }
    if (cli_flag(&a, "all")) top = -1;
    ckpt_file *fa = rc ? NULL : ckpt_cli_open(ra.path);
    ckpt_file *fb = fa ? ckpt_cli_open(rb.path) : NULL;
    if (!rc && !fb) rc = 1;
    if (rc) {
        ckpt_close(fa);
        cli_free(&a);
        return rc;
    }
    const ckpt_meta *ma = ckpt_file_meta(fa), *mb = ckpt_file_meta(fb);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "a", ra.label);
    cJSON_AddStringToObject(j, "b", rb.label);
    cJSON_AddItemToObject(j, "args", args_diff(ma, mb));
    cJSON_AddItemToObject(j, "dataset", same_or_not(ma->dataset_sha256, mb->dataset_sha256));
    cJSON_AddItemToObject(j, "model_yaml", same_or_not(ma->model_yaml, mb->model_yaml));
    cJSON_AddItemToObject(j, "code_version", same_or_not(ma->code_version, mb->code_version));
    cJSON_AddItemToObject(j, "metrics", metrics_diff(ma, mb));
    cJSON *only_a = cJSON_AddArrayToObject(j, "only_in_a");
    cJSON *only_b = cJSON_AddArrayToObject(j, "only_in_b");
    cJSON *reshaped = cJSON_AddArrayToObject(j, "shape_differs");
    tdiff *t = NULL;
    int nt = 0;
    char err[1200];
    if (tensor_diffs(fa, fb, group, &t, &nt, only_a, only_b, reshaped, err, sizeof err) != 0) {
        log_error("%s", err);
        rc = 1;
    } else if (cli_flag(&a, "json")) {
        cJSON *arr = cJSON_AddArrayToObject(j, "tensors");
        for (int i = 0; i < nt && (top < 0 || i < top); i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", t[i].name);
            cJSON_AddNumberToObject(e, "rel_l2", t[i].rel);
            cJSON_AddNumberToObject(e, "l2_diff", t[i].diff);
            cJSON_AddNumberToObject(e, "l2_a", t[i].norm_a);
            cJSON_AddItemToArray(arr, e);
        }
        cJSON_AddNumberToObject(j, "tensors_compared", nt);
        cli_print_json(j);
        j = NULL;
    } else {
        print_text(&ra, &rb, ma, mb, j, t, nt, (int)top, group);
    }
    cJSON_Delete(j);
    free(t);
    ckpt_close(fa);
    ckpt_close(fb);
    cli_free(&a);
    return rc;
}
