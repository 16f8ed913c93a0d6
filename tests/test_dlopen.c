/* test_dlopen.c — the data, BSS and __thread variables of a library loaded
 * with dlopen() after Tern started are roots. */
#include "roots_common.h"

#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>

#ifndef DLROOT_PATH
#error "DLROOT_PATH must name the helper library (tests/.libs/libdlroot.so)"
#endif

TestSuite(dlopen, .timeout = 30);

enum { DLROOT_DATA = 0, DLROOT_BSS = 1, DLROOT_TLS = 2 };

static void (*dl_set)(int, int, void *);
static void *(*dl_get)(int, int);
static void *dl_handle;

static void load_library(void)
{
    /* start Tern and run a collection before the library exists */
    churn_and_collect(1, MiB, 0);
    dl_handle = dlopen(DLROOT_PATH, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(dl_handle, "dlopen(%s): %s", DLROOT_PATH, dlerror());
    int (*nslots)(void) = (int (*)(void))dlsym(dl_handle, "dlroot_nslots");
    dl_set = (void (*)(int, int, void *))dlsym(dl_handle, "dlroot_set");
    dl_get = (void *(*)(int, int))dlsym(dl_handle, "dlroot_get");
    cr_assert(nslots && dl_set && dl_get, "helper library lacks its functions");
    cr_assert_geq(nslots(), NR);
}

static NOINLINE void fill_lib(int which)
{
    for (int i = 0; i < NR; i++)
        dl_set(which, i, new_watched(i));
}

static NOINLINE void fill_lib_from_watched(int which)
{
    for (int i = 0; i < NR; i++)
        dl_set(which, i, unhide(watched[i]));
}

static NOINLINE int lib_ok(int which)
{
    for (int i = 0; i < NR; i++) {
        void *p = dl_get(which, i);
        if (hide(p) != watched[i] || !filled_ok(p, watched_size[i], watched_seed(i)))
            return 0;
    }
    return 1;
}

static NOINLINE void clear_lib(int which)
{
    for (int i = 0; i < NR; i++)
        dl_set(which, i, NULL);
}

static void run_static(int which, const char *what)
{
    load_library();
    fill_lib(which);
    clobber_stack();
    survive_rounds(what, NR);
    cr_assert(lib_ok(which), "%s: the library's slots changed", what);
    clear_lib(which);
    expect_gone(what, NR);
}

Test(dlopen, library_data_is_a_root)
{
    run_static(DLROOT_DATA, "dlopen'ed library .data");
}

Test(dlopen, library_bss_is_a_root)
{
    run_static(DLROOT_BSS, "dlopen'ed library .bss");
}

/* __thread variables of a dlopen'ed library live in dynamic TLS blocks. */
static sem_t ready, go, done;

static void sem_wait_ok(sem_t *s)
{
    while (sem_wait(s) != 0)
        ;
}

static void *tls_holder(void *arg)
{
    (void)arg;
    fill_lib_from_watched(DLROOT_TLS);
    clobber_stack();
    sem_post(&ready);
    sem_wait_ok(&go);
    int ok = lib_ok(DLROOT_TLS);
    clear_lib(DLROOT_TLS);
    clobber_stack();
    sem_post(&done);
    sem_wait_ok(&go);
    return (void *)(intptr_t)ok;
}

Test(dlopen, library_thread_local_of_other_thread)
{
    load_library();
    cr_assert_eq(sem_init(&ready, 0, 0), 0);
    cr_assert_eq(sem_init(&go, 0, 0), 0);
    cr_assert_eq(sem_init(&done, 0, 0), 0);
    make_watched_all(NR);
    clobber_stack();
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, tls_holder, NULL), 0);
    sem_wait_ok(&ready);
    unpin_watched();
    survive_rounds("dlopen'ed library __thread (other thread)", NR);
    sem_post(&go);
    sem_wait_ok(&done);
    expect_gone("dlopen'ed library __thread (other thread)", NR);
    sem_post(&go);
    void *ok;
    cr_assert_eq(pthread_join(t, &ok), 0);
    cr_assert_eq((intptr_t)ok, 1, "the holding thread saw corrupted objects");
}

Test(dlopen, library_thread_local_of_main_thread)
{
    run_static(DLROOT_TLS, "dlopen'ed library __thread (main thread)");
}
