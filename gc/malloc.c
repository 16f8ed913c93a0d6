/* malloc.c — the drop-in malloc replacement (libtern-malloc only; see
 * docs/malloc.md).
 *
 * Every malloc-family entry point of C, POSIX, glibc and C++ maps onto the
 * collector.  Programs run unchanged, under LD_PRELOAD or linked with
 * -ltern-malloc.  Modes come from the environment:
 *   TERN_FREE=honor|ignore      free releases at once (default) / does nothing
 *   TERN_LEAKS=off|report       report unfreed garbage by call site at exit
 *   TERN_ABORT_ON_ERROR=0|1     abort on double/invalid free instead of ignoring
 *   TERN_SCAN_MAPPINGS=1|0      scan anonymous private mappings as roots
 *
 * RECURSION.  The collector itself calls into the C library, which may call
 * malloc: dlsym, pthread_getattr_np, pthread_setspecific, pthread_create
 * (the DTV of a marker thread), atexit, pthread_atfork.  A thread-local
 * flag says "this thread is inside Tern"; a malloc made while it is set is
 * served from a small static bootstrap arena (with its own free lists),
 * whose pointers every entry point recognises by address.  The same arena
 * serves allocations made before the environment is readable.
 *
 * ALIGNMENT.  Objects are 16-byte aligned.  Slots of a small span lie at
 * base + i * size with base page aligned (8 KiB), so a size class that is a
 * multiple of the alignment gives aligned slots up to 8 KiB; large objects
 * start on a page.  Bigger alignments (up to any power of two) allocate
 * size + align as a large object and return an interior pointer, recorded
 * in a side table so that free/realloc accept it.
 *
 * Nothing here keeps a pointer to a heap object in memory the marker
 * scans: the side tables live in mmap'ed memory and store addresses
 * complemented (~p), so they never keep an object alive. */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SHIM_API __attribute__((visibility("default"), used))
#define SITE() __builtin_return_address(0)

extern char **environ;
void tern_roots_set_scan_mappings(int on);
void tern_roots_set_cycle_hook(void (*fn)(int begin));
void tern_atfork_shim(void (*prepare)(void), void (*release)(void));

/* ---- configuration ------------------------------------------------------ */

enum { ST_NONE, ST_INIT, ST_READY };
static _Atomic int state;
bool tern_barrier_dropin = true; /* barrier.c: the program's stores are plain */
static int free_ignore;    /* TERN_FREE=ignore  */
static int leak_mode;      /* TERN_LEAKS=report */
static int abort_on_error; /* TERN_ABORT_ON_ERROR=1 */
static int scan_maps = 1;  /* TERN_SCAN_MAPPINGS */

static __thread int in_tern;       /* inside Tern or the shim: nested mallocs use the arena */
static __thread int in_collect;    /* this thread runs a cycle (tern_collect from the program) */

/* ---- the bootstrap arena ------------------------------------------------ *
 * Power-of-two blocks 32 B .. 64 KiB with a 16-byte header (class).
 * Freed blocks go back on their class list.  Bounded: nested allocations
 * are few and short (a cpuset, a DTV, a key block). */
#define BOOT_SIZE (256u << 10)
#define BOOT_MINSHIFT 5
#define BOOT_MAXSHIFT 16
static char boot_arena[BOOT_SIZE] __attribute__((aligned(4096)));
static size_t boot_top;
static void *boot_free_list[BOOT_MAXSHIFT + 1];
static atomic_flag boot_lock = ATOMIC_FLAG_INIT;
struct boot_hdr { uint64_t shift, magic; };
#define BOOT_MAGIC 0x746572626f6f74ull

static inline bool is_boot(const void *p) {
    return (uintptr_t)p - (uintptr_t)boot_arena < BOOT_SIZE;
}

static void boot_lock_take(void) { while (atomic_flag_test_and_set_explicit(&boot_lock, memory_order_acquire)) {} }
static void boot_lock_give(void) { atomic_flag_clear_explicit(&boot_lock, memory_order_release); }

static void *boot_alloc(size_t n, size_t align) {
    unsigned sh = BOOT_MINSHIFT;
    while (sh <= BOOT_MAXSHIFT && ((size_t)1 << sh) < n) sh++;
    if (sh > BOOT_MAXSHIFT || align > 4096) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = NULL;
    boot_lock_take();
    if (align <= 16 && boot_free_list[sh]) {
        p = boot_free_list[sh];
        boot_free_list[sh] = *(void **)p;
    } else {
        if (align < 16) align = 16;
        size_t at = ALIGN_UP(boot_top + sizeof(struct boot_hdr), align);
        if (at + ((size_t)1 << sh) <= BOOT_SIZE) {
            p = boot_arena + at;
            boot_top = at + ((size_t)1 << sh);
            struct boot_hdr *h = (struct boot_hdr *)p - 1;
            h->shift = sh;
            h->magic = BOOT_MAGIC;
        }
    }
    boot_lock_give();
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    memset(p, 0, (size_t)1 << sh);
    return p;
}

static size_t boot_size(const void *p) {
    const struct boot_hdr *h = (const struct boot_hdr *)p - 1;
    return h->magic == BOOT_MAGIC ? (size_t)1 << h->shift : 0;
}

static void boot_free(void *p) {
    struct boot_hdr *h = (struct boot_hdr *)p - 1;
    if (h->magic != BOOT_MAGIC || h->shift > BOOT_MAXSHIFT) return; /* not a block start: ignore */
    boot_lock_take();
    *(void **)p = boot_free_list[h->shift];
    boot_free_list[h->shift] = p;
    boot_lock_give();
}

/* ---- side tables (mmap'ed, keys stored complemented) -------------------- */

struct entry { uintptr_t key; void *site; size_t size; };   /* key = ~addr, 0 = empty */
struct table { struct entry *e; size_t cap, n; pthread_mutex_t lock; };
static struct table aligned_tab = {.lock = PTHREAD_MUTEX_INITIALIZER};
static struct table leak_tab = {.lock = PTHREAD_MUTEX_INITIALIZER};

static inline size_t hash_addr(uintptr_t k, size_t cap) { return (size_t)((k * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1); }

static bool tab_grow(struct table *t, bool (*keep)(const struct entry *)) {
    size_t ncap = t->cap ? t->cap * 2 : 4096;
    struct entry *ne = tern_os_map_meta(ncap * sizeof *ne);
    if (!ne) return false;
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++) {
        struct entry *o = &t->e[i];
        if (!o->key || (keep && !keep(o))) continue;
        size_t j = hash_addr(o->key, ncap);
        while (ne[j].key) j = (j + 1) & (ncap - 1);
        ne[j] = *o;
        n++;
    }
    if (t->e) tern_os_unmap_meta(t->e, t->cap * sizeof *t->e);
    t->e = ne;
    t->cap = ncap;
    t->n = n;
    return true;
}

/* Insert or replace; returns the replaced entry's data in *old (key 0 if none). */
static bool tab_put(struct table *t, uintptr_t addr, void *site, size_t size, struct entry *old,
                    bool (*keep)(const struct entry *)) {
    if (old) old->key = 0;
    if ((t->n + 1) * 2 > t->cap && !tab_grow(t, keep)) return false;
    uintptr_t k = ~addr;
    size_t j = hash_addr(k, t->cap);
    while (t->e[j].key && t->e[j].key != k) j = (j + 1) & (t->cap - 1);
    if (t->e[j].key) {
        if (old) *old = t->e[j];
    } else {
        t->n++;
    }
    t->e[j] = (struct entry){k, site, size};
    return true;
}

/* Remove (backward-shift deletion); true if it was there. */
static bool tab_del(struct table *t, uintptr_t addr, struct entry *out) {
    if (!t->cap) return false;
    uintptr_t k = ~addr;
    size_t j = hash_addr(k, t->cap);
    while (t->e[j].key && t->e[j].key != k) j = (j + 1) & (t->cap - 1);
    if (!t->e[j].key) return false;
    if (out) *out = t->e[j];
    size_t hole = j;
    for (size_t i = (j + 1) & (t->cap - 1); t->e[i].key; i = (i + 1) & (t->cap - 1)) {
        size_t h = hash_addr(t->e[i].key, t->cap);
        /* move e[i] into the hole if its home is not in (hole, i] */
        if ((i > hole) ? (h <= hole || h > i) : (h <= hole && h > i)) {
            t->e[hole] = t->e[i];
            hole = i;
        }
    }
    t->e[hole].key = 0;
    t->n--;
    return true;
}

static bool tab_has(struct table *t, uintptr_t addr) {
    if (!t->cap) return false;
    uintptr_t k = ~addr;
    size_t j = hash_addr(k, t->cap);
    while (t->e[j].key && t->e[j].key != k) j = (j + 1) & (t->cap - 1);
    return t->e[j].key != 0;
}

/* ---- leak sites --------------------------------------------------------- */

struct site { void *pc; uint64_t count, bytes; };
static struct site *sites;
static size_t nsites, capsites;
static _Atomic uint64_t leaks_seen_objs, leaks_seen_bytes;

/* leak_tab.lock held */
static void site_add(void *pc, size_t bytes) {
    for (size_t i = 0; i < nsites; i++)
        if (sites[i].pc == pc) {
            sites[i].count++;
            sites[i].bytes += bytes;
            return;
        }
    if (nsites == capsites) {
        size_t nc = capsites ? capsites * 2 : 256;
        struct site *ns = tern_os_map_meta(nc * sizeof *ns);
        if (!ns) return;
        if (sites) {
            memcpy(ns, sites, nsites * sizeof *ns);
            tern_os_unmap_meta(sites, capsites * sizeof *ns);
        }
        sites = ns;
        capsites = nc;
    }
    sites[nsites++] = (struct site){pc, 1, bytes};
}

/* An object was allocated at base: if the table still held an entry for
 * base, the previous object there was reclaimed by the collector without
 * being freed — a leak. */
static void leak_note(void *base, size_t n, void *site) {
    struct entry old;
    pthread_mutex_lock(&leak_tab.lock);
    tab_put(&leak_tab, (uintptr_t)base, site, n, &old, NULL);
    if (old.key) {
        site_add(old.site, old.size);
        atomic_fetch_add(&leaks_seen_objs, 1);
        atomic_fetch_add(&leaks_seen_bytes, old.size);
    }
    pthread_mutex_unlock(&leak_tab.lock);
}

static void leak_forget(void *base) {
    pthread_mutex_lock(&leak_tab.lock);
    tab_del(&leak_tab, (uintptr_t)base, NULL);
    pthread_mutex_unlock(&leak_tab.lock);
}

/* ---- reporting ------------------------------------------------------------ */

static void describe_pc(void *pc, char *buf, size_t len) {
    Dl_info di;
    if (pc && dladdr(pc, &di) && di.dli_fname) {
        if (di.dli_sname)
            snprintf(buf, len, "%s+0x%lx (%s)", di.dli_sname, (unsigned long)((char *)pc - (char *)di.dli_saddr),
                     di.dli_fname);
        else
            snprintf(buf, len, "%s+0x%lx", di.dli_fname, (unsigned long)((char *)pc - (char *)di.dli_fbase));
    } else {
        snprintf(buf, len, "%p", pc);
    }
}

static void shim_error(const char *what, const void *p, void *site) {
    char where[256];
    int saved = in_tern;
    in_tern = 1; /* dladdr and snprintf must not re-enter the heap */
    describe_pc(site, where, sizeof where);
    tern_log("tern: %s of %p at %s (%s)\n", what, p, where, abort_on_error ? "aborting" : "ignored");
    in_tern = saved;
    if (abort_on_error) abort();
}

static int cmp_site(const void *a, const void *b) {
    const struct site *x = a, *y = b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

static void leak_report(void) {
    if (!leak_mode || atomic_load(&state) != ST_READY) return;
    in_collect = 1;
    tern_collect();
    in_collect = 0;
    in_tern = 1;
    pthread_mutex_lock(&leak_tab.lock);
    /* Entries whose object is gone now were never freed and unreachable. */
    for (size_t i = 0; i < leak_tab.cap; i++) {
        struct entry *e = &leak_tab.e[i];
        if (!e->key) continue;
        void *base = (void *)~e->key;
        if (tern_base(base) == base) continue; /* still reachable */
        site_add(e->site, e->size);
        atomic_fetch_add(&leaks_seen_objs, 1);
        atomic_fetch_add(&leaks_seen_bytes, e->size);
    }
    size_t still = leak_tab.n;
    if (nsites) qsort(sites, nsites, sizeof *sites, cmp_site); /* qsort(NULL, 0) is undefined */
    uint64_t objs = atomic_load(&leaks_seen_objs), bytes = atomic_load(&leaks_seen_bytes);
    if (!objs) {
        tern_log("tern: leaks: none (%zu unfreed objects still reachable at exit)\n", still);
    } else {
        tern_log("tern: leaks: %llu objects, %llu bytes never freed and unreachable, from %zu call sites:\n",
                 (unsigned long long)objs, (unsigned long long)bytes, nsites);
        for (size_t i = 0; i < nsites && i < 50; i++) {
            char where[256];
            describe_pc(sites[i].pc, where, sizeof where);
            tern_log("tern: leak: %llu objects, %llu bytes, allocated at %s\n", (unsigned long long)sites[i].count,
                     (unsigned long long)sites[i].bytes, where);
        }
        if (nsites > 50) tern_log("tern: leak: ... %zu more call sites\n", nsites - 50);
    }
    pthread_mutex_unlock(&leak_tab.lock);
    in_tern = 0;
}

/* ---- initialisation -------------------------------------------------------- */

static const char *env_get(const char *name) {
    if (!environ) return NULL;
    size_t n = strlen(name);
    for (char **e = environ; *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

static __thread int gc_thread;     /* a collector or marker thread */
static void cycle_hook(int begin) {
    if (begin == 2) gc_thread = 1;
    else in_collect = begin;
}

static void shim_atfork_prepare(void) {
    pthread_mutex_lock(&aligned_tab.lock);
    pthread_mutex_lock(&leak_tab.lock);
    boot_lock_take();
}
static void shim_atfork_parent(void) {
    boot_lock_give();
    pthread_mutex_unlock(&leak_tab.lock);
    pthread_mutex_unlock(&aligned_tab.lock);
}

/* A two-valued variable: `on` sets *flag, `off` clears it, anything else
 * is reported once and the default kept. */
static void env_choice(const char *name, const char *on, const char *off, int *flag) {
    const char *v = env_get(name);
    if (!v) return;
    if (!strcmp(v, on)) *flag = 1;
    else if (!strcmp(v, off)) *flag = 0;
    else {
        char expect[64];
        snprintf(expect, sizeof expect, "%s or %s", off, on);
        tern_env_bad(name, v, expect);
    }
}

/* True when the heap may be used.  The first call (with the environment
 * readable) initialises the collector; until then, and while another thread
 * initialises, allocations come from the arena. */
static __attribute__((noinline)) bool shim_init(void) {
    int s = atomic_load(&state);
    if (s == ST_READY) return true;
    if (s == ST_INIT || !environ) return false;
    int expect = ST_NONE;
    if (!atomic_compare_exchange_strong(&state, &expect, ST_INIT)) return atomic_load(&state) == ST_READY;
    in_tern = 1;
    env_choice("TERN_FREE", "ignore", "honor", &free_ignore);
    env_choice("TERN_LEAKS", "report", "off", &leak_mode);
    env_choice("TERN_ABORT_ON_ERROR", "1", "0", &abort_on_error);
    int no_scan = !scan_maps;
    env_choice("TERN_SCAN_MAPPINGS", "0", "1", &no_scan);
    scan_maps = !no_scan;
    tern_ensure_init();
    tern_real_sigmask(); /* resolve now: dlsym may allocate */
    tern_roots_set_cycle_hook(cycle_hook);
    tern_roots_set_scan_mappings(scan_maps);
    /* the C library may keep program pointers in blocks it got from the arena */
    tern_add_roots(boot_arena, boot_arena + BOOT_SIZE);
    tern_atfork_shim(shim_atfork_prepare, shim_atfork_parent);
    if (leak_mode) atexit(leak_report);
    atomic_store(&state, ST_READY);
    in_tern = 0;
    return true;
}

static inline bool ready(void) {
    return likely(atomic_load_explicit(&state, memory_order_acquire) == ST_READY) || shim_init();
}

/* ---- the allocation paths ----------------------------------------------------- */

static inline bool nested(void) { return unlikely(in_tern | in_collect | gc_thread); }

static void *do_alloc(size_t n, bool zero, void *site) {
    if (nested() || !ready()) return boot_alloc(n, 16);
    in_tern = 1;
    void *p = tern_alloc_internal(n, false, zero);
    in_tern = 0;
    if (unlikely(leak_mode) && p) leak_note(p, n, site);
    return p;
}

static bool keep_aligned(const struct entry *e) { return tern_base((void *)~e->key) != NULL; }

/* align: a power of two. */
static void *do_alloc_aligned(size_t align, size_t n, void *site) {
    if (align <= GRANULE) return do_alloc(n, true, site);
    if (nested() || !ready()) return boot_alloc(n, align);
    if (n > SIZE_MAX / 2 || align > SIZE_MAX / 4) {
        errno = ENOMEM;
        return NULL;
    }
    if (align <= PAGE_SIZE) {
        size_t m = ALIGN_UP(n ? n : 1, align);
        if (m <= MAX_SMALL && tern_classes[size_class(m)].size % align) {
            size_t pow = align;
            while (pow < m) pow <<= 1;
            m = pow;
        }
        void *p = do_alloc(m, true, site);
        if (!p || ((uintptr_t)p & (align - 1)) == 0) return p;
        /* not expected: fall through to the general path */
        if (!free_ignore) {
            in_tern = 1;
            tern_free(p);
            in_tern = 0;
        }
        if (leak_mode) leak_forget(p);
    }
    size_t total = n + align;
    if (total <= MAX_SMALL) total = MAX_SMALL + 1; /* a large object: its base is page aligned */
    in_tern = 1;
    void *base = tern_alloc_internal(total, false, true);
    in_tern = 0;
    if (!base) return NULL;
    void *q = (void *)ALIGN_UP((uintptr_t)base, align);
    if (q != base) {
        in_tern = 1;
        pthread_mutex_lock(&aligned_tab.lock);
        bool ok = tab_put(&aligned_tab, (uintptr_t)q, NULL, 0, NULL, keep_aligned);
        pthread_mutex_unlock(&aligned_tab.lock);
        in_tern = 0;
        if (!ok) {
            errno = ENOMEM;
            return NULL;
        }
    }
    if (leak_mode) leak_note(base, total, site);
    return q;
}

/* Resolve p to the base of its object, accepting interior pointers handed
 * out by the aligned allocators.  NULL (with *why set) if p is not the
 * start of a live allocation. */
static void *resolve(void *p, const char **why) {
    void *base = tern_base(p);
    if (base == p) return base;
    if (base) {
        pthread_mutex_lock(&aligned_tab.lock);
        bool known = tab_has(&aligned_tab, (uintptr_t)p);
        pthread_mutex_unlock(&aligned_tab.lock);
        if (known) return base;
        *why = "invalid free (interior pointer)";
        return NULL;
    }
    /* in a chunk but no live object: a freed one (a released large span has
     * no span any more, only its chunk) */
    *why = chunk_of((uintptr_t)p) ? "double free" : "invalid free (not allocated by this malloc)";
    return NULL;
}

/* grown_to: realloc has copied p into a block of that many bytes
 * (tern_free_moved); 0 for a plain free. */
static void free_at(void *p, void *site, size_t grown_to) {
    if (!p) return;
    if (unlikely(is_boot(p))) {
        boot_free(p);
        return;
    }
    if (unlikely(atomic_load_explicit(&state, memory_order_acquire) != ST_READY)) return; /* foreign */
    const char *why = NULL;
    if (free_ignore && !leak_mode) {
        /* the collector does the work; still refuse foreign pointers loudly */
        if (!span_of((uintptr_t)p)) shim_error("invalid free (not allocated by this malloc)", p, site);
        return;
    }
    if (!leak_mode && !free_ignore) { /* the common case: the start of a small object */
        int saved = in_tern;
        in_tern = 1;
        bool done = tern_free_small_start(p);
        in_tern = saved;
        if (done) return;
    }
    void *base = resolve(p, &why);
    if (!base) {
        shim_error(why, p, site);
        return;
    }
    if (leak_mode) leak_forget(base);
    if (free_ignore) return;
    if (base != p) {
        pthread_mutex_lock(&aligned_tab.lock);
        tab_del(&aligned_tab, (uintptr_t)p, NULL);
        pthread_mutex_unlock(&aligned_tab.lock);
    }
    int saved = in_tern;
    in_tern = 1;
    tern_free_moved(base, grown_to);
    in_tern = saved;
}

static void do_free(void *p, void *site) { free_at(p, site, 0); }

static size_t usable(void *p) {
    if (!p) return 0;
    if (is_boot(p)) return boot_size(p);
    if (atomic_load_explicit(&state, memory_order_acquire) != ST_READY) return 0;
    void *base = tern_base(p);
    if (!base) return 0;
    return tern_size(base) - (size_t)((char *)p - (char *)base);
}

static void *do_realloc(void *p, size_t n, void *site) {
    if (!p) return do_alloc(n, false, site);
    if (n == 0) { /* glibc: frees and returns NULL */
        do_free(p, site);
        return NULL;
    }
    size_t old;
    if (is_boot(p)) {
        old = boot_size(p);
    } else {
        const char *why = NULL;
        void *base = atomic_load(&state) == ST_READY ? resolve(p, &why) : NULL;
        if (!base) {
            shim_error(why ? (strcmp(why, "double free") ? "invalid realloc" : "realloc of freed memory")
                           : "invalid realloc (not allocated by this malloc)",
                       p, site);
            errno = ENOMEM;
            return NULL;
        }
        old = tern_size(base) - (size_t)((char *)p - (char *)base);
        if (base == p && n <= old && (n > old / 2 || old <= 64)) return p; /* leak record kept */
    }
    void *q = do_alloc(n, false, site);
    if (!q) return NULL;
    memcpy(q, p, n < old ? n : old);
    free_at(p, site, n); /* in TERN_FREE=ignore mode this only forgets p's leak record */
    return q;
}

/* ---- C and POSIX ------------------------------------------------------------ */

SHIM_API void *malloc(size_t n) { return do_alloc(n, false, SITE()); }
SHIM_API void free(void *p) { do_free(p, SITE()); }
SHIM_API void cfree(void *p) { do_free(p, SITE()); }

/* count * size, or false with errno = ENOMEM when it overflows. */
static bool array_size(size_t count, size_t size, size_t *n) {
    if (!__builtin_mul_overflow(count, size, n)) return true;
    errno = ENOMEM;
    return false;
}

SHIM_API void *calloc(size_t count, size_t size) {
    size_t n;
    return array_size(count, size, &n) ? do_alloc(n, true, SITE()) : NULL;
}

SHIM_API void *realloc(void *p, size_t n) { return do_realloc(p, n, SITE()); }

SHIM_API void *reallocarray(void *p, size_t count, size_t size) {
    size_t n;
    return array_size(count, size, &n) ? do_realloc(p, n, SITE()) : NULL;
}

static inline bool pow2(size_t a) { return a && !(a & (a - 1)); }

SHIM_API int posix_memalign(void **memptr, size_t align, size_t n) {
    if (!pow2(align) || align % sizeof(void *)) return EINVAL;
    int saved = errno;
    void *p = do_alloc_aligned(align, n, SITE());
    errno = saved;
    if (!p) return ENOMEM;
    *memptr = p;
    return 0;
}

SHIM_API void *aligned_alloc(size_t align, size_t n) {
    if (!pow2(align)) { /* C23: a null pointer; glibc 2.38 does the same */
        errno = EINVAL;
        return NULL;
    }
    return do_alloc_aligned(align, n, SITE());
}

static void *memalign_impl(size_t align, size_t n, void *site) {
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (align < GRANULE) align = GRANULE;
    size_t a = GRANULE;
    while (a < align) a <<= 1; /* glibc rounds a non-power-of-two up */
    return do_alloc_aligned(a, n, site);
}

SHIM_API void *memalign(size_t align, size_t n) { return memalign_impl(align, n, SITE()); }

static size_t os_page(void) {
    static size_t pg;
    if (!pg) pg = (size_t)sysconf(_SC_PAGESIZE);
    return pg;
}

SHIM_API void *valloc(size_t n) { return memalign_impl(os_page(), n, SITE()); }

SHIM_API void *pvalloc(size_t n) {
    size_t pg = os_page();
    if (n > SIZE_MAX - pg) {
        errno = ENOMEM;
        return NULL;
    }
    size_t r = n ? ALIGN_UP(n, pg) : pg;
    return memalign_impl(pg, r, SITE());
}

SHIM_API size_t malloc_usable_size(void *p) { return usable(p); }

/* glibc's own names (used by some programs and by glibc's hooks). */
SHIM_API void *__libc_malloc(size_t n) { return do_alloc(n, false, SITE()); }
SHIM_API void __libc_free(void *p) { do_free(p, SITE()); }
SHIM_API void *__libc_calloc(size_t count, size_t size) {
    size_t n;
    return array_size(count, size, &n) ? do_alloc(n, true, SITE()) : NULL;
}
SHIM_API void *__libc_realloc(void *p, size_t n) { return do_realloc(p, n, SITE()); }
SHIM_API void *__libc_memalign(size_t align, size_t n) { return memalign_impl(align, n, SITE()); }
SHIM_API void *__libc_valloc(size_t n) { return memalign_impl(os_page(), n, SITE()); }
SHIM_API void *__libc_pvalloc(size_t n) { return pvalloc(n); }

/* ---- C++ operator new / delete (Itanium mangled names, LP64) ------------------ *
 * The throwing forms cannot throw std::bad_alloc from C: on failure they
 * call the installed std::new_handler (which may free memory, throw or
 * abort) and retry; with no handler they print one line and abort.  The
 * nothrow forms return NULL. */

typedef void (*new_handler_fn)(void);
extern new_handler_fn _ZSt15get_new_handlerv(void) __attribute__((weak));

static void *new_impl(size_t n, size_t align, bool nothrow, void *site) {
    for (;;) {
        void *p = align > GRANULE ? do_alloc_aligned(align, n, site) : do_alloc(n, false, site);
        if (p || nothrow) return p;
        new_handler_fn h = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
        if (!h) {
            tern_log("tern: operator new(%zu) failed: out of memory (aborting; bad_alloc cannot be thrown from the "
                     "malloc shim)\n",
                     n);
            abort();
        }
        h();
    }
}

#define NOTHROW_T const void *
SHIM_API void *_Znwm(size_t n) { return new_impl(n, 0, false, SITE()); }
SHIM_API void *_Znam(size_t n) { return new_impl(n, 0, false, SITE()); }
SHIM_API void *_ZnwmRKSt9nothrow_t(size_t n, NOTHROW_T t) { (void)t; return new_impl(n, 0, true, SITE()); }
SHIM_API void *_ZnamRKSt9nothrow_t(size_t n, NOTHROW_T t) { (void)t; return new_impl(n, 0, true, SITE()); }
SHIM_API void *_ZnwmSt11align_val_t(size_t n, size_t a) { return new_impl(n, a, false, SITE()); }
SHIM_API void *_ZnamSt11align_val_t(size_t n, size_t a) { return new_impl(n, a, false, SITE()); }
SHIM_API void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, NOTHROW_T t) { (void)t; return new_impl(n, a, true, SITE()); }
SHIM_API void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, NOTHROW_T t) { (void)t; return new_impl(n, a, true, SITE()); }

SHIM_API void _ZdlPv(void *p) { do_free(p, SITE()); }
SHIM_API void _ZdaPv(void *p) { do_free(p, SITE()); }
SHIM_API void _ZdlPvm(void *p, size_t n) { (void)n; do_free(p, SITE()); }
SHIM_API void _ZdaPvm(void *p, size_t n) { (void)n; do_free(p, SITE()); }
SHIM_API void _ZdlPvRKSt9nothrow_t(void *p, NOTHROW_T t) { (void)t; do_free(p, SITE()); }
SHIM_API void _ZdaPvRKSt9nothrow_t(void *p, NOTHROW_T t) { (void)t; do_free(p, SITE()); }
SHIM_API void _ZdlPvSt11align_val_t(void *p, size_t a) { (void)a; do_free(p, SITE()); }
SHIM_API void _ZdaPvSt11align_val_t(void *p, size_t a) { (void)a; do_free(p, SITE()); }
SHIM_API void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t a) { (void)n, (void)a; do_free(p, SITE()); }
SHIM_API void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t a) { (void)n, (void)a; do_free(p, SITE()); }
SHIM_API void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, NOTHROW_T t) { (void)a, (void)t; do_free(p, SITE()); }
SHIM_API void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, NOTHROW_T t) { (void)a, (void)t; do_free(p, SITE()); }
