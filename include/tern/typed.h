/* tern/typed.h — typed layouts: objects whose pointer words are known, so
 * that the collector scans only those words (see docs/finalize.md).
 *
 *     uint64_t bm[1] = { 0 };
 *     bm[0] |= 1ull << (offsetof(struct s, next) / sizeof(void *));
 *     tern_descr d = tern_make_descriptor(bm, sizeof(struct s) / sizeof(void *));
 *     struct s *p = tern_malloc_typed(sizeof *p, d);
 *
 * Bit i of the bitmap (bitmap[i / 64] >> (i % 64) & 1) set means word i
 * (bytes 8i to 8i+7) may hold a pointer; words past nwords hold none.  A
 * value in a word whose bit is clear keeps nothing alive.  Descriptors are
 * never freed; the same bitmap gives the same descriptor.  Objects larger
 * than 32 KiB are allocated as ordinary scanned objects (every word is
 * scanned), and tern_realloc of a typed object returns an ordinary scanned
 * object.
 */
#ifndef TERN_TYPED_H
#define TERN_TYPED_H

#include <tern.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tern_descr *tern_descr;

/* A descriptor for objects of nwords words (1 .. 4096); NULL with errno
 * EINVAL (bad argument) or ENOMEM. */
tern_descr tern_make_descriptor(const uint64_t *bitmap, size_t nwords);

/* A zeroed object of n bytes laid out as d says; NULL with errno EINVAL
 * (d is NULL) or ENOMEM. */
void *tern_malloc_typed(size_t n, tern_descr d);

#ifdef __cplusplus
}
#endif
#endif /* TERN_TYPED_H */
