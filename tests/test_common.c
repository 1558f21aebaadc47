#include "common/atomic_file.h"
#include "common/kv.h"
#include "common/poll_wait.h"
#include "common/rng.h"
#include "common/sha256.h"
#include "common/timer.h"

#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

Test(common, kv_typed_getters_and_unknown_keys) {
    char *argv[] = {"epochs=5", "lr0=0.01", "cos_lr=True", "bogus=1", "epochs=7"};
    kv_args a;
    char err[256];
    cr_assert_eq(kv_parse(5, argv, &a, err, sizeof err), 0);
    long e;
    double lr;
    bool cos;
    cr_assert_eq(kv_get_long(&a, "epochs", 1, &e, err, sizeof err), 0);
    cr_assert_eq(e, 7, "a repeated key takes the last value");
    cr_assert_eq(kv_get_double(&a, "lr0", 0, &lr, err, sizeof err), 0);
    cr_assert_float_eq(lr, 0.01, 1e-12);
    cr_assert_eq(kv_get_bool(&a, "cos_lr", false, &cos, err, sizeof err), 0);
    cr_assert(cos);
    cr_assert_eq(kv_check_unused(&a, err, sizeof err), -1);
    cr_assert(strstr(err, "bogus"), "error names the key: %s", err);
    kv_set(&a, "epochs", "x");
    cr_assert_eq(kv_get_long(&a, "epochs", 1, &e, err, sizeof err), -1);
    cr_assert(strstr(err, "epochs=x"), "%s", err);
    kv_free(&a);
    char *bad[] = {"noequals"};
    cr_assert_eq(kv_parse(1, bad, &a, err, sizeof err), -1);
    cr_assert(strstr(err, "noequals"));
}

Test(common, rng_is_keyed_and_uniform) {
    rng a = rng_keyed(0, 3, 17), b = rng_keyed(0, 3, 17), c = rng_keyed(0, 3, 18);
    rng u = rng_keyed(1, 0, 0);
    int same = 0;
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        uint64_t x = rng_u64(&a);
        cr_assert_eq(x, rng_u64(&b));
        same += x == rng_u64(&c);
        sum += rng_uniform(&u);
    }
    cr_assert_eq(same, 0, "different keys give different streams");
    cr_assert(sum / 10000 > 0.48 && sum / 10000 < 0.52, "mean %f", sum / 10000);
}

Test(common, sha256_known_vector) {
    char hex[65];
    sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Test(common, atomic_write_replaces_whole_file) {
    char dir[256], path[400], err[256];
    test_temp_dir(dir, sizeof dir, "atomic");
    snprintf(path, sizeof path, "%s/f.txt", dir);
    cr_assert_eq(atomic_write_file(path, "old", 3, err, sizeof err), 0, "%s", err);
    cr_assert_eq(atomic_write_file(path, "newer", 5, err, sizeof err), 0, "%s", err);
    FILE *f = fopen(path, "rb");
    char buf[16] = {0};
    cr_assert(f);
    cr_assert_eq(fread(buf, 1, sizeof buf, f), 5);
    fclose(f);
    cr_assert_str_eq(buf, "newer");
    snprintf(path, sizeof path, "%s/missing/f.txt", dir);
    cr_assert_eq(atomic_write_file(path, "x", 1, err, sizeof err), -1);
    cr_assert(strstr(err, "missing"), "%s", err);
    snprintf(path, sizeof path, "%s/f.txt", dir);
    unlink(path);
    rmdir(dir);
}

#include "tests/oracle.h"

Test(common, oracle_files_readable) {
    const char *f = oracle_path("yolov8n-nc3-64.h5");
    cr_assert(f, "oracle file not found under the shared folder's data/oracle");
    size_t n = 0;
    float *img = oracle_read_f32(f, "/input/images_u8", &n, NULL, NULL);
    cr_assert(img);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += img[i];
    cr_assert_float_eq(s, 3458714.0, 0.5, "sum of images_u8 as the oracle README gives");
    free(img);
}

/* The probes of a wait for a message that arrives at `arrive` (from the wait's beginning), due at
 * `due`: how many, and how long after the arrival the last one sees it. */
static int probes_until(double arrive, double due, double *late) {
    double t = 0;
    int n = 1;
    while (t < arrive) t += poll_pause_s(t, due), n++;
    *late = t - arrive;
    return n;
}

Test(common, poll_pause_is_fine_where_the_message_is_due_and_bounded_elsewhere) {
    cr_assert_float_eq(poll_pause_s(0, 0), POLL_FINE_S, 1e-12, "due at once: probe finely");
    cr_assert_float_eq(poll_pause_s(0.070, 0.070), POLL_FINE_S, 1e-12);
    cr_assert_float_eq(poll_pause_s(0, 0.070), POLL_MAX_S, 1e-12, "far from due: 1 ms");
    cr_assert_float_eq(poll_pause_s(0.066, 0.070), 0.5e-3, 1e-12, "an eighth of the time left");
    cr_assert_float_eq(poll_pause_s(0.078, 0.070), 0.5e-3, 1e-12, "a sixteenth of the lateness");
    cr_assert_float_eq(poll_pause_s(5.0, 0.070), POLL_MAX_S, 1e-12, "late by seconds: 1 ms");
    cr_assert_float_eq(poll_pause_s(0, -3.0), POLL_MAX_S, 1e-12, "due before the wait began");
    for (double e = 0; e < 0.2; e += 1e-4)
        for (double d = -0.1; d < 0.2; d += 0.01) {
            double p = poll_pause_s(e, d);
            cr_assert(p >= POLL_FINE_S && p <= POLL_MAX_S, "pause %g at %g due %g", p, e, d);
        }
}

Test(common, poll_sees_a_message_within_an_eighth_of_its_distance_from_due) {
    double due = 0.070;
    for (double arrive = 0.0005; arrive < 0.2; arrive += 0.00037) {
        double late;
        probes_until(arrive, due, &late);
        double err = fabs(arrive - due);
        double bound = fmin(POLL_MAX_S, fmax(POLL_FINE_S, err / 8 + POLL_FINE_S));
        cr_assert(late <= bound + 1e-9, "arrival %.5f: seen %.6f s late, bound %.6f", arrive, late,
                  bound);
    }
    double late;
    probes_until(0.0702, due, &late);
    cr_assert(late <= POLL_FINE_S + 1e-9, "on time: seen within the fine pause (%g)", late);
}

Test(common, poll_wakes_at_most_twice_as_often_as_probing_every_millisecond) {
    for (double arrive = 0.060; arrive < 0.090; arrive += 0.001) {
        double late;
        int n = probes_until(arrive, 0.070, &late);
        cr_assert(n <= 2 * (int)(arrive / POLL_MAX_S + 1), "arrival %.3f: %d probes", arrive, n);
    }
}

Test(common, poll_expected_period_is_the_shorter_known_gap) {
    cr_assert_float_eq(poll_expected_period_s(0.070, 0.072), 0.070, 1e-12);
    cr_assert_float_eq(poll_expected_period_s(5.0, 0.070), 0.070, 1e-12,
                       "validation between epochs does not count");
    cr_assert_float_eq(poll_expected_period_s(0.070, 0), 0, 1e-12, "not known yet");
    cr_assert_float_eq(poll_expected_period_s(0, 0.070), 0, 1e-12);
}

Test(common, poll_sleep_sleeps_about_as_long_as_asked) {
    /* only a lower bound: a loaded machine may sleep longer, never shorter (no signal here) */
    double t0 = now_seconds();
    for (int i = 0; i < 20; i++) poll_sleep(POLL_FINE_S);
    cr_assert(now_seconds() - t0 >= 20 * POLL_FINE_S, "slept %g s", now_seconds() - t0);
    poll_sleep(0);
    poll_sleep(-1);
}
