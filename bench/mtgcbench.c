/* mtgcbench.c — GCBench on several threads, with a fragmented heap.
 *
 *   mtgcbench THREADS [STRETCH LONGLIVED MIN MAX HOLE_SLOTS]
 *   defaults: 1 18 16 4 16 4096
 *
 * The main thread builds one stretch tree.  Then each of THREADS threads
 * keeps its own long-lived tree (depth LONGLIVED - log2(THREADS), so the
 * total live tree size does not grow with the thread count) and builds its
 * share of GCBench's short-lived trees: the iteration count of each depth
 * is divided among the threads, so the total work is the same for any
 * THREADS (strong scaling).
 *
 * Holes: after each tree a thread allocates max(1, treesize/64) objects of
 * random size (16..2048 bytes) into random slots of its own table of
 * HOLE_SLOTS entries, dropping the object that was there.  The survivors sit
 * between tree nodes, and the dropped ones leave holes of random sizes, so
 * the heap fragments.  GC backends drop garbage; malloc backends free it
 * (trees by walking them).
 */
#include "backend.h"

typedef struct Node {
    struct Node *left, *right;
    int i, j;
} Node;

static Node *new_node(Node *l, Node *r)
{
    Node *n = XALLOC(sizeof(Node));
    n->left = l;
    n->right = r;
    n->i = 0;
    n->j = 0;
    return n;
}

__attribute__((unused)) static void destroy(Node *n)
{
    if (!n)
        return;
    destroy(n->left);
    destroy(n->right);
    FREE(n);
}

static void drop_tree(Node *n)
{
#if BK_IS_GC
    (void)n;
#else
    destroy(n);
#endif
}

static long tree_size(int i) { return (1L << (i + 1)) - 1; }

static void populate(int depth, Node *n)
{
    if (depth <= 0)
        return;
    depth--;
    n->left = new_node(NULL, NULL);
    n->right = new_node(NULL, NULL);
    populate(depth, n->left);
    populate(depth, n->right);
}

static Node *make_tree(int depth)
{
    if (depth <= 0)
        return new_node(NULL, NULL);
    Node *l = make_tree(depth - 1);
    Node *r = make_tree(depth - 1);
    return new_node(l, r);
}

static long count(const Node *n)
{
    return n ? 1 + count(n->left) + count(n->right) : 0;
}

static int nthreads, stretch, longlived, min_depth, max_depth;
static long hole_slots;

struct worker {
    int id;
    int ok;
    long nodes;
    long holes;
    Node *ll;      /* visible to the collector through the global array */
    void **table;
};
static struct worker *workers;

static void make_holes(struct worker *w, long n, uint64_t *rng)
{
    for (long k = 0; k < n; k++) {
        uint64_t r = bk_rand(rng);
        long slot = (long)(r % (uint64_t)hole_slots);
        size_t sz = 16 + (size_t)((r >> 32) % 2033);
        unsigned char *p = (r >> 20) & 1 ? XALLOC(sz) : XALLOC_ATOMIC(sz);
        uint32_t a = (uint32_t)sz, b = ~(uint32_t)sz;
        memcpy(p, &a, 4); /* size at the front, its complement at the end */
        memcpy(p + sz - 4, &b, 4);
        DISCARD(w->table[slot]);
        w->table[slot] = p;
    }
    w->holes += n;
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(w->id + 1);
    int lg = 0;
    while ((1 << (lg + 1)) <= nthreads)
        lg++;
    int lld = longlived - lg > 1 ? longlived - lg : 1;

    w->table = XALLOC(sizeof(void *) * (size_t)hole_slots);
    memset(w->table, 0, sizeof(void *) * (size_t)hole_slots);
    w->ll = new_node(NULL, NULL);
    populate(lld, w->ll);
    w->nodes += tree_size(lld);

    for (int d = min_depth; d <= max_depth; d += 2) {
        long total = 2 * tree_size(stretch) / tree_size(d);
        long mine = total / nthreads + (w->id < total % nthreads);
        long h = tree_size(d) / 64 > 0 ? tree_size(d) / 64 : 1;
        for (long i = 0; i < mine; i++) {
            Node *t = new_node(NULL, NULL);
            populate(d, t);
            drop_tree(t);
            make_holes(w, h, &rng);
        }
        for (long i = 0; i < mine; i++) {
            Node *t = make_tree(d);
            drop_tree(t);
            make_holes(w, h, &rng);
        }
        w->nodes += 2 * mine * tree_size(d);
    }
    long c = count(w->ll);
    w->ok = c == tree_size(lld);
    for (long s = 0; s < hole_slots; s++) {
        unsigned char *p = w->table[s];
        uint32_t a, b;
        if (!p)
            continue;
        memcpy(&a, p, 4);
        if (a < 16 || a > 2048) {
            w->ok = 0;
            continue;
        }
        memcpy(&b, p + a - 4, 4);
        if (b != ~a)
            w->ok = 0;
    }
#if !BK_IS_GC
    destroy(w->ll);
    for (long s = 0; s < hole_slots; s++)
        FREE(w->table[s]);
    FREE(w->table);
#endif
    return NULL;
}

int main(int argc, char **argv)
{
    BK_INIT();
    nthreads = (int)bk_arg(argc, argv, 1, 1);
    stretch = (int)bk_arg(argc, argv, 2, 18);
    longlived = (int)bk_arg(argc, argv, 3, 16);
    min_depth = (int)bk_arg(argc, argv, 4, 4);
    max_depth = (int)bk_arg(argc, argv, 5, 16);
    hole_slots = bk_arg(argc, argv, 6, 4096);
    if (nthreads < 1 || nthreads > 256 || stretch < 1 || longlived < 1 ||
        min_depth < 1 || max_depth < min_depth || hole_slots < 1) {
        fprintf(stderr, "usage: mtgcbench THREADS STRETCH LONGLIVED MIN MAX HOLES\n");
        return 2;
    }
    uint64_t t0 = bk_now_ns();
    Node *tmp = make_tree(stretch);
    drop_tree(tmp);
    tmp = NULL;

    workers = XALLOC(sizeof(struct worker) * (size_t)nthreads);
    memset(workers, 0, sizeof(struct worker) * (size_t)nthreads);
    pthread_t *tids = calloc((size_t)nthreads, sizeof(pthread_t));
    for (int i = 0; i < nthreads; i++) {
        workers[i].id = i;
        bk_thread_start(&tids[i], run_worker, &workers[i]);
    }
    long nodes = tree_size(stretch), holes = 0;
    int ok = 1;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(tids[i], NULL);
        nodes += workers[i].nodes;
        holes += workers[i].holes;
        ok &= workers[i].ok;
    }
    uint64_t t1 = bk_now_ns();
    printf("RESULT ok=%d work_ms=%.3f threads=%d nodes=%ld holes=%ld\n", ok,
           (t1 - t0) / 1e6, nthreads, nodes, holes);
    bk_print_stats();
    free(tids);
#if !BK_IS_GC
    FREE(workers);
#endif
    if (!ok)
        fprintf(stderr, "mtgcbench: live data corrupted\n");
    return ok ? 0 : 1;
}
