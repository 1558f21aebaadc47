/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord framing uses it. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* CRC of n bytes; crc32c("123456789") == 0xE3069283. */
uint32_t crc32c(const void *data, size_t n);
/* TFRecord's masked form: rotate right by 15, add 0xa282ead8 (so a CRC of data holding CRCs is
 * not trivially related to them). */
uint32_t crc32c_masked(const void *data, size_t n);
