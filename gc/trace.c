/* trace.c — where the collector reports what it did: the log (stderr or
 * TERN_LOG_FILE), the pause histogram behind the percentiles, the exit
 * summary (TERN_STATS=1) and the trace-event timeline (TERN_TRACE_FILE).
 *
 * Nothing here runs on the allocation path.  With every variable unset the
 * cost is one flag test per cycle (tern_timeline_on) plus the histogram
 * update in note_pause.  Nothing here allocates from the collected heap:
 * the timeline buffer is mapped with tern_os_map_meta, everything else is
 * static.
 *
 * TIMELINE.  Events (complete "X" events with a start and a duration, and
 * "C" counter samples) go into a bounded buffer under tl_lock; when it is
 * full, events are dropped and counted.  The collector thread writes the
 * buffer out after each cycle, outside the pauses; the exit handler writes
 * what is left and closes the JSON array, so the file is valid JSON after
 * a normal exit.  A forked child does not write to its parent's file. */
#include "internal.h"
#include "tern/memory.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int tern_log_fd = STDERR_FILENO;
bool tern_timeline_on;
_Atomic uint64_t tern_peak_mapped;

void tern_log(const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1, buf[n - 1] = '\n'; /* cut, but a whole line */
    ssize_t w = write(tern_log_fd, buf, (size_t)n);
    (void)w;
}

uint64_t tern_process_cpu_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* GC CPU time as a percentage of the process's CPU time since it started. */
double tern_gc_cpu_percent(void) {
    uint64_t p = tern_process_cpu_ns(), g = atomic_load(&tern_stats_g.gc_cpu_ns);
    if (!p) return 0;
    double r = 100.0 * (double)g / (double)p;
    return r > 100.0 ? 100.0 : r;
}

static pid_t my_tid(void) { return (pid_t)syscall(SYS_gettid); }

/* ---- the pause histogram ------------------------------------------------
 * Log-bucketed: values below 32 ns exactly, above that 32 buckets per
 * power of two (each under 3.2% wide).  A percentile is reported as the
 * middle of its bucket, never above the largest pause seen. */
#define HSUB 32
#define HBUCKETS ((64 - 4) * HSUB)
static _Atomic uint64_t pause_hist[HBUCKETS];

static unsigned hist_index(uint64_t v) {
    if (v < HSUB) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 5 */
    return (e - 4) * HSUB + (unsigned)((v >> (e - 5)) & (HSUB - 1));
}
static uint64_t hist_mid(unsigned i) {
    if (i < HSUB) return i;
    unsigned e = i / HSUB + 4, sub = i % HSUB;
    uint64_t lo = (uint64_t)(HSUB + sub) << (e - 5), w = 1ull << (e - 5);
    return lo + w / 2;
}

void tern_trace_note_pause(uint64_t ns) {
    atomic_fetch_add_explicit(&pause_hist[hist_index(ns)], 1, memory_order_relaxed);
}

/* The q-quantile (0 < q <= 1) of the pauses so far; 0 when none. */
uint64_t tern_pause_quantile(double q) {
    uint64_t n = 0;
    for (unsigned i = 0; i < HBUCKETS; i++) n += atomic_load_explicit(&pause_hist[i], memory_order_relaxed);
    if (!n) return 0;
    uint64_t rank = (uint64_t)(q * (double)n + 0.999999), seen = 0;
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    uint64_t max = atomic_load(&tern_stats_g.max_pause_ns);
    for (unsigned i = 0; i < HBUCKETS; i++) {
        seen += atomic_load_explicit(&pause_hist[i], memory_order_relaxed);
        if (seen >= rank) {
            uint64_t v = hist_mid(i);
            return v > max ? max : v;
        }
    }
    return max;
}

uint64_t tern_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024u;
}

void tern_trace_note_mapped(void) {
    uint64_t m = atomic_load(&tern_heap.mapped), p = atomic_load(&tern_peak_mapped);
    while (m > p && !atomic_compare_exchange_weak(&tern_peak_mapped, &p, m)) {}
}

/* ---- the timeline ---------------------------------------------------------- */

struct tl_event {
    const char *name;   /* a string literal */
    uint64_t ts, dur;   /* ns since tern_start_ns ... */
    uint64_t a, b;      /* counter values ("C") */
    pid_t tid;
    char ph;            /* 'X', 'C' (heap), 'P' (gc cpu counter), 'M' */
};
#define TL_CAP 65536u
static struct tl_event *tl_buf;
static size_t tl_n;
static uint64_t tl_dropped;
static int tl_fd = -1;
static bool tl_any;              /* an event was written: the next needs a comma */
static bool tl_closed;
static pthread_mutex_t tl_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t tl_pid;

static void tl_push(struct tl_event e) {
    pthread_mutex_lock(&tl_lock);
    if (!tl_closed) {
        if (tl_n < TL_CAP) tl_buf[tl_n++] = e;
        else tl_dropped++;
    }
    pthread_mutex_unlock(&tl_lock);
}

static uint64_t rel_ns(uint64_t t) { return t > tern_start_ns ? t - tern_start_ns : 0; }

void tern_tl_complete(const char *name, uint64_t start_ns, uint64_t dur_ns) {
    if (!tern_timeline_on) return;
    tl_push((struct tl_event){.name = name, .ts = rel_ns(start_ns), .dur = dur_ns, .tid = my_tid(), .ph = 'X'});
}

void tern_tl_heap(uint64_t at_ns, uint64_t in_use, uint64_t live) {
    if (!tern_timeline_on) return;
    tl_push((struct tl_event){.name = "heap", .ts = rel_ns(at_ns), .a = in_use, .b = live, .tid = my_tid(), .ph = 'C'});
}

void tern_tl_gc_cpu(uint64_t at_ns) {
    if (!tern_timeline_on) return;
    tl_push((struct tl_event){.name = "gc cpu", .ts = rel_ns(at_ns), .a = (uint64_t)(tern_gc_cpu_percent() * 1000),
                              .tid = my_tid(), .ph = 'P'});
}

void tern_tl_thread_name(const char *name) {
    if (!tern_timeline_on) return;
    tl_push((struct tl_event){.name = name, .tid = my_tid(), .ph = 'M'});
}

static char tl_out[32768]; /* under tl_lock */
static size_t tl_out_n;

static void out_flush(void) {
    size_t off = 0;
    while (off < tl_out_n) {
        ssize_t w = write(tl_fd, tl_out + off, tl_out_n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    tl_out_n = 0;
}

static void out_str(const char *s, size_t n) {
    if (tl_out_n + n > sizeof tl_out) out_flush();
    memcpy(tl_out + tl_out_n, s, n);
    tl_out_n += n;
}

/* Write the buffered events (tl_lock held). */
static void tl_write_locked(void) {
    if (tl_fd < 0) return;
    char line[320];
    for (size_t i = 0; i < tl_n; i++) {
        struct tl_event *e = &tl_buf[i];
        const char *sep = tl_any ? ",\n" : "\n";
        int n;
        if (e->ph == 'X')
            n = snprintf(line, sizeof line,
                         "%s{\"name\":\"%s\",\"cat\":\"gc\",\"ph\":\"X\",\"ts\":%llu.%03u,\"dur\":%llu.%03u,"
                         "\"pid\":%d,\"tid\":%d}",
                         sep, e->name, (unsigned long long)(e->ts / 1000), (unsigned)(e->ts % 1000),
                         (unsigned long long)(e->dur / 1000), (unsigned)(e->dur % 1000), (int)tl_pid, (int)e->tid);
        else if (e->ph == 'C')
            n = snprintf(line, sizeof line,
                         "%s{\"name\":\"%s\",\"cat\":\"gc\",\"ph\":\"C\",\"ts\":%llu.%03u,\"pid\":%d,\"tid\":%d,"
                         "\"args\":{\"in_use\":%llu,\"live\":%llu}}",
                         sep, e->name, (unsigned long long)(e->ts / 1000), (unsigned)(e->ts % 1000), (int)tl_pid,
                         (int)e->tid, (unsigned long long)e->a, (unsigned long long)e->b);
        else if (e->ph == 'P')
            n = snprintf(line, sizeof line,
                         "%s{\"name\":\"%s\",\"cat\":\"gc\",\"ph\":\"C\",\"ts\":%llu.%03u,\"pid\":%d,\"tid\":%d,"
                         "\"args\":{\"percent\":%llu.%03u}}",
                         sep, e->name, (unsigned long long)(e->ts / 1000), (unsigned)(e->ts % 1000), (int)tl_pid,
                         (int)e->tid, (unsigned long long)(e->a / 1000), (unsigned)(e->a % 1000));
        else
            n = snprintf(line, sizeof line,
                         "%s{\"name\":\"%s\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"%s\"}}",
                         sep, e->tid ? "thread_name" : "process_name", (int)tl_pid, (int)e->tid, e->name);
        if (n <= 0 || (size_t)n >= sizeof line) continue;
        out_str(line, (size_t)n);
        tl_any = true;
    }
    tl_n = 0;
    out_flush();
}

/* After a cycle, on the thread that ran it, with no collector lock held. */
void tern_tl_flush(void) {
    if (!tern_timeline_on) return;
    pthread_mutex_lock(&tl_lock);
    if (!tl_closed) tl_write_locked();
    pthread_mutex_unlock(&tl_lock);
}

static void tl_close(void) {
    pthread_mutex_lock(&tl_lock);
    if (!tl_closed && tl_fd >= 0) {
        tl_write_locked();
        char tail[128];
        int n = snprintf(tail, sizeof tail, "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"dropped_events\":\"%llu\"}}\n",
                         (unsigned long long)tl_dropped);
        out_str(tail, (size_t)n);
        out_flush();
        close(tl_fd);
        tl_fd = -1;
    }
    tl_closed = true;
    pthread_mutex_unlock(&tl_lock);
}

/* ---- opening the files ------------------------------------------------------ */

/* "%p" in the name stands for the process id, so that processes sharing
 * the environment (children, workers) each get a file. */
static int open_out(const char *var, const char *path, int flags) {
    char name[4096];
    size_t o = 0;
    for (const char *c = path; *c && o + 24 < sizeof name; c++) {
        if (c[0] == '%' && c[1] == 'p') {
            o += (size_t)snprintf(name + o, sizeof name - o, "%d", (int)getpid());
            c++;
        } else name[o++] = *c;
    }
    name[o] = '\0';
    int fd = open(name, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
    if (fd < 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "a writable file (%s)", strerror(errno));
        tern_env_bad(var, path, msg);
    }
    return fd;
}

/* At start-up, after the environment is read (init lock held). */
void tern_trace_init(void) {
    if (tern_cfg.log_file) {
        int fd = open_out("TERN_LOG_FILE", tern_cfg.log_file, O_APPEND);
        if (fd >= 0) tern_log_fd = fd;
    }
    if (tern_cfg.trace_file) {
        int fd = open_out("TERN_TRACE_FILE", tern_cfg.trace_file, O_TRUNC);
        if (fd >= 0) {
            tl_buf = tern_os_map_meta(TL_CAP * sizeof *tl_buf);
            if (!tl_buf) {
                close(fd);
                tern_log("tern: TERN_TRACE_FILE: no memory for the event buffer; no timeline\n");
            } else {
                tl_fd = fd;
                tl_pid = getpid();
                static const char head[] = "{\"traceEvents\":[";
                ssize_t w = write(fd, head, sizeof head - 1);
                (void)w;
                tern_timeline_on = true;
                tl_push((struct tl_event){.name = "tern", .tid = 0, .ph = 'M'}); /* tid 0: process_name */
            }
        }
    }
}

/* ---- the exit summary ---------------------------------------------------------- */

static _Atomic int exit_done;

void tern_print_summary(void) {
    const double MiB = 1024.0 * 1024.0;
    uint64_t wall = tern_now_ns() - tern_start_ns, pcpu = tern_process_cpu_ns();
    uint64_t gcpu = atomic_load(&tern_stats_g.gc_cpu_ns);
    tern_trace_note_mapped();
    tern_log("tern: stats pid %d: %llu cycles, wall %.3f s, process cpu %.3f s, gc cpu %.3f s (%.1f%%), "
             "assist %.3f ms, barrier %s\n",
             (int)getpid(), (unsigned long long)atomic_load(&tern_stats_g.cycles), wall / 1e9, pcpu / 1e9, gcpu / 1e9,
             pcpu ? 100.0 * (double)gcpu / (double)pcpu : 0.0, atomic_load(&tern_assist_ns) / 1e6,
             tern_barrier_name(tern_barrier_kind));
    tern_log("tern: stats pauses %llu: p50 %.3f ms, p95 %.3f ms, p99 %.3f ms, max %.3f ms, total %.3f ms\n",
             (unsigned long long)atomic_load(&tern_stats_g.pauses), tern_pause_quantile(0.50) / 1e6,
             tern_pause_quantile(0.95) / 1e6, tern_pause_quantile(0.99) / 1e6,
             atomic_load(&tern_stats_g.max_pause_ns) / 1e6, atomic_load(&tern_stats_g.total_pause_ns) / 1e6);
    tern_log("tern: stats heap: peak mapped %.1f MiB, peak rss %.1f MiB, allocated %.1f MiB (%llu objects), "
             "reclaimed %.1f MiB, live %.1f MiB\n",
             atomic_load(&tern_peak_mapped) / MiB, tern_peak_rss() / MiB,
             atomic_load(&tern_stats_g.allocated_bytes) / MiB,
             (unsigned long long)atomic_load(&tern_stats_g.allocated_objects),
             atomic_load(&tern_stats_g.freed_bytes) / MiB, atomic_load(&tern_stats_g.live_bytes) / MiB);
    struct tern_stats st;
    tern_get_stats(&st);
    tern_log("tern: stats memory: resident %.1f MiB, free pages %.1f MiB, released %.1f MiB, returned %.1f MiB "
             "in all (scavenger cpu %.3f ms)\n",
             st.resident_bytes / MiB, st.free_bytes / MiB, st.released_bytes / MiB, st.scavenged_bytes / MiB,
             st.scavenger_cpu_ns / 1e6);
}

/* ---- where the memory is: per-class figures, the memory report ---------- */

/* Walk every span (chunk list read without the heap lock: chunks are never
 * unmapped, and a span seen half made or half freed only skews a figure). */
static int class_stats(struct tern_class_stats *out, int max) {
    static struct tern_class_stats acc[NCLASSES_MAX];
    static pthread_mutex_t acc_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&acc_lock);
    memset(acc, 0, sizeof acc);
    for (unsigned k = 1; k < tern_nclasses; k++) acc[k].size = tern_classes[k].size;
    for (struct chunk *c = __atomic_load_n(&tern_heap.chunks, __ATOMIC_ACQUIRE); c; c = c->next) {
        struct span *sp;
        for (size_t p = c->meta_pages; (sp = chunk_next_span(c, &p));) {
            int st = atomic_load(&sp->state);
            if (st == SPAN_FREE) continue;
            unsigned k = sp->spanclass >> 1;
            if (k >= tern_nclasses) continue;
            struct tern_class_stats *a = &acc[k];
            a->spans++;
            a->span_bytes += (uint64_t)sp->npages * PAGE_SIZE;
            if (k == 0) {
                a->used_bytes += sp->limit;
                continue;
            }
            uint64_t used = 0;
            unsigned last = sp->nelems / 64, r = sp->nelems % 64;
            for (unsigned w = 0; w < sp->nwords && w <= last; w++) {
                uint64_t valid = w < last ? ~0ull : r ? (1ull << r) - 1 : 0;
                used += (uint64_t)__builtin_popcountll(atomic_load_explicit(&sp->alloc[w], memory_order_relaxed) & valid);
            }
            a->used_bytes += used * sp->elemsize;
            a->free_bytes += (sp->nelems - used) * (uint64_t)sp->elemsize;
        }
    }
    int n = 0;
    for (unsigned k = 0; k < tern_nclasses; k++)
        if (acc[k].spans) {
            if (n < max) out[n] = acc[k];
            n++;
        }
    pthread_mutex_unlock(&acc_lock);
    return n;
}

TERN_API int tern_get_class_stats(struct tern_class_stats *out, int max) {
    if (max < 0 || (!out && max > 0)) return TERN_EINVAL;
    tern_ensure_init();
    return class_stats(out, max);
}

/* TERN_TRACE=2, after each cycle: where the heap's memory is. */
void tern_trace_memory(uint64_t cycle) {
    const double MiB = 1024.0 * 1024.0;
    struct tern_stats st;
    tern_get_stats(&st);
    tern_log("tern: gc %llu memory: mapped %.1f MiB, resident %.1f MiB, spans %.1f MiB, free pages %.1f MiB, "
             "released %.1f MiB, committed %.1f MiB%s, returned %.1f MiB so far\n",
             (unsigned long long)cycle, st.mapped_bytes / MiB, st.resident_bytes / MiB, st.heap_bytes / MiB,
             st.free_bytes / MiB, st.released_bytes / MiB, st.committed_bytes / MiB,
             st.memory_limit ? " (limit set)" : "", st.scavenged_bytes / MiB);
    struct tern_class_stats cs[NCLASSES_MAX];
    int n = class_stats(cs, NCLASSES_MAX);
    char line[1024];
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof line - 64; i++)
        len += cs[i].size ? (size_t)snprintf(line + len, sizeof line - len, " %u:%.0f/%.0fK", cs[i].size,
                                             cs[i].used_bytes / 1024.0, cs[i].free_bytes / 1024.0)
                          : (size_t)snprintf(line + len, sizeof line - len, " large:%.0f/0K", cs[i].used_bytes / 1024.0);
    tern_log("tern: gc %llu classes (size:used/free):%s\n", (unsigned long long)cycle, len ? line : " none");
}

static void at_exit(void) {
    if (atomic_exchange(&exit_done, 1)) return;
    if (tern_cfg.stats) tern_print_summary();
    if (tern_timeline_on) tl_close();
}

/* After tern_initialized is set (atexit may allocate). */
void tern_trace_after_init(void) {
    if (tern_cfg.stats || tern_timeline_on) atexit(at_exit);
}

/* A forked child must not write into its parent's timeline. */
void tern_trace_atfork_child(void) {
    pthread_mutex_init(&tl_lock, NULL);
    if (tern_timeline_on) {
        if (tl_fd >= 0) close(tl_fd);
        tl_fd = -1;
        tl_n = 0;
        tl_closed = true;
        tern_timeline_on = false;
    }
}
