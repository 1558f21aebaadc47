// Internal to the CUDA backend: each op family (kernels/cuda/<family>.cu) fills its entries of
// the function table, and releases what it kept in the context.
#pragma once
#include "kernels/cuda/cuda_ctx.cuh"

void cuda_ops_fill(backend_i *f);   // every family below
void cuda_ops_release(cuda_ctx *c); // what the families cached (conv plans, optimizer tables)
