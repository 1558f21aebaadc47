#include "common/rng.h"

#include <math.h>

/* splitmix64's finaliser: a strong 64-bit mix, so (key, counter) -> output is a good hash. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

rng rng_keyed(uint64_t seed, uint64_t a, uint64_t b) {
    uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ull);
    k = mix64(k ^ (a + 0x632be59bd9b4e019ull));
    k = mix64(k ^ (b + 0x85157af5ull));
    return (rng){k, 0};
}

uint64_t rng_u64(rng *r) {
    return mix64(r->key + 0x9e3779b97f4a7c15ull * ++r->ctr);
}
uint32_t rng_u32(rng *r) {
    return (uint32_t)(rng_u64(r) >> 32);
}
double rng_uniform(rng *r) {
    return (double)(rng_u64(r) >> 11) * 0x1.0p-53;
}
double rng_range(rng *r, double lo, double hi) {
    return lo + (hi - lo) * rng_uniform(r);
}
int rng_int(rng *r, int n) {
    return n <= 0 ? 0 : (int)(rng_uniform(r) * n);
}

double rng_normal(rng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
