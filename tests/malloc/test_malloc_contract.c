/* test_malloc_contract.c — the C/POSIX/glibc malloc contract of
 * libtern-malloc.  This program is linked with libtern-malloc, so every
 * allocation in it (Criterion's own included) is Tern's. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tern.h"

TestSuite(malloc_contract, .timeout = 60);

void *__libc_malloc(size_t);
void __libc_free(void *);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);

/* Keep the compiler from folding malloc/free pairs away. */
static void *volatile sink;
static void *(*volatile p_malloc)(size_t) = malloc;
static void *(*volatile p_calloc)(size_t, size_t) = calloc;
static void *(*volatile p_realloc)(void *, size_t) = realloc;
static void *(*volatile p_aligned_alloc)(size_t, size_t) = aligned_alloc;

Test(malloc_contract, malloc_is_terns) {
    char *p = malloc(100);
    cr_assert_not_null(p);
    cr_assert(tern_size(p) >= 100, "malloc'd memory is a Tern object");
    cr_assert_geq(malloc_usable_size(p), 100);
    memset(p, 0xab, malloc_usable_size(p));
    free(p);
}

Test(malloc_contract, malloc_zero_unique) {
    void *a = p_malloc(0), *b = p_malloc(0);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_neq(a, b);
    free(a);
    free(b);
}

Test(malloc_contract, malloc_huge_fails) {
    errno = 0;
    cr_assert_null(p_malloc(SIZE_MAX - 4096));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(p_malloc(SIZE_MAX / 2));
    cr_assert_eq(errno, ENOMEM);
}

Test(malloc_contract, sizes_and_alignment) {
    for (size_t n = 0; n < 200000; n = n * 3 / 2 + 1) {
        unsigned char *p = p_malloc(n);
        cr_assert_not_null(p, "malloc(%zu)", n);
        cr_assert_eq((uintptr_t)p % 16, 0, "malloc(%zu) 16-aligned", n);
        cr_assert_geq(malloc_usable_size(p), n);
        memset(p, (int)n, n);
        for (size_t i = 0; i < n; i += 97) cr_assert_eq(p[i], (unsigned char)n);
        free(p);
    }
}

Test(malloc_contract, calloc_zero_and_overflow) {
    for (int round = 0; round < 50; round++) {
        unsigned char *d = p_malloc(1000);
        memset(d, 0xff, 1000);
        free(d);
        unsigned char *p = p_calloc(10, 100);
        cr_assert_not_null(p);
        for (int i = 0; i < 1000; i++) cr_assert_eq(p[i], 0);
        free(p);
    }
    errno = 0;
    cr_assert_null(p_calloc(SIZE_MAX / 2, 3));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(p_calloc((size_t)1 << 33, (size_t)1 << 33));
    cr_assert_eq(errno, ENOMEM);
    void *z = p_calloc(0, 10);
    cr_assert_not_null(z);
    free(z);
}

Test(malloc_contract, realloc_semantics) {
    char *p = p_realloc(NULL, 10); /* like malloc */
    cr_assert_not_null(p);
    strcpy(p, "123456789");
    for (size_t n = 16; n < (1u << 22); n *= 3) {
        p = p_realloc(p, n);
        cr_assert_not_null(p);
        cr_assert_str_eq(p, "123456789");
        memset(p + 10, 'x', n - 10);
    }
    p = p_realloc(p, 5);
    cr_assert_not_null(p);
    cr_assert_eq(memcmp(p, "12345", 5), 0);
    errno = 0;
    cr_assert_null(p_realloc(p, SIZE_MAX - 100)); /* too big: NULL, p untouched */
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(memcmp(p, "12345", 5), 0);
    cr_assert_null(p_realloc(p, 0), "realloc(p, 0) frees and returns NULL, as glibc");
    char *q = reallocarray(NULL, 10, 10);
    cr_assert_not_null(q);
    errno = 0;
    cr_assert_null(reallocarray(q, SIZE_MAX / 2, 4));
    cr_assert_eq(errno, ENOMEM);
    q = reallocarray(q, 20, 10);
    cr_assert_not_null(q);
    free(q);
}

Test(malloc_contract, posix_memalign_contract) {
    void *p = (void *)0x1234;
    cr_assert_eq(posix_memalign(&p, 3, 16), EINVAL);
    cr_assert_eq(p, (void *)0x1234, "*memptr untouched on error");
    cr_assert_eq(posix_memalign(&p, 4, 16), EINVAL, "not a multiple of sizeof(void *)");
    cr_assert_eq(posix_memalign(&p, 0, 16), EINVAL);
    cr_assert_eq(posix_memalign(&p, 24, 16), EINVAL);
    cr_assert_eq(p, (void *)0x1234);
    cr_assert_eq(posix_memalign(&p, 64, SIZE_MAX - 10), ENOMEM);
    cr_assert_eq(p, (void *)0x1234);
    for (size_t a = sizeof(void *); a <= ((size_t)1 << 20); a *= 2)
        for (size_t n = 0; n <= 3 * a + 100; n = n ? n * 5 + 7 : 1) {
            void *q = NULL;
            cr_assert_eq(posix_memalign(&q, a, n), 0, "posix_memalign(%zu, %zu)", a, n);
            cr_assert_eq((uintptr_t)q % a, 0, "aligned to %zu", a);
            cr_assert_geq(malloc_usable_size(q), n);
            memset(q, 0x5a, n);
            if (n % 2) q = p_realloc(q, n + 100); /* realloc of aligned memory */
            cr_assert_not_null(q);
            free(q); /* interior pointer for big alignments: must not be reported */
        }
}

Test(malloc_contract, aligned_alloc_memalign_valloc) {
    for (size_t a = 1; a <= ((size_t)1 << 20); a *= 2) {
        void *p = p_aligned_alloc(a, 1); /* size need not be a multiple */
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % a, 0);
        free(p);
        p = memalign(a, 3 * a + 1);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % a, 0);
        cr_assert_geq(malloc_usable_size(p), 3 * a + 1);
        free(p);
    }
    errno = 0;
    cr_assert_null(p_aligned_alloc(3, 10));
    cr_assert_eq(errno, EINVAL);
    void *m = memalign(48, 10); /* glibc rounds up to 64 */
    cr_assert_not_null(m);
    cr_assert_eq((uintptr_t)m % 64, 0);
    free(m);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    void *v = valloc(10);
    cr_assert_eq((uintptr_t)v % pg, 0);
    free(v);
    void *pv = pvalloc(10);
    cr_assert_eq((uintptr_t)pv % pg, 0);
    cr_assert_geq(malloc_usable_size(pv), pg);
    free(pv);
    pv = pvalloc(0);
    cr_assert_not_null(pv);
    free(pv);
}

Test(malloc_contract, usable_size_edge) {
    cr_assert_eq(malloc_usable_size(NULL), 0);
    int local;
    cr_assert_eq(malloc_usable_size(&local), 0, "foreign pointer");
    void *p = memalign(1 << 16, 100);
    cr_assert_geq(malloc_usable_size(p), 100);
    free(p);
}

Test(malloc_contract, libc_names) {
    void *p = __libc_malloc(10);
    cr_assert(tern_size(p) >= 10);
    p = __libc_realloc(p, 1000);
    cr_assert(tern_size(p) >= 1000);
    __libc_free(p);
    char *c = __libc_calloc(5, 5);
    for (int i = 0; i < 25; i++) cr_assert_eq(c[i], 0);
    __libc_free(c);
    void *m = __libc_memalign(4096, 10);
    cr_assert_eq((uintptr_t)m % 4096, 0);
    __libc_free(m);
}

Test(malloc_contract, free_reuses_memory) {
    /* honored free: a loop of malloc/free of the same size stays small */
    struct tern_stats s0, s1;
    tern_get_stats(&s0);
    for (int i = 0; i < 200000; i++) {
        sink = p_malloc(256);
        free(sink);
    }
    tern_get_stats(&s1);
    cr_assert_geq(s1.explicit_frees - s0.explicit_frees, 200000);
}

Test(malloc_contract, strdup_and_libc_users) {
    char *s = strdup("hello tern");
    cr_assert(tern_size(s) >= 11);
    free(s);
    char *line = NULL;
    size_t cap = 0;
    FILE *f = fmemopen("a line\nb\n", 9, "r");
    cr_assert_eq(getline(&line, &cap, f), 7);
    fclose(f);
    free(line);
}
