/* xmalloc.c — producer/consumer, after the xmalloc-test stress test.
 *
 *   xmalloc PRODUCERS CONSUMERS OBJECTS [BATCH MIN_SIZE MAX_SIZE]
 *   e.g.    xmalloc 1 1 4000000 256 16 1024
 *
 * Producers allocate OBJECTS blocks in all (random sizes MIN..MAX), in
 * batches of BATCH, and hand each batch through a bounded queue (mutex and
 * condition variables, 64 batches deep) to the consumers, which check and
 * free every block and the batch itself: almost every free happens on a
 * thread other than the one that allocated.  Malloc-style: every backend
 * frees explicitly.  Prints ops_per_s (blocks per second, malloc+free).
 */
#include "backend.h"

#define QCAP 64
static void **queue[QCAP]; /* global: reachable for the GC backends */
static int qhead, qlen, producers_left;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qnotfull = PTHREAD_COND_INITIALIZER;
static pthread_cond_t qnotempty = PTHREAD_COND_INITIALIZER;

static long batch, min_size, max_size;

struct job {
    long count;   /* producer: batches to make; consumer: blocks freed */
    long bad;
    uint64_t seed;
};

static void push(void **b)
{
    pthread_mutex_lock(&qlock);
    while (qlen == QCAP)
        pthread_cond_wait(&qnotfull, &qlock);
    queue[(qhead + qlen) % QCAP] = b;
    qlen++;
    pthread_cond_signal(&qnotempty);
    pthread_mutex_unlock(&qlock);
}

static void **pop(void)
{
    void **b = NULL;
    pthread_mutex_lock(&qlock);
    while (qlen == 0 && producers_left > 0)
        pthread_cond_wait(&qnotempty, &qlock);
    if (qlen > 0) {
        b = queue[qhead];
        queue[qhead] = NULL;
        qhead = (qhead + 1) % QCAP;
        qlen--;
        pthread_cond_signal(&qnotfull);
    }
    pthread_mutex_unlock(&qlock);
    return b;
}

static void *producer(void *arg)
{
    struct job *j = arg;
    uint64_t rng = j->seed;
    uint64_t span = (uint64_t)(max_size - min_size + 1);
    for (long n = 0; n < j->count; n++) {
        void **b = XALLOC(sizeof(void *) * (size_t)batch);
        for (long i = 0; i < batch; i++) {
            size_t sz = (size_t)min_size + (size_t)(bk_rand(&rng) % span);
            unsigned char *p = XALLOC(sz);
            uint32_t a = (uint32_t)sz, c = ~a;
            memcpy(p, &a, 4);
            memcpy(p + sz - 4, &c, 4);
            b[i] = p;
        }
        push(b);
    }
    pthread_mutex_lock(&qlock);
    producers_left--;
    pthread_cond_broadcast(&qnotempty);
    pthread_mutex_unlock(&qlock);
    return NULL;
}

static void *consumer(void *arg)
{
    struct job *j = arg;
    void **b;
    while ((b = pop()) != NULL) {
        for (long i = 0; i < batch; i++) {
            unsigned char *p = b[i];
            uint32_t a, c;
            memcpy(&a, p, 4);
            if (a < (uint32_t)min_size || a > (uint32_t)max_size) {
                j->bad++;
            } else {
                memcpy(&c, p + a - 4, 4);
                j->bad += c != ~a;
            }
            FREE(p);
        }
        FREE(b);
        j->count += batch;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    BK_INIT();
    int np = (int)bk_arg(argc, argv, 1, 1);
    int nc = (int)bk_arg(argc, argv, 2, 1);
    long objects = bk_arg(argc, argv, 3, 4000000);
    batch = bk_arg(argc, argv, 4, 256);
    min_size = bk_arg(argc, argv, 5, 16);
    max_size = bk_arg(argc, argv, 6, 1024);
    if (np < 1 || nc < 1 || np + nc > 256 || objects < 1 || batch < 1 ||
        min_size < 8 || max_size < min_size) {
        fprintf(stderr, "usage: xmalloc PRODUCERS CONSUMERS OBJECTS [BATCH MIN MAX]\n");
        return 2;
    }
    long batches = (objects + batch - 1) / batch;
    struct job jobs[256];
    pthread_t tids[256];
    memset(jobs, 0, sizeof jobs);
    producers_left = np;
    uint64_t t0 = bk_now_ns();
    for (int i = 0; i < np; i++) {
        jobs[i].count = batches / np + (i < batches % np);
        jobs[i].seed = 0x5bd1e995ull * (uint64_t)(i + 1);
        bk_thread_start(&tids[i], producer, &jobs[i]);
    }
    for (int i = np; i < np + nc; i++)
        bk_thread_start(&tids[i], consumer, &jobs[i]);
    long freed = 0, bad = 0;
    for (int i = 0; i < np + nc; i++) {
        pthread_join(tids[i], NULL);
        if (i >= np) {
            freed += jobs[i].count;
            bad += jobs[i].bad;
        }
    }
    uint64_t t1 = bk_now_ns();
    int ok = bad == 0 && freed == batches * batch;
    printf("RESULT ok=%d work_ms=%.3f producers=%d consumers=%d ops=%ld "
           "ops_per_s=%.0f bad=%ld\n", ok, (t1 - t0) / 1e6, np, nc, freed,
           freed / ((t1 - t0) / 1e9), bad);
    bk_print_stats();
    if (!ok)
        fprintf(stderr, "xmalloc: %ld bad blocks, %ld of %ld freed\n", bad,
                freed, batches * batch);
    return ok ? 0 : 1;
}
