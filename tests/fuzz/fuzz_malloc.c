/* fuzz_malloc.c — libFuzzer target: the malloc-family contract of the
 * drop-in (gc/malloc.c, linked in): malloc, calloc, realloc, reallocarray,
 * posix_memalign, aligned_alloc, memalign, valloc, free and
 * malloc_usable_size in any order and with any operands, against a shadow
 * model of each block's size, alignment and contents.  libFuzzer's own
 * allocations go through the same allocator.  Any broken promise aborts. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS 32
static unsigned char *blk[NS]; /* static data: a root */
static size_t blen[NS];
static uint8_t bval[NS];

#define FAIL(...) (fprintf(stderr, "fuzz_malloc: " __VA_ARGS__), fputc('\n', stderr), abort())

static void *(*volatile f_malloc)(size_t) = malloc;
static void *(*volatile f_calloc)(size_t, size_t) = calloc;
static void *(*volatile f_realloc)(void *, size_t) = realloc;
static void *(*volatile f_reallocarray)(void *, size_t, size_t) = reallocarray;
static void *(*volatile f_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*volatile f_memalign)(size_t, size_t) = memalign;
static void (*volatile f_free)(void *) = free;

static void check(int i)
{
    if (!blk[i])
        return;
    if (malloc_usable_size(blk[i]) < blen[i])
        FAIL("block %d: usable %zu < %zu", i, malloc_usable_size(blk[i]), blen[i]);
    for (size_t k = 0; k < blen[i]; k += 1 + k / 8)
        if (blk[i][k] != bval[i])
            FAIL("block %d (%p, %zu bytes): byte %zu is %#x, expected %#x", i, (void *)blk[i], blen[i], k,
                 blk[i][k], bval[i]);
}

static void put(int i, void *p, size_t n, uint8_t v, int zeroed)
{
    if (zeroed)
        for (size_t k = 0; k < n; k += 1 + k / 8)
            if (((unsigned char *)p)[k])
                FAIL("calloc(%zu) byte %zu not zero", n, k);
    f_free(blk[i]);
    blk[i] = p;
    blen[i] = n;
    bval[i] = v;
    memset(p, v, n);
}

static size_t pick(uint8_t a, uint8_t b)
{
    static const size_t odd[] = { 0, 1, 15, 16, 17, 4095, 4096, 8192, 32768, 32769, 1 << 20, (4 << 20) + 3,
                                  SIZE_MAX, SIZE_MAX - 15, SIZE_MAX / 2, (size_t)1 << 62 };
    return (a & 0x80) ? odd[b % (sizeof odd / sizeof *odd)] : ((size_t)(a & 0x7f) << 8 | b) % 20000;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t len);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t len)
{
    size_t pos = 0;
#define NEXT() (pos < len ? d[pos++] : 0)
    while (pos < len) {
        uint8_t opc = NEXT() % 10, a = NEXT(), b = NEXT(), c = NEXT();
        int i = c % NS;
        size_t n = pick(a, b);
        int huge = n > ((size_t)1 << 46);
        errno = 0;
        void *p = NULL;
        switch (opc) {
        case 0: case 1:
            p = f_malloc(n);
            break;
        case 2: {
            size_t cnt = pick(b, a), tot;
            int ovf = __builtin_mul_overflow(cnt, n, &tot);
            /* Gigabytes that fit would only time page faults: the marker
             * reads every page of a scanned block, and a CI run must not
             * hit libFuzzer's per-input timeout on that. */
            if (!ovf && tot > ((size_t)1 << 30) && tot <= ((size_t)1 << 46))
                continue;
            p = f_calloc(cnt, n);
            if (ovf || tot > ((size_t)1 << 46)) {
                if (p || errno != ENOMEM)
                    FAIL("calloc(%zu, %zu) must fail with ENOMEM", cnt, n);
                continue;
            }
            if (p)
                put(i, p, tot < 100000 ? tot : 100000, c, 1);
            continue;
        }
        case 3: case 4: /* realloc / reallocarray */
            check(i);
            if (opc == 3) {
                p = f_realloc(blk[i], n);
            } else {
                size_t sz = (size_t)1 << (a & 7), tot;
                if (__builtin_mul_overflow(n, sz, &tot)) {
                    if (f_reallocarray(blk[i], n, sz) || errno != ENOMEM)
                        FAIL("reallocarray overflow not refused");
                    check(i);
                    continue;
                }
                p = f_reallocarray(blk[i], n, sz);
                n = tot;
                huge = n > ((size_t)1 << 46);
            }
            if (n == 0 && blk[i]) { /* freed */
                blk[i] = NULL;
                continue;
            }
            if (!p) {
                if (errno != ENOMEM || (!huge && n < (1u << 24)))
                    FAIL("realloc(%zu) failed (errno %d)", n, errno);
                check(i); /* the old block is untouched */
                continue;
            }
            {
                size_t had = blk[i] ? blen[i] : 0, keep = n < had ? n : had;
                for (size_t k = 0; k < keep; k += 1 + k / 8)
                    if (((unsigned char *)p)[k] != bval[i])
                        FAIL("realloc lost byte %zu", k);
            }
            blk[i] = NULL; /* moved or resized: p replaces it */
            put(i, p, n, c, 0);
            continue;
        case 5: { /* posix_memalign with any alignment */
            size_t al = (size_t)1 << (a % 64);
            if (b & 1)
                al += b; /* often not a power of two */
            void *q = (void *)1;
            int rc = posix_memalign(&q, al, n);
            int valid = al && !(al & (al - 1)) && al % sizeof(void *) == 0;
            if (!valid) {
                if (rc != EINVAL || q != (void *)1)
                    FAIL("posix_memalign(%zu) must be EINVAL", al);
                continue;
            }
            if (rc) {
                if (rc != ENOMEM || q != (void *)1)
                    FAIL("posix_memalign(%zu, %zu): rc %d", al, n, rc);
                continue;
            }
            if ((uintptr_t)q % al)
                FAIL("posix_memalign(%zu) gave %p", al, q);
            put(i, q, n < 100000 ? n : 100000, c, 0);
            continue;
        }
        case 6: { /* aligned_alloc / memalign */
            size_t al = (size_t)1 << (a % 24);
            p = (b & 1) ? f_aligned_alloc(al, n) : f_memalign(al, n);
            if (p && (uintptr_t)p % al)
                FAIL("aligned allocation (%zu) gave %p", al, p);
            break;
        }
        case 7:
            check(i);
            f_free(blk[i]);
            blk[i] = NULL;
            continue;
        case 8:
            p = valloc(n);
            if (p && (uintptr_t)p % 4096)
                FAIL("valloc gave %p", p);
            break;
        default:
            for (int k = 0; k < NS; k++)
                check(k);
            continue;
        }
        if (!p) {
            if (errno != ENOMEM || (!huge && n < (1u << 24)))
                FAIL("op %d size %zu failed (errno %d)", opc, n, errno);
            continue;
        }
        put(i, p, n < 100000 ? n : 100000, c, 0);
    }
    for (int k = 0; k < NS; k++) {
        check(k);
        f_free(blk[k]);
        blk[k] = NULL;
    }
    return 0;
}
