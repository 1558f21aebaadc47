/* Errors and logging: one line per message, to stderr, prefixed with the program name. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Set once in main(): "coordinator", "worker[3]", ... */
void log_set_program(const char *name);
const char *log_program(void);
/* Drops warnings and info lines (errors still print): for fuzzing, where parsers warn per input. */
void log_set_quiet(bool quiet);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* For failures that are bugs or resource exhaustion, not user errors: message with file:line,
 * abort. (Also declared for the CUDA sources, which are C++.) */
#ifdef __cplusplus
[[noreturn]]
#else
_Noreturn
#endif
void log_fatal_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define FATAL(...) log_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

/* Checked allocation: out of memory is fatal (names the size and call site). */
void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t n, size_t size, const char *file, int line);
void *xrealloc_at(void *p, size_t n, const char *file, int line);
char *xstrdup_at(const char *s, const char *file, int line);
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, s) xcalloc_at((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_at((p), (n), __FILE__, __LINE__)
#define xstrdup(s) xstrdup_at((s), __FILE__, __LINE__)

/* snprintf into an error buffer (err may be NULL); returns -1 so callers can `return errf(...)`. */
int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
