/* gcbench.c — the classic GCBench (Boehm, after Ellis and Kovac).
 *
 *   gcbench [STRETCH_DEPTH LONG_LIVED_DEPTH ARRAY_SIZE MIN_DEPTH MAX_DEPTH]
 *   defaults: 18 16 500000 4 16 (the original sizes)
 *
 * Builds a stretch tree, keeps a long-lived tree and an array of doubles
 * alive, then builds many short-lived trees of depth MIN..MAX (step 2),
 * top-down (Populate) and bottom-up (MakeTree).  GC backends drop the
 * trees; malloc backends free them by walking them, as the C original's
 * non-GC build does.  The long-lived data is checked at the end.
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

int main(int argc, char **argv)
{
    BK_INIT();
    int stretch = (int)bk_arg(argc, argv, 1, 18);
    int longlived = (int)bk_arg(argc, argv, 2, 16);
    long array_size = bk_arg(argc, argv, 3, 500000);
    int min_depth = (int)bk_arg(argc, argv, 4, 4);
    int max_depth = (int)bk_arg(argc, argv, 5, 16);
    if (stretch < 1 || longlived < 1 || array_size < 2002 || min_depth < 1 ||
        max_depth < min_depth) {
        fprintf(stderr, "usage: gcbench STRETCH LONGLIVED ARRAY MIN MAX\n");
        return 2;
    }
    uint64_t t0 = bk_now_ns();
    long nodes = 0;

    /* Stretch the heap. */
    Node *tmp = make_tree(stretch);
    nodes += tree_size(stretch);
    drop_tree(tmp);
    tmp = NULL;

    /* Long-lived data. */
    Node *ll = new_node(NULL, NULL);
    populate(longlived, ll);
    nodes += tree_size(longlived);
    double *array = XALLOC_ATOMIC(sizeof(double) * (size_t)array_size);
    for (long i = 0; i < array_size / 2; i++)
        array[i] = 1.0 / (double)i;

    for (int d = min_depth; d <= max_depth; d += 2) {
        long iters = 2 * tree_size(stretch) / tree_size(d);
        for (long i = 0; i < iters; i++) {
            tmp = new_node(NULL, NULL);
            populate(d, tmp);
            drop_tree(tmp);
        }
        for (long i = 0; i < iters; i++) {
            tmp = make_tree(d);
            drop_tree(tmp);
        }
        nodes += 2 * iters * tree_size(d);
    }
    tmp = NULL;

    long ll_count = count(ll);
    int ok = ll_count == tree_size(longlived) && array[1000] == 1.0 / 1000;
    uint64_t t1 = bk_now_ns();
    printf("RESULT ok=%d work_ms=%.3f nodes=%ld longlived_nodes=%ld\n", ok,
           (t1 - t0) / 1e6, nodes, ll_count);
    bk_print_stats();
#if !BK_IS_GC
    destroy(ll);
    FREE(array);
#endif
    if (!ok)
        fprintf(stderr, "gcbench: long-lived data corrupted\n");
    return ok ? 0 : 1;
}
