/* Test helper: the pinned Python environments of scripts/pyenv.sh (PyPI), for tests that check our
 * files with the outside readers (tensorboard, h5py, ...). $YOLO_TEST_VENV points at a shared
 * prebuilt copy. Only the small "test" environment is installed by tests; the torch + Ultralytics
 * one is never installed by a test (tests/pyref.h finds it or skips). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* kind "test": the environment's python into python[n] (created from PyPI on first
 * use). false with the reason in reason[rn] when it cannot be had (PyPI unreachable): the caller
 * skips with that reason. */
bool test_pyenv_python(const char *kind, char *python, size_t n, char *reason, size_t rn);
