#include "dataio/heap_direct.h"

#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* On-disk sizes with 8-byte offsets and lengths (what HDF5 writes by default; others are
 * refused at open): an element is a 4-byte length, an 8-byte collection address and a 4-byte
 * object index; a collection starts with "GCOL", version 1, 3 reserved bytes and its 8-byte size;
 * an object with its 2-byte index, 2-byte reference count, 4 reserved bytes and 8-byte size, then
 * its data padded to a multiple of 8. All little-endian. */
enum { ELEM = 16, COLL_HDR = 16, OBJ_HDR = 16, WALK_WHOLE = 1 << 20 };

typedef struct heap_ref {
    uint64_t addr;
    uint32_t len, idx;
} heap_ref;

struct heap_direct {
    int fd;
    int64_t n;
    heap_ref *ref;
};

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t le16(const uint8_t *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Whether the file and dataset are laid out as this reader knows: 8-byte offsets and lengths,
 * chunked, no filters, a variable-length sequence of 1-byte elements. chunk gets the chunk size. */
static int known_layout(hid_t file, hid_t images, hsize_t *chunk) {
    size_t soff = 0, slen = 0;
    int ok = 0;
    hid_t fcpl = H5Fget_create_plist(file), dcpl = H5Dget_create_plist(images);
    hid_t t = H5Dget_type(images), base = t >= 0 ? H5Tget_super(t) : -1;
    hid_t sp = H5Dget_space(images);
    if (fcpl >= 0 && dcpl >= 0 && t >= 0 && base >= 0 && sp >= 0 &&
        H5Pget_sizes(fcpl, &soff, &slen) >= 0 && soff == 8 && slen == 8 &&
        H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_nfilters(dcpl) == 0 &&
        H5Pget_chunk(dcpl, 1, chunk) == 1 && *chunk >= 1 && H5Tget_class(t) == H5T_VLEN &&
        H5Tget_size(base) == 1 && H5Sget_simple_extent_ndims(sp) == 1)
        ok = 1;
    if (sp >= 0) H5Sclose(sp);
    if (base >= 0) H5Tclose(base);
    if (t >= 0) H5Tclose(t);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (fcpl >= 0) H5Pclose(fcpl);
    return ok;
}

/* The element table from the raw chunks (each chunk holds chunk elements; the last may be
 * partly used). */
static int read_table(hid_t images, int64_t n, hsize_t chunk, heap_ref *ref) {
    uint8_t *raw = xmalloc((size_t)chunk * ELEM);
    int rc = 0;
    for (int64_t c0 = 0; c0 < n && rc == 0; c0 += (int64_t)chunk) {
        hsize_t off = (hsize_t)c0, bytes = 0;
        uint32_t filters = 0;
        if (H5Dget_chunk_storage_size(images, &off, &bytes) < 0 || bytes != chunk * ELEM ||
            H5Dread_chunk(images, H5P_DEFAULT, &off, &filters, raw) < 0 || filters != 0) {
            rc = -1;
            break;
        }
        for (int64_t i = c0; i < n && i < c0 + (int64_t)chunk; i++) {
            const uint8_t *e = raw + (size_t)(i - c0) * ELEM;
            ref[i] = (heap_ref){.len = le32(e), .addr = le64(e + 4), .idx = le32(e + 12)};
        }
    }
    free(raw);
    return rc;
}

heap_direct *heap_direct_open(const char *path, hid_t file, hid_t images, int64_t n) {
    hsize_t chunk = 0;
    if (n < 1 || !known_layout(file, images, &chunk)) return NULL;
    heap_ref *ref = xmalloc(sizeof *ref * (size_t)n);
    int fd = -1;
    if (read_table(images, n, chunk, ref) != 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        free(ref);
        return NULL;
    }
    heap_direct *h = xcalloc(1, sizeof *h);
    h->fd = fd, h->n = n, h->ref = ref;
    return h;
}

void heap_direct_close(heap_direct *h) {
    if (!h) return;
    close(h->fd);
    free(h->ref);
    free(h);
}

static int read_at(int fd, void *buf, size_t n, uint64_t at) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (uint8_t *)buf + done, n - done, (off_t)(at + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        done += (size_t)r;
    }
    return 0;
}

/* File offset of object idx's data in the collection at addr, whose size is coll and whose first
 * object header is o: usually that first object (an image of over 4 KB has a collection of its
 * own), else found by walking the collection, read whole when it is small. -1 when the object is
 * not there with size len. */
static int64_t find_object(int fd, uint64_t addr, uint64_t coll, const uint8_t *o, uint32_t idx,
                           uint32_t len) {
    if (le16(o) == idx) return le64(o + 8) == len ? (int64_t)(addr + COLL_HDR + OBJ_HDR) : -1;
    if (coll > WALK_WHOLE) return -1; /* not worth walking here: HDF5 reads it */
    uint8_t *c = xmalloc((size_t)coll);
    int64_t at = -1;
    if (read_at(fd, c, (size_t)coll, addr) == 0)
        for (uint64_t p = COLL_HDR; p + OBJ_HDR <= coll;) {
            uint16_t k = le16(c + p);
            uint64_t size = le64(c + p + 8);
            if (k == 0 || size > coll) break; /* free space comes last */
            if (k == idx) {
                at = size == len && p + OBJ_HDR + size <= coll ? (int64_t)(addr + p + OBJ_HDR) : -1;
                break;
            }
            p += OBJ_HDR + ((size + 7) & ~(uint64_t)7);
        }
    free(c);
    return at;
}

int heap_direct_read(const heap_direct *h, int64_t i, uint8_t **bytes, size_t *nbytes) {
    *bytes = NULL, *nbytes = 0;
    if (i < 0 || i >= h->n) return -1;
    const heap_ref *r = &h->ref[i];
    if (r->len == 0) {
        *bytes = xmalloc(1);
        return 0;
    }
    uint8_t hdr[COLL_HDR + OBJ_HDR]; /* the collection's header and its first object's */
    if (read_at(h->fd, hdr, sizeof hdr, r->addr) != 0 || memcmp(hdr, "GCOL", 4) != 0 || hdr[4] != 1)
        return -1;
    uint64_t coll = le64(hdr + 8);
    if (coll < COLL_HDR + OBJ_HDR + (uint64_t)r->len) return -1;
    int64_t at = find_object(h->fd, r->addr, coll, hdr + COLL_HDR, r->idx, r->len);
    if (at < 0) return -1;
    uint8_t *b = xmalloc(r->len);
    if (read_at(h->fd, b, r->len, (uint64_t)at) != 0) {
        free(b);
        return -1;
    }
    *bytes = b, *nbytes = r->len;
    return 0;
}
