/* barrier.c — the write barrier: learning which heap pages the program
 * wrote while the marker was running.
 *
 * The concurrent marker (mark.c) needs one fact from the barrier: after it
 * has scanned an object, was the object written?  Every kind answers at
 * page or card granularity through the same three calls:
 *
 *   tern_barrier_arm()      start recording (before any object is scanned)
 *   tern_barrier_collect()  report every range written since the last arm
 *                           or collect, and record afresh from now on
 *   tern_barrier_disarm()   stop recording (the cycle is over)
 *
 * The kinds, probed at start-up in this order by TERN_BARRIER=auto:
 *
 *   uffd      userfaultfd write-protection in asynchronous mode: the kernel
 *             clears a page's protection on its first write, with no signal
 *             and no monitor thread, and one PAGEMAP_SCAN ioctl on
 *             /proc/self/pagemap both lists the written pages and protects
 *             them again.  Writes made by the kernel (read(2) into a heap
 *             buffer) are seen like any other.  Linux >= 6.7.
 *   softdirty /proc/self/clear_refs ("4") clears the soft-dirty bits of the
 *             whole process; bit 55 of each pagemap entry says the page was
 *             written since.  Reading and clearing are two steps, so writes
 *             between them would be lost: this kind is collected only with
 *             the world stopped (no pre-cleaning rounds).
 *   mprotect  heap pages are made read-only; the first write faults, the
 *             SIGSEGV handler marks the page's card and makes it writable.
 *             System calls that write into a protected page fail with EFAULT
 *             instead of faulting (bdwgc #25), so read(2) straight into the
 *             heap breaks under this kind: it is the last resort.
 *   explicit  the program calls TERN_STORE / tern_store for every pointer
 *             store into the heap (and tern_written after memcpy or read);
 *             the slow path, taken only while marking, shades the stored
 *             object grey (an insertion barrier: mark.c), so this kind has
 *             no written pages to report at all.
 *   stw       no barrier: the whole cycle runs with the world stopped.
 *
 * Cards.  Each chunk has one byte per card (a page of a normal chunk, a
 * 1/512th of a huge one).  The mprotect kind records into them; a collect clears a card before the marker rescans its range, so a
 * store racing with the rescan sets it again and is seen next round.
 *
 * New chunks mapped while armed are registered at once (the heap lock is
 * held), and a huge one (an object, born black, never scanned) protected;
 * a normal one is all free pages, which uffd leaves writable (see
 * chunk_runs): an object allocated during marking is still seen, as a
 * written page.  A chunk the kernel refuses to track is reported written
 * in full at every collect: slower, never wrong. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Debian 12's kernel headers predate these; values from the kernel ABI. */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#define TERN_UFFD_FEATURE_WP_UNPOPULATED (1ull << 13)
#define TERN_UFFD_FEATURE_WP_ASYNC (1ull << 15)
struct tern_page_region {
    uint64_t start, end, categories;
};
struct tern_pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define TERN_PAGEMAP_SCAN _IOWR('f', 16, struct tern_pm_scan_arg)
#define TERN_PAGE_IS_WPALLOWED (1ull << 0)
#define TERN_PAGE_IS_WRITTEN (1ull << 1)
#define TERN_PM_SCAN_WP_MATCHING (1ull << 0)
#define OS_PAGE 4096u

int tern_barrier_kind = TERN_BARRIER_STW;
/* True in libtern-malloc: malloc.c defines it true, overriding this weak
 * false at link time.  A run-time flag set by the shim's first malloc was
 * too late when the heap was initialised before it (a program linked with
 * -ltern-malloc, whose library constructor registers the main thread). */
__attribute__((weak)) bool tern_barrier_dropin = false;
TERN_API int tern_marking_;            /* read by TERN_STORE's fast path */
static _Atomic int armed;
static int uffd = -1, pagemap_fd = -1, clear_refs_fd = -1;
static pid_t fds_pid;                  /* the process the fds belong to  */
static struct sigaction old_segv;

static const char *const names[] = {"auto", "uffd", "softdirty", "mprotect", "explicit", "stw"};

TERN_API const char *tern_barrier_name(int b) {
    return b >= 0 && b <= TERN_BARRIER_STW ? names[b] : "unknown";
}

/* ---- cards ----------------------------------------------------------------- */

static inline uintptr_t chunk_end(struct chunk *c) { return (uintptr_t)c + c->size; }

static void card_mark(struct chunk *c, uintptr_t a) {
    size_t i = (a - (uintptr_t)c) >> c->card_shift;
    if (i < CHUNK_PAGES && !atomic_load_explicit(&c->cards[i], memory_order_relaxed))
        atomic_store_explicit(&c->cards[i], 1, memory_order_relaxed);
}

/* The explicit barrier is an insertion (Dijkstra) barrier: a stored
 * pointer to a white object makes that object grey at once, so no black
 * object ever points to a white one through a store the program made, and
 * the final pause has no heap to rescan — only roots. */
TERN_API void tern_store_slow_(void **slot, void *value) {
    if (tern_barrier_kind != TERN_BARRIER_EXPLICIT || !atomic_load_explicit(&armed, memory_order_relaxed)) return;
    (void)slot;
    tern_mark_shade(value);
}

TERN_API void tern_store(void **slot, void *value) { TERN_STORE(slot, value); }

TERN_API void tern_written(void *p, size_t n) {
    if (!p || !n || tern_barrier_kind != TERN_BARRIER_EXPLICIT || !atomic_load_explicit(&armed, memory_order_relaxed))
        return;
    tern_mark_shade_range((uintptr_t)p, (uintptr_t)p + n);
}

/* Report each run of set cards of c (clearing them first) to fn.  For
 * mprotect, the run is protected again between the clear and the report. */
static size_t cards_collect(struct chunk *c, tern_dirty_fn fn, void *arg, bool reprotect) {
    size_t n = (size_t)((c->size + ((uintptr_t)1 << c->card_shift) - 1) >> c->card_shift), found = 0;
    if (n > CHUNK_PAGES) n = CHUNK_PAGES;
    for (size_t i = 0; i < n;) {
        if (!atomic_load_explicit(&c->cards[i], memory_order_relaxed)) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && atomic_load_explicit(&c->cards[j], memory_order_relaxed)) atomic_store(&c->cards[j++], 0);
        atomic_thread_fence(memory_order_seq_cst);
        uintptr_t lo = (uintptr_t)c + (i << c->card_shift), hi = (uintptr_t)c + (j << c->card_shift);
        if (lo < c->start) lo = c->start;
        if (hi > chunk_end(c)) hi = chunk_end(c);
        if (reprotect && lo < hi) mprotect((void *)lo, hi - lo, PROT_READ);
        if (lo < hi) {
            fn(lo, hi, arg);
            found += (hi - lo) / OS_PAGE;
        }
        i = j;
    }
    return found;
}

static void cards_clear_all(void) {
    for (struct chunk *c = __atomic_load_n(&tern_heap.chunks, __ATOMIC_ACQUIRE); c; c = c->next)
        for (size_t i = 0; i < CHUNK_PAGES; i++) atomic_store_explicit(&c->cards[i], 0, memory_order_relaxed);
}

/* ---- uffd ------------------------------------------------------------------- */

static bool uffd_register(uintptr_t lo, size_t len) {
    struct uffdio_register r = {.range = {.start = lo, .len = len}, .mode = UFFDIO_REGISTER_MODE_WP};
    return ioctl(uffd, UFFDIO_REGISTER, &r) == 0;
}

static bool uffd_protect(uintptr_t lo, size_t len, bool on) {
    struct uffdio_writeprotect w = {.range = {.start = lo, .len = len}, .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
    return ioctl(uffd, UFFDIO_WRITEPROTECT, &w) == 0;
}

static bool uffd_open(void) {
    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (uffd < 0) return false;
    struct uffdio_api api = {.api = UFFD_API,
                             .features = TERN_UFFD_FEATURE_WP_ASYNC | TERN_UFFD_FEATURE_WP_UNPOPULATED};
    if (ioctl(uffd, UFFDIO_API, &api) != 0) {
        close(uffd);
        uffd = -1;
        return false;
    }
    return true;
}

/* One PAGEMAP_SCAN pass over [lo, hi): report written pages (every page
 * not write-protected: never-touched ones too) and, if wp, protect them
 * again.  Ranges not registered with uffd are skipped by the kernel.
 * Returns pages found, or -1 if the kernel refused. */
static long uffd_scan(uintptr_t lo, uintptr_t hi, tern_dirty_fn fn, void *arg, bool wp) {
    struct tern_page_region vec[128];
    long pages = 0;
    while (lo < hi) {
        /* Without WP_MATCHING the kernel walks unregistered mappings too
         * (chunk headers, the program's own): only registered pages. */
        struct tern_pm_scan_arg a = {.size = sizeof a, .flags = wp ? TERN_PM_SCAN_WP_MATCHING : 0, .start = lo, .end = hi,
                                     .vec = (uintptr_t)vec, .vec_len = 128,
                                     .category_mask = TERN_PAGE_IS_WRITTEN | TERN_PAGE_IS_WPALLOWED,
                                     .return_mask = TERN_PAGE_IS_WRITTEN};
        long n = ioctl(pagemap_fd, TERN_PAGEMAP_SCAN, &a);
        if (n < 0) return -1;
        for (long i = 0; i < n; i++) {
            if (fn) fn(vec[i].start, vec[i].end, arg);
            pages += (long)((vec[i].end - vec[i].start) / OS_PAGE);
        }
        if (a.walk_end <= lo) break;
        lo = a.walk_end;
    }
    return pages;
}

/* Is uffd async write-protection really there?  Protect three of four
 * fresh pages and write one of them: a scan must report the written page
 * and the fourth, never protected nor touched, and none after protecting
 * them.  If only the fourth is missing, the kernel does not report pages
 * that were never protected: arming then protects the free pages too. */
static bool uffd_reports_unprotected = true;
static bool uffd_probe(void) {
    if (!uffd_open()) return false;
    pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    size_t len = 4 * OS_PAGE;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool ok = pagemap_fd >= 0 && p != MAP_FAILED && uffd_register((uintptr_t)p, len) &&
              uffd_protect((uintptr_t)p, 3 * OS_PAGE, true);
    if (ok) {
        long before = uffd_scan((uintptr_t)p, (uintptr_t)p + 3 * OS_PAGE, NULL, NULL, true);
        long fourth = uffd_scan((uintptr_t)p + 3 * OS_PAGE, (uintptr_t)p + len, NULL, NULL, false);
        p[OS_PAGE] = 1;
        long after = uffd_scan((uintptr_t)p, (uintptr_t)p + len, NULL, NULL, true);
        long again = uffd_scan((uintptr_t)p, (uintptr_t)p + len, NULL, NULL, false);
        uffd_reports_unprotected = fourth == 1 && after == 2;
        ok = before == 0 && (after == 2 || (fourth == 0 && after == 1)) && again == 0;
    }
    if (p != MAP_FAILED) munmap(p, len);
    if (!ok) {
        if (uffd >= 0) close(uffd);
        if (pagemap_fd >= 0) close(pagemap_fd);
        uffd = pagemap_fd = -1;
    }
    return ok;
}

/* The ranges of chunk c the uffd kind protects when arming and lists in
 * the pre-cleaning rounds: a huge chunk whole; a normal chunk's runs of
 * pages that hold a span, free runs shorter than GAP_PAGES included.
 * Free pages are left writable, so that a span carved from them while
 * marking (a cache's next span, born-black objects) costs no write
 * faults.  Nothing is lost: a page that is not protected is reported
 * written, by the next round that covers it or by the final pause, which
 * covers the whole heap; and a page is only ever protected by arming,
 * which precedes every scan, or by the scan that reports it. */
#define GAP_PAGES 8
static bool chunk_runs(struct chunk *c, bool (*fn)(uintptr_t lo, uintptr_t hi, void *arg), void *arg) {
    if (c->huge || !uffd_reports_unprotected) return fn(c->start, chunk_end(c), arg);
    size_t i = c->meta_pages, start = 0, gap = 0;
    bool in = false;
    for (; i < CHUNK_PAGES; i++) {
        if (!page_free(c, i)) {
            if (!in) start = i, in = true;
            gap = 0;
        } else if (in && ++gap == GAP_PAGES) {
            if (!fn((uintptr_t)c + (start << PAGE_SHIFT), (uintptr_t)c + ((i + 1 - gap) << PAGE_SHIFT), arg)) return false;
            in = false;
        }
    }
    if (in && !fn((uintptr_t)c + (start << PAGE_SHIFT), (uintptr_t)c + ((i - gap) << PAGE_SHIFT), arg)) return false;
    return true;
}

static bool protect_run(uintptr_t lo, uintptr_t hi, void *arg) {
    (void)arg;
    return uffd_protect(lo, hi - lo, true);
}

struct scan_run {
    tern_dirty_fn fn;
    void *arg;
    size_t pages;
};
/* The final pause reports the free pages left writable too: pass every
 * range on, but count only the 4 KiB pages that hold a span (one chunk
 * lookup per chunk, one bit per heap page: this runs in the pause). */
static void count_used(uintptr_t lo, uintptr_t hi, void *arg) {
    struct scan_run *r = arg;
    r->fn(lo, hi, r->arg);
    while (lo < hi) {
        struct chunk *c = chunk_of(lo);
        uintptr_t cend = c ? (uintptr_t)c + c->size : ALIGN_UP(lo + 1, CHUNK_SIZE), e = hi < cend ? hi : cend;
        if (c && c->huge) r->pages += (e - lo) / OS_PAGE;
        else if (c)
            for (uintptr_t a = lo; a < e;) {
                uintptr_t next = ALIGN_UP(a + 1, PAGE_SIZE);
                if (next > e) next = e;
                if (!page_free(c, (a - (uintptr_t)c) >> PAGE_SHIFT)) r->pages += (next - a) / OS_PAGE;
                a = next;
            }
        lo = e;
    }
}

static bool scan_run(uintptr_t lo, uintptr_t hi, void *arg) {
    struct scan_run *r = arg;
    long n = uffd_scan(lo, hi, r->fn, r->arg, true);
    if (n < 0) return false;
    r->pages += (size_t)n;
    return true;
}

/* ---- soft-dirty ----------------------------------------------------------- */

static bool softdirty_clear(void) { return pwrite(clear_refs_fd, "4", 1, 0) == 1; }

static bool softdirty_page(uintptr_t a) {
    uint64_t e;
    if (pread(pagemap_fd, &e, sizeof e, (off_t)(a / OS_PAGE * 8)) != sizeof e) return true;
    return (e >> 55) & 1;
}

static bool softdirty_probe(void) {
    clear_refs_fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    char *p = mmap(NULL, OS_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool ok = clear_refs_fd >= 0 && pagemap_fd >= 0 && p != MAP_FAILED;
    if (ok) {
        p[0] = 1;
        ok = softdirty_clear() && !softdirty_page((uintptr_t)p);
        p[0] = 2;
        ok = ok && softdirty_page((uintptr_t)p);
    }
    if (p != MAP_FAILED) munmap(p, OS_PAGE);
    if (!ok) {
        if (clear_refs_fd >= 0) close(clear_refs_fd);
        if (pagemap_fd >= 0) close(pagemap_fd);
        clear_refs_fd = pagemap_fd = -1;
    }
    return ok;
}

static size_t softdirty_collect(struct chunk *c, tern_dirty_fn fn, void *arg) {
    uint64_t e[512];
    size_t found = 0;
    uintptr_t run = 0;
    for (uintptr_t a = c->start; a < chunk_end(c);) {
        size_t k = (chunk_end(c) - a) / OS_PAGE;
        if (k > 512) k = 512;
        ssize_t got = pread(pagemap_fd, e, k * 8, (off_t)(a / OS_PAGE * 8));
        size_t n = got > 0 ? (size_t)got / 8 : 0;
        if (!n) { /* cannot read: the rest counts as written */
            if (!run) run = a;
            a = chunk_end(c);
            break;
        }
        for (size_t i = 0; i < n; i++, a += OS_PAGE) {
            bool d = (e[i] >> 55) & 1;
            if (d && !run) run = a;
            if (!d && run) {
                fn(run, a, arg);
                found += (a - run) / OS_PAGE;
                run = 0;
            }
        }
    }
    if (run) {
        fn(run, chunk_end(c), arg);
        found += (chunk_end(c) - run) / OS_PAGE;
    }
    return found;
}

/* ---- mprotect ----------------------------------------------------------- */

static void segv_handler(int sig, siginfo_t *si, void *uctx) {
    uintptr_t a = (uintptr_t)si->si_addr;
    /* Any fault in a chunk's payload is ours: only the barrier makes heap
     * pages read-only (also just after disarming, before it has finished
     * making them writable again). */
    struct chunk *c = tern_barrier_kind == TERN_BARRIER_MPROTECT ? chunk_of(a) : NULL;
    if (c && a >= c->start && a < chunk_end(c) && c->magic == CHUNK_MAGIC) {
        int saved = errno;
        uintptr_t cs = (uintptr_t)1 << c->card_shift;
        uintptr_t lo = a & ~(cs - 1), hi = lo + cs;
        if (lo < c->start) lo = c->start;
        if (hi > chunk_end(c)) hi = chunk_end(c);
        /* Writable first, card second: the other order lets a collect
         * clear the card and protect the page in between, and this write
         * would then land unrecorded in a page made writable again. */
        mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE);
        atomic_thread_fence(memory_order_seq_cst);
        card_mark(c, a);
        errno = saved;
        return;
    }
    /* Not ours: behave as if Tern had never installed a handler. */
    if (old_segv.sa_flags & SA_SIGINFO) {
        old_segv.sa_sigaction(sig, si, uctx);
    } else if (old_segv.sa_handler != SIG_DFL && old_segv.sa_handler != SIG_IGN) {
        old_segv.sa_handler(sig);
    } else {
        signal(SIGSEGV, SIG_DFL); /* the fault repeats and kills as it should */
    }
}

static bool mprotect_probe(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    /* The stop signal (SIGPWR, thread.c) waits until the handler is done.
     * A thread stopped between making a page writable and setting its card
     * would let other threads write that page unrecorded through the final
     * pause (the card is set only after the world restarts): a checkmark
     * miss in 8 runs of 10 of the threads scenario once threads shared
     * pages (their first objects come from a class's shared span). */
    sigaddset(&sa.sa_mask, SIGPWR);
    return sigaction(SIGSEGV, &sa, &old_segv) == 0;
}

static void protect_chunk(struct chunk *c, bool on) {
    if (mprotect((void *)c->start, chunk_end(c) - c->start, on ? PROT_READ : PROT_READ | PROT_WRITE) != 0 && on)
        c->untracked = 1;
}

/* ---- the interface -------------------------------------------------------- */

/* Choose the kind; TERN_BARRIER or tern_options ask for one, which is
 * used if it works here (else the next in the auto order, reported). */
void tern_barrier_init(int want) {
    static const int order[] = {TERN_BARRIER_UFFD, TERN_BARRIER_SOFTDIRTY, TERN_BARRIER_MPROTECT, TERN_BARRIER_STW};
    fds_pid = getpid();
    /* The explicit kind is a promise that every pointer store into the
     * heap goes through TERN_STORE.  Under the malloc shim the C library,
     * the C++ library and the program itself store pointers into malloc'd
     * memory with plain stores, so the promise cannot hold, and marking
     * would miss objects: the C++ test program of test_malloc_programs
     * crashed, aborted or spun forever in 11 of about 50 runs over its
     * modes (the program once left spinning on a core for 9 minutes was
     * most likely one of these).  Refused, reported once, auto used. */
    if (want == TERN_BARRIER_EXPLICIT && tern_barrier_dropin) {
        tern_log("tern: ignoring TERN_BARRIER=explicit under the malloc shim (the program's plain pointer "
                 "stores would go unseen); using auto\n");
        want = TERN_BARRIER_AUTO;
    }
    if (want == TERN_BARRIER_EXPLICIT || want == TERN_BARRIER_STW) {
        tern_barrier_kind = want;
        return;
    }
    bool asked = want != TERN_BARRIER_AUTO;
    for (unsigned i = 0; i < sizeof order / sizeof order[0]; i++) {
        int k = order[i];
        if (asked && k < want && k != TERN_BARRIER_STW) continue; /* start from the requested kind */
        /* Unmodified programs read(2) into heap buffers: under mprotect
         * that fails with EFAULT, so auto never picks it for them. */
        if (!asked && k == TERN_BARRIER_MPROTECT && tern_barrier_dropin) continue;
        bool ok = k == TERN_BARRIER_STW || (k == TERN_BARRIER_UFFD && uffd_probe()) ||
                  (k == TERN_BARRIER_SOFTDIRTY && softdirty_probe()) || (k == TERN_BARRIER_MPROTECT && mprotect_probe());
        if (ok) {
            if (asked && k != want)
                tern_log("tern: TERN_BARRIER=%s does not work here; using %s\n", names[want], names[k]);
            tern_barrier_kind = k;
            return;
        }
    }
}

/* A chunk was mapped (heap lock held). */
void tern_barrier_chunk_added(struct chunk *c) {
    c->card_shift = PAGE_SHIFT;
    while ((c->size >> c->card_shift) > CHUNK_PAGES) c->card_shift++;
    if (tern_barrier_kind == TERN_BARRIER_UFFD && getpid() == fds_pid) {
        if (!uffd_register(c->start, chunk_end(c) - c->start)) c->unregistered = c->untracked = 1;
        else if (atomic_load(&armed) && !chunk_runs(c, protect_run, NULL)) c->untracked = 1; /* huge: all of it */
    } else if (tern_barrier_kind == TERN_BARRIER_MPROTECT && atomic_load(&armed)) {
        protect_chunk(c, true);
    }
}

/* In a forked child the uffd and /proc/self files still belong to the
 * parent, and the child's mappings are not registered: open and register
 * afresh before the child's first cycle. */
static void reopen_after_fork(void) {
    if (getpid() == fds_pid) return;
    fds_pid = getpid();
    atomic_store(&armed, 0);
    if (pagemap_fd >= 0) close(pagemap_fd);
    pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (tern_barrier_kind == TERN_BARRIER_UFFD) {
        if (uffd >= 0) close(uffd);
        bool ok = pagemap_fd >= 0 && uffd_open();
        for (struct chunk *c = tern_heap.chunks; c; c = c->next)
            if (!ok || !uffd_register(c->start, chunk_end(c) - c->start)) c->unregistered = c->untracked = 1;
    } else if (tern_barrier_kind == TERN_BARRIER_SOFTDIRTY) {
        if (clear_refs_fd >= 0) close(clear_refs_fd);
        clear_refs_fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    }
}

/* In a forked child nothing is armed: the uffd still belongs to the
 * parent (reopen_after_fork opens the child's own before its first
 * cycle). */
void tern_barrier_atfork_child(void) { atomic_store(&armed, 0); }

/* Start recording writes.  Runs while the program runs, before the
 * marker scans anything; heap lock taken so no chunk is missed. */
void tern_barrier_arm(void) {
    /* Under the heap lock only long enough to publish `armed` and take the
     * chunk list: a chunk mapped after this protects itself, and protecting
     * the others (16 ms per GiB) must not hold up allocation. */
    pthread_mutex_lock(&tern_heap.lock);
    reopen_after_fork();
    if (tern_barrier_kind == TERN_BARRIER_MPROTECT) cards_clear_all();
    atomic_store(&armed, 1);
    struct chunk *head = tern_heap.chunks;
    pthread_mutex_unlock(&tern_heap.lock);
    switch (tern_barrier_kind) {
    case TERN_BARRIER_UFFD:
        for (struct chunk *c = head; c; c = c->next)
            if (!c->untracked && !chunk_runs(c, protect_run, NULL)) c->untracked = 1;
        break;
    case TERN_BARRIER_SOFTDIRTY:
        if (!softdirty_clear())
            for (struct chunk *c = head; c; c = c->next) c->untracked = 1;
        break;
    case TERN_BARRIER_MPROTECT:
        for (struct chunk *c = head; c; c = c->next) protect_chunk(c, true);
        break;
    }
}

/* Report the ranges written since the last arm or collect to fn, and
 * record afresh.  final: the world is stopped (softdirty needs it) and
 * the caller holds the heap lock (a stopped thread must not hold it).
 * Returns the number of 4 KiB pages reported. */
size_t tern_barrier_collect(tern_dirty_fn fn, void *arg, bool final) {
    return tern_barrier_collect_part(fn, arg, final, 0, 1);
}

/* The same, for part `part` of `nparts` threads collecting at once in the
 * final pause (the world is stopped: nothing else changes the chunk list
 * or the protections).  With uffd each part scans a slice of the heap's
 * address range; the other kinds collect everything in part 0. */
size_t tern_barrier_collect_part(tern_dirty_fn fn, void *arg, bool final, unsigned part, unsigned nparts) {
    size_t found = 0;
    if (!final && !tern_barrier_can_preclean()) return 0;
    /* No heap lock while the program runs: fn rescans, which takes long,
     * and an allocation needing a span would wait for it.  Chunks are only
     * ever added at the head of the list, and a chunk added now is
     * protected when it is mapped (armed is set), or with uffd, if it is
     * not huge, all free pages, listed by the next round that sees them
     * used. */
    if (tern_barrier_kind == TERN_BARRIER_UFFD && !final) {
        /* A pre-cleaning round: the chunks' used runs, re-protected. */
        struct scan_run r = {fn, arg, 0};
        for (struct chunk *c = __atomic_load_n(&tern_heap.chunks, __ATOMIC_ACQUIRE); c; c = c->next)
            if (!c->untracked && !chunk_runs(c, scan_run, &r)) c->untracked = 1; /* the kernel refused */
        found = r.pages;
    } else if (tern_barrier_kind == TERN_BARRIER_UFFD) {
        /* The final pause: the whole heap, a slice per part, listed only
         * (disarming follows, so nothing is protected again). */
        uintptr_t lo = atomic_load(&tern_heap.lo), hi = atomic_load(&tern_heap.hi);
        size_t pages = (hi - lo) / OS_PAGE;
        uintptr_t a = lo + pages * part / nparts * OS_PAGE, b = lo + pages * (part + 1) / nparts * OS_PAGE;
        struct scan_run r = {fn, arg, 0};
        long n = uffd_scan(a, b, count_used, &r, false);
        if (n < 0 && nparts > 1) { /* the kernel refused: the whole slice counts as written */
            fn(a, b, arg);
            found += (b - a) / OS_PAGE;
        } else if (n < 0) { /* ... and every later collect too */
            for (struct chunk *c = __atomic_load_n(&tern_heap.chunks, __ATOMIC_ACQUIRE); c; c = c->next)
                c->untracked = 1;
        } else {
            found = r.pages;
        }
    }
    if (part) return found;
    for (struct chunk *c = __atomic_load_n(&tern_heap.chunks, __ATOMIC_ACQUIRE); c; c = c->next) {
        if (c->untracked) {
            fn(c->start, chunk_end(c), arg);
            found += (chunk_end(c) - c->start) / OS_PAGE;
            continue;
        }
        switch (tern_barrier_kind) {
        case TERN_BARRIER_SOFTDIRTY: found += softdirty_collect(c, fn, arg); break;
        case TERN_BARRIER_MPROTECT: found += cards_collect(c, fn, arg, !final); break;
        }
    }
    return found;
}

bool tern_barrier_can_preclean(void) { return tern_barrier_kind != TERN_BARRIER_SOFTDIRTY; }

/* Stop recording: the cycle is over.  Runs after the world restarts. */
void tern_barrier_disarm(void) {
    /* A chunk mapped after `armed` drops is not protected; the rest are
     * unprotected without the heap lock (see arm). */
    pthread_mutex_lock(&tern_heap.lock);
    atomic_store(&armed, 0);
    struct chunk *head = tern_heap.chunks;
    pthread_mutex_unlock(&tern_heap.lock);
    for (struct chunk *c = head; c; c = c->next) {
        if (tern_barrier_kind == TERN_BARRIER_UFFD && !c->untracked) uffd_protect(c->start, chunk_end(c) - c->start, false);
        if (tern_barrier_kind == TERN_BARRIER_MPROTECT) protect_chunk(c, false);
        c->untracked = c->unregistered;
    }
}
