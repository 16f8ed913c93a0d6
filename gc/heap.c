/* heap.c — chunks and pages: where the heap's memory comes from, and the
 * O(1) map from any address to its chunk.
 *
 * Chunks are 4 MiB, 4 MiB-aligned mappings.  The first pages of each hold
 * its header (struct chunk); the rest are 8 KiB pages handed out as runs
 * (spans) under the heap lock, first fit.  Objects larger than a chunk's
 * payload get a "huge" chunk of their own.  Chunk headers are never
 * unmapped, so a stale or false pointer can always be looked up safely;
 * freed huge chunks keep their mapping (payload returned with
 * MADV_DONTNEED) and are reused, which keeps the number of mappings
 * bounded. */
#include "internal.h"

#include <string.h>

struct heap tern_heap = {.lock = PTHREAD_MUTEX_INITIALIZER};
struct chunk **_Atomic tern_chunkmap_l1[1u << L1_BITS];
static struct chunk *huge_free; /* freed huge chunks, for reuse */

/* Map [start, start + size) to c.  Every second-level table is made
 * first, and only then are entries set: a failure (no memory for a table)
 * leaves no entry behind.  An entry left pointing at a chunk that is then
 * unmapped would send a later lookup to unmapped memory, or, once mmap
 * reuses the address, to whatever chunk lands there (found by fuzzing: a
 * posix_memalign with a 2^45 alignment ran out of tables half way, and
 * later pointers far past a new 4 MiB chunk resolved to it). */
static bool chunkmap_set(uintptr_t start, size_t size, struct chunk *c) {
    for (uintptr_t a = start; a < start + size; a += CHUNK_SIZE) {
        uintptr_t u = a >> CHUNK_SHIFT;
        if (atomic_load(&tern_chunkmap_l1[u >> L2_BITS])) continue;
        struct chunk **l2 = tern_os_map_meta(sizeof(struct chunk *) << L2_BITS);
        if (!l2) return false;
        atomic_store_explicit(&tern_chunkmap_l1[u >> L2_BITS], l2, memory_order_release);
    }
    for (uintptr_t a = start; a < start + size; a += CHUNK_SIZE) {
        uintptr_t u = a >> CHUNK_SHIFT;
        struct chunk **l2 = atomic_load(&tern_chunkmap_l1[u >> L2_BITS]);
        __atomic_store_n(&l2[u & ((1u << L2_BITS) - 1)], c, __ATOMIC_RELEASE);
    }
    return true;
}

static void bounds_add(uintptr_t lo, uintptr_t hi) {
    uintptr_t cur = atomic_load(&tern_heap.lo);
    if (cur == 0 || lo < cur) atomic_store(&tern_heap.lo, lo);
    if (hi > atomic_load(&tern_heap.hi)) atomic_store(&tern_heap.hi, hi);
}

static struct chunk *chunk_new(size_t size, bool huge) {
    struct chunk *c = tern_os_map_aligned(size, CHUNK_SIZE);
    if (!c) return NULL;
    c->magic = CHUNK_MAGIC;
    c->size = size;
    c->meta_pages = CHUNK_META_PAGES;
    c->start = (uintptr_t)c + CHUNK_META_PAGES * PAGE_SIZE;
    c->huge = huge;
    if (!huge)
        for (size_t i = CHUNK_META_PAGES; i < CHUNK_PAGES; i++) c->free_pages[i / 64] |= 1ull << (i % 64);
    if (!chunkmap_set((uintptr_t)c, size, c)) {
        tern_os_unmap(c, size);
        return NULL;
    }
    tern_barrier_chunk_added(c);
    bounds_add((uintptr_t)c, (uintptr_t)c + size);
    atomic_fetch_add(&tern_heap.mapped, size);
    atomic_fetch_add(&tern_heap.meta_bytes, CHUNK_META_PAGES * PAGE_SIZE);
    c->next = tern_heap.chunks;
    __atomic_store_n(&tern_heap.chunks, c, __ATOMIC_RELEASE);
    return c;
}

/* First fit: a run of n free pages in c, or -1. */
static long find_run(struct chunk *c, size_t n) {
    size_t i = c->meta_pages;
    while (i + n <= CHUNK_PAGES) {
        uint64_t w = c->free_pages[i / 64] >> (i % 64);
        if (!w) { i = (i / 64 + 1) * 64; continue; }
        i += (size_t)__builtin_ctzll(w);
        size_t j = i;
        while (j < i + n && j < CHUNK_PAGES && page_free(c, j)) j++;
        if (j == i + n) return (long)i;
        i = j + 1;
    }
    return -1;
}

static struct span *huge_alloc(size_t npages, bool *needzero) {
    size_t size = ALIGN_UP(CHUNK_META_PAGES * PAGE_SIZE + npages * PAGE_SIZE, CHUNK_SIZE);
    struct chunk **pp = &huge_free, *c = NULL;
    for (; *pp; pp = &(*pp)->next_free)
        if ((*pp)->size >= size && (*pp)->size <= 2 * size) {
            c = *pp;
            *pp = c->next_free;
            break;
        }
    if (c) {
        *needzero = false; /* payload was returned with MADV_DONTNEED */
    } else {
        c = chunk_new(size, true);
        if (!c) return NULL;
        *needzero = false;
    }
    c->next_free = NULL;
    struct span *s = &c->spans[0];
    memset(s, 0, sizeof *s);
    s->chunk = c;
    s->npages = (uint32_t)((c->size - CHUNK_META_PAGES * PAGE_SIZE) / PAGE_SIZE);
    s->base = c->start;
    s->alloc = &c->alloc_bits[0];
    s->mark = &c->mark_bits[0];
    s->freed = &c->freed_bits[0];
    s->nwords = 1;
    return s;
}

/* Would taking `clean` bytes of pages that are not resident yet (and
 * maybe a new chunk's header) pass the memory limit?  Heap lock held. */
static bool over_limit(size_t clean) {
    size_t limit = atomic_load_explicit(&tern_memlimit, memory_order_relaxed);
    if (!limit) return false;
    if (tern_heap_committed() + clean <= limit) return false;
    atomic_fetch_add(&tern_heap.limit_failures, 1);
    return true;
}

/* A span of npages pages, or NULL when the OS refuses memory or the
 * memory limit would be passed (the caller collects, returns free pages
 * and tries again; see alloc.c). */
struct span *tern_span_alloc(size_t npages, bool *needzero) {
    struct span *s = NULL;
    pthread_mutex_lock(&tern_heap.lock);
    if (npages > CHUNK_PAGES - CHUNK_META_PAGES) {
        size_t size = ALIGN_UP(CHUNK_META_PAGES * PAGE_SIZE + npages * PAGE_SIZE, CHUNK_SIZE);
        if (!over_limit(size)) s = huge_alloc(npages, needzero);
        goto out;
    }
    for (int attempt = 0; attempt < 2 && !s; attempt++) {
        for (struct chunk *c = tern_heap.chunks; c; c = c->next) {
            if (c->huge) continue;
            long f = find_run(c, npages);
            if (f < 0) continue;
            size_t dirty = 0;
            for (size_t i = (size_t)f; i < (size_t)f + npages; i++)
                dirty += (c->dirty_pages[i / 64] >> (i % 64)) & 1;
            if (over_limit((npages - dirty) * PAGE_SIZE)) goto out;
            for (size_t i = (size_t)f; i < (size_t)f + npages; i++) {
                c->free_pages[i / 64] &= ~(1ull << (i % 64));
                c->dirty_pages[i / 64] |= 1ull << (i % 64);
            }
            atomic_fetch_sub(&tern_heap.dirty_free, dirty * PAGE_SIZE);
            c->header_released = 0;
            s = &c->spans[f];
            memset(s, 0, sizeof *s);
            s->chunk = c;
            s->npages = (uint32_t)npages;
            s->base = (uintptr_t)c + (size_t)f * PAGE_SIZE;
            s->alloc = &c->alloc_bits[f * PAGE_BITMAP_WORDS];
            s->mark = &c->mark_bits[f * PAGE_BITMAP_WORDS];
            s->freed = &c->freed_bits[f * PAGE_BITMAP_WORDS];
            s->nwords = (uint32_t)(npages * PAGE_BITMAP_WORDS);
            memset((void *)s->alloc, 0, s->nwords * 8);
            memset((void *)s->mark, 0, s->nwords * 8);
            memset((void *)s->freed, 0, s->nwords * 8);
            *needzero = dirty != 0;
            /* Publish the page map last: a concurrent lookup sees either no
             * span or a fully initialised one (state is still SPAN_FREE
             * until the caller sets it). */
            for (size_t i = (size_t)f; i < (size_t)f + npages; i++)
                __atomic_store_n(&c->pagemap[i], (uint16_t)(f + 1), __ATOMIC_RELEASE);
            break;
        }
        if (!s && attempt == 0 && (over_limit(CHUNK_SIZE) || !chunk_new(CHUNK_SIZE, false))) break;
    }
out:
    if (s) atomic_fetch_add(&tern_heap.span_bytes, (size_t)s->npages * PAGE_SIZE);
    pthread_mutex_unlock(&tern_heap.lock);
    return s;
}

static void span_release(struct span *s, bool returned);
void tern_span_release(struct span *s) { span_release(s, false); }

/* The same, and its pages go back to the OS at once (an explicitly freed
 * big object, alloc.c).  The pages are still the span's while they are
 * returned, so no allocator can get them meanwhile, and the heap lock is
 * not held across the system call. */
void tern_span_release_now(struct span *s) {
    if (!s->chunk->huge) tern_os_decommit((void *)s->base, (size_t)s->npages * PAGE_SIZE);
    span_release(s, true);
}

static void span_release(struct span *s, bool returned) {
    struct chunk *c = s->chunk;
    pthread_mutex_lock(&tern_heap.lock);
    atomic_store(&s->state, SPAN_FREE);
    atomic_fetch_sub(&tern_heap.span_bytes, (size_t)s->npages * PAGE_SIZE);
    if (c->huge) {
        tern_os_decommit((void *)c->start, c->size - CHUNK_META_PAGES * PAGE_SIZE);
        atomic_fetch_add(&tern_heap.released, c->size - CHUNK_META_PAGES * PAGE_SIZE);
        c->next_free = huge_free;
        huge_free = c;
    } else {
        size_t f = (s->base - (uintptr_t)c) / PAGE_SIZE;
        for (size_t i = f; i < f + s->npages; i++) {
            __atomic_store_n(&c->pagemap[i], 0, __ATOMIC_RELEASE);
            c->free_pages[i / 64] |= 1ull << (i % 64);
            if (returned) c->dirty_pages[i / 64] &= ~(1ull << (i % 64));
        }
        if (returned) atomic_fetch_add(&tern_heap.released, (size_t)s->npages * PAGE_SIZE);
        else atomic_fetch_add(&tern_heap.dirty_free, (size_t)s->npages * PAGE_SIZE);
    }
    pthread_mutex_unlock(&tern_heap.lock);
}

/* ---- returning free pages to the OS ------------------------------------
 *
 * A free page is "dirty" if it may be resident (it was used since the
 * chunk was mapped or the page last returned).  Returning it is
 * MADV_DONTNEED: the page stays mapped (no new mapping is ever created, so
 * the count of mappings stays bounded) and reads back as zero, so its
 * dirty bit is cleared and the next span there needs no zeroing.  The run
 * being returned is taken out of the free map while the heap lock is
 * dropped for the system call, so an allocator never waits on madvise and
 * never gets a page while it is being returned.
 *
 * A chunk whose pages are all free and returned can also return the part
 * of its header that describes spans (descriptors and bitmaps: zero is
 * their empty state).  The header's first pages (page map, free map)
 * stay, and the chunk stays mapped: a stale or false pointer into it must
 * still find a valid, empty chunk. */

#define RELEASE_RUN_MAX 256 /* pages per madvise: 2 MiB */

static bool chunk_empty(struct chunk *c) {
    for (size_t i = c->meta_pages; i < CHUNK_PAGES; i++)
        if (!page_free(c, i) || ((c->dirty_pages[i / 64] >> (i % 64)) & 1)) return false;
    return true;
}

static void release_header(struct chunk *c) {
    uintptr_t lo = ALIGN_UP((uintptr_t)&c->spans[0], 4096), hi = (uintptr_t)c + c->meta_pages * PAGE_SIZE;
    hi &= ~(uintptr_t)4095;
    if (hi > lo) tern_os_decommit((void *)lo, hi - lo);
    c->header_released = 1;
}

/* Return up to `want` bytes of free pages (at least one run if want > 0).
 * headers: also return the span part of empty chunks' headers.  Returns
 * the bytes returned.  No lock held by the caller. */
size_t tern_heap_release(size_t want, bool headers) {
    size_t done = 0;
    pthread_mutex_lock(&tern_heap.lock);
    for (struct chunk *c = tern_heap.chunks; c && (done < want || headers); c = c->next) {
        if (c->huge) continue;
        size_t i = c->meta_pages;
        while (i < CHUNK_PAGES && done < want) {
            uint64_t w = c->free_pages[i / 64] & c->dirty_pages[i / 64];
            w >>= i % 64;
            if (!w) { i = (i / 64 + 1) * 64; continue; }
            i += (size_t)__builtin_ctzll(w);
            size_t j = i;
            while (j < CHUNK_PAGES && j - i < RELEASE_RUN_MAX && page_free(c, j) &&
                   ((c->dirty_pages[j / 64] >> (j % 64)) & 1))
                j++;
            for (size_t k = i; k < j; k++) c->free_pages[k / 64] &= ~(1ull << (k % 64));
            pthread_mutex_unlock(&tern_heap.lock);
            tern_os_decommit((char *)c + i * PAGE_SIZE, (j - i) * PAGE_SIZE);
            pthread_mutex_lock(&tern_heap.lock);
            for (size_t k = i; k < j; k++) {
                c->free_pages[k / 64] |= 1ull << (k % 64);
                c->dirty_pages[k / 64] &= ~(1ull << (k % 64));
            }
            atomic_fetch_sub(&tern_heap.dirty_free, (j - i) * PAGE_SIZE);
            atomic_fetch_add(&tern_heap.released, (j - i) * PAGE_SIZE);
            done += (j - i) * PAGE_SIZE;
            i = j;
        }
        if (headers && !c->header_released && chunk_empty(c)) release_header(c);
    }
    pthread_mutex_unlock(&tern_heap.lock);
    return done;
}
