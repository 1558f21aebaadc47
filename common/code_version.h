/* The code version this binary was built from: `git describe --always --dirty --tags` at build
 * time (the Makefile regenerates it when it changes), "unknown" outside a git checkout. Recorded
 * in every checkpoint's lineage. */
#pragma once

const char *code_version(void);
