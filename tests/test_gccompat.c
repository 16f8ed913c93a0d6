/* test_gccompat.c — a small program written against bdwgc's public names,
 * built with Tern's compatibility header <tern/gc.h> instead of <gc.h>.
 * Nothing below calls tern_* directly except the test helpers. */
#include "common.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <tern/gc.h>

TestSuite(gccompat, .timeout = 60);

struct node { struct node *next; long value; char *name; };

static NOINLINE void collect_clean(void)
{
    clobber_stack();
    GC_gcollect();
}

static NOINLINE int is_null(void *const *link) { return *(volatile const uintptr_t *)link == 0; }

Test(gccompat, allocation)
{
    GC_INIT();
    struct node *list = NULL;
    for (long i = 0; i < 100000; i++) {
        struct node *n = GC_NEW(struct node);
        cr_assert_not_null(n);
        n->value = i;
        n->next = (i % 100 == 0) ? NULL : list;
        if (i % 1000 == 0) {
            n->name = GC_MALLOC_ATOMIC(16);
            snprintf(n->name, 16, "n%ld", i);
        }
        list = n;
    }
    GC_gcollect();
    long expect = 99999;
    for (struct node *n = list; n; n = n->next, expect--)
        cr_assert_eq(n->value, expect);
    cr_assert_geq(GC_size(list), sizeof *list);
    cr_assert_eq(GC_base(&list->value), list);
    cr_assert_null(GC_base(&expect));
    long *arr = GC_MALLOC(10 * sizeof *arr);
    for (int i = 0; i < 10; i++) arr[i] = i;
    arr = GC_REALLOC(arr, 1000 * sizeof *arr);
    cr_assert_not_null(arr);
    for (int i = 0; i < 10; i++) cr_assert_eq(arr[i], i);
    GC_FREE(arr);
    char *s = GC_STRDUP("hello");
    cr_assert_str_eq(s, "hello");
    cr_assert_gt(GC_get_heap_size(), 0);
    cr_assert_gt(GC_get_total_bytes(), 0);
    cr_assert_gt(GC_get_gc_no(), 0);
}

static atomic_int finalized;
static void on_finalize(void *obj, void *cd)
{
    struct node *n = obj;
    if (n->value == 7 && cd == (void *)&finalized)
        atomic_fetch_add(&finalized, 1);
}

static void **links; /* GC_MALLOC_ATOMIC: not scanned */

static NOINLINE void make_doomed(void)
{
    struct node *n = GC_NEW(struct node);
    n->value = 7;
    GC_finalization_proc ofn = (GC_finalization_proc)1;
    void *ocd = (void *)1;
    GC_REGISTER_FINALIZER(n, on_finalize, &finalized, &ofn, &ocd);
    cr_assert_null((void *)ofn);
    cr_assert_null(ocd);
    links[0] = n;
    cr_assert_eq(GC_GENERAL_REGISTER_DISAPPEARING_LINK(&links[0], n), GC_SUCCESS);
    cr_assert_eq(GC_general_register_disappearing_link(&links[0], n), GC_DUPLICATE);
}

Test(gccompat, finalizers_and_disappearing_links)
{
    GC_INIT();
    links = GC_MALLOC_ATOMIC(4 * sizeof *links);
    make_doomed();
    for (int r = 0; r < 12 && !atomic_load(&finalized); r++)
        collect_clean(); /* GC_gcollect runs the ready finalizers, as bdwgc's does */
    cr_assert_eq(atomic_load(&finalized), 1);
    cr_assert(is_null(&links[0]), "the disappearing link was not cleared");
    for (int r = 0; r < 3; r++)
        collect_clean();
    cr_assert_eq(atomic_load(&finalized), 1, "a finalizer ran twice");

    struct node *keep = GC_NEW(struct node);
    links[1] = keep;
    cr_assert_eq(GC_general_register_disappearing_link(&links[1], keep), GC_SUCCESS);
    cr_assert_eq(GC_unregister_disappearing_link(&links[1]), 1);
    cr_assert_eq(GC_unregister_disappearing_link(&links[1]), 0);
    cr_assert_eq(GC_register_long_link(&links[1], keep), GC_SUCCESS);
    collect_clean();
    cr_assert(!is_null(&links[1]));
    cr_assert_eq(GC_unregister_long_link(&links[1]), 1);
    cr_assert_eq(links[1], keep);

    GC_set_finalize_on_demand(1);
    cr_assert_eq(GC_should_invoke_finalizers(), 0);
    cr_assert_eq(GC_invoke_finalizers(), 0);
}

static struct node *static_root_holder[1]; /* scanned anyway: statics are roots */
static uintptr_t hidden_unc;

static NOINLINE void make_uncollectable(void)
{
    struct node *u = GC_MALLOC_UNCOLLECTABLE(sizeof *u);
    u->value = 99;
    u->next = GC_NEW(struct node);
    u->next->value = 100;
    hidden_unc = GC_HIDE_POINTER(u);
}

Test(gccompat, uncollectable_roots_threads)
{
    GC_INIT();
    make_uncollectable();
    for (int r = 0; r < 3; r++) {
        churn(256 * KiB, sizeof(struct node));
        collect_clean();
    }
    struct node *u = GC_REVEAL_POINTER(hidden_unc);
    cr_assert_eq(GC_base(u), u);
    cr_assert_eq(u->value, 99);
    cr_assert_eq(u->next->value, 100);
    GC_FREE(u);

    /* GC_add_roots: memory from malloc scanned as a root */
    void **area = calloc(16, sizeof(void *));
    GC_add_roots(area, area + 16);
    area[3] = GC_MALLOC(64);
    memset(area[3], 0x11, 64);
    for (int r = 0; r < 3; r++) {
        churn(256 * KiB, 64);
        collect_clean();
    }
    cr_assert_eq(((unsigned char *)area[3])[63], 0x11);
    GC_remove_roots(area, area + 16);
    free(area);
    static_root_holder[0] = NULL;

    /* a thread registered the bdwgc way (already known to Tern: duplicate) */
    struct GC_stack_base sb;
    cr_assert_eq(GC_get_stack_base(&sb), GC_SUCCESS);
    int rc = GC_register_my_thread(&sb);
    cr_assert(rc == GC_SUCCESS || rc == GC_DUPLICATE);
    cr_assert(GC_thread_is_registered());
}

Test(gccompat, typed)
{
    GC_INIT();
    struct pair { void *p; GC_word not_a_pointer; };
    GC_word bm[GC_BITMAP_SIZE(struct pair)] = { 0 };
    GC_set_bit(bm, GC_WORD_OFFSET(struct pair, p));
    GC_descr d = GC_make_descriptor(bm, GC_WORD_LEN(struct pair));
    cr_assert_not_null(d);
    struct pair *x = GC_MALLOC_EXPLICITLY_TYPED(sizeof *x, d);
    cr_assert_not_null(x);
    x->p = GC_MALLOC(32);
    memset(x->p, 0x22, 32);
    collect_clean();
    cr_assert_eq(((unsigned char *)x->p)[31], 0x22);
}
