/* fuzz_api.c — libFuzzer target: sequences of core API calls (allocate
 * sizes, store and drop pointers, free, realloc, collect, add and remove
 * roots, bad frees) checked against a shadow model.
 *
 * Each input is a program: a byte picks the operation, the next bytes its
 * operands.  The model keeps, per slot, the object's size, fill seed and
 * the object its first word points to (if any), with the address hidden
 * (XOR) so the model itself keeps nothing alive.  Objects are reachable
 * from `slots` (static data, a root), from other objects' first words, and
 * from `rbuf` (glibc memory, a root only while added with tern_add_roots).
 * After collections, every object the model says is reachable must be
 * live, big enough and hold its pattern and link.  Any mismatch aborts
 * (a crash for libFuzzer). */
#include "../common.h"

#include <errno.h>

#define NS 16
#define NR 8

struct mobj {
    uintptr_t hid;   /* hidden address, 0 = none                      */
    size_t n;        /* bytes asked for                               */
    uint32_t seed;
    int noscan;      /* tern_malloc_atomic: no link word              */
    int link;        /* slot whose object the first word points to, -1 */
};

static void *slots[NS];       /* roots */
static void **rbuf;           /* glibc memory: a root only when added */
static int rbuf_added, rbuf_slot[NR];
static struct mobj m[NS];

#define FAIL(...) (fprintf(stderr, "fuzz_api: " __VA_ARGS__), fputc('\n', stderr), abort())

static void check_obj(int i)
{
    void *p = unhide(m[i].hid);
    if (tern_base(p) != p)
        FAIL("slot %d: object %p (%zu bytes) not live (tern_base %p)", i, p, m[i].n, tern_base(p));
    if (tern_size(p) < m[i].n)
        FAIL("slot %d: tern_size %zu < %zu", i, tern_size(p), m[i].n);
    size_t off = m[i].noscan ? 0 : 8;
    if (m[i].n > off) {
        size_t bad = check_fill((char *)p + off, m[i].n - off, m[i].seed);
        if (bad != (size_t)-1)
            FAIL("slot %d: object %p byte %zu: expected %#x, found %#x", i, p, bad + off,
                 pat_byte(m[i].seed, bad), ((unsigned char *)p)[bad + off]);
    }
    if (!m[i].noscan && m[i].n >= 8) {
        void *want = m[i].link >= 0 ? unhide(m[m[i].link].hid) : NULL;
        if (*(void **)p != want)
            FAIL("slot %d: link word %p, expected %p", i, *(void **)p, want);
    }
}

/* Forget what nothing reachable refers to; check the rest. */
static void check_all(void)
{
    int reach[NS] = { 0 };
    for (int i = 0; i < NS; i++)
        if (m[i].hid && slots[i])
            reach[i] = 1;
    if (rbuf_added)
        for (int k = 0; k < NR; k++)
            if (rbuf_slot[k] >= 0 && m[rbuf_slot[k]].hid)
                reach[rbuf_slot[k]] = 1;
    for (int round = 0; round < NS; round++)
        for (int i = 0; i < NS; i++)
            if (reach[i] && m[i].link >= 0)
                reach[m[i].link] = 1;
    for (int i = 0; i < NS; i++) {
        if (!m[i].hid)
            continue;
        if (!reach[i]) {
            m[i].hid = 0; /* may be collected: no longer ours */
            continue;
        }
        check_obj(i);
    }
}

/* Drop every link to slot i's object (it is being freed or moved). */
static void unlink_to(int i, void *to)
{
    for (int j = 0; j < NS; j++)
        if (m[j].hid && m[j].link == i) {
            TERN_STORE((void **)unhide(m[j].hid), to);
            if (!to)
                m[j].link = -1;
        }
    for (int k = 0; k < NR; k++)
        if (rbuf_slot[k] == i) {
            rbuf[k] = to;
            if (!to)
                rbuf_slot[k] = -1;
        }
}

static void place(int i, void *p, size_t n, int noscan, uint32_t seed)
{
    m[i] = (struct mobj){ hide(p), n, seed, noscan, -1 };
    if (n > (noscan ? 0 : 8))
        fill((char *)p + (noscan ? 0 : 8), n - (noscan ? 0 : 8), seed);
    slots[i] = p;
}

static size_t pick_size(uint8_t a, uint8_t b)
{
    static const size_t big[] = { 0, 1, 8, 16, 32768, 32769, 65536, 200000, 4 << 20, (4 << 20) + 1, 9 << 20 };
    if (a & 0x80)
        return big[b % (sizeof big / sizeof *big)];
    return ((size_t)(a & 0x7f) << 8 | b) % 40000;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t len);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t len)
{
    if (!rbuf) {
        rbuf = calloc(NR, sizeof *rbuf);
        for (int k = 0; k < NR; k++)
            rbuf_slot[k] = -1;
    }
    size_t pos = 0;
#define NEXT() (pos < len ? d[pos++] : 0)
    while (pos < len) {
        uint8_t opc = NEXT() % 12, a = NEXT(), b = NEXT(), c = NEXT();
        int i = a % NS, j = b % NS;
        switch (opc) {
        case 0: case 1: { /* allocate (1: pointer-free) */
            size_t n = pick_size(b, c);
            errno = 0;
            void *p = opc ? tern_malloc_atomic(n) : tern_malloc(n);
            if (!p) {
                if (errno != ENOMEM)
                    FAIL("tern_malloc(%zu) NULL without ENOMEM", n);
                break;
            }
            if (m[i].hid)
                unlink_to(i, NULL);
            place(i, p, n, opc, (uint32_t)(a * 131 + c));
            break;
        }
        case 2: /* drop */
            slots[i] = NULL;
            break;
        case 3: /* store a pointer: object i's link word = object j */
            if (m[i].hid && slots[i] && !m[i].noscan && m[i].n >= 8 && m[j].hid && slots[j]) {
                TERN_STORE((void **)slots[i], slots[j]);
                m[i].link = j;
            }
            break;
        case 4: /* free */
            if (m[i].hid && slots[i]) {
                unlink_to(i, NULL);
                tern_free(slots[i]);
                if (tern_base(slots[i]))
                    FAIL("object %p still live after tern_free", slots[i]);
                if (c & 1)
                    tern_free(slots[i]); /* double free: reported, ignored */
                slots[i] = NULL;
                m[i].hid = 0;
            }
            break;
        case 5: /* realloc */
            if (m[i].hid && slots[i]) {
                size_t n = pick_size(b, c);
                char *old = slots[i];
                check_obj(i);
                errno = 0;
                char *q = tern_realloc(old, n);
                if (n == 0) {
                    unlink_to(i, NULL);
                    slots[i] = NULL;
                    m[i].hid = 0;
                    break;
                }
                if (!q) {
                    if (errno != ENOMEM)
                        FAIL("tern_realloc(%zu) NULL without ENOMEM", n);
                    break;
                }
                size_t keep = n < m[i].n ? n : m[i].n, off = m[i].noscan ? 0 : 8;
                if (keep > off && check_fill(q + off, keep - off, m[i].seed) != (size_t)-1)
                    FAIL("tern_realloc(%p, %zu) lost the contents", (void *)old, n);
                if (q != old)
                    unlink_to(i, q);
                int link = m[i].link;
                place(i, q, n, m[i].noscan, m[i].seed + 1);
                m[i].link = n >= 8 && !m[i].noscan ? link : -1;
                if (m[i].link < 0 && !m[i].noscan && n >= 8)
                    *(void **)q = NULL;
            }
            break;
        case 6: /* collect, then check everything */
            if ((a & 7) == 0) {
                tern_collect();
                check_all();
            }
            break;
        case 7: /* add or remove the root buffer */
            if (a & 1) {
                int rc = tern_add_roots(rbuf, rbuf + NR);
                if (rc != TERN_OK)
                    FAIL("tern_add_roots: %d", rc);
                if (rbuf_added)
                    tern_remove_roots(rbuf, rbuf + NR); /* added twice: keep one */
                rbuf_added = 1;
            } else {
                int rc = tern_remove_roots(rbuf, rbuf + NR);
                if (rc != (rbuf_added ? TERN_OK : TERN_ENOENT))
                    FAIL("tern_remove_roots: %d (added %d)", rc, rbuf_added);
                rbuf_added = 0;
                check_all(); /* what only rbuf held is no longer ours */
            }
            break;
        case 8: /* keep object i in the root buffer */
            if (m[i].hid && slots[i]) {
                rbuf[b % NR] = slots[i];
                rbuf_slot[b % NR] = i;
            }
            break;
        case 9: /* bad frees and queries: interior, foreign */
            if (m[i].hid && slots[i] && m[i].n > 1) {
                tern_free((char *)slots[i] + 1 + c % (m[i].n - 1));
                if (tern_base((char *)slots[i] + m[i].n - 1) != slots[i])
                    FAIL("interior free freed the object");
            } else {
                int local;
                tern_free(&local);
                if (tern_realloc(&local, 10))
                    FAIL("tern_realloc of a stack address succeeded");
            }
            break;
        case 10: /* calloc with any operands */
            {
                size_t cnt = pick_size(a, b), sz = (size_t)c << (c & 7);
                size_t n;
                if (!__builtin_mul_overflow(cnt, sz, &n) && n > (64u << 20))
                    break; /* would succeed (lazily mapped) and be slow to check */
                errno = 0;
                void *p = tern_calloc(cnt, sz);
                if (__builtin_mul_overflow(cnt, sz, &n)) {
                    if (p || errno != ENOMEM)
                        FAIL("tern_calloc(%zu, %zu) overflow not refused", cnt, sz);
                } else if (p && !all_zero(p, n)) {
                    FAIL("tern_calloc(%zu, %zu) not zeroed", cnt, sz);
                }
            }
            break;
        default: /* check now, without collecting */
            check_all();
            break;
        }
    }
    check_all();
    /* reset for the next input */
    tern_remove_roots(rbuf, rbuf + NR);
    rbuf_added = 0;
    for (int k = 0; k < NR; k++)
        rbuf[k] = NULL, rbuf_slot[k] = -1;
    for (int i = 0; i < NS; i++)
        slots[i] = NULL, m[i].hid = 0;
    return 0;
}
