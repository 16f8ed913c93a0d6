/* test_fork.c — fork() in a multithreaded program: the child can allocate
 * and collect; the parent keeps working. */
#include "common.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

TestSuite(fork, .timeout = 60);

#define NWORKERS 3
#define LIVE 2000

static atomic_int stop;
static atomic_long worker_rounds;

struct cell {
    struct cell *next;
    uint64_t id;
    unsigned char pad[40];
};

/* A structure built before the forks, checked in the children and parent. */
static struct cell *live_list;

static NOINLINE struct cell *build_cells(size_t n, uint64_t salt)
{
    struct cell *head = NULL;
    for (size_t i = 0; i < n; i++) {
        struct cell *c = tern_malloc(sizeof *c);
        if (!c)
            return NULL;
        c->id = i * 31 + salt;
        fill(c->pad, sizeof c->pad, (uint32_t)(i + salt));
        c->next = head;
        head = c;
    }
    return head;
}

static NOINLINE int cells_ok(const struct cell *c, size_t n, uint64_t salt)
{
    for (size_t k = 0; k < n; k++, c = c->next) {
        size_t i = n - 1 - k;
        if (!c || c->id != i * 31 + salt || !filled_ok(c->pad, sizeof c->pad, (uint32_t)(i + salt)))
            return 0;
    }
    return c == NULL;
}

static void *worker(void *arg)
{
    uint64_t salt = 1000 + (uintptr_t)arg;
    while (!atomic_load(&stop)) {
        struct cell *mine = build_cells(500, salt);
        T_ASSERT(mine != NULL, "allocation failed in worker");
        churn(256 * KiB, 0);
        T_ASSERT(cells_ok(mine, 500, salt), "worker %lu: its own list was corrupted", (unsigned long)salt);
        atomic_fetch_add(&worker_rounds, 1);
    }
    return NULL;
}

static void *child_thread(void *arg)
{
    (void)arg;
    struct cell *c = build_cells(1000, 77);
    if (!c)
        return (void *)1;
    churn(2 * MiB, 0);
    tern_collect();
    return cells_ok(c, 1000, 77) ? NULL : (void *)1;
}

/* Runs in the child.  Exit codes tell what failed. */
static NOINLINE int child_main(void)
{
    alarm(30); /* a deadlock in the child ends it instead of hanging the test */
    if (!cells_ok(live_list, LIVE, 5))
        return 10;
    struct cell *fresh = build_cells(5000, 9);
    if (!fresh)
        return 11;
    churn(8 * MiB, sizeof(struct cell));
    tern_collect();
    if (!cells_ok(live_list, LIVE, 5))
        return 12;
    if (!cells_ok(fresh, 5000, 9))
        return 13;
    /* threads work in the child too */
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0)
        return 14;
    void *res;
    if (pthread_join(t, &res) != 0 || res != NULL)
        return 15;
    churn(4 * MiB, 0);
    tern_collect();
    if (!cells_ok(live_list, LIVE, 5) || !cells_ok(fresh, 5000, 9))
        return 16;
    struct tern_stats st;
    if (tern_get_stats(&st) != 0 || st.cycles == 0)
        return 17;
    return 0;
}

static const char *child_error(int code)
{
    switch (code) {
    case 10: return "pre-fork structure corrupted in the child";
    case 11: return "allocation failed in the child";
    case 12: return "pre-fork structure corrupted after a collection in the child";
    case 13: return "structure built in the child corrupted after a collection";
    case 14: return "pthread_create failed in the child";
    case 15: return "a thread in the child failed";
    case 16: return "structures corrupted after the child's thread ran";
    case 17: return "tern_get_stats failed in the child";
    default: return "unknown";
    }
}

Test(fork, fork_while_threads_allocate)
{
    live_list = build_cells(LIVE, 5);
    cr_assert_not_null(live_list);
    pthread_t w[NWORKERS];
    for (uintptr_t i = 0; i < NWORKERS; i++)
        cr_assert_eq(pthread_create(&w[i], NULL, worker, (void *)i), 0);
    for (int i = 0; i < 6; i++) {
        /* let the workers get going (or keep going) */
        long r0 = atomic_load(&worker_rounds);
        while (atomic_load(&worker_rounds) < r0 + NWORKERS)
            sched_yield();
        pid_t pid = fork();
        cr_assert_neq(pid, -1, "fork failed");
        if (pid == 0)
            _exit(child_main());
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status), "child %d did not exit normally (signal %d%s)", i,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                  WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? ": the child hung for 30 s" : "");
        cr_assert_eq(WEXITSTATUS(status), 0, "child %d: %s (code %d)", i,
                     child_error(WEXITSTATUS(status)), WEXITSTATUS(status));
        /* the parent keeps working */
        churn(2 * MiB, 0);
        tern_collect();
        cr_assert(cells_ok(live_list, LIVE, 5), "parent's structure corrupted after fork %d", i);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < NWORKERS; i++)
        cr_assert_eq(pthread_join(w[i], NULL), 0);
    tern_collect();
    cr_assert(cells_ok(live_list, LIVE, 5));
}

/* fork while another thread is in the middle of collections */
static void *collect_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        churn(MiB, 0);
        tern_collect();
    }
    return NULL;
}

Test(fork, fork_while_another_thread_collects)
{
    live_list = build_cells(LIVE, 5);
    cr_assert_not_null(live_list);
    pthread_t c;
    cr_assert_eq(pthread_create(&c, NULL, collect_loop, NULL), 0);
    for (int i = 0; i < 10; i++) {
        usleep(2000);
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0)
            _exit(child_main());
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status), "child %d killed by signal %d%s", i,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                  WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? ": the child hung for 30 s" : "");
        cr_assert_eq(WEXITSTATUS(status), 0, "child %d: %s", i, child_error(WEXITSTATUS(status)));
    }
    atomic_store(&stop, 1);
    cr_assert_eq(pthread_join(c, NULL), 0);
    cr_assert(cells_ok(live_list, LIVE, 5));
}
