/* Counter-based random numbers. A stream is keyed by up to three integers (e.g. seed, epoch,
 * sample index) so that every consumer gets the same numbers whatever thread or rank draws them. */
#pragma once
#include <stdint.h>

typedef struct rng {
    uint64_t key, ctr;
} rng;

rng rng_keyed(uint64_t seed, uint64_t a, uint64_t b);
uint64_t rng_u64(rng *r);
uint32_t rng_u32(rng *r);
double rng_uniform(rng *r);                     /* [0, 1) */
double rng_range(rng *r, double lo, double hi); /* [lo, hi) */
int rng_int(rng *r, int n);                     /* [0, n) */
double rng_normal(rng *r);                      /* standard normal (Box-Muller) */
