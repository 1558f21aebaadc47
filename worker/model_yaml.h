/* Ultralytics model yaml (yolov8.yaml, yolo11.yaml, yolo26.yaml and their n/s/m/l/x scales),
 * parsed with libyaml and resolved the way Ultralytics' parse_model does: depth-scaled repeats,
 * width-scaled channels (make_divisible 8 after the max_channels clamp, except when c2 == nc),
 * n inserted for repeat modules, C3k2's c3k forced at scales m/l/x, the `legacy` Detect flag
 * (true until a C3k2 row), and SPPF's cv1 activation (SiLU for the short v8/11 row [c2, k], none
 * for the explicit yolo26 row [c2, k, n, shortcut]).
 *
 * File lookup: model=yolov8n.yaml without a '/' is looked up in models/ (then next to the binary,
 * ../models). If that exact file is missing, the "unified" file with the scale letter removed
 * (yolov8.yaml) is used; the letter comes from the file name as in Ultralytics'
 * guess_model_scale (yolo, optional e-, optional v, digits, one of nslmx); a `scale:` key in the
 * yaml (as Ultralytics writes it into a model's yaml dict) wins. Without either the first key of
 * `scales` is used. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    MOD_CONV,
    MOD_C2F,
    MOD_C3K2,
    MOD_SPPF,
    MOD_C2PSA,
    MOD_UPSAMPLE,
    MOD_CONCAT,
    MOD_DETECT,
} model_module;

#define MODEL_MAX_FROM 8
/* What the builder supports; a yaml beyond these is refused with a message naming the layer. */
#define MODEL_MAX_LAYERS 1024
#define MODEL_MAX_REPEATS 16     /* repeats after depth scaling (C2f, C3k2, C2PSA); SPPF n */
#define MODEL_MAX_KERNEL 15      /* Conv and SPPF kernel sizes */
#define MODEL_MAX_STRIDE 4       /* Conv stride */
#define MODEL_MAX_CHANNELS 16384 /* output channels after width scaling */
#define MODEL_MAX_NC 1000000     /* classes (the dataset format's limit too) */

typedef struct model_layer {
    int index;
    int nfrom;
    int from_yaml[MODEL_MAX_FROM]; /* as written (-1 = previous) */
    int from[MODEL_MAX_FROM];      /* absolute layer indices */
    int repeats;                   /* as written */
    int n;                         /* after depth scaling */
    model_module type;
    char module[24]; /* as written: "Conv", "nn.Upsample", ... */
    int c1, c2;      /* input channels (sum for Concat; first input otherwise), output channels */
    int k, s;        /* Conv kernel, stride; SPPF pool kernel */
    bool shortcut;   /* C2f, SPPF residual */
    bool c3k, attn;  /* C3k2 */
    double e;        /* C3k2, C2PSA hidden ratio */
    int n_pool;      /* SPPF */
    bool sppf_act;   /* SPPF cv1 with SiLU */
    int ch[3];       /* Detect input channels */
    char args_text[96]; /* resolved args as Ultralytics prints them */
    int line;           /* line in the yaml file (1-based) */
} model_layer;

typedef struct model_yaml {
    char path[512]; /* the file actually read */
    char name[64];  /* stem as asked for: "yolov8n" */
    char scale;     /* 'n', 's', ... (0 when the file has no scales) */
    double depth, width;
    int max_channels;
    int nc, reg_max;
    bool end2end, legacy;
    int cls_width; /* Detect's class-branch width (c3) when not the rule (fine-tuning), else 0 */
    int nlayers;
    model_layer *layers;
} model_yaml;

/* spec: "yolov8n.yaml", "models/yolo26.yaml", a path. nc > 0 overrides the file's nc.
 * 0, or -1 with a one-line message naming the file (and line / layer index) in err. */
int model_yaml_load(const char *spec, int nc, model_yaml *out, char *err, size_t errlen);
/* The same from the yaml's text; name: the file it came from ("yolov8n.yaml": messages, and the
 * scale letter unless the text has a `scale:` key). */
int model_yaml_load_text(const char *text, const char *name, int nc, model_yaml *out, char *err,
                         size_t errlen);
void model_yaml_free(model_yaml *y);
/* Detect's class-branch width by Ultralytics' rule: max(ch[0], min(nc, 100)). */
int model_yaml_cls_width_rule(const model_yaml *y);
const char *model_module_name(model_module m);
