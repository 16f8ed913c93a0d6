/* internal.h — the heap layout and the types every part of the collector
 * shares.  Embedders never include this; they read include/tern.h.
 *
 * THE LAYOUT
 *
 *   address space
 *   └─ chunk (4 MiB, aligned to 4 MiB, from mmap)
 *      ├─ header pages: struct chunk — page map, span descriptors and the
 *      │  side bitmaps (alloc, mark, freed) for every page of the chunk
 *      └─ pages (8 KiB) grouped into spans
 *         ├─ small span: 1–16 pages cut into equal slots of one size class
 *         └─ large span: one object of any number of pages
 *   huge objects (bigger than a chunk's payload) get a chunk of their own,
 *   a multiple of 4 MiB long, holding one large span.
 *
 * Finding the object behind any word is O(1): a two-level radix table maps
 * each 4 MiB of address space to its chunk; the chunk's page map gives the
 * span; the offset divided by the slot size (a multiply by a precomputed
 * reciprocal) gives the slot, whose bits in the side bitmaps say whether it
 * is allocated, marked and explicitly freed.  No object has a header and no
 * allocator metadata lives inside or between user objects.
 *
 * BITMAPS.  Each span owns, in its chunk header, one bit per slot in three
 * bitmaps:
 *   alloc — the slot holds an object (authoritative outside the current
 *           64-slot word that an owning thread cache is handing out);
 *   mark  — the object was reached in this cycle; objects allocated while a
 *           cycle is marking are born marked ("allocate black");
 *   freed — tern_free was called on it; merged into alloc by the sweeper or
 *           when the span is next handed out.
 * Sweeping a span is word-parallel: dead = alloc & ~mark.
 *
 * THREAD CACHES.  A thread allocates from its own cache: per span class a
 * span and a 64-bit mask of the free slots in the current word of that
 * span's alloc bitmap.  The fast path is: find the lowest set bit, clear it,
 * compute the address.  Moving to the next word (every <= 64 objects)
 * publishes the consumed slots into the alloc bitmap with one atomic OR.
 * Spans come from a central pool per span class, each with its own lock.
 *
 * SWEEP GENERATIONS (as in Go).  The heap's sweepgen grows by 2 per cycle.
 * A span with sweepgen == sg-2 (or older) needs sweeping, sg-1 is being
 * swept, sg is swept.  Whoever wins the CAS to sg-1 sweeps it: the allocator
 * (lazily, for the class it needs), the background sweeper, or the start of
 * the next cycle, which finishes all sweeping so that sweeping never races
 * with marking.
 */
#ifndef TERN_INTERNAL_H
#define TERN_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tern.h"

#define TERN_API __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((uintptr_t)(a)-1))

/* ---- geometry ---------------------------------------------------------- */
#define GRANULE 16u
#define PAGE_SHIFT 13
#define PAGE_SIZE ((size_t)1 << PAGE_SHIFT)           /* 8 KiB */
#define CHUNK_SHIFT 22
#define CHUNK_SIZE ((size_t)1 << CHUNK_SHIFT)         /* 4 MiB */
#define CHUNK_PAGES (CHUNK_SIZE / PAGE_SIZE)          /* 512   */
#define PAGE_BITMAP_WORDS (PAGE_SIZE / GRANULE / 64)  /* 8 words per page */
#define MAX_SMALL 32768u
#define MAX_SPAN_PAGES 16

/* Span classes: size class * 2 + noscan.  Class 0 is "large". */
#define NCLASSES_MAX 80
#define NSPANCLASS (NCLASSES_MAX * 2)

enum span_state {
    SPAN_FREE = 0,   /* pages not in use                      */
    SPAN_CACHED,     /* small span owned by a thread cache    */
    SPAN_PARTIAL,    /* small span on a central partial list  */
    SPAN_FULL,       /* small span on a central full list     */
    SPAN_UNSWEPT,    /* small span on a central unswept list  */
    SPAN_LARGE,      /* one large object                      */
};

struct tc_class;
struct chunk;
struct shade_buf;

/* 128 bytes, cache-line aligned.  The first line holds what every free
 * and every lookup reads and almost nothing writes; the second what
 * changes while the span is in use (owner, cache word, counters, list
 * links).  A free is a chain of dependent loads (page map, span, alloc
 * word), and the span was 136 bytes across three lines, its free-path
 * fields on two: larson under the drop-in went from 414 to 384 ms
 * (medians of 5, glibc 347) with this layout. */
struct span {
    uintptr_t base;           /* address of slot 0                          */
    uintptr_t limit;          /* nelems * elemsize                          */
    uint64_t divmagic;        /* (off * divmagic) >> 48 == off / elemsize   */
    _Atomic uint64_t *alloc, *mark, *freed;
    uint32_t elemsize;
    uint32_t nelems;
    uint16_t spanclass;       /* 0 for large                                */
    _Atomic uint8_t state;
    uint8_t typed;            /* 1: typed span (typed.c): scan descr's words */
    uint8_t noscan;
    /* second line */
    struct tc_class *_Atomic owner __attribute__((aligned(64))); /* owning cache entry, or NULL */
    struct span *next, *prev; /* list links (central lists)                 */
    struct chunk *chunk;
    const struct typed_descr *descr; /* ... the layout of every slot        */
    uint32_t npages;
    _Atomic uint32_t sweepgen;
    _Atomic uint32_t cache_word; /* word an owning cache is consuming       */
    uint32_t nwords;          /* bitmap words                               */
    _Atomic uint32_t nfree_hint; /* frees since the span was last swept     */
    _Atomic uint8_t needzero; /* slots may hold old data                    */
    _Atomic uint8_t rescan;   /* mark stack overflowed on an object here    */
};
_Static_assert(sizeof(struct span) == 128, "struct span: two cache lines");

struct chunk {
    uint64_t magic;
    struct chunk *next;       /* all chunks                                 */
    struct chunk *next_free;  /* freed huge chunks kept for reuse           */
    uintptr_t start;          /* first payload byte                         */
    size_t size;              /* mapping size (CHUNK_SIZE or huge)          */
    uint32_t meta_pages;      /* header pages at the front                  */
    uint32_t huge;
    uint8_t card_shift;       /* a card covers 1 << card_shift bytes        */
    uint8_t untracked;        /* barrier: report the whole chunk written    */
    uint8_t unregistered;     /* barrier: the kernel refused to track it    */
    uint8_t header_released;  /* empty: span part of the header returned    */
    _Atomic uint8_t cards[CHUNK_PAGES]; /* barrier: card written while marking */
    uint64_t free_pages[CHUNK_PAGES / 64]; /* 1 = page free                 */
    uint64_t dirty_pages[CHUNK_PAGES / 64]; /* 1 = page may hold old data  */
    uint16_t pagemap[CHUNK_PAGES];  /* first page of the span + 1, 0 = none */
    struct span spans[CHUNK_PAGES]; /* descriptor of the span at page i     */
    _Atomic uint64_t alloc_bits[CHUNK_PAGES * PAGE_BITMAP_WORDS];
    _Atomic uint64_t mark_bits[CHUNK_PAGES * PAGE_BITMAP_WORDS];
    _Atomic uint64_t freed_bits[CHUNK_PAGES * PAGE_BITMAP_WORDS];
};
#define CHUNK_MAGIC 0x7465726e6368756bull
#define CHUNK_META_PAGES ((sizeof(struct chunk) + PAGE_SIZE - 1) / PAGE_SIZE)

/* ---- size classes (sizeclass.c) -------------------------------------- */
struct sizeclass {
    uint32_t size;
    uint32_t npages;
    uint32_t nelems;
    uint64_t divmagic;
};
extern struct sizeclass tern_classes[NCLASSES_MAX];
extern unsigned tern_nclasses;
extern uint8_t tern_size_to_class16[MAX_SMALL / GRANULE + 1];
void tern_sizeclass_init(void);
static inline unsigned size_class(size_t n) {
    return tern_size_to_class16[(n + GRANULE - 1) / GRANULE];
}

/* ---- OS (os.c) --------------------------------------------------------- */
void *tern_os_map(size_t size);                 /* zeroed, page aligned  */
void *tern_os_map_aligned(size_t size, size_t align);
void tern_os_unmap(void *p, size_t size);
struct root_range { uintptr_t lo, hi; };
void *tern_os_map_meta(size_t size);            /* Tern's own tables      */
void tern_os_unmap_meta(void *p, size_t size);
size_t tern_os_meta_ranges(struct root_range *out, size_t max);
void tern_os_decommit(void *p, size_t size);   /* contents become zero  */
uint64_t tern_now_ns(void);
uint64_t tern_thread_cpu_ns(void);
size_t tern_os_rss(void);
int tern_ncpus(void);
size_t tern_os_max_object(void);                 /* bigger requests fail: RAM + swap */

/* ---- heap: chunks, pages, lookup (heap.c) ------------------------------ */
struct heap {
    pthread_mutex_t lock;           /* page allocator and chunk list   */
    struct chunk *chunks;
    _Atomic uintptr_t lo, hi;       /* bounds of all chunks            */
    _Atomic size_t mapped;          /* bytes mapped for chunks         */
    _Atomic size_t span_bytes;      /* bytes in in-use spans           */
    _Atomic size_t dirty_free;      /* free pages that may be resident */
    _Atomic size_t meta_bytes;      /* chunk header pages              */
    _Atomic uint64_t released;      /* bytes given back, since start   */
    _Atomic uint64_t limit_failures; /* spans refused by the limit     */
};
extern struct heap tern_heap;
extern struct chunk **_Atomic tern_chunkmap_l1[];
struct span *tern_span_alloc(size_t npages, bool *needzero); /* heap lock held inside */
void tern_span_release(struct span *s);       /* give pages back      */
void tern_span_release_now(struct span *s);   /* ... to the OS at once */
/* Bytes of the heap that may be resident: spans, free pages not yet
 * returned, chunk headers.  The memory limit applies to this. */
static inline size_t tern_heap_committed(void) {
    return atomic_load_explicit(&tern_heap.span_bytes, memory_order_relaxed) +
           atomic_load_explicit(&tern_heap.dirty_free, memory_order_relaxed) +
           atomic_load_explicit(&tern_heap.meta_bytes, memory_order_relaxed);
}
size_t tern_heap_release(size_t want, bool headers); /* return free pages to the OS */

/* Is page i of chunk c free?  Changed under the heap lock; a reader
 * without it (the barrier) gets a value that was true a moment ago. */
static inline bool page_free(struct chunk *c, size_t i) {
    return (__atomic_load_n(&c->free_pages[i / 64], __ATOMIC_RELAXED) >> (i % 64)) & 1;
}

#define L1_BITS 13
#define L2_BITS (47 - CHUNK_SHIFT - L1_BITS)
static inline struct chunk *chunk_of(uintptr_t a) {
    uintptr_t u = a >> CHUNK_SHIFT;
    if (unlikely(a >> 47)) return NULL;
    struct chunk **l2 = atomic_load_explicit(&tern_chunkmap_l1[u >> L2_BITS], memory_order_acquire);
    if (!l2) return NULL;
    return l2[u & ((1u << L2_BITS) - 1)];
}
/* The span holding address a, or NULL; lo and len are the heap bounds
 * (tern_heap.lo, tern_heap.hi - lo), which a scanning loop reads once. */
static inline struct span *span_lookup(uintptr_t a, uintptr_t lo, uintptr_t len) {
    if (a - lo >= len) return NULL;
    struct chunk *c = chunk_of(a);
    if (!c) return NULL;
    size_t pg = (a - (uintptr_t)c) >> PAGE_SHIFT;
    if (c->huge) return pg >= c->meta_pages ? &c->spans[0] : NULL;
    unsigned f = c->pagemap[pg];
    return f ? &c->spans[f - 1] : NULL;
}
static inline struct span *span_of(uintptr_t a) {
    uintptr_t lo = atomic_load_explicit(&tern_heap.lo, memory_order_relaxed);
    return span_lookup(a, lo, atomic_load_explicit(&tern_heap.hi, memory_order_relaxed) - lo);
}
/* Walk the spans of chunk c: start with *p = c->meta_pages; each call
 * returns the next span (in use or not) and moves *p past it. */
static inline struct span *chunk_next_span(struct chunk *c, size_t *p) {
    if (c->huge) {
        if (*p != c->meta_pages) return NULL;
        (*p)++;
        return &c->spans[0];
    }
    for (size_t i = *p; i < CHUNK_PAGES; i++)
        if (__atomic_load_n(&c->pagemap[i], __ATOMIC_ACQUIRE) == i + 1) {
            struct span *s = &c->spans[i];
            *p = i + (s->npages ? s->npages : 1);
            return s;
        }
    *p = CHUNK_PAGES;
    return NULL;
}

/* Bytes of an object of span s: the slot size, or the whole large span. */
static inline size_t span_obj_size(const struct span *s) { return s->spanclass ? s->elemsize : s->limit; }

/* Slot index of offset off in span s (off < s->limit). */
static inline size_t span_slot(const struct span *s, uintptr_t off) {
    return (size_t)(((unsigned __int128)off * s->divmagic) >> 48);
}

/* ---- central span pools (span.c) --------------------------------------- */
struct central {
    pthread_mutex_t lock;
    struct span *partial, *full, *unswept;
    struct span *shared;   /* serves threads' first objects (below)       */
};
extern struct central tern_central[NSPANCLASS];
struct span *tern_central_take(unsigned spanclass);   /* CACHED, swept */
void tern_central_put(struct span *s);                /* from a cache  */
bool tern_central_place_locked(struct central *c, struct span *s); /* swept, on no list; true: empty */
size_t tern_central_release_chain(struct span *s);    /* spans linked by next, no lock held */
void tern_central_note_free(struct span *s);          /* FULL -> PARTIAL */
void tern_central_lock_all(void);
void tern_central_unlock_all(void);
void tern_central_begin_sweep(void);                  /* cycle end, central locks not held */
size_t tern_central_trim(void);                       /* idle: free spans left empty by frees */
void tern_list_push(struct span **head, struct span *s);
void tern_list_remove(struct span **head, struct span *s);
void tern_span_init_small(struct span *s, unsigned spanclass);
void tern_span_init_large(struct span *s, bool noscan);
/* A thread's first SHARED_OBJS objects of a small class come from the
 * class's shared span, one at a time under the class lock, so that a
 * thread that allocates a few objects of many sizes does not make a page
 * resident per size (an idle thread's footprint).  The next thread to
 * want a span of its own for the class takes the shared span.  NULL: no
 * slot, use a span of your own.  zero: clear the slot (before it is
 * marked black, span.c). */
#define SHARED_OBJS 16
#define SHARED_MAX_SIZE 1024 /* larger objects fill pages of their own anyway */
void *tern_central_shared_alloc(unsigned spanclass, bool zero); /* cleared if zero */

/* ---- thread caches and allocation (alloc.c) ---------------------------- */
struct tc_class {
    uint64_t bits;          /* free slots left in the current word        */
    uintptr_t wordbase;     /* address of slot 0 of the current word      */
    uint32_t size;
    uint32_t needzero;
    struct span *span;
    uint64_t loaded;        /* free mask when the word was loaded         */
    uint32_t word;
    uint32_t nshared;       /* objects taken from the shared span         */
    uintptr_t fl_head;      /* objects this thread freed, for reuse (alloc.c) */
    uint32_t fl_n;          /* ... how many                               */
    uint32_t markslow;      /* mark each slot handed out (alloc.c: black) */
};
struct tcache {
    struct tc_class c[NSPANCLASS];
    int64_t alloc_bytes;    /* not yet published to the pacer             */
    int64_t alloc_objs;
    _Atomic uint64_t free_bytes; /* explicit frees not yet published (owner  */
    _Atomic uint64_t frees;      /* writes, tern_get_stats reads)            */
    uint32_t fl_total;           /* objects on all the free lists            */
    uint32_t free_run;           /* small frees since the last allocation    */
    uint32_t fl_id;              /* tags this thread's listed objects        */
    _Atomic uint32_t nostop;     /* inside a black allocation: a stop waits  */
    _Atomic uint32_t stop_deferred; /* ... and one came meanwhile (thread.c) */
};
uint64_t tern_tcache_pending_frees(void);             /* sum over threads */
void tern_tcache_flush(struct tcache *tc);            /* give every span back */
void tern_tcache_attach(struct tcache *tc);
void tern_alloc_threads_changed(unsigned nthreads); /* free-list share per thread */
void tern_free_moved(void *p, size_t n); /* tern_free of what realloc copied into n bytes */
void tern_tcache_publish(struct tcache *tc);           /* world stopped */
void tern_tcache_black_start(void);                     /* start pause   */
void tern_mark_free_lists(void);                      /* world stopped: every thread's */
void tern_alloc_init(void);

/* Is slot i of small span s allocated?  Outside the word an owning cache
 * is handing out, the alloc bit says; inside it, the cache's own mask
 * does (a slot free when the word was loaded and no longer in the mask
 * has been handed out since the last cycle).  The cache's mask only ever
 * loses bits, so a read racing with the owner errs only towards "not yet
 * handed out" for a slot the owner is returning this instant, which holds
 * nothing yet. */
static inline bool slot_allocated(struct span *s, size_t i) {
    uint64_t bit = 1ull << (i % 64);
    _Atomic uint64_t *aw = &s->alloc[i / 64];
    if (atomic_load_explicit(aw, memory_order_acquire) & bit) return true;
    struct tc_class *own = atomic_load_explicit(&s->owner, memory_order_acquire);
    if (own) {
        uint32_t w1 = atomic_load_explicit(&s->cache_word, memory_order_acquire);
        uint64_t loaded = __atomic_load_n(&own->loaded, __ATOMIC_ACQUIRE);
        uint64_t bits = __atomic_load_n(&own->bits, __ATOMIC_ACQUIRE);
        uint32_t w2 = atomic_load_explicit(&s->cache_word, memory_order_acquire);
        if (w1 == w2 && w1 == i / 64 && (loaded & bit) && !(bits & bit)) return true;
    }
    /* The owner publishes a word before it changes its masks, so if they
     * moved under us the alloc bit is set by now. */
    return atomic_load_explicit(aw, memory_order_acquire) & bit;
}

extern _Atomic int tern_gc_black;                      /* allocate black       */
void *tern_alloc_internal(size_t n, bool noscan, bool zero);
bool tern_free_small_start(void *p);                   /* malloc.c's fast free */

/* ---- threads and stop-the-world (thread.c) ----------------------------- */
struct thread {
    struct thread *next, *prev;
    pthread_t pthread;
    pid_t tid;
    uintptr_t stack_lo, stack_hi;
    uintptr_t tp;                  /* thread pointer (TLS base)            */
    _Atomic uintptr_t sp;          /* stack pointer saved when stopped     */
    uintptr_t regs[64];            /* registers saved when stopped: general
                                      purpose, then the 16 SSE registers
                                      (compilers keep pointers there too) */
    struct tcache *tc;
    int external;                  /* registered by tern_register_thread   */
    _Atomic uintptr_t shade_val;   /* explicit barrier: value being shaded */
    _Atomic uintptr_t shade_lo, shade_hi; /* ... range being shaded        */
    struct shade_buf *_Atomic shade; /* ... values it shaded (mark.c)      */
    struct tcache tcache;          /* the thread's allocation cache        */
};
extern pthread_mutex_t tern_threads_lock;
extern struct thread *tern_threads;
extern unsigned tern_nthreads;
struct thread *tern_thread_self(void);                 /* NULL if unknown */
struct thread *tern_thread_ensure(void);               /* registers if needed */
int tern_stop_world(void);                              /* threads lock held */
void tern_start_world(void);
void tern_thread_save_self(struct thread *t);
void tern_thread_init(void);
void tern_thread_stop_deferred(void);                  /* a stop waited: take it */
void tern_thread_atfork_child(void);
void tern_threads_scan_pending(void (*scan)(uintptr_t lo, uintptr_t hi, void *), void *);
typedef int (*tern_sigmask_fn)(int, const sigset_t *, sigset_t *);
tern_sigmask_fn tern_real_sigmask(void);
int tern_real_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

/* ---- roots (roots.c) -------------------------------------------------- */
void tern_roots_prepare(void);       /* before stopping: static data, TLS sizes */
void tern_roots_scan(void (*scan)(uintptr_t lo, uintptr_t hi, void *), void *arg);
void tern_roots_init(void);
void tern_roots_done(void);          /* after the world restarts */
void tern_roots_collector_thread(void); /* this thread belongs to the collector */
void tern_roots_atfork_child(void);   /* forget the parent's collector stacks */
void tern_roots_lock(void);          /* fork */
void tern_roots_unlock(void);

/* ---- the write barrier (barrier.c) ------------------------------------ */
typedef void (*tern_dirty_fn)(uintptr_t lo, uintptr_t hi, void *arg);
extern int tern_barrier_kind;                 /* enum tern_barrier, never AUTO */
extern bool tern_barrier_dropin;              /* malloc shim: auto skips mprotect, explicit refused */
void tern_barrier_init(int want);
void tern_barrier_chunk_added(struct chunk *c); /* heap lock held */
void tern_barrier_arm(void);
void tern_barrier_atfork_child(void);
size_t tern_barrier_collect(tern_dirty_fn fn, void *arg, bool final);
size_t tern_barrier_collect_part(tern_dirty_fn fn, void *arg, bool final, unsigned part, unsigned nparts);
bool tern_barrier_can_preclean(void);
void tern_barrier_disarm(void);
static inline bool tern_concurrent(void) { return tern_barrier_kind != TERN_BARRIER_STW; }

/* ---- marking (mark.c) ------------------------------------------------- */
uint64_t tern_mark_roots_and_drain(unsigned markers);  /* stw kind, world stopped */
void tern_mark_prepare(unsigned markers);              /* world running: start threads */
void tern_mark_start(void);                            /* start pause: roots */
void tern_mark_concurrent(unsigned markers);           /* world running */
size_t tern_mark_preclean(unsigned markers);           /* world running */
void tern_mark_close_assists(void);                    /* before the final pause */
void tern_mark_open_assists(void);
size_t tern_mark_finish(unsigned markers, uint64_t *helper_cpu); /* final pause */
void tern_mark_cycle_end(void);                        /* world running again */
void tern_mark_assist(uint64_t bytes);                 /* a mutator helps */
void tern_mark_shade(void *value);                     /* explicit barrier */
void tern_mark_shade_range(uintptr_t lo, uintptr_t hi); /* explicit barrier */
void tern_mark_thread_exit(struct thread *t);          /* hand over its shades */
extern _Atomic uint64_t tern_assist_ns;
extern _Atomic unsigned tern_assist_factor;
extern _Atomic int tern_assist_hard; /* collect.c: pre-cleaning is not converging */
void tern_markers_atfork_child(void);
extern _Atomic uint64_t tern_marked_bytes;
/* Keep p in a register or on the stack up to here, where a stop of this
 * thread sees it.  A call that stores a pointer only where the collector
 * does not look (a hidden table key, a noscan object) and then waits for
 * a lock the collector holds through its pause would otherwise let the
 * pause free what it is registering: the compiler drops a variable after
 * its last use, not at the end of the function. */
#define TERN_KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

static inline bool bit_test(_Atomic uint64_t *bm, size_t i) {
    return (atomic_load_explicit(&bm[i / 64], memory_order_relaxed) >> (i % 64)) & 1;
}

/* Used by finalize.c in the final pause (world stopped, marking complete;
 * stw cycle: the one pause).  tern_mark_state: -1 not a heap object, 0
 * unmarked, 1 marked, 2 dead (freed and not yet swept, or a free slot). */
int tern_mark_state(uintptr_t p);
bool tern_mark_value(uintptr_t v);        /* mark and queue what v points to;
                                           * true if it was white and is now marked */
void tern_mark_contents(uintptr_t obj);   /* queue obj's words, obj stays white */
void tern_mark_drain_pause(void);         /* drain with the pause's markers */

/* ---- typed layouts (typed.c) ------------------------------------------ *
 * A typed span holds objects of one size class and one layout: only the
 * words whose bit is set in descr are scanned (mark.c, scan_typed).  Stack
 * entries for typed objects carry the tag bit 1 in their base address. */
struct typed_descr {
    uint32_t nwords;          /* words described; later words hold no pointer */
    uint64_t bits[];          /* bit i set: word i may hold a pointer         */
};
void tern_typed_atfork(int phase);        /* 0 prepare, 1 parent, 2 child */

/* ---- finalizers, weak links, ephemerons, uncollectable (finalize.c) ---- */
extern _Atomic int tern_finalize_any;      /* a registration was ever made */
void tern_finalize_pause(void);            /* mark.c: after the final drain */
void tern_finalize_scan_roots(void (*scan)(uintptr_t lo, uintptr_t hi, void *), void *arg);
void tern_finalize_lock(void);             /* roots.c: prepare .. done; fork */
void tern_finalize_unlock(void);
void tern_finalize_cycle_done(void);       /* collect.c: world running, no lock */
void tern_finalize_kick(void);             /* no lock held: start the thread */
void tern_finalize_note_free(void *p);     /* alloc.c: tern_free(p) */
void tern_finalize_note_realloc(void *old, void *moved);
void tern_finalize_atfork_child(void);

/* ---- sweeping (sweep.c) ----------------------------------------------- */
extern _Atomic uint32_t tern_sweepgen;
size_t tern_sweep_span(struct span *s);   /* caller won the sweepgen CAS; returns bytes freed */
bool tern_sweep_claim(struct span *s);
void tern_sweep_ensure(struct span *s);    /* swept when it returns */
void tern_sweep_ensure_locked(struct span *s); /* central lock held */
void tern_sweep_finish(void);              /* sweep everything still unswept */
bool tern_object_live(struct span *s, size_t idx);

/* ---- pacing (pacer.c) ------------------------------------------------- */
extern _Atomic uint64_t tern_in_use;       /* bytes allocated since mark + live */
extern _Atomic uint64_t tern_next_gc;      /* the heap goal */
extern _Atomic uint64_t tern_trigger;      /* where a concurrent cycle starts */
void tern_pacer_note_alloc(int64_t bytes, int64_t objs, bool may_collect);
void tern_pacer_note_free(uint64_t bytes);
void tern_pacer_cycle_done(uint64_t live, uint64_t grown_while_marking, const char *why);
void tern_pacer_init(void);
void tern_pacer_limit_changed(void);   /* tern_set_memory_limit */

/* ---- giving memory back, the memory limit (scavenge.c) ----------------- */
extern _Atomic size_t tern_memlimit;       /* 0: none */
void tern_scavenger_poke(void);            /* allocation published: start it if due */
void tern_scavenger_atfork_prepare(void);
void tern_scavenger_atfork_parent(void);
void tern_scavenger_atfork_child(void);
size_t tern_scavenge_now(void);              /* allocating thread refused memory: return free pages */
uint64_t tern_scavenger_cpu_ns(void);
void *tern_out_of_memory(size_t n);         /* after a full collection: handler or NULL */

/* ---- the cycle, stats, tracing (collect.c) ------------------------------ */
void tern_gc(const char *why, bool full_sweep);
void tern_gc_for(const char *why, bool full_sweep, uint64_t extra);
void tern_gc_assist(uint64_t bytes);
void tern_gc_background(const char *why);   /* from an unregistered collector thread */
bool tern_gc_in_progress(void);
void tern_collect_atfork_child(void);
struct tern_global_stats {
    _Atomic uint64_t cycles, allocated_bytes, allocated_objects, freed_bytes,
        explicit_frees, total_pause_ns, max_pause_ns, last_pause_ns, mark_cpu_ns,
        gc_cpu_ns, live_bytes, pauses;
    _Atomic uint32_t markers;
};
extern struct tern_global_stats tern_stats_g;
extern pthread_mutex_t tern_gc_lock;
extern uint64_t tern_start_ns;

/* ---- configuration (env.c, init.c) -------------------------------------- */
struct tern_config {
    int gc_percent;        /* <0: off */
    int markers;
    int markers_set;       /* TERN_MARKERS or tern_options.markers given */
    int barrier;           /* enum tern_barrier asked for */
    int trace;
    size_t initial_heap;
    size_t memlimit;       /* TERN_MEMLIMIT, bytes; 0 = none */
    int checkmark;         /* TERN_DEBUG=checkmark */
    int stats;             /* TERN_STATS=1: summary at exit */
    const char *log_file;  /* TERN_LOG_FILE */
    const char *trace_file; /* TERN_TRACE_FILE */
};
extern struct tern_config tern_cfg;
void tern_env_load(struct tern_config *cfg);
void tern_env_bad(const char *name, const char *val, const char *expect); /* report once */
extern _Atomic int tern_initialized;
void tern_init_slow(void);
static inline void tern_ensure_init(void) {
    if (unlikely(!atomic_load_explicit(&tern_initialized, memory_order_acquire))) tern_init_slow();
}
void tern_report_error(const char *what, const void *p);

/* ---- reporting: log, pause histogram, exit summary, timeline (trace.c) ---- */
void tern_log(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* stderr or TERN_LOG_FILE */
extern int tern_log_fd;
extern bool tern_timeline_on;                  /* TERN_TRACE_FILE is being written */
extern _Atomic uint64_t tern_peak_mapped;
void tern_trace_init(void);                    /* init lock held: open the files */
void tern_trace_after_init(void);              /* atexit handler */
void tern_trace_atfork_child(void);
void tern_trace_note_pause(uint64_t ns);
void tern_trace_note_mapped(void);
uint64_t tern_pause_quantile(double q);
uint64_t tern_process_cpu_ns(void);
double tern_gc_cpu_percent(void);
uint64_t tern_peak_rss(void);
void tern_print_summary(void);
void tern_trace_memory(uint64_t cycle);        /* TERN_TRACE=2 */
void tern_tl_complete(const char *name, uint64_t start_ns, uint64_t dur_ns); /* "X" event, this thread */
void tern_tl_heap(uint64_t at_ns, uint64_t in_use, uint64_t live);          /* "C" event */
void tern_tl_gc_cpu(uint64_t at_ns);                                         /* "C" event */
void tern_tl_thread_name(const char *name);
void tern_tl_flush(void);                      /* no collector lock held */
extern uint64_t tern_roots_last_bytes;               /* the latest root scan, bytes */
extern uint64_t tern_root_bytes[4];            /* roots scanned: stacks+registers, static+TLS, added, mappings */
extern _Atomic uint64_t tern_spans_swept;

#endif /* TERN_INTERNAL_H */
