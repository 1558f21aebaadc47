/* TensorBoard event files, written without TensorFlow or a protobuf library.
 *
 * File: <dir>/events.out.tfevents.<unix seconds>.<host>.<pid> (".<n>" appended if that exists),
 * a sequence of TFRecords: uint64 length (little-endian), uint32 masked CRC-32C of those 8 bytes,
 * the data, uint32 masked CRC-32C of the data (common/crc32c.h). Each record's data is one
 * tensorflow.Event protobuf; the first has wall_time and file_version "brain.Event:2", the others
 * wall_time (1, double), step (2, int64) and summary (5): Summary.value (1, repeated) of
 * Summary.Value {tag (1, string), simple_value (2, float)}. That subset is all TensorBoard needs
 * for scalars (it maps simple_value to its scalars plugin itself). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define TFEVENTS_FILE_VERSION "brain.Event:2"

typedef struct tfevents tfevents;

/* Creates a new event file in dir (never overwrites one) and writes the file_version record.
 * NULL with one line in err naming the file. */
tfevents *tfevents_open(const char *dir, char *err, size_t errlen);
const char *tfevents_path(const tfevents *t);
/* One Event at (wall_time, step) holding n scalars (stored as float32, as TensorBoard keeps
 * them). Flushed to the file before returning, so a live TensorBoard sees it. 0 or -1 + err. */
int tfevents_write_scalars(tfevents *t, double wall_time, int64_t step, int n,
                           const char *const *tags, const double *values, char *err, size_t errlen);
/* Closes and frees (t may be NULL). 0, or -1 + err when the last bytes could not be written. */
int tfevents_close(tfevents *t, char *err, size_t errlen);

/* The framing of one record, exposed for tests: writes 8 + 4 + n + 4 bytes to out. */
void tfrecord_frame(const void *data, size_t n, uint8_t *out);
