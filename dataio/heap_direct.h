/* Image bytes of a dataset file read with pread, without HDF5, so loader threads read in parallel
 * instead of one at a time under the process-wide HDF5 lock. The file is unchanged: `images` is a
 * 1-D chunked dataset of variable-length uint8, whose elements are stored as (length, global heap
 * collection address, object index) and whose bytes are objects in global heap collections (HDF5
 * file format specification, "Global Heap", version 1). The element table is read once through
 * HDF5 (raw chunks); each read then checks the collection's signature and version and the
 * object's index and size before trusting it, and reports a mismatch so that the caller reads
 * through HDF5 instead. Anything this reader does not know (other address sizes, filters, a
 * non-chunked layout) gives no heap_direct, and the caller reads through HDF5 as before. */
#pragma once
#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

typedef struct heap_direct heap_direct;

/* The element table of dataset `images` (n elements) of `file`, opened from `path`. NULL when the
 * layout is not the one described above or anything fails (nothing to report: the caller reads
 * through HDF5). Calls HDF5: under the caller's HDF5 lock. */
heap_direct *heap_direct_open(const char *path, hid_t file, hid_t images, int64_t n);
void heap_direct_close(heap_direct *h);

/* Element i's bytes into a malloc'd buffer (*bytes, *nbytes). Thread-safe: pread on the reader's
 * own descriptor, no HDF5. 0, or -1 when the bytes are not where the table says or a read fails
 * (the caller then reads through HDF5, which names the problem). */
int heap_direct_read(const heap_direct *h, int64_t i, uint8_t **bytes, size_t *nbytes);
