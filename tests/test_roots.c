/* test_roots.c — objects whose only reference is in one kind of root:
 * another thread's stack, a register, static data, BSS, a __thread variable,
 * a user root range; and a thread that never allocates. */
#include "roots_common.h"

#include <pthread.h>
#include <semaphore.h>

TestSuite(roots, .timeout = 30);

static sem_t ready, go, done;

static void sems_init(void)
{
    cr_assert_eq(sem_init(&ready, 0, 0), 0);
    cr_assert_eq(sem_init(&go, 0, 0), 0);
    cr_assert_eq(sem_init(&done, 0, 0), 0);
}

static void sem_wait_ok(sem_t *s)
{
    while (sem_wait(s) != 0)
        ;
}

/* ---- another thread's stack ------------------------------------------ */

static NOINLINE void fill_slots(void *volatile *slots, int count)
{
    for (int i = 0; i < count; i++)
        slots[i] = unhide(watched[i]);
}

static NOINLINE int slots_ok(void *volatile *slots, int count)
{
    for (int i = 0; i < count; i++)
        if (hide(slots[i]) != watched[i] || !filled_ok(slots[i], watched_size[i], watched_seed(i)))
            return 0;
    return 1;
}

static void *stack_holder(void *arg)
{
    (void)arg;
    void *volatile slots[NR];
    fill_slots(slots, NR);
    clobber_stack();
    sem_post(&ready);
    sem_wait_ok(&go);
    int ok = slots_ok(slots, NR);
    for (int i = 0; i < NR; i++)
        slots[i] = NULL;
    clobber_stack();
    sem_post(&done);  /* the slots are cleared: the objects are garbage now */
    sem_wait_ok(&go); /* stay alive (and scanned) until main has checked */
    return (void *)(intptr_t)ok;
}

Test(roots, other_threads_stack)
{
    sems_init();
    make_watched_all(NR);
    clobber_stack();
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, stack_holder, NULL), 0);
    sem_wait_ok(&ready);
    unpin_watched();
    survive_rounds("thread stack", NR);
    sem_post(&go);
    sem_wait_ok(&done);
    expect_gone("thread stack", NR);
    sem_post(&go);
    void *ok;
    cr_assert_eq(pthread_join(t, &ok), 0);
    cr_assert_eq((intptr_t)ok, 1, "the holding thread saw corrupted objects");
}

/* ---- registers of another thread ------------------------------------- */

#if defined(__x86_64__)
static volatile int reg_ready;
static volatile int reg_stop;

/* Loads the five objects whose hidden addresses are in h[] into registers
 * (unhiding them there), spins until reg_stop, then hides them again into
 * out[].  While it spins no memory holds a real address. */
static NOINLINE void hold_in_callee_saved(const uintptr_t *h, uintptr_t *out)
{
    uintptr_t key = HIDE_KEY;
    __asm__ volatile(
        "mov 0(%[h]), %%rbx\n\t"  "xor %[k], %%rbx\n\t"
        "mov 8(%[h]), %%r12\n\t"  "xor %[k], %%r12\n\t"
        "mov 16(%[h]), %%r13\n\t" "xor %[k], %%r13\n\t"
        "mov 24(%[h]), %%r14\n\t" "xor %[k], %%r14\n\t"
        "mov 32(%[h]), %%r15\n\t" "xor %[k], %%r15\n\t"
        "movl $1, %[ready]\n\t"
        "1:\n\t"
        "mov $24, %%eax\n\t" /* sched_yield */
        "syscall\n\t"
        "cmpl $0, %[stop]\n\t"
        "je 1b\n\t"
        "xor %[k], %%rbx\n\t" "mov %%rbx, 0(%[o])\n\t"
        "xor %[k], %%r12\n\t" "mov %%r12, 8(%[o])\n\t"
        "xor %[k], %%r13\n\t" "mov %%r13, 16(%[o])\n\t"
        "xor %[k], %%r14\n\t" "mov %%r14, 24(%[o])\n\t"
        "xor %[k], %%r15\n\t" "mov %%r15, 32(%[o])\n\t"
        : [ready] "=m"(reg_ready)
        : [h] "r"(h), [o] "r"(out), [k] "r"(key), [stop] "m"(reg_stop)
        : "rax", "rcx", "r11", "rbx", "r12", "r13", "r14", "r15", "memory", "cc");
}

/* Same with registers a call would clobber: a thread stopped at an
 * arbitrary instruction may hold its only pointer in any of them. */
static NOINLINE void hold_in_caller_saved(const uintptr_t *h, uintptr_t *out)
{
    uintptr_t key = HIDE_KEY;
    __asm__ volatile(
        "mov 0(%[h]), %%rsi\n\t"  "xor %[k], %%rsi\n\t"
        "mov 8(%[h]), %%rdi\n\t"  "xor %[k], %%rdi\n\t"
        "mov 16(%[h]), %%r8\n\t"  "xor %[k], %%r8\n\t"
        "mov 24(%[h]), %%r9\n\t"  "xor %[k], %%r9\n\t"
        "mov 32(%[h]), %%r10\n\t" "xor %[k], %%r10\n\t"
        "movl $1, %[ready]\n\t"
        "1:\n\t"
        "mov $24, %%eax\n\t" /* sched_yield: keeps rsi, rdi, r8-r10 */
        "syscall\n\t"
        "cmpl $0, %[stop]\n\t"
        "je 1b\n\t"
        "xor %[k], %%rsi\n\t" "mov %%rsi, 0(%[o])\n\t"
        "xor %[k], %%rdi\n\t" "mov %%rdi, 8(%[o])\n\t"
        "xor %[k], %%r8\n\t"  "mov %%r8, 16(%[o])\n\t"
        "xor %[k], %%r9\n\t"  "mov %%r9, 24(%[o])\n\t"
        "xor %[k], %%r10\n\t" "mov %%r10, 32(%[o])\n\t"
        : [ready] "=m"(reg_ready)
        : [h] "r"(h), [o] "r"(out), [k] "r"(key), [stop] "m"(reg_stop)
        : "rax", "rcx", "r11", "rsi", "rdi", "r8", "r9", "r10", "memory", "cc");
}

static void *register_holder(void *arg)
{
    int caller_saved = (int)(intptr_t)arg;
    uintptr_t h[5], out[5];
    for (int i = 0; i < 5; i++)
        h[i] = watched[i]; /* made by the main thread */
    clobber_stack();
    if (caller_saved)
        hold_in_caller_saved(h, out);
    else
        hold_in_callee_saved(h, out);
    for (int i = 0; i < 5; i++)
        if (out[i] != h[i])
            return (void *)0;
    return (void *)1;
}

static void run_register_test(int caller_saved)
{
    const char *what = caller_saved ? "caller-saved registers" : "callee-saved registers";
    pthread_t t;
    reg_ready = 0;
    reg_stop = 0;
    make_watched_all(5);
    clobber_stack();
    cr_assert_eq(pthread_create(&t, NULL, register_holder, (void *)(intptr_t)caller_saved), 0);
    while (!reg_ready)
        sched_yield();
    unpin_watched();
    survive_rounds(what, 5);
    reg_stop = 1;
    void *ok;
    cr_assert_eq(pthread_join(t, &ok), 0);
    cr_assert_eq((intptr_t)ok, 1, "%s: registers did not hold their values", what);
    check_watched(what, ROUNDS, 5);
}

Test(roots, callee_saved_registers_of_other_thread)
{
    run_register_test(0);
}

Test(roots, caller_saved_registers_of_other_thread)
{
    run_register_test(1);
}
#endif

/* ---- static data and BSS ---------------------------------------------- */

static void *data_roots[NR] = { (void *)1 }; /* initialised: in .data */
static void *bss_roots[NR];                   /* zero: in .bss */

static NOINLINE void fill_array(void **a, int count)
{
    for (int i = 0; i < count; i++)
        a[i] = new_watched(i);
}

static NOINLINE void clear_array(void **a, int count)
{
    for (int i = 0; i < count; i++)
        a[i] = NULL;
}

Test(roots, static_data)
{
    fill_array(data_roots, NR);
    clobber_stack();
    survive_rounds("static data", NR);
    clear_array(data_roots, NR);
    expect_gone("static data", NR);
}

Test(roots, bss)
{
    fill_array(bss_roots, NR);
    clobber_stack();
    survive_rounds("BSS", NR);
    clear_array(bss_roots, NR);
    expect_gone("BSS", NR);
}

/* ---- __thread variables -------------------------------------------------- */

static __thread void *tls_bss[NR / 2];
static __thread void *tls_data[NR / 2] = { (void *)1 };

static NOINLINE void fill_tls(void)
{
    for (int i = 0; i < NR; i++) {
        if (i & 1)
            tls_data[i / 2] = unhide(watched[i]);
        else
            tls_bss[i / 2] = unhide(watched[i]);
    }
}

static NOINLINE int tls_ok(void)
{
    for (int i = 0; i < NR; i++) {
        void *p = (i & 1) ? tls_data[i / 2] : tls_bss[i / 2];
        if (hide(p) != watched[i] || !filled_ok(p, watched_size[i], watched_seed(i)))
            return 0;
    }
    return 1;
}

static NOINLINE void clear_tls(void)
{
    for (int i = 0; i < NR / 2; i++)
        tls_bss[i] = tls_data[i] = NULL;
}

static void *tls_holder(void *arg)
{
    (void)arg;
    fill_tls();
    clobber_stack();
    sem_post(&ready);
    sem_wait_ok(&go);
    int ok = tls_ok();
    clear_tls();
    clobber_stack();
    sem_post(&done);
    sem_wait_ok(&go);
    return (void *)(intptr_t)ok;
}

Test(roots, thread_local_of_other_thread)
{
    sems_init();
    make_watched_all(NR);
    clobber_stack();
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, tls_holder, NULL), 0);
    sem_wait_ok(&ready);
    unpin_watched();
    survive_rounds("__thread of another thread", NR);
    sem_post(&go);
    sem_wait_ok(&done);
    expect_gone("__thread of another thread", NR);
    sem_post(&go);
    void *ok;
    cr_assert_eq(pthread_join(t, &ok), 0);
    cr_assert_eq((intptr_t)ok, 1, "the holding thread saw corrupted objects");
}

static void *collector_thread(void *arg)
{
    survive_rounds((const char *)arg, NR);
    return NULL;
}

/* The main thread's static TLS block is not on its stack: it must be found
 * both when the main thread collects and when another thread does. */
Test(roots, thread_local_of_main_thread)
{
    make_watched_all(NR);
    fill_tls();
    unpin_watched();
    clobber_stack();
    survive_rounds("__thread of the collecting (main) thread", NR);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, collector_thread, "__thread of the main thread, other collector"), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert(tls_ok());
    clear_tls();
    expect_gone("__thread of the main thread", NR);
}

/* ---- user roots ------------------------------------------------------------ */

Test(roots, user_root_range)
{
    void **buf = malloc(NR * sizeof *buf); /* glibc memory: not scanned by itself */
    cr_assert_not_null(buf);
    memset(buf, 0, NR * sizeof *buf);
    cr_assert_eq(tern_add_roots(buf, buf + NR), TERN_OK);
    fill_array(buf, NR);
    clobber_stack();
    survive_rounds("user root range", NR);
    cr_assert_eq(tern_remove_roots(buf, buf + NR), TERN_OK);
    /* the pointers are still in buf, but buf is no longer a root */
    expect_gone("removed user root range", NR);
    free(buf);
}

Test(roots, user_root_range_with_unaligned_bounds)
{
    /* a range whose bounds are not word aligned still covers the words in it */
    char *raw = malloc(NR * sizeof(void *) + 64);
    cr_assert_not_null(raw);
    memset(raw, 0, NR * sizeof(void *) + 64);
    void **buf = (void **)(void *)(((uintptr_t)raw + 15) & ~(uintptr_t)15);
    cr_assert_eq(tern_add_roots((char *)buf - 3, (char *)(buf + NR) + 5), TERN_OK);
    fill_array(buf, NR);
    clobber_stack();
    survive_rounds("unaligned user root range", NR);
    cr_assert_eq(tern_remove_roots((char *)buf - 3, (char *)(buf + NR) + 5), TERN_OK);
    expect_gone("removed unaligned user root range", NR);
    free(raw);
}

/* ---- a thread that never allocates ----------------------------------------- */

static volatile uintptr_t handoff[NR];

static NOINLINE void take_handoff(void *volatile *slots)
{
    for (int i = 0; i < NR; i++)
        slots[i] = unhide(handoff[i]);
}

static NOINLINE int handoff_ok(void *volatile *slots)
{
    for (int i = 0; i < NR; i++)
        if (hide(slots[i]) != handoff[i] || !filled_ok(slots[i], watched_size[i], watched_seed(i)))
            return 0;
    return 1;
}

/* Makes no Tern call at all. */
static void *non_allocating(void *arg)
{
    (void)arg;
    void *volatile slots[NR];
    sem_wait_ok(&go); /* wait for the objects */
    take_handoff(slots);
    clobber_stack();
    sem_post(&ready);
    sem_wait_ok(&go); /* others collect meanwhile */
    int ok = handoff_ok(slots);
    return (void *)(intptr_t)ok;
}

static NOINLINE void make_handoff(void)
{
    make_watched_all(NR);
    for (int i = 0; i < NR; i++)
        handoff[i] = watched[i];
}

static void *collect_half(void *arg)
{
    (void)arg;
    for (int r = 0; r < ROUNDS / 2; r++) {
        churn(2 * MiB, watched_size_for(r));
        clobber_stack();
        tern_collect();
        check_watched("thread that never allocates", r, NR);
    }
    return NULL;
}

Test(roots, thread_that_never_allocates)
{
    sems_init();
    pthread_t holder, c1, c2;
    /* created before this process made any allocation */
    cr_assert_eq(pthread_create(&holder, NULL, non_allocating, NULL), 0);
    make_handoff();
    clobber_stack();
    sem_post(&go);
    sem_wait_ok(&ready);
    unpin_watched();
    cr_assert_eq(pthread_create(&c1, NULL, collect_half, NULL), 0);
    cr_assert_eq(pthread_create(&c2, NULL, collect_half, NULL), 0);
    cr_assert_eq(pthread_join(c1, NULL), 0);
    cr_assert_eq(pthread_join(c2, NULL), 0);
    check_watched("thread that never allocates", ROUNDS, NR);
    sem_post(&go);
    void *ok;
    cr_assert_eq(pthread_join(holder, &ok), 0);
    cr_assert_eq((intptr_t)ok, 1, "the non-allocating thread saw corrupted objects");
}
