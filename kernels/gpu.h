/* CUDA presence. Built with CUDA (gpu.cu) or without (gpu_nocuda.c); either way a binary runs on
 * a machine without a GPU: gpu_probe() then returns 0 and says why. */
#pragma once
#include <stddef.h>

/* Number of usable CUDA devices; 0 with a reason in msg (no GPU, no driver, built without CUDA). */
int gpu_probe(char *msg, size_t msglen);
/* "CUDA 13.0, cuDNN 9.19.0, NCCL 2.28.9" or "built without CUDA". */
const char *gpu_build_info(void);
