/* exec.c — exec while a cycle runs.
 *
 * A stop signal that reaches a thread while it is inside execve stays
 * pending across the exec, and the new program, which has no handler for
 * it, dies of it ("Power failure").  A shell under the malloc shim does
 * exactly this: it allocates enough to start a cycle, then execs the next
 * program while the collector thread is stopping the world.
 *
 * So the exec family waits for any cycle to end and keeps new ones from
 * starting: it holds the collector lock across the call, and gives it back
 * if the exec fails.  A vfork child (the parent's memory and thread record,
 * another thread id) takes no lock: the parent's collector never signals
 * it, and a lock taken there would stay taken in the parent.  posix_spawn,
 * system and popen exec in a child process and need nothing. */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

static bool exec_enter(void) {
    if (!atomic_load(&tern_initialized)) return false; /* no cycle has run */
    struct thread *t = tern_thread_self();
    if (t && t->tid != (pid_t)syscall(SYS_gettid)) return false; /* vfork child */
    pthread_mutex_lock(&tern_gc_lock);
    return true;
}

static int exec_leave(bool locked, int rc) {
    int e = errno;
    if (locked) pthread_mutex_unlock(&tern_gc_lock);
    errno = e;
    return rc;
}

#define REAL(name, type)                                                     \
    static type real_##name;                                                 \
    if (!real_##name) *(void **)&real_##name = dlsym(RTLD_NEXT, #name);      \
    if (!real_##name) {                                                      \
        errno = ENOSYS;                                                      \
        return -1;                                                           \
    }

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execvp_fn)(const char *, char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);

static int do_execve(const char *path, char *const argv[], char *const envp[]) {
    REAL(execve, execve_fn);
    bool l = exec_enter();
    return exec_leave(l, real_execve(path, argv, envp));
}

static int do_execvp(const char *file, char *const argv[]) {
    REAL(execvp, execvp_fn);
    bool l = exec_enter();
    return exec_leave(l, real_execvp(file, argv));
}

TERN_API int execve(const char *path, char *const argv[], char *const envp[]) { return do_execve(path, argv, envp); }
TERN_API int execv(const char *path, char *const argv[]) { return do_execve(path, argv, environ); }
TERN_API int execvp(const char *file, char *const argv[]) { return do_execvp(file, argv); }

TERN_API int execvpe(const char *file, char *const argv[], char *const envp[]) {
    REAL(execvpe, execve_fn);
    bool l = exec_enter();
    return exec_leave(l, real_execvpe(file, argv, envp));
}

TERN_API int fexecve(int fd, char *const argv[], char *const envp[]) {
    REAL(fexecve, fexecve_fn);
    bool l = exec_enter();
    return exec_leave(l, real_fexecve(fd, argv, envp));
}

/* The list forms: gather the arguments, then as above. */
#define GATHER(arg0, ap, argv, extra)                                        \
    size_t n_ = 1;                                                           \
    va_start(ap, arg0);                                                      \
    while (va_arg(ap, const char *)) n_++;                                   \
    va_end(ap);                                                              \
    const char *argv[n_ + 1];                                                \
    argv[0] = arg0;                                                          \
    va_start(ap, arg0);                                                      \
    for (size_t i_ = 1; i_ <= n_; i_++) argv[i_] = va_arg(ap, const char *); \
    extra;                                                                   \
    va_end(ap)

TERN_API int execl(const char *path, const char *arg, ...) {
    va_list ap;
    GATHER(arg, ap, argv, (void)0);
    return do_execve(path, (char *const *)argv, environ);
}

TERN_API int execlp(const char *file, const char *arg, ...) {
    va_list ap;
    GATHER(arg, ap, argv, (void)0);
    return do_execvp(file, (char *const *)argv);
}

TERN_API int execle(const char *path, const char *arg, ...) {
    va_list ap;
    char *const *envp;
    GATHER(arg, ap, argv, envp = va_arg(ap, char *const *));
    return do_execve(path, (char *const *)argv, envp);
}
