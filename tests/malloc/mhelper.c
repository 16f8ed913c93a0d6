/* mhelper.c — a plain program linked with libtern-malloc, run by
 * test_malloc_programs in fresh processes with chosen TERN_* variables.
 * Usage: mhelper MODE; exit status 0 = the mode's checks passed. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tern.h"

#define NOINLINE __attribute__((noinline, noclone))
#define CHECK(c)                                                                                \
    do {                                                                                        \
        if (!(c)) {                                                                             \
            fprintf(stderr, "mhelper: check failed at line %d: %s\n", __LINE__, #c);            \
            exit(3);                                                                            \
        }                                                                                       \
    } while (0)

static void *volatile sink;

NOINLINE static void clobber_stack(void) {
    volatile char buf[64 * 1024];
    memset((char *)buf, 0, sizeof buf);
}

/* 100 objects of 1000 bytes, never freed, unreachable on return. */
NOINLINE void plant_leak(void) {
    for (int i = 0; i < 100; i++) {
        char *p = malloc(1000);
        memset(p, i, 1000);
        sink = p;
    }
    sink = NULL;
}

NOINLINE static void churn_and_free(void) {
    void *keep[1000];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 1000; i++) keep[i] = malloc((size_t)(i * 37 % 5000) + 1);
        for (int i = 0; i < 1000; i += 3) keep[i] = realloc(keep[i], 7000);
        for (int i = 0; i < 1000; i++) free(keep[i]);
        void *a;
        CHECK(posix_memalign(&a, 1 << 16, 100) == 0);
        free(a);
        free(aligned_alloc(64, 10));
        free(calloc(10, 10));
        free(strdup("x"));
    }
}

/* Pointers kept only in an mmap'ed region survive collections. */
static int mode_mmaproot(void) {
    enum { N = 2000 };
    void **region = mmap(NULL, N * sizeof(void *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(region != MAP_FAILED);
    for (int i = 0; i < N; i++) {
        char *p = malloc(200);
        memset(p, i & 0xff, 200);
        region[i] = p;
    }
    clobber_stack();
    for (int r = 0; r < 3; r++) {
        tern_collect();
        for (int i = 0; i < 20000; i++) { /* garbage that would reuse freed slots */
            char *g = malloc(200);
            memset(g, 0xee, 200);
            sink = g;
        }
    }
    for (int i = 0; i < N; i++) {
        unsigned char *p = region[i];
        CHECK(tern_size(p) >= 200);
        for (int j = 0; j < 200; j++) CHECK(p[j] == (unsigned char)(i & 0xff));
    }
    printf("mmaproot ok\n");
    return 0;
}

/* Producers allocate, consumers on other threads check and free. */
#define QN 1024
static void *_Atomic queue[QN];
static _Atomic int produced_done;

static void *producer(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    for (unsigned i = 0; i < 100000; i++) {
        size_t n = 32 + (i * 131 + id) % 3000;
        unsigned char *p = malloc(n);
        CHECK(p);
        *(size_t *)(p + 8) = n;
        p[0] = (unsigned char)n, p[n - 1] = (unsigned char)(n >> 3);
        unsigned slot = (i * 7 + id * 13) % QN;
        void *expect = NULL;
        while (!atomic_compare_exchange_weak(&queue[slot], &expect, p)) {
            expect = NULL;
            slot = (slot + 1) % QN;
        }
    }
    atomic_fetch_add(&produced_done, 1);
    return NULL;
}

static _Atomic long consumed;
static void *consumer(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    for (unsigned k = id;; k++) {
        unsigned slot = k % QN;
        unsigned char *p = atomic_exchange(&queue[slot], NULL);
        if (!p) {
            if (atomic_load(&produced_done) == 2 && k % QN == 0) {
                int empty = 1;
                for (int s = 0; s < QN; s++) if (atomic_load(&queue[s])) empty = 0;
                if (empty) return NULL;
            }
            continue;
        }
        size_t n = *(size_t *)(p + 8);
        CHECK(p[0] == (unsigned char)n && p[n - 1] == (unsigned char)(n >> 3));
        CHECK(malloc_usable_size(p) >= n);
        free(p);
        atomic_fetch_add(&consumed, 1);
    }
}

static int mode_threads(void) {
    pthread_t t[4];
    pthread_create(&t[0], NULL, producer, (void *)0);
    pthread_create(&t[1], NULL, producer, (void *)1);
    pthread_create(&t[2], NULL, consumer, (void *)0);
    pthread_create(&t[3], NULL, consumer, (void *)1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&consumed) == 200000);
    struct tern_stats s;
    tern_get_stats(&s);
    printf("threads ok (%ld objects passed between threads, %llu cycles)\n", (long)atomic_load(&consumed),
           (unsigned long long)s.cycles);
    return 0;
}

NOINLINE void errors_here(void) {
    char *p = malloc(64);
    free(p);
    free(p); /* double free */
    int local;
    free(&local); /* foreign */
    char *q = malloc(64);
    free(q + 16); /* interior */
    free(q);
    void *a;
    CHECK(posix_memalign(&a, 1 << 20, 10) == 0);
    free(a); /* aligned interior: fine */
}

/* fork while other threads allocate and free: parent and child both keep
 * allocating, checking contents and collecting. */
static _Atomic int fork_stop;
static void *fork_worker(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    while (!atomic_load(&fork_stop)) {
        char *p[64];
        for (int i = 0; i < 64; i++) {
            size_t n = 16 + (i * 37 + id) % 600;
            p[i] = malloc(n);
            CHECK(p[i]);
            memset(p[i], (int)(id + i), n);
        }
        for (int i = 0; i < 64; i++) {
            CHECK((unsigned char)p[i][0] == (unsigned char)(id + i));
            free(p[i]);
        }
    }
    return NULL;
}

static int list_ok(int depth) {
    /* a linked list built, collected and walked */
    void **head = NULL;
    for (int i = 0; i < depth; i++) {
        void **n = malloc(2 * sizeof *n);
        CHECK(n);
        n[0] = head;
        n[1] = (void *)(uintptr_t)i;
        head = n;
    }
    tern_collect();
    int i = depth;
    for (void **n = head; n; n = n[0]) CHECK((uintptr_t)n[1] == (uintptr_t)--i);
    return i == 0;
}

static int mode_fork(void) {
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, fork_worker, (void *)(uintptr_t)i);
    for (int round = 0; round < 5; round++) {
        usleep(20000);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(30);
            _exit(list_ok(20000) ? 0 : 4);
        }
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        CHECK(list_ok(5000));
    }
    atomic_store(&fork_stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    printf("fork ok\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *m = argv[1];
    if (!strcmp(m, "leak")) {
        churn_and_free();
        plant_leak();
        clobber_stack();
        printf("leak planted\n");
        return 0;
    }
    if (!strcmp(m, "noleak")) {
        churn_and_free();
        clobber_stack();
        printf("all freed\n");
        return 0;
    }
    if (!strcmp(m, "mmaproot")) return mode_mmaproot();
    if (!strcmp(m, "threads")) return mode_threads();
    if (!strcmp(m, "fork")) return mode_fork();
    if (!strcmp(m, "errors")) {
        errors_here();
        printf("errors done\n");
        return 0;
    }
    return 2;
}
