/* The trainer's batch ring on a GPU backend: page-locked host buffers and device buffers, one
 * pair per slot. A batch from the loader is copied into a slot's page-locked buffer and uploaded
 * on the backend's copy stream (backend_to_device_async) while the compute stream still runs the
 * previous step; the forward of its step waits for that upload only (model_forward_u8_device).
 * Slots are reused round robin: a slot's upload waits until the step that last read it is done. */
#pragma once
#include "kernels/backend.h"

#include <stddef.h>
#include <stdint.h>

typedef struct batch_ring batch_ring;

/* slots >= 2 of `bytes` each (a worker's share of uint8 images). */
batch_ring *batch_ring_create(backend *be, int slots, size_t bytes);
void batch_ring_free(batch_ring *r);

/* Copies n <= bytes of images (host memory) into the next slot and starts its upload; returns
 * the slot. */
int batch_ring_put(batch_ring *r, const uint8_t *images, size_t n);
/* The slot's images in device memory; the compute stream's later work waits for the upload. */
const uint8_t *batch_ring_take(batch_ring *r, int slot);
/* The compute stream's work that reads the slot is enqueued: its next upload waits for it. */
void batch_ring_release(batch_ring *r, int slot);
