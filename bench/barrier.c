/* barrier.c — what the write barrier costs a program that writes pointers,
 * while no collection runs (the runner sets TERN_GC=off).
 *
 *   barrier MIB STORES REPS
 *   e.g.  barrier 64 4000000 3
 *
 * Builds MIB MiB of 64-byte nodes (8 pointer slots each, every slot
 * pointing at a random node) plus MIB/4 MiB of 512-byte pointer arrays
 * (64 slots each), then times three patterns, each once with plain C
 * stores and once through the barrier hooks (TERN_STORE for each pointer
 * store, tern_written after each memcpy):
 *
 *   swap  STORES stores: swap two random slots of two random nodes
 *         (cache-miss bound, like pointer-heavy code on a big heap)
 *   seq   16*STORES stores: rotate the 8 slots of every node in turn
 *         (store-throughput bound: the barrier's own instructions show)
 *   copy  16*STORES pointers: memcpy a random array's 64 pointers over
 *         another's
 *
 * REPS times, plain first in odd repetitions and barrier first in even
 * ones (so neither always runs on the other's warm or cold caches); each
 * figure is the fastest of the REPS (noise only ever adds time).  The barrier
 * kind is chosen by TERN_BARRIER as usual: plain stores are correct under
 * every kind only because no cycle marks here (under explicit a program
 * must use TERN_STORE); on other backends both variants are plain stores.
 * Prints ns per store for each, setup_ms (allocating and filling the
 * heap: first-touch cost under each kind), and a self-check: swaps and
 * rotations keep the multiset of node pointers, copies keep every array
 * slot pointing at a node.
 */
#include "backend.h"

#define NSLOT 8
#define ASLOT 64

struct node {
    void *s[NSLOT];
};
struct arr {
    void *s[ASLOT];
};

static struct node **nodes; /* roots: globals are scanned */
static struct arr **arrs;
static long nnode, narr;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

#define PLAIN_STORE(slot, v) (*(void **)(slot) = (void *)(v))
#define PLAIN_WRITTEN(p, n) ((void)(p), (void)(n))
#define BARRIER_STORE(slot, v) TERN_STORE(slot, v)
#define BARRIER_WRITTEN(p, n) tern_written(p, n)

#define PATTERNS(SUF, STORE, WRITTEN)                                        \
    __attribute__((noinline)) static void swap_##SUF(long stores)            \
    {                                                                        \
        uint64_t r = rng;                                                    \
        for (long k = 0; k < stores / 2; k++) {                              \
            uint64_t x = bk_rand(&r), y = bk_rand(&r);                       \
            struct node *a = nodes[(x >> 8) % (uint64_t)nnode];              \
            struct node *b = nodes[(y >> 8) % (uint64_t)nnode];              \
            unsigned i = (unsigned)x & (NSLOT - 1);                          \
            unsigned j = (unsigned)y & (NSLOT - 1);                          \
            void *va = a->s[i], *vb = b->s[j];                               \
            STORE(&a->s[i], vb);                                             \
            STORE(&b->s[j], va);                                             \
        }                                                                    \
        rng = r;                                                             \
    }                                                                        \
    __attribute__((noinline)) static void seq_##SUF(long stores)             \
    {                                                                        \
        static long at;                                                      \
        for (long k = 0; k < stores / NSLOT; k++) {                          \
            struct node *a = nodes[at];                                      \
            if (++at == nnode)                                               \
                at = 0;                                                      \
            void *t = a->s[0];                                               \
            for (int i = 0; i < NSLOT - 1; i++)                              \
                STORE(&a->s[i], a->s[i + 1]);                                \
            STORE(&a->s[NSLOT - 1], t);                                      \
        }                                                                    \
    }                                                                        \
    __attribute__((noinline)) static void copy_##SUF(long ptrs)              \
    {                                                                        \
        uint64_t r = rng;                                                    \
        for (long k = 0; k < ptrs / ASLOT; k++) {                            \
            uint64_t x = bk_rand(&r);                                        \
            long si = (long)((x >> 8) % (uint64_t)narr);                     \
            long di = (long)((x >> 36) % (uint64_t)narr);                    \
            if (di == si)                                                    \
                di = (di + 1) % narr;                                        \
            memcpy(arrs[di]->s, arrs[si]->s, sizeof arrs[di]->s);            \
            WRITTEN(arrs[di]->s, sizeof arrs[di]->s);                        \
        }                                                                    \
        rng = r;                                                             \
    }

PATTERNS(plain, PLAIN_STORE, PLAIN_WRITTEN)
PATTERNS(barrier, BARRIER_STORE, BARRIER_WRITTEN)

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t node_sum(void)
{
    uint64_t s = 0;
    for (long i = 0; i < nnode; i++)
        for (int k = 0; k < NSLOT; k++)
            s += (uint64_t)(uintptr_t)nodes[i]->s[k];
    return s;
}

int main(int argc, char **argv)
{
    BK_INIT();
    long mib = bk_arg(argc, argv, 1, 64);
    long stores = bk_arg(argc, argv, 2, 4000000);
    long reps = bk_arg(argc, argv, 3, 3);
    if (mib < 1 || stores < 1024 || reps < 1) {
        fprintf(stderr, "usage: barrier MIB STORES REPS (STORES >= 1024)\n");
        return 2;
    }
    nnode = mib * 1024 * 1024 / (long)sizeof(struct node);
    narr = mib * 1024 * 1024 / 4 / (long)sizeof(struct arr);
    if (narr < 2)
        narr = 2;

    uint64_t t0 = bk_now_ns();
    nodes = XALLOC(sizeof(void *) * (size_t)nnode);
    arrs = XALLOC(sizeof(void *) * (size_t)narr);
    for (long i = 0; i < nnode; i++)
        TERN_STORE(&nodes[i], XALLOC(sizeof(struct node)));
    for (long i = 0; i < narr; i++)
        TERN_STORE(&arrs[i], XALLOC(sizeof(struct arr)));
    for (long i = 0; i < nnode; i++)
        for (int k = 0; k < NSLOT; k++)
            TERN_STORE(&nodes[i]->s[k], nodes[bk_rand(&rng) % (uint64_t)nnode]);
    for (long i = 0; i < narr; i++)
        for (int k = 0; k < ASLOT; k++)
            TERN_STORE(&arrs[i]->s[k], nodes[bk_rand(&rng) % (uint64_t)nnode]);
    uint64_t t_setup = bk_now_ns() - t0;
    uint64_t sum0 = node_sum();

    enum { SWAP, SEQ, COPY, NPAT };
    static const char *pname[NPAT] = {"swap", "seq", "copy"};
    long count[NPAT] = {stores, 16 * stores, 16 * stores};
    void (*fn[NPAT][2])(long) = {{swap_plain, swap_barrier},
                                 {seq_plain, seq_barrier},
                                 {copy_plain, copy_barrier}};
    double best[NPAT][2];
    for (int p = 0; p < NPAT; p++)
        best[p][0] = best[p][1] = 1e300;
    for (long r = 0; r < reps; r++)
        for (int p = 0; p < NPAT; p++)
            for (int vv = 0; vv < 2; vv++) {
                int v = (int)(r & 1) ^ vv;
                uint64_t a = bk_now_ns();
                fn[p][v](count[p]);
                double ns = (double)(bk_now_ns() - a) / (double)count[p];
                if (ns < best[p][v])
                    best[p][v] = ns;
            }
    uint64_t t_total = bk_now_ns() - t0;

    /* Self-check. */
    int ok = node_sum() == sum0;
    if (!ok)
        fprintf(stderr, "barrier: node slots no longer hold the same pointers\n");
    uintptr_t *sorted = malloc(sizeof(uintptr_t) * (size_t)nnode);
    if (!sorted) {
        fprintf(stderr, "barrier: no memory for the check\n");
        return 3;
    }
    for (long i = 0; i < nnode; i++)
        sorted[i] = (uintptr_t)nodes[i];
    qsort(sorted, (size_t)nnode, sizeof *sorted, cmp_ptr);
    for (long i = 0; ok && i < narr; i++)
        for (int k = 0; k < ASLOT; k++) {
            uintptr_t v = (uintptr_t)arrs[i]->s[k];
            if (!bsearch(&v, sorted, (size_t)nnode, sizeof *sorted, cmp_ptr)) {
                fprintf(stderr, "barrier: array %ld slot %d is not a node\n", i, k);
                ok = 0;
                break;
            }
        }
    free(sorted);

    printf("RESULT ok=%d nodes=%ld arrays=%ld setup_ms=%.3f total_ms=%.3f", ok, nnode, narr,
           t_setup / 1e6, t_total / 1e6);
    for (int p = 0; p < NPAT; p++)
        printf(" %s_plain_ns=%.4f %s_barrier_ns=%.4f %s_ratio=%.4f", pname[p], best[p][0],
               pname[p], best[p][1], pname[p], best[p][1] / best[p][0]);
    printf("\n");
    bk_print_stats();
    return ok ? 0 : 1;
}
