/* test_graphs.c — big and deep object graphs survive collections: a
 * 10-million-node linked list, long forward lists, deep and wide trees. */
#include "common.h"

#include <criterion/criterion.h>

TestSuite(graphs, .timeout = 60);

struct node {
    struct node *next;
    uint64_t value;
};

static inline uint64_t node_value(uint64_t i) { return i * 0x9E3779B97F4A7C15ull + 1; }

/* head insertion: each new node points to the previous one */
static NOINLINE struct node *build_list_backward(size_t n)
{
    struct node *head = NULL;
    for (size_t i = 0; i < n; i++) {
        struct node *x = tern_malloc(sizeof *x);
        if (!x)
            return NULL;
        x->value = node_value(i);
        x->next = head;
        head = x;
    }
    return head;
}

/* tail insertion: each node points to the one made after it */
static NOINLINE struct node *build_list_forward(size_t n)
{
    struct node *head = NULL, *tail = NULL;
    for (size_t i = 0; i < n; i++) {
        struct node *x = tern_malloc(sizeof *x);
        if (!x)
            return NULL;
        x->value = node_value(i);
        if (tail)
            tail->next = x;
        else
            head = x;
        tail = x;
    }
    return head;
}

/* Walks the list and returns the number of nodes that had the expected
 * value at their position; stops at the first mismatch. */
static NOINLINE size_t walk_list(const struct node *x, size_t n, int backward)
{
    size_t k = 0;
    for (; x && k < n; x = x->next, k++) {
        uint64_t want = node_value(backward ? n - 1 - k : k);
        if (x->value != want)
            return k;
    }
    return x ? (size_t)-1 : k;
}

Test(graphs, ten_million_node_list, .timeout = 90)
{
    const size_t n = 10 * 1000 * 1000;
    struct node *head = build_list_backward(n);
    cr_assert_not_null(head, "building the list failed");
    cr_assert_geq(tern_size(head), sizeof(struct node));
    clobber_stack();
    tern_collect();
    struct tern_stats st = get_stats();
    cr_assert_geq(st.live_bytes, (uint64_t)n * sizeof(struct node),
                  "live_bytes %llu < the list's %zu bytes", (unsigned long long)st.live_bytes,
                  n * sizeof(struct node));
    /* garbage of the same size class would take the nodes' places if any
     * had been freed */
    churn(64 * MiB, sizeof(struct node));
    cr_assert_eq(walk_list(head, n, 1), n, "the list was damaged by the collection");
    tern_collect();
    churn(32 * MiB, sizeof(struct node));
    cr_assert_eq(walk_list(head, n, 1), n, "the list was damaged by the second collection");
}

Test(graphs, long_forward_list)
{
    const size_t n = 3 * 1000 * 1000;
    struct node *head = build_list_forward(n);
    cr_assert_not_null(head);
    clobber_stack();
    tern_collect();
    churn(32 * MiB, sizeof(struct node));
    cr_assert_eq(walk_list(head, n, 0), n, "the forward list was damaged");
}

/* ---- trees ---------------------------------------------------------------- */

struct tnode {
    struct tnode *left, *right;
    uint64_t value;
};

static NOINLINE struct tnode *tnode_new(uint64_t v)
{
    struct tnode *t = tern_malloc(sizeof *t);
    if (t)
        t->value = v;
    return t;
}

/* A complete binary tree of the given depth; values are heap indices. */
static struct tnode *build_complete(int depth, uint64_t idx)
{
    if (depth == 0)
        return NULL;
    struct tnode *t = tnode_new(idx);
    if (!t)
        return NULL;
    t->left = build_complete(depth - 1, 2 * idx);
    t->right = build_complete(depth - 1, 2 * idx + 1);
    return t;
}

/* Counts the nodes; sets *bad on a wrong value or shape. */
static size_t check_complete(const struct tnode *t, int depth, uint64_t idx, int *bad)
{
    if (depth == 0) {
        if (t)
            *bad = 1;
        return 0;
    }
    if (!t || t->value != idx) {
        *bad = 1;
        return 0;
    }
    return 1 + check_complete(t->left, depth - 1, 2 * idx, bad) +
           check_complete(t->right, depth - 1, 2 * idx + 1, bad);
}

Test(graphs, complete_binary_tree)
{
    const int depth = 20; /* 1,048,575 nodes */
    struct tnode *root = build_complete(depth, 1);
    cr_assert_not_null(root);
    clobber_stack();
    tern_collect();
    churn(48 * MiB, sizeof(struct tnode));
    tern_collect();
    int bad = 0;
    size_t count = check_complete(root, depth, 1, &bad);
    cr_assert(!bad, "the tree was damaged");
    cr_assert_eq(count, ((size_t)1 << depth) - 1);
}

/* A very deep tree: a spine of 2 million nodes (left links), each with a
 * right leaf.  A recursive marker would overflow its stack. */
static NOINLINE struct tnode *build_comb(size_t depth)
{
    struct tnode *root = NULL;
    for (size_t i = depth; i-- > 0;) {
        struct tnode *spine = tnode_new(2 * i);
        struct tnode *leaf = tnode_new(2 * i + 1);
        if (!spine || !leaf)
            return NULL;
        spine->left = root;
        spine->right = leaf;
        root = spine;
    }
    return root;
}

static NOINLINE size_t check_comb(const struct tnode *t, size_t depth)
{
    size_t i = 0;
    for (; t && i < depth; t = t->left, i++) {
        if (t->value != 2 * i || !t->right || t->right->value != 2 * i + 1 || t->right->left ||
            t->right->right)
            return i;
    }
    return t ? (size_t)-1 : i;
}

Test(graphs, very_deep_tree)
{
    const size_t depth = 2 * 1000 * 1000;
    struct tnode *root = build_comb(depth);
    cr_assert_not_null(root);
    clobber_stack();
    tern_collect();
    churn(48 * MiB, sizeof(struct tnode));
    tern_collect();
    cr_assert_eq(check_comb(root, depth), depth, "the deep tree was damaged");
}

/* A wide node: one 16 MiB array of 2 million pointers to small objects. */
Test(graphs, wide_array_of_pointers)
{
    const size_t n = 2 * 1000 * 1000;
    struct node **arr = tern_malloc(n * sizeof *arr);
    cr_assert_not_null(arr);
    for (size_t i = 0; i < n; i++) {
        arr[i] = tern_malloc(sizeof(struct node));
        cr_assert_not_null(arr[i]);
        arr[i]->value = node_value(i);
    }
    clobber_stack();
    tern_collect();
    churn(48 * MiB, sizeof(struct node));
    tern_collect();
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(tern_base(arr[i]), arr[i], "element %zu was reclaimed", i);
        cr_assert_eq(arr[i]->value, node_value(i), "element %zu corrupted", i);
    }
}
