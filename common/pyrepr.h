/* Python's repr() of a float, for lines that must read exactly as Ultralytics prints them
 * (f"{x}"): the shortest digits that read back to the same double, fixed notation for exponents
 * -4..15 (always with a fraction: "0.01", "1.0"), else "1e-05", "1.5e+16". */
#pragma once
#include <stddef.h>

const char *py_float_repr(double x, char *buf, size_t n);
