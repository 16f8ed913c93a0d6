/* typed.c — typed layouts: objects whose pointer words are known.
 *
 * tern_make_descriptor(bitmap, nwords) records which words of an object
 * may hold pointers; tern_malloc_typed(size, d) allocates an object laid
 * out so, and the marker scans only those words (mark.c, scan_typed).  A
 * value in any other word keeps nothing alive.
 *
 * No metadata goes into the objects.  The layout lives beside the heap:
 * every typed object sits in a span that holds only objects of its size
 * class and descriptor, and the span's descriptor records the layout
 * (struct span: typed, descr).  Such spans belong to their descriptor for
 * good: they are fresh spans (state CACHED, with no owning thread cache)
 * chained on the descriptor, never given to the central lists or the
 * thread caches.  They are swept like any other span.
 *
 * Allocation holds the span class's central lock while it sweeps the
 * span if needed, claims a free slot in the alloc bitmap and, while a cycle
 * marks, sets its mark bit (allocate black): every pause takes all central
 * locks before stopping the world, so no cycle starts or ends in between.
 * This path is slower than tern_malloc's lock-free one.
 *
 * Objects bigger than MAX_SMALL are allocated as ordinary scanned objects
 * (every word scanned: safe, only less precise). */
#include "internal.h"
#include "tern/typed.h"

#include <errno.h>
#include <string.h>

struct tern_descr {
    struct tern_descr *next;              /* all descriptors (dedup)    */
    struct span *spans[NCLASSES_MAX];     /* typed spans, chained by s->next */
    struct span *cur[NCLASSES_MAX];       /* where the last slot came from */
    struct typed_descr d;                 /* last: flexible bitmap      */
};

#define MAX_DESCR_WORDS (MAX_SMALL / 8)   /* words of the biggest small object */
#define DESCR_BLOCK (64u << 10)

static pthread_mutex_t typed_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tern_descr *descrs;
static char *block;
static size_t block_used = DESCR_BLOCK;

static void *bump(size_t n) {
    n = ALIGN_UP(n, 16);
    if (n > DESCR_BLOCK) return NULL;
    if (block_used + n > DESCR_BLOCK) {
        char *b = tern_os_map_meta(DESCR_BLOCK);
        if (!b) return NULL;
        block = b;
        block_used = 0;
    }
    void *p = block + block_used;
    block_used += n;
    return p;
}

TERN_API tern_descr tern_make_descriptor(const uint64_t *bitmap, size_t nwords) {
    if (!bitmap || nwords == 0 || nwords > MAX_DESCR_WORDS) {
        errno = EINVAL;
        return NULL;
    }
    /* trailing words without pointers need not be described */
    size_t last = nwords;
    while (last && !((bitmap[(last - 1) / 64] >> ((last - 1) % 64)) & 1)) last--;
    size_t nb = (last + 63) / 64;
    pthread_mutex_lock(&typed_lock);
    struct tern_descr *d;
    for (d = descrs; d; d = d->next) /* the same layout gives the same descriptor */
        if (d->d.nwords == last && (nb == 0 || !memcmp(d->d.bits, bitmap, (last / 64) * 8)) &&
            (last % 64 == 0 || !((d->d.bits[nb - 1] ^ bitmap[nb - 1]) & ((1ull << (last % 64)) - 1))))
            break;
    if (!d && (d = bump(sizeof *d + nb * 8))) {
        memset(d, 0, sizeof *d);
        d->d.nwords = (uint32_t)last;
        for (size_t i = 0; i < nb; i++) d->d.bits[i] = bitmap[i];
        if (last % 64) d->d.bits[nb - 1] &= (1ull << (last % 64)) - 1;
        d->next = descrs;
        descrs = d;
    }
    pthread_mutex_unlock(&typed_lock);
    if (!d) errno = ENOMEM;
    return d;
}

/* Class lock held: a free slot of s, claimed (zeroed, allocated, black
 * while marking), or 0. */
static uintptr_t take_slot(struct span *s) {
    tern_sweep_ensure_locked(s);
    for (unsigned w = 0; w < s->nwords; w++) {
        uint64_t free = ~atomic_load(&s->alloc[w]);
        if (!free) continue;
        unsigned b = (unsigned)__builtin_ctzll(free);
        size_t i = (size_t)w * 64 + b;
        if (i >= s->nelems) return 0;
        uintptr_t p = s->base + i * s->elemsize;
        if (atomic_load(&s->needzero)) memset((void *)p, 0, s->elemsize);
        __asm__ volatile("" : "+r"(p)); /* in a register before it is allocated */
        atomic_fetch_or(&s->alloc[w], 1ull << b);
        if (atomic_load_explicit(&tern_gc_black, memory_order_relaxed))
            atomic_fetch_or(&s->mark[w], 1ull << b);
        return p;
    }
    return 0;
}

TERN_API void *tern_malloc_typed(size_t n, tern_descr d) {
    if (!d) {
        errno = EINVAL;
        return NULL;
    }
    if (n > MAX_SMALL) return tern_malloc(n);
    tern_ensure_init();
    unsigned k = size_class(n ? n : 1), sc = k * 2; /* a scanned class */
    pthread_mutex_t *cl = &tern_central[sc].lock;
    uintptr_t p = 0;
    pthread_mutex_lock(&typed_lock);
    for (;;) {
        pthread_mutex_lock(cl);
        if (d->cur[k]) p = take_slot(d->cur[k]);
        for (struct span *s = d->spans[k]; !p && s; s = s->next)
            if (s != d->cur[k] && (p = take_slot(s))) d->cur[k] = s;
        pthread_mutex_unlock(cl);
        if (p) break;
        /* A fresh span: one from the central lists may hold untyped objects. */
        bool nz;
        struct span *s = tern_span_alloc(tern_classes[k].npages, &nz);
        if (!s) break;
        pthread_mutex_lock(cl);
        tern_span_init_small(s, sc);
        atomic_store(&s->needzero, nz);
        s->descr = &d->d;
        s->typed = 1;
        atomic_store(&s->state, SPAN_CACHED);
        s->next = d->spans[k];
        d->spans[k] = d->cur[k] = s;
        pthread_mutex_unlock(cl);
    }
    pthread_mutex_unlock(&typed_lock);
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    tern_pacer_note_alloc(tern_classes[k].size, 1, true); /* may run a cycle: p is in this frame */
    __asm__ volatile("" : : "r"(p) : "memory");
    return (void *)p;
}

void tern_typed_atfork(int phase) {
    if (phase == 0) pthread_mutex_lock(&typed_lock);
    else pthread_mutex_unlock(&typed_lock);
}
