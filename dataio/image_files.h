/* Image files as a source of samples: one file, or the JPEG and PNG files of a folder, for
 * commands that run a model on images that are not in a dataset file (predict, drift). Samples
 * carry no labels. */
#pragma once
#include "dataio/loader.h"

#include <stddef.h>

typedef struct image_files {
    int n;
    char **path; /* [n], sorted by name within the folder */
} image_files;

/* path: an image file (any name: the content decides), or a folder, whose *.jpg, *.jpeg and
 * *.png files (any case; not recursive) are taken in name order. 0, or -1 with one line in err
 * (no such path, an empty folder). */
int image_files_list(const char *path, image_files *out, char *err, size_t errlen);
void image_files_free(image_files *f);

/* A loader source over the files (the list is copied; labels: none). Reading a file that is not
 * JPEG or PNG fails naming it. */
sample_source image_files_source(const image_files *f, const char *name);

/* A file's whole content (malloc'd), 0 or -1 with err naming it. */
int image_files_read(const char *path, uint8_t **bytes, size_t *n, char *err, size_t errlen);
