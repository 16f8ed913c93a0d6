/* tern/gc.h — the common public names of bdwgc (the Boehm-Demers-Weiser
 * collector's gc.h and gc_typed.h) mapped onto Tern, so that a program
 * written for bdwgc builds against Tern by including this header instead
 * of <gc.h> and linking -ltern.  docs/finalize.md lists what maps exactly,
 * what is approximated and what does not exist.
 *
 * Everything here is a macro or a static inline function over Tern's API;
 * no GC_* symbol is exported by the library.
 */
#ifndef TERN_GC_H
#define TERN_GC_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <tern.h>
#include <tern/finalize.h>
#include <tern/typed.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_GC_COMPAT 1

typedef uintptr_t GC_word;
typedef intptr_t GC_signed_word;
typedef void *GC_PTR;
typedef void (*GC_finalization_proc)(void *obj, void *client_data);
typedef tern_descr GC_descr;

/* bdwgc's status codes */
#define GC_SUCCESS 0
#define GC_DUPLICATE 1
#define GC_NO_MEMORY 2
#define GC_UNIMPLEMENTED 3
#define GC_NOT_FOUND 4

struct GC_stack_base { void *mem_base; };

static inline int tern_gc_status_(int rc) {
    switch (rc) {
    case TERN_OK: return GC_SUCCESS;
    case TERN_EEXIST: return GC_DUPLICATE;
    case TERN_ENOMEM: return GC_NO_MEMORY;
    case TERN_ENOENT: return GC_NOT_FOUND;
    default: return GC_UNIMPLEMENTED;
    }
}

/* ---- start-up and collection ----------------------------------------------- */
static inline void GC_init(void) { (void)tern_init(NULL); }
#define GC_INIT() GC_init()
static inline int GC_is_init_called(void) { return 1; }
/* bdwgc runs the ready finalizers at the end of GC_gcollect unless
 * finalization is on demand; so does this. */
static inline void GC_gcollect(void) {
    tern_collect();
    tern_run_finalizers();
}
static inline void GC_gcollect_and_unmap(void) { GC_gcollect(); }
static inline int GC_collect_a_little(void) { return 0; } /* Tern collects concurrently */
static inline void GC_enable_incremental(void) {}      /* always concurrent */


/* ---- allocation ------------------------------------------------------------ */
static inline void *GC_malloc(size_t n) { return tern_malloc(n); }
static inline void *GC_malloc_atomic(size_t n) { return tern_malloc_atomic(n); }
static inline void *GC_malloc_uncollectable(size_t n) { return tern_malloc_uncollectable(n); }
static inline void *GC_malloc_ignore_off_page(size_t n) { return tern_malloc(n); }
static inline void *GC_malloc_atomic_ignore_off_page(size_t n) { return tern_malloc_atomic(n); }
static inline void *GC_realloc(void *p, size_t n) { return tern_realloc(p, n); }
static inline void GC_free(void *p) { tern_free(p); }
static inline void *GC_base(void *p) { return tern_base(p); }
static inline size_t GC_size(const void *p) { return tern_size(p); }
static inline char *GC_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = (char *)tern_malloc_atomic(n);
    if (d) memcpy(d, s, n);
    return d;
}
static inline char *GC_strndup(const char *s, size_t max) {
    if (!s) return NULL;
    size_t n = strnlen(s, max);
    char *d = (char *)tern_malloc_atomic(n + 1);
    if (d) memcpy(d, s, n), d[n] = 0;
    return d;
}

#define GC_MALLOC(n) GC_malloc(n)
#define GC_MALLOC_ATOMIC(n) GC_malloc_atomic(n)
#define GC_MALLOC_UNCOLLECTABLE(n) GC_malloc_uncollectable(n)
#define GC_MALLOC_IGNORE_OFF_PAGE(n) GC_malloc_ignore_off_page(n)
#define GC_MALLOC_ATOMIC_IGNORE_OFF_PAGE(n) GC_malloc_atomic_ignore_off_page(n)
#define GC_REALLOC(p, n) GC_realloc(p, n)
#define GC_FREE(p) GC_free(p)
#define GC_STRDUP(s) GC_strdup(s)
#define GC_STRNDUP(s, n) GC_strndup(s, n)
#define GC_NEW(t) ((t *)GC_MALLOC(sizeof(t)))
#define GC_NEW_ATOMIC(t) ((t *)GC_MALLOC_ATOMIC(sizeof(t)))
#define GC_NEW_UNCOLLECTABLE(t) ((t *)GC_MALLOC_UNCOLLECTABLE(sizeof(t)))

/* ---- typed allocation (gc_typed.h) -------------------------------------------- */
#define GC_WORDSZ (8 * sizeof(GC_word))
#define GC_get_bit(bm, index) (((bm)[(index) / GC_WORDSZ] >> ((index) % GC_WORDSZ)) & 1)
#define GC_set_bit(bm, index) ((bm)[(index) / GC_WORDSZ] |= (GC_word)1 << ((index) % GC_WORDSZ))
#define GC_WORD_OFFSET(t, f) (offsetof(t, f) / sizeof(GC_word))
#define GC_WORD_LEN(t) (sizeof(t) / sizeof(GC_word))
#define GC_BITMAP_SIZE(t) ((GC_WORD_LEN(t) + GC_WORDSZ - 1) / GC_WORDSZ)
static inline GC_descr GC_make_descriptor(const GC_word *bm, size_t len) {
    return tern_make_descriptor((const uint64_t *)bm, len);
}
static inline void *GC_malloc_explicitly_typed(size_t n, GC_descr d) { return tern_malloc_typed(n, d); }
static inline void *GC_malloc_explicitly_typed_ignore_off_page(size_t n, GC_descr d) {
    return tern_malloc_typed(n, d);
}
#define GC_MALLOC_EXPLICITLY_TYPED(n, d) GC_malloc_explicitly_typed(n, d)

/* ---- finalization ----------------------------------------------------------- */
static inline void GC_register_finalizer(void *obj, GC_finalization_proc fn, void *cd,
                                         GC_finalization_proc *ofn, void **ocd) {
    (void)tern_register_finalizer_ex(obj, fn, cd, 0, ofn, ocd);
}
static inline void GC_register_finalizer_no_order(void *obj, GC_finalization_proc fn, void *cd,
                                                  GC_finalization_proc *ofn, void **ocd) {
    (void)tern_register_finalizer_ex(obj, fn, cd, TERN_FIN_UNORDERED, ofn, ocd);
}
/* approximated: Tern cannot tell a self pointer from others; unordered */
static inline void GC_register_finalizer_ignore_self(void *obj, GC_finalization_proc fn, void *cd,
                                                     GC_finalization_proc *ofn, void **ocd) {
    (void)tern_register_finalizer_ex(obj, fn, cd, TERN_FIN_UNORDERED, ofn, ocd);
}
static inline void GC_register_finalizer_unreachable(void *obj, GC_finalization_proc fn, void *cd,
                                                     GC_finalization_proc *ofn, void **ocd) {
    (void)tern_register_finalizer_ex(obj, fn, cd, TERN_FIN_UNORDERED, ofn, ocd);
}
#define GC_REGISTER_FINALIZER(p, f, d, of, od) GC_register_finalizer(p, f, d, of, od)
#define GC_REGISTER_FINALIZER_NO_ORDER(p, f, d, of, od) GC_register_finalizer_no_order(p, f, d, of, od)
#define GC_REGISTER_FINALIZER_IGNORE_SELF(p, f, d, of, od) GC_register_finalizer_ignore_self(p, f, d, of, od)
static inline int GC_invoke_finalizers(void) { return tern_run_finalizers(); }
static inline int GC_should_invoke_finalizers(void) { return tern_finalizers_pending() > 0; }
static inline void GC_set_finalize_on_demand(int on) { tern_finalize_on_demand(on); }

/* ---- disappearing links -------------------------------------------------------- */
static inline int GC_general_register_disappearing_link(void **link, const void *obj) {
    return tern_gc_status_(tern_register_weak(link, (void *)obj));
}
static inline int GC_register_disappearing_link(void **link) {
    return GC_general_register_disappearing_link(link, tern_base(link));
}
static inline int GC_unregister_disappearing_link(void **link) { return tern_unregister_weak(link) == TERN_OK; }
static inline int GC_register_long_link(void **link, const void *obj) {
    return tern_gc_status_(tern_register_weak_long(link, (void *)obj));
}
static inline int GC_unregister_long_link(void **link) { return tern_unregister_weak(link) == TERN_OK; }
#define GC_GENERAL_REGISTER_DISAPPEARING_LINK(l, o) GC_general_register_disappearing_link(l, o)
#define GC_REGISTER_LONG_LINK(l, o) GC_register_long_link(l, o)
#define GC_HIDE_POINTER(p) (~(GC_word)(p))
#define GC_REVEAL_POINTER(p) ((void *)GC_HIDE_POINTER(p))

/* ---- roots and threads ------------------------------------------------------------ */
static inline void GC_add_roots(void *lo, void *hi) { (void)tern_add_roots(lo, hi); }
static inline void GC_remove_roots(void *lo, void *hi) { (void)tern_remove_roots(lo, hi); }
static inline void GC_allow_register_threads(void) {}
static inline int GC_get_stack_base(struct GC_stack_base *sb) {
    sb->mem_base = __builtin_frame_address(0); /* unused: Tern finds the stack itself */
    return GC_SUCCESS;
}
static inline int GC_register_my_thread(const struct GC_stack_base *sb) {
    (void)sb;
    return tern_register_thread() == TERN_OK ? GC_SUCCESS : GC_DUPLICATE;
}
static inline int GC_unregister_my_thread(void) { return tern_gc_status_(tern_unregister_thread()); }
static inline int GC_thread_is_registered(void) {
    int rc = tern_register_thread();
    if (rc == TERN_OK) (void)tern_unregister_thread();
    return rc == TERN_EEXIST;
}
/* Tern wraps pthread_create itself */
#define GC_pthread_create pthread_create
#define GC_pthread_join pthread_join
#define GC_pthread_detach pthread_detach

static inline int GC_is_incremental_mode(void);
/* ---- statistics ----------------------------------------------------------------- */
static inline struct tern_stats tern_gc_stats_(void) {
    struct tern_stats s;
    memset(&s, 0, sizeof s);
    tern_get_stats(&s);
    return s;
}
static inline size_t GC_get_heap_size(void) { return (size_t)tern_gc_stats_().heap_bytes; }
static inline size_t GC_get_free_bytes(void) {
    struct tern_stats s = tern_gc_stats_();
    return s.heap_bytes > s.in_use_bytes ? (size_t)(s.heap_bytes - s.in_use_bytes) : 0;
}
static inline size_t GC_get_total_bytes(void) { return (size_t)tern_gc_stats_().allocated_bytes; }
static inline size_t GC_get_memory_use(void) { return (size_t)tern_gc_stats_().in_use_bytes; }
static inline GC_word GC_get_gc_no(void) { return (GC_word)tern_gc_stats_().cycles; }
static inline int GC_is_incremental_mode(void) { return tern_gc_stats_().barrier != TERN_BARRIER_STW; }

#ifdef __cplusplus
}
#endif
#endif /* TERN_GC_H */
