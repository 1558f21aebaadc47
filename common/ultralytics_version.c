#include "common/ultralytics_version.h"

#include <string.h>

static const char *const names[UL_NVERSIONS] = {"8.4.33", "8.4.190"};

static const ul_behaviour table[UL_NVERSIONS] = {
    [UL_8_4_33] = {.stal_min = 8.0f},
    [UL_8_4_190] = {.stal_min = 16.0f,
                    .match_greedy = true,
                    .ap_drop_after_last_recall = true,
                    .warmup_leaves_last_epoch = true,
                    .accumulate_capped = true,
                    .close_mosaic_from = true,
                    .max_det_raise = true,
                    .musgd_head_groups = true,
                    .e2e_val_nms_default = true,
                    .l1_loss_name = true,
                    .fraction_count = true,
                    .bce_torch2 = true,
                    .warp_from_centre = true,
                    .finetune_head_rebuild = true,
                    .args_8_4_190 = true},
};

const char *ul_version_name(ul_version v) {
    return v >= 0 && v < UL_NVERSIONS ? names[v] : "?";
}

const char *ul_versions_supported(void) {
    return "8.4.33, 8.4.190";
}

int ul_version_parse(const char *name, ul_version *out) {
    for (int v = 0; v < UL_NVERSIONS; v++)
        if (!strcmp(name, names[v])) {
            *out = (ul_version)v;
            return 0;
        }
    return -1;
}

const ul_behaviour *ul_behaviour_of(ul_version v) {
    return &table[v >= 0 && v < UL_NVERSIONS ? v : UL_VERSION_DEFAULT];
}
