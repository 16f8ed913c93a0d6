/* binarytrees.c — the Computer Language Benchmarks Game's binary-trees.
 *
 *   binarytrees [MAX_DEPTH]      default 21 (the Game's size)
 *
 * A stretch tree of depth MAX_DEPTH+1, a long-lived tree of depth MAX_DEPTH,
 * then 2^(MAX_DEPTH - d + 4) trees of each depth d = 4, 6, ..., MAX_DEPTH,
 * each built bottom-up and checked (node count).  Single-threaded here.
 * GC backends drop trees; malloc backends free them by walking them, as the
 * Game's C malloc versions do.  The checks are verified against the known
 * node counts.
 */
#include "backend.h"

typedef struct Node {
    struct Node *left, *right;
} Node;

static Node *bottom_up(int depth)
{
    Node *n = XALLOC(sizeof(Node));
    if (depth > 0) {
        n->left = bottom_up(depth - 1);
        n->right = bottom_up(depth - 1);
    } else {
        n->left = n->right = NULL;
    }
    return n;
}

static long check(const Node *n)
{
    return n->left ? 1 + check(n->left) + check(n->right) : 1;
}

__attribute__((unused)) static void destroy(Node *n)
{
    if (n->left) {
        destroy(n->left);
        destroy(n->right);
    }
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

int main(int argc, char **argv)
{
    BK_INIT();
    const int min_depth = 4;
    int n = (int)bk_arg(argc, argv, 1, 21);
    int max_depth = n > min_depth + 2 ? n : min_depth + 2;
    int ok = 1;
    uint64_t t0 = bk_now_ns();

    int sd = max_depth + 1;
    Node *t = bottom_up(sd);
    long c = check(t);
    ok &= c == (1L << (sd + 1)) - 1;
    drop_tree(t);
    t = NULL;
    fprintf(stderr, "stretch tree of depth %d\t check: %ld\n", sd, c);

    Node *ll = bottom_up(max_depth);
    long total = 0;
    for (int d = min_depth; d <= max_depth; d += 2) {
        long iters = 1L << (max_depth - d + min_depth);
        long sum = 0;
        for (long i = 0; i < iters; i++) {
            t = bottom_up(d);
            sum += check(t);
            drop_tree(t);
        }
        t = NULL;
        ok &= sum == iters * ((1L << (d + 1)) - 1);
        total += sum;
        fprintf(stderr, "%ld\t trees of depth %d\t check: %ld\n", iters, d, sum);
    }
    long lc = check(ll);
    ok &= lc == (1L << (max_depth + 1)) - 1;
    fprintf(stderr, "long lived tree of depth %d\t check: %ld\n", max_depth, lc);
    uint64_t t1 = bk_now_ns();
    printf("RESULT ok=%d work_ms=%.3f depth=%d checksum=%ld\n", ok,
           (t1 - t0) / 1e6, max_depth, total + lc + c);
    bk_print_stats();
#if !BK_IS_GC
    destroy(ll);
#endif
    if (!ok)
        fprintf(stderr, "binarytrees: wrong check value\n");
    return ok ? 0 : 1;
}
