/* init.c — start-up, tern_init, errors and fork.
 *
 * The library initialises itself on first use (or in tern_init): size
 * classes, options from the environment, the stop signal, and the calling
 * thread's registration.  A constructor also registers the main thread
 * when the library is loaded, so its stack is a root even if another
 * thread makes the first allocation. */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tern_config tern_cfg;
_Atomic int tern_initialized;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/* tern_log lives in trace.c (stderr or TERN_LOG_FILE). */

void tern_report_error(const char *what, const void *p) {
    tern_log("tern: %s of %p (ignored)\n", what, p);
}

/* The malloc shim's own locks come after every collector lock: the
 * collector may allocate (from the shim's arena) while holding its own. */
static void (*shim_prepare)(void), (*shim_release)(void);
void tern_atfork_shim(void (*prepare)(void), void (*release)(void)) {
    shim_prepare = prepare;
    shim_release = release;
}

static void atfork_prepare(void) {
    pthread_mutex_lock(&tern_gc_lock);
    tern_roots_lock();
    tern_finalize_lock();
    tern_typed_atfork(0);
    pthread_mutex_lock(&tern_threads_lock);
    tern_central_lock_all();
    tern_scavenger_atfork_prepare();
    pthread_mutex_lock(&tern_heap.lock);
    if (shim_prepare) shim_prepare();
}

static void atfork_parent(void) {
    if (shim_release) shim_release();
    pthread_mutex_unlock(&tern_heap.lock);
    tern_scavenger_atfork_parent();
    tern_central_unlock_all();
    pthread_mutex_unlock(&tern_threads_lock);
    tern_typed_atfork(1);
    tern_finalize_unlock();
    tern_roots_unlock();
    pthread_mutex_unlock(&tern_gc_lock);
}

static void atfork_child(void) {
    atfork_parent();
    tern_markers_atfork_child();
    tern_barrier_atfork_child();
    tern_collect_atfork_child();
    tern_scavenger_atfork_child();
    tern_thread_atfork_child();
    tern_roots_atfork_child();
    tern_trace_atfork_child();
    tern_finalize_atfork_child(); /* the finalizer thread restarts lazily */
}

static void init_locked(const struct tern_options *opts) {
    tern_start_ns = tern_now_ns();
    tern_cfg.gc_percent = 100;
    tern_cfg.markers = tern_ncpus();
    tern_cfg.trace = 0;
    tern_cfg.initial_heap = 4u << 20;
    tern_env_load(&tern_cfg);
    if (opts) { /* explicit options win over the environment */
        if (opts->gc_percent) tern_cfg.gc_percent = opts->gc_percent < 0 ? -1 : opts->gc_percent;
        if (opts->markers > 0) tern_cfg.markers = opts->markers > 64 ? 64 : opts->markers, tern_cfg.markers_set = 1;
        if (opts->barrier > 0 && opts->barrier <= TERN_BARRIER_STW) tern_cfg.barrier = opts->barrier;
        if (opts->trace) tern_cfg.trace = opts->trace;
        if (opts->initial_heap) tern_cfg.initial_heap = opts->initial_heap;
        if (opts->memory_limit) tern_cfg.memlimit = opts->memory_limit;
    }
    tern_barrier_init(tern_cfg.barrier);
    tern_sizeclass_init();
    tern_alloc_init();
    for (unsigned i = 0; i < NSPANCLASS; i++) pthread_mutex_init(&tern_central[i].lock, NULL);
    tern_roots_init();
    tern_pacer_init();
    tern_thread_init();
    tern_trace_init();
    atomic_store_explicit(&tern_initialized, 1, memory_order_release);
    tern_trace_after_init();
}

void tern_init_slow(void) {
    pthread_mutex_lock(&init_lock);
    if (!atomic_load(&tern_initialized)) init_locked(NULL);
    pthread_mutex_unlock(&init_lock);
}

TERN_API int tern_init(const struct tern_options *opts) {
    if (opts && (opts->markers < 0 || opts->trace < 0 || opts->trace > 2 || opts->barrier < 0 ||
                 opts->barrier > TERN_BARRIER_STW))
        return TERN_EINVAL;
    int rc = TERN_OK;
    pthread_mutex_lock(&init_lock);
    if (atomic_load(&tern_initialized)) rc = TERN_EEXIST;
    else init_locked(opts);
    pthread_mutex_unlock(&init_lock);
    if (rc == TERN_OK) tern_thread_ensure();
    return rc;
}

/* Register the main thread (or the thread that loaded us) at load time
 * without initialising the heap, so tern_init can still set options. */
__attribute__((constructor)) static void tern_load(void) {
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    tern_thread_ensure();
}

TERN_API const char *tern_strerror(int err) {
    switch (err) {
    case TERN_OK: return "success";
    case TERN_EINVAL: return "invalid argument";
    case TERN_ENOMEM: return "out of memory";
    case TERN_ENOENT: return "not found";
    case TERN_EEXIST: return "already exists";
    case TERN_EAGAIN: return "resource temporarily unavailable";
    default: return "unknown error";
    }
}
