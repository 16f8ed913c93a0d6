/* common.h — helpers shared by the Tern test programs.
 *
 * Conservative-GC testing needs care: compilers leave dead pointers in
 * registers and stack slots.  To make an object unreachable a test creates
 * it inside a noinline function, keeps only a hidden (XORed) copy of its
 * address, and wipes the stack (clobber_stack) before collecting.  To show
 * that an object survived, a test checks its fill pattern after allocating
 * plenty of fresh garbage with a different pattern, so that reuse of the
 * object's memory would be visible.
 */
#ifndef TERN_TESTS_COMMON_H
#define TERN_TESTS_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <unistd.h>

#include "tern.h"

#define NOINLINE __attribute__((noinline, noclone))
#define UNUSED   __attribute__((unused))

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)

/* Criterion's cr_assert may only be used on the test's main thread (it
 * longjmps there).  Code that may run on another thread uses T_ASSERT: it
 * prints the failure and ends the test process with status 3, which
 * Criterion reports as a failed test. */
static UNUSED __attribute__((noreturn, format(printf, 4, 5)))
void thread_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%d: assertion failed: %s: ", file, line, cond);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
    _exit(3);
}

#define T_ASSERT(cond, ...)                                                   \
    do {                                                                      \
        if (!(cond))                                                          \
            thread_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);              \
    } while (0)

/* A hidden pointer: no word in memory or in a register equals the address.
 * The key sets the top bits, so a hidden value is never a canonical
 * user-space address and cannot keep anything alive by accident. */
#define HIDE_KEY ((uintptr_t)0xA5C3A5C3A5C3A5C3ull)

static inline uintptr_t hide(const void *p) { return (uintptr_t)p ^ HIDE_KEY; }
static inline void *unhide(uintptr_t h) { return (void *)(h ^ HIDE_KEY); }

/* Fill patterns.  Byte i of an object filled with seed s is pat_byte(s, i).
 * The bytes step by an odd amount, so the 64-bit words they form have their
 * top bytes set and never look like heap addresses. */
static inline uint8_t pat_byte(uint32_t seed, size_t i)
{
    return (uint8_t)(0x5bu + seed * 151u + (uint32_t)i * 7u + (uint32_t)(i >> 9) * 3u);
}

static UNUSED void fill(void *p, size_t n, uint32_t seed)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = pat_byte(seed, i);
}

/* Returns the offset of the first wrong byte, or (size_t)-1 when all match. */
static UNUSED size_t check_fill(const void *p, size_t n, uint32_t seed)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat_byte(seed, i))
            return i;
    return (size_t)-1;
}

static UNUSED int filled_ok(const void *p, size_t n, uint32_t seed)
{
    return check_fill(p, n, seed) == (size_t)-1;
}

static UNUSED int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i = 0;
    /* word at a time where possible */
    for (; i < n && ((uintptr_t)(b + i) & 7); i++)
        if (b[i])
            return 0;
    for (; i + 8 <= n; i += 8)
        if (*(const uint64_t *)(const void *)(b + i))
            return 0;
    for (; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* Wipe a large area of the stack below the caller, and the scratch
 * registers, so that no stale copy of a pointer survives there. */
static NOINLINE UNUSED void clobber_stack(void)
{
    volatile char buf[128 * 1024];
    memset((char *)buf, 0, sizeof buf);
    __asm__ volatile("" : : "r"(buf) : "memory");
#if defined(__x86_64__)
    __asm__ volatile("xor %%eax, %%eax\n\t"
                     "xor %%ecx, %%ecx\n\t"
                     "xor %%edx, %%edx\n\t"
                     "xor %%esi, %%esi\n\t"
                     "xor %%edi, %%edi\n\t"
                     "xor %%r8d, %%r8d\n\t"
                     "xor %%r9d, %%r9d\n\t"
                     "xor %%r10d, %%r10d\n\t"
                     "xor %%r11d, %%r11d\n\t"
                     "pxor %%xmm0, %%xmm0\n\t"
                     "pxor %%xmm1, %%xmm1\n\t"
                     "pxor %%xmm2, %%xmm2\n\t"
                     "pxor %%xmm3, %%xmm3\n\t"
                     ::: "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10",
                     "r11", "xmm0", "xmm1", "xmm2", "xmm3", "memory");
#endif
}

/* Allocate `bytes` of garbage in objects whose sizes cycle through a mix of
 * small and medium classes (and `size_hint`, if not 0, so the garbage
 * competes for the very size class of the objects a test watches).  Each
 * object is filled with 0xDE, so a watched object whose memory was reused
 * loses its pattern.  Returns the number of objects made. */
static NOINLINE UNUSED size_t churn(size_t bytes, size_t size_hint)
{
    static const size_t sizes[] = { 16, 24, 32, 48, 64, 96, 128, 200, 256, 512,
                                    1000, 2048, 4096, 8192, 20000 };
    size_t done = 0, count = 0, k = 0;
    while (done < bytes) {
        size_t n = (size_hint && (k & 1)) ? size_hint
                                          : sizes[(k >> 1) % (sizeof sizes / sizeof sizes[0])];
        k++;
        char *p = tern_malloc(n);
        if (!p)
            break;
        memset(p, 0xDE, n);
        __asm__ volatile("" : : "r"(p) : "memory");
        done += n;
        count++;
    }
    return count;
}

/* Collect `rounds` times, making `garbage` bytes of garbage before each. */
static NOINLINE UNUSED void churn_and_collect(int rounds, size_t garbage, size_t size_hint)
{
    for (int i = 0; i < rounds; i++) {
        churn(garbage, size_hint);
        clobber_stack();
        tern_collect();
    }
}

static UNUSED struct tern_stats get_stats(void)
{
    struct tern_stats st;
    memset(&st, 0, sizeof st);
    tern_get_stats(&st);
    return st;
}

/* Resident set size now, in bytes (from /proc/self/statm). */
static UNUSED size_t rss_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* A small deterministic PRNG (xorshift64*). */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

#endif /* TERN_TESTS_COMMON_H */
