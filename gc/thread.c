/* thread.c — the thread registry and stopping the world.
 *
 * Every thread that may hold pointers is registered: the main thread when
 * the library loads, threads made by pthread_create through Tern's own
 * pthread_create (which wraps the C library's, so no program change is
 * needed), and any other thread on its first allocation or through
 * tern_register_thread.  A registered thread's record holds its stack
 * bounds, thread pointer (for TLS) and its allocation cache.
 *
 * Stopping the world: the collector, holding the registry lock, sends
 * SIGPWR to every other registered thread.  The handler saves the
 * interrupted registers and stack pointer in the thread's record, counts
 * itself in, and sleeps on a futex until the collector moves the resume
 * epoch.  The handler never allocates and never takes a lock. */
#include "internal.h"
#include "fault.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define SIG_SUSPEND SIGPWR

pthread_mutex_t tern_threads_lock = PTHREAD_MUTEX_INITIALIZER;
struct thread *tern_threads;
unsigned tern_nthreads;

/* Threads lock held.  The allocator's free-list share follows the count. */
static void set_nthreads(unsigned n) {
    tern_nthreads = n;
    tern_alloc_threads_changed(n);
}
static __thread struct thread *tls_self;
static pthread_key_t exit_key;
static void exit_destructor(void *p);
static _Atomic uint32_t stw_epoch, stw_resume, stw_acks;

/* Threads being started: their argument must stay visible to the marker
 * until the new thread is registered. */
struct start_rec {
    void *(*fn)(void *);
    void *arg;
    struct start_rec *next, *prev;
};
static struct start_rec *pending;

static long futex(_Atomic uint32_t *addr, int op, uint32_t val) {
    return syscall(SYS_futex, (uint32_t *)addr, op, val, NULL, NULL, 0);
}

static uintptr_t thread_pointer(void) {
#if defined(__x86_64__)
    uintptr_t tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    return tp;
#elif defined(__aarch64__)
    uintptr_t tp;
    __asm__("mrs %0, tpidr_el0" : "=r"(tp));
    return tp;
#else
    return 0;
#endif
}

/* ---- the stop signal ---------------------------------------------------- */

static void suspend_handler(int sig, siginfo_t *si, void *uctx) {
    (void)sig, (void)si;
    int saved_errno = errno;
    struct thread *t = tls_self;
    uint32_t e = atomic_load(&stw_epoch);
    if (!t || atomic_load(&stw_resume) == e) { /* not ours, or a stale signal */
        errno = saved_errno;
        return;
    }
    if (atomic_load_explicit(&t->tc->nostop, memory_order_relaxed)) {
        /* in a black allocation (alloc.c): it stops itself when done */
        atomic_store_explicit(&t->tc->stop_deferred, 1, memory_order_relaxed);
        errno = saved_errno;
        return;
    }
    uintptr_t sp = (uintptr_t)&t;
#if defined(__x86_64__)
    ucontext_t *uc = uctx;
    for (int i = 0; i < NGREG && i < 32; i++) t->regs[i] = (uintptr_t)uc->uc_mcontext.gregs[i];
    /* The SSE registers are saved in the signal frame, below the
     * interrupted stack pointer, where the stack scan does not reach. */
    if (uc->uc_mcontext.fpregs) memcpy(&t->regs[32], uc->uc_mcontext.fpregs->_xmm, 16 * 16);
    uintptr_t isp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP] - 128; /* red zone */
    if (isp >= t->stack_lo && isp < t->stack_hi) sp = isp;
#else
    (void)uctx;
#endif
    atomic_store(&t->sp, sp);
    atomic_fetch_add(&stw_acks, 1);
    futex(&stw_acks, FUTEX_WAKE_PRIVATE, 1);
    uint32_t r;
    while ((r = atomic_load(&stw_resume)) != e) futex(&stw_resume, FUTEX_WAIT_PRIVATE, r);
    errno = saved_errno;
}

/* A stop signal came while the thread could not stop (alloc.c's black
 * allocation): send it again, now that it can. */
void tern_thread_stop_deferred(void) {
    struct thread *t = tls_self;
    if (!t) return;
    atomic_store_explicit(&t->tc->stop_deferred, 0, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    syscall(SYS_tgkill, getpid(), t->tid, SIG_SUSPEND);
}

int tern_stop_world(void) {
    struct thread *self = tls_self;
    uint32_t e = atomic_load(&stw_epoch) + 1;
    atomic_store(&stw_acks, 0);
    atomic_store(&stw_epoch, e);
    uint32_t n = 0;
    for (struct thread *t = tern_threads; t; t = t->next) {
        if (t == self) continue;
        /* tgkill, not pthread_kill: glibc's pthread_kill reports success
         * for a thread that has already exited. */
        if (syscall(SYS_tgkill, getpid(), t->tid, SIG_SUSPEND) == 0) n++;
        else t->stack_hi = t->stack_lo; /* gone without unregistering: nothing to scan */
    }
    uint32_t a;
    while ((a = atomic_load(&stw_acks)) < n) futex(&stw_acks, FUTEX_WAIT_PRIVATE, a);
    return (int)n;
}

void tern_start_world(void) {
    atomic_store(&stw_resume, atomic_load(&stw_epoch));
    futex(&stw_resume, FUTEX_WAKE_PRIVATE, INT_MAX);
}

/* The collecting thread saves its own registers on its stack record. */
void tern_thread_save_self(struct thread *t) {
#if defined(__x86_64__)
    ucontext_t uc;
    getcontext(&uc);
    for (int i = 0; i < NGREG && i < 32; i++) t->regs[i] = (uintptr_t)uc.uc_mcontext.gregs[i];
    /* SSE registers are caller-saved: across the call into the collector
     * nothing live is left in them. */
    memset(&t->regs[32], 0, 32 * sizeof t->regs[0]);
#else
    __builtin_unwind_init();
#endif
    atomic_store(&t->sp, (uintptr_t)__builtin_frame_address(0));
}

/* ---- registration ------------------------------------------------------- */

extern void *__libc_stack_end;

static void stack_bounds(struct thread *t, uintptr_t hint_hi) {
    if (hint_hi) {
        t->stack_hi = hint_hi;
    } else if (syscall(SYS_gettid) == getpid()) {
        t->stack_hi = ALIGN_UP((uintptr_t)__libc_stack_end, 16);
    } else {
        pthread_attr_t a;
        void *addr;
        size_t size;
        if (pthread_getattr_np(pthread_self(), &a) == 0) {
            pthread_attr_getstack(&a, &addr, &size);
            pthread_attr_destroy(&a);
            t->stack_lo = (uintptr_t)addr;
            t->stack_hi = (uintptr_t)addr + size;
            return;
        }
        t->stack_hi = (uintptr_t)__builtin_frame_address(0) + 4096; /* best effort */
    }
    struct rlimit rl;
    size_t lim = 8u << 20;
    if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < ((size_t)1 << 34))
        lim = rl.rlim_cur;
    t->stack_lo = t->stack_hi > lim ? t->stack_hi - lim : 0;
}

struct thread *tern_thread_self(void) { return tls_self; }

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static void make_key(void) { pthread_key_create(&exit_key, exit_destructor); }

/* Records of threads that have gone, for reuse.  They are never unmapped:
 * tern_free and tern_base may still be reading a span's owner entry in a
 * record when its thread exits. */
static struct thread *spare;

static struct thread *record_get(void) {
    pthread_mutex_lock(&tern_threads_lock);
    struct thread *t = spare;
    if (t) spare = t->next;
    pthread_mutex_unlock(&tern_threads_lock);
    if (t) memset(t, 0, sizeof *t);
    else t = tern_os_map(ALIGN_UP(sizeof(struct thread), 4096));
    return t;
}

static void record_put(struct thread *t) { /* threads lock held */
    t->next = spare;
    spare = t;
}

static struct thread *register_current(int external, uintptr_t hint_hi, struct start_rec *done) {
    pthread_once(&key_once, make_key);
    struct thread *t = record_get();
    if (!t) return NULL;
    t->pthread = pthread_self();
    t->tid = (pid_t)syscall(SYS_gettid);
    t->tp = thread_pointer();
    t->external = external;
    t->tc = &t->tcache;
    stack_bounds(t, hint_hi);
    pthread_mutex_lock(&tern_threads_lock);
    t->next = tern_threads;
    if (tern_threads) tern_threads->prev = t;
    tern_threads = t;
    set_nthreads(tern_nthreads + 1);
    if (done) { /* the start record's argument is on this thread's stack now */
        if (done->prev) done->prev->next = done->next;
        else pending = done->next;
        if (done->next) done->next->prev = done->prev;
    }
    tls_self = t;
    pthread_mutex_unlock(&tern_threads_lock);
    if (syscall(SYS_gettid) != getpid()) pthread_setspecific(exit_key, t);
    return t; /* the cache is attached on the first allocation (alloc.c) */
}

static void unregister(struct thread *t) {
    tern_tcache_flush(t->tc); /* before the lock: flushing may sweep */
    tern_mark_thread_exit(t);
    pthread_mutex_lock(&tern_threads_lock);
    if (t->prev) t->prev->next = t->next;
    else tern_threads = t->next;
    if (t->next) t->next->prev = t->prev;
    set_nthreads(tern_nthreads - 1);
    tls_self = NULL;
    record_put(t);
    pthread_mutex_unlock(&tern_threads_lock);
    tern_tcache_attach(NULL);
}

static void exit_destructor(void *p) {
    struct thread *t = p;
    if (t && tls_self == t) unregister(t);
}

struct thread *tern_thread_ensure(void) {
    if (tls_self) return tls_self;
    return register_current(0, 0, NULL);
}

TERN_API int tern_register_thread(void) {
    tern_ensure_init();
    if (tls_self) return TERN_EEXIST;
    return register_current(1, 0, NULL) ? TERN_OK : TERN_ENOMEM;
}

TERN_API int tern_unregister_thread(void) {
    if (!tls_self) return TERN_ENOENT;
    unregister(tls_self);
    return TERN_OK;
}

/* ---- pthread_create -------------------------------------------------- */

static int (*real_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

int tern_real_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
    if (tern_fault(TERN_FAULT_THREAD)) return EAGAIN;
    if (!real_create) {
        real_create = (int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))dlsym(RTLD_NEXT, "pthread_create");
        if (!real_create) return EAGAIN;
    }
    return real_create(th, attr, fn, arg);
}

static void *trampoline(void *p) {
    struct start_rec *r = p;
    void *(*fn)(void *) = r->fn;
    void *volatile arg = r->arg; /* stays in this frame, which is scanned */
    register_current(0, (uintptr_t)__builtin_frame_address(0) + 16, r);
    munmap(r, 4096);
    return fn(arg);
}

TERN_API int pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
    tern_ensure_init();
    struct start_rec *r = tern_os_map(4096);
    if (!r) return EAGAIN;
    r->fn = fn;
    r->arg = arg;
    pthread_mutex_lock(&tern_threads_lock);
    r->next = pending;
    if (pending) pending->prev = r;
    pending = r;
    pthread_mutex_unlock(&tern_threads_lock);
    int rc = tern_real_pthread_create(th, attr, trampoline, r);
    if (rc) {
        pthread_mutex_lock(&tern_threads_lock);
        if (r->prev) r->prev->next = r->next;
        else pending = r->next;
        if (r->next) r->next->prev = r->prev;
        pthread_mutex_unlock(&tern_threads_lock);
        munmap(r, 4096);
    }
    return rc;
}

/* ---- signal masks ------------------------------------------------------------ *
 * A registered thread must stay stoppable.  Libraries often block every
 * signal in their worker threads (nanomsg, for one); Tern's pthread_sigmask
 * and sigprocmask pass the request on without the stop signal, as bdwgc's
 * do, and without SIGSEGV: the mprotect barrier's write faults must reach
 * its handler, and a fault whose signal is blocked kills the process (the
 * kernel does not queue it).  Blocking SIGSEGV could only ever hold back
 * one sent with kill(2).  Without this, Criterion's nanomsg threads died
 * at their first write to a protected page: test_malloc_contract under a
 * forced TERN_BARRIER=mprotect crashed in about half its runs. */

static int (*real_sigmask)(int, const sigset_t *, sigset_t *);
static int (*real_procmask)(int, const sigset_t *, sigset_t *);

static const sigset_t *keep_stoppable(int how, const sigset_t *set, sigset_t *copy) {
    if (!set || how == SIG_UNBLOCK || (!sigismember(set, SIG_SUSPEND) && !sigismember(set, SIGSEGV))) return set;
    *copy = *set;
    sigdelset(copy, SIG_SUSPEND);
    sigdelset(copy, SIGSEGV);
    return copy;
}

tern_sigmask_fn tern_real_sigmask(void) {
    if (!real_sigmask) *(void **)&real_sigmask = dlsym(RTLD_NEXT, "pthread_sigmask");
    return real_sigmask;
}

TERN_API int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    if (!real_sigmask) *(void **)&real_sigmask = dlsym(RTLD_NEXT, "pthread_sigmask");
    sigset_t copy;
    return real_sigmask(how, keep_stoppable(how, set, &copy), old);
}

TERN_API int sigprocmask(int how, const sigset_t *set, sigset_t *old) {
    if (!real_procmask) *(void **)&real_procmask = dlsym(RTLD_NEXT, "sigprocmask");
    sigset_t copy;
    return real_procmask(how, keep_stoppable(how, set, &copy), old);
}

void tern_threads_scan_pending(void (*scan)(uintptr_t, uintptr_t, void *), void *arg) {
    for (struct start_rec *r = pending; r; r = r->next)
        scan((uintptr_t)&r->arg, (uintptr_t)(&r->arg + 1), arg);
}

/* ---- setup and fork ------------------------------------------------------ */

void tern_thread_init(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = suspend_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask);
    sigdelset(&sa.sa_mask, SIGSEGV);
    sigdelset(&sa.sa_mask, SIGBUS);
    sigaction(SIG_SUSPEND, &sa, NULL);
}

/* In the child of fork only the forking thread exists: forget the others
 * (their caches go back to the pool) and the threads still starting. */
void tern_thread_atfork_child(void) {
    struct thread *self = tls_self, *t = tern_threads, *next;
    tern_threads = NULL;
    set_nthreads(0);
    for (; t; t = next) {
        next = t->next;
        if (t == self) continue;
        tern_tcache_flush(t->tc);
        record_put(t);
    }
    if (self) {
        self->next = self->prev = NULL;
        self->tid = (pid_t)syscall(SYS_gettid);
        self->pthread = pthread_self();
        tern_threads = self;
        set_nthreads(1);
    }
    pending = NULL;
    atomic_store(&stw_resume, atomic_load(&stw_epoch));
}
