/* roots.c — where marking starts: static data and BSS of the program and
 * of every loaded shared object (dlopen'ed ones included), the TLS blocks
 * of every thread (static and dynamic, found through each thread's DTV),
 * thread stacks and saved registers, arguments of threads still starting,
 * and ranges added with tern_add_roots.
 *
 * dl_iterate_phdr takes the loader's lock, so the list of segments and TLS
 * modules is gathered before the world stops (tern_roots_prepare). */
#include "internal.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

static pthread_mutex_t roots_lock = PTHREAD_MUTEX_INITIALIZER;
static struct root_range *user_roots;
static size_t n_user, cap_user;

static struct root_range *statics;
static size_t n_statics, cap_statics;
struct tls_mod { size_t modid, size; };
static struct tls_mod *tls_mods;
static size_t n_tls, cap_tls;
static uintptr_t self_base;

static bool grow(void **arr, size_t *cap, size_t elem) {
    size_t ncap = *cap ? *cap * 2 : 256;
    void *n = tern_os_map(ncap * elem);
    if (!n) return false;
    if (*arr) {
        memcpy(n, *arr, *cap * elem);
        tern_os_unmap(*arr, *cap * elem);
    }
    *arr = n;
    *cap = ncap;
    return true;
}

static int phdr_cb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size, (void)data;
    /* Our own data holds only collector metadata: skip it, unless we are
     * linked into the executable (whose name is empty). */
    bool self = self_base && info->dlpi_addr == self_base && info->dlpi_name && info->dlpi_name[0];
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_TLS && info->dlpi_tls_modid && ph->p_memsz) {
            if (n_tls == cap_tls && !grow((void **)&tls_mods, &cap_tls, sizeof *tls_mods)) continue;
            tls_mods[n_tls++] = (struct tls_mod){info->dlpi_tls_modid, ph->p_memsz};
        }
        if (self || ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
        if (n_statics == cap_statics && !grow((void **)&statics, &cap_statics, sizeof *statics)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        statics[n_statics++] = (struct root_range){lo, lo + ph->p_memsz};
    }
    return 0;
}

void tern_roots_prepare(void) {
    n_statics = n_tls = 0;
    dl_iterate_phdr(phdr_cb, NULL);
    pthread_mutex_lock(&roots_lock); /* held until tern_roots_done */
}

void tern_roots_done(void) { pthread_mutex_unlock(&roots_lock); }

void tern_roots_init(void) {
    Dl_info di;
    if (dladdr((void *)tern_roots_init, &di) && di.dli_fbase) self_base = (uintptr_t)di.dli_fbase;
}

/* glibc's DTV on x86-64: tcb[1] points at dtv[0]; dtv[-1] holds the length;
 * dtv[m].val is module m's TLS block, or -1 while not yet allocated. */
struct dtv_slot { void *val; void *to_free; };

static void scan_tls(struct thread *t, void (*scan)(uintptr_t, uintptr_t, void *), void *arg) {
#if defined(__x86_64__) && defined(__GLIBC__)
    if (!t->tp || !n_tls) return;
    struct dtv_slot *dtv = ((struct dtv_slot **)t->tp)[1];
    if (!dtv) return;
    size_t len = (size_t)dtv[-1].val;
    if (len > 1u << 20) return;
    for (size_t i = 0; i < n_tls; i++) {
        size_t m = tls_mods[i].modid;
        if (m > len) continue;
        uintptr_t b = (uintptr_t)dtv[m].val;
        if (!b || b == (uintptr_t)-1) continue;
        scan(b, b + tls_mods[i].size, arg);
    }
#else
    (void)t, (void)scan, (void)arg;
#endif
}

void tern_roots_scan(void (*scan)(uintptr_t lo, uintptr_t hi, void *), void *arg) {
    for (size_t i = 0; i < n_statics; i++) scan(statics[i].lo, statics[i].hi, arg);
    for (size_t i = 0; i < n_user; i++) scan(user_roots[i].lo, user_roots[i].hi, arg);
    tern_threads_scan_pending(scan, arg);
    for (struct thread *t = tern_threads; t; t = t->next) {
        uintptr_t sp = atomic_load(&t->sp);
        if (sp && sp < t->stack_hi) scan(sp & ~(uintptr_t)7, t->stack_hi, arg);
        scan((uintptr_t)t->regs, (uintptr_t)(t->regs + 32), arg);
        scan_tls(t, scan, arg);
    }
}

TERN_API int tern_add_roots(void *lo, void *hi) {
    if (!lo || (uintptr_t)lo > (uintptr_t)hi) return TERN_EINVAL;
    tern_ensure_init();
    pthread_mutex_lock(&roots_lock);
    int rc = TERN_OK;
    if (n_user == cap_user && !grow((void **)&user_roots, &cap_user, sizeof *user_roots)) rc = TERN_ENOMEM;
    else user_roots[n_user++] = (struct root_range){(uintptr_t)lo, (uintptr_t)hi};
    pthread_mutex_unlock(&roots_lock);
    return rc;
}

TERN_API int tern_remove_roots(void *lo, void *hi) {
    if ((uintptr_t)lo > (uintptr_t)hi) return TERN_EINVAL;
    int rc = TERN_ENOENT;
    pthread_mutex_lock(&roots_lock);
    for (size_t i = 0; i < n_user; i++)
        if (user_roots[i].lo == (uintptr_t)lo && user_roots[i].hi == (uintptr_t)hi) {
            user_roots[i] = user_roots[--n_user];
            rc = TERN_OK;
            break;
        }
    pthread_mutex_unlock(&roots_lock);
    return rc;
}

void tern_roots_lock(void) { pthread_mutex_lock(&roots_lock); }
void tern_roots_unlock(void) { pthread_mutex_unlock(&roots_lock); }
