/* soak.c — the soak test: many threads build, rewire and drop a shared
 * object graph whose objects carry checksums, while collections run back
 * to back.  Threads are created and exit all the time, the process forks
 * and the child checks and works too, and signals keep arriving.  Every
 * object reached is checked (live by tern_base, header checksum, payload
 * pattern); any damage is reported with the object, what was expected and
 * what was found.  tools/soak runs it under every barrier kind and under
 * TERN_DEBUG=checkmark.
 *
 *   tests/soak [SECONDS [THREADS]]     defaults: 10 s, 64 threads
 *
 * The last line is "soak: barrier B, T threads, O operations, C cycles,
 * F forks, S signals, D s, K corruptions"; the exit status is 0 when K is 0.
 *
 * Every pointer store into a heap object goes through TERN_STORE, as
 * TERN_BARRIER=explicit requires. */
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

#define NSLOTS 4096
#define NEDGES 3
#define MAXTHREADS 256

struct obj {
    uint64_t tag;            /* id, and the top byte 0xC7 (never an address)  */
    uint64_t sum;            /* mix(tag, len)                                   */
    uint32_t len;            /* payload bytes                                   */
    uint32_t pad;
    struct obj *edge[NEDGES];
    unsigned char data[];    /* fill(data, len, seed_of(tag))                   */
};

static struct obj *slots[NSLOTS];                /* static data: the roots */
static _Atomic uint64_t next_tag = 1, ops_total, corruptions, signals_seen;
static _Atomic int stop;
static uint64_t start_ms;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t mix(uint64_t tag, uint32_t len)
{
    uint64_t x = tag * 0xD6E8FEB86659FD93ull + len;
    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ull;
    return (x ^ (x >> 29)) | 0x9100000000000000ull;
}
static inline uint32_t seed_of(uint64_t tag) { return (uint32_t)(tag ^ (tag >> 21)) * 2246822519u; }

static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;

/* Record one damaged object: what it is, what was expected, what was found. */
static void corrupt(const struct obj *o, const char *what, unsigned long long want, unsigned long long got)
{
    uint64_t k = atomic_fetch_add(&corruptions, 1);
    if (k >= 20)
        return;
    pthread_mutex_lock(&report_lock);
    fprintf(stderr, "soak: CORRUPTION at %.3f s (pid %d): object %p (tern_base %p, tern_size %zu): %s: expected %#llx, found %#llx\n",
            (now_ms() - start_ms) / 1000.0, (int)getpid(), (const void *)o, tern_base(o), tern_size(o), what, want, got);
    fflush(stderr);
    pthread_mutex_unlock(&report_lock);
}

/* Check one object; returns 0 if damaged. */
static int check(const struct obj *o)
{
    if (tern_base(o) != o) {
        corrupt(o, "not a live object (tern_base)", (uintptr_t)o, (uintptr_t)tern_base(o));
        return 0;
    }
    uint64_t tag = o->tag;
    uint32_t len = o->len;
    if ((tag >> 56) != 0xC7 || (tag & 0xFFFFFFFFFFFFFFull) >= atomic_load(&next_tag)) {
        corrupt(o, "tag (0xC7 << 56 | id)", 0xC7ull << 56, tag);
        return 0;
    }
    if (o->sum != mix(tag, len)) {
        corrupt(o, "header checksum", mix(tag, len), o->sum);
        return 0;
    }
    if (tern_size(o) < sizeof *o + len) {
        corrupt(o, "tern_size at least", sizeof *o + len, tern_size(o));
        return 0;
    }
    size_t bad = check_fill(o->data, len, seed_of(tag));
    if (bad != (size_t)-1) {
        corrupt(o, "payload byte (offset in high bits)", ((unsigned long long)bad << 8) | pat_byte(seed_of(tag), bad),
                ((unsigned long long)bad << 8) | o->data[bad]);
        return 0;
    }
    return 1;
}

static inline struct obj *load(struct obj *const *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

static struct obj *make(uint64_t *rng)
{
    uint64_t r = rng_next(rng);
    uint32_t len = (r & 63) == 0 ? 20000 + (uint32_t)(r >> 40) % 60000 : (uint32_t)(r >> 20) % 600;
    struct obj *o = tern_malloc(sizeof *o + len);
    if (!o) {
        corrupt(NULL, "tern_malloc returned NULL", sizeof *o + len, 0);
        return NULL;
    }
    uint64_t tag = (0xC7ull << 56) | atomic_fetch_add(&next_tag, 1);
    o->len = len;
    fill(o->data, len, seed_of(tag));
    o->sum = mix(tag, len);
    __atomic_store_n(&o->tag, tag, __ATOMIC_RELEASE);
    for (int e = 0; e < NEDGES; e++)
        TERN_STORE(&o->edge[e], load(&slots[rng_next(rng) % NSLOTS]));
    return o;
}

/* Walk up to `hops` edges from a slot, checking every object. */
static void walk(uint64_t *rng, int hops)
{
    struct obj *o = load(&slots[rng_next(rng) % NSLOTS]);
    for (int h = 0; o && h < hops; h++) {
        if (!check(o))
            return;
        o = load(&o->edge[rng_next(rng) % NEDGES]);
    }
}

/* One operation on the graph (or on private objects). */
static void op(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 100;
    if (r < 35) { /* build */
        struct obj *o = make(rng);
        if (o)
            __atomic_store_n(&slots[rng_next(rng) % NSLOTS], o, __ATOMIC_RELEASE);
    } else if (r < 55) { /* rewire */
        struct obj *a = load(&slots[rng_next(rng) % NSLOTS]), *b = load(&slots[rng_next(rng) % NSLOTS]);
        if (a)
            TERN_STORE(&a->edge[rng_next(rng) % NEDGES], b);
    } else if (r < 85) {
        walk(rng, 6);
    } else if (r < 90) { /* drop */
        __atomic_store_n(&slots[rng_next(rng) % NSLOTS], NULL, __ATOMIC_RELEASE);
    } else { /* private objects: realloc, free, pointer-free data */
        size_t n = 16 + rng_next(rng) % 3000;
        unsigned char *p = (r & 1) ? tern_malloc_atomic(n) : tern_malloc(n);
        if (!p) {
            corrupt(NULL, "tern_malloc returned NULL", n, 0);
            return;
        }
        uint32_t seed = (uint32_t)rng_next(rng);
        fill(p, n, seed);
        size_t m = n * 3;
        unsigned char *q = tern_realloc(p, m);
        if (!q || check_fill(q, n, seed) != (size_t)-1) {
            corrupt((void *)q, "realloc kept the contents (1 = yes)", 1, 0);
            return;
        }
        tern_free(q);
    }
    atomic_fetch_add_explicit(&ops_total, 1, memory_order_relaxed);
}

/* ---- threads that come and go ------------------------------------------- */

struct worker {
    pthread_t th;
    _Atomic int state; /* 0 free, 1 running, 2 finished */
    uint64_t seed;
};
static struct worker workers[MAXTHREADS];
static int nworkers = 64;
static pthread_mutex_t workers_lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = w->seed | 1;
    uint64_t quota = 500 + rng_next(&rng) % 5000;
    for (uint64_t i = 0; i < quota && !atomic_load(&stop); i++)
        op(&rng);
    atomic_store(&w->state, 2);
    return NULL;
}

static void start_worker(struct worker *w, uint64_t seed)
{
    w->seed = seed;
    atomic_store(&w->state, 1);
    int rc;
    while ((rc = pthread_create(&w->th, NULL, worker_main, w)) == EAGAIN)
        usleep(1000);
    if (rc) {
        fprintf(stderr, "soak: pthread_create: %s\n", strerror(rc));
        atomic_store(&w->state, 0);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_fetch_add_explicit(&signals_seen, 1, memory_order_relaxed);
}

/* Sends SIGUSR1 to running workers (and the main thread) all the time. */
static void *signaller(void *arg)
{
    (void)arg;
    pthread_t main_th = *(pthread_t *)arg;
    uint64_t rng = 0x5157;
    while (!atomic_load(&stop)) {
        pthread_mutex_lock(&workers_lock);
        struct worker *w = &workers[rng_next(&rng) % (uint64_t)nworkers];
        if (atomic_load(&w->state) == 1)
            pthread_kill(w->th, SIGUSR1);
        pthread_mutex_unlock(&workers_lock);
        if (rng_next(&rng) % 16 == 0)
            pthread_kill(main_th, SIGUSR1);
        usleep(500);
    }
    return NULL;
}

static void *collector(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        tern_collect();
        usleep(5000);
    }
    return NULL;
}

/* The child of a fork: check everything reachable, work a little, collect. */
static NOINLINE int child_work(void)
{
    alarm(30);
    uint64_t rng = (uint64_t)getpid() * 7919;
    for (int i = 0; i < NSLOTS; i++) {
        struct obj *o = load(&slots[i]);
        if (o && check(o))
            for (int e = 0; e < NEDGES; e++) {
                struct obj *k = load(&o->edge[e]);
                if (k)
                    check(k);
            }
    }
    for (int i = 0; i < 3000; i++)
        op(&rng);
    tern_collect();
    for (int i = 0; i < 500; i++)
        walk(&rng, 10);
    return atomic_load(&corruptions) ? 3 : 0;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 10;
    if (argc > 2)
        nworkers = atoi(argv[2]);
    if (nworkers < 1 || nworkers > MAXTHREADS)
        nworkers = 64;
    setvbuf(stdout, NULL, _IOLBF, 0);
    start_ms = now_ms();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: system calls see EINTR */
    sigaction(SIGUSR1, &sa, NULL);

    pthread_t self = pthread_self(), sig_th, col_th;
    uint64_t seed = 1;
    pthread_mutex_lock(&workers_lock);
    for (int i = 0; i < nworkers; i++)
        start_worker(&workers[i], seed++ * 0x9E3779B97F4A7C15ull);
    pthread_mutex_unlock(&workers_lock);
    pthread_create(&sig_th, NULL, signaller, &self);
    pthread_create(&col_th, NULL, collector, NULL);

    uint64_t deadline = start_ms + (uint64_t)(seconds * 1000), next_fork = start_ms + 700;
    unsigned forks = 0, fork_failures = 0, restarts = 0;
    while (now_ms() < deadline && atomic_load(&corruptions) == 0) {
        for (int i = 0; i < nworkers; i++) /* replace the threads that ended */
            if (atomic_load(&workers[i].state) == 2) {
                pthread_mutex_lock(&workers_lock);
                pthread_join(workers[i].th, NULL);
                start_worker(&workers[i], seed++ * 0x9E3779B97F4A7C15ull);
                pthread_mutex_unlock(&workers_lock);
                restarts++;
            }
        if (now_ms() >= next_fork) {
            next_fork = now_ms() + 1500;
            fflush(stdout);
            fflush(stderr);
            pid_t pid = fork();
            if (pid == 0)
                _exit(child_work());
            if (pid > 0) {
                int st;
                pid_t w;
                while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
                    ;
                forks++;
                if (w != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                    fork_failures++;
                    fprintf(stderr, "soak: forked child %s %d\n", WIFEXITED(st) ? "exited with" : "killed by signal",
                            WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
                    atomic_fetch_add(&corruptions, 1);
                }
            }
        }
        usleep(2000);
    }
    atomic_store(&stop, 1);
    pthread_join(sig_th, NULL);
    pthread_join(col_th, NULL);
    for (int i = 0; i < nworkers; i++)
        if (atomic_load(&workers[i].state) != 0)
            pthread_join(workers[i].th, NULL);
    tern_collect();
    for (int i = 0; i < NSLOTS; i++) { /* a last full check */
        struct obj *o = load(&slots[i]);
        if (o && check(o))
            for (int e = 0; e < NEDGES; e++)
                if (load(&o->edge[e]))
                    check(load(&o->edge[e]));
    }
    struct tern_stats st = get_stats();
    printf("soak: barrier %s, %d threads (%u started in all), %llu operations, %llu cycles, %u forks, "
           "%llu signals, %.1f s, %llu corruptions\n",
           tern_barrier_name((int)st.barrier), nworkers, nworkers + restarts, (unsigned long long)atomic_load(&ops_total),
           (unsigned long long)st.cycles, forks, (unsigned long long)atomic_load(&signals_seen),
           (now_ms() - start_ms) / 1000.0, (unsigned long long)atomic_load(&corruptions));
    return atomic_load(&corruptions) ? 3 : 0;
}
