/* Shared by the libFuzzer targets (tests/fuzz/fuzz_*.c, built by `make fuzz`): a private scratch
 * folder (tmpfs when there is one) and input-to-file helpers. A target aborts (__builtin_trap)
 * when a property it checks is broken, so libFuzzer reports it like a crash. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* A folder made once per process (removed at exit), e.g. /dev/shm/yolo-fuzz-XXXXXX. */
const char *fuzz_scratch(void);
/* scratch/name, into a static buffer (one at a time). */
const char *fuzz_path(const char *name);
/* Writes data to scratch/name; returns the path. Aborts on failure (not the input's fault). */
const char *fuzz_write(const char *name, const uint8_t *data, size_t size);
/* A NUL-terminated malloc'd copy. */
char *fuzz_text(const uint8_t *data, size_t size);
/* Error messages are one line: a broken rule is a finding. */
void fuzz_check_one_line(const char *err);
/* Quiet logs (warnings/info per input would drown the fuzzer's output). */
void fuzz_init(void);
