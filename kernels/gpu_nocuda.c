#include "kernels/gpu.h"

#include <stdio.h>

int gpu_probe(char *msg, size_t msglen) {
    if (msg && msglen) snprintf(msg, msglen, "built without CUDA");
    return 0;
}

const char *gpu_build_info(void) {
    return "built without CUDA";
}
