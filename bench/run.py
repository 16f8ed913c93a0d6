#!/usr/bin/env python3
"""Tern benchmark runner: builds every workload x backend, runs them
interleaved, and writes bench/results/{results.md,results.csv,runs.csv} and
gnuplot charts (SVG and PNG).

Usually started through tools/bench, which installs missing packages first.

  tools/bench            full run (under 15 min on 2 cores)
  tools/bench --quick    smaller sizes (under 2 min)
  tools/bench --smoke    tiny sizes, one repetition, then checks that every
                         cell produced a number and every plot exists;
                         prints "N passed, N failed" and exits non-zero on
                         any failure (for CI)

Everything reported is measured in this invocation: wall time around the
child process, user+sys CPU and peak RSS from the kernel's wait4 rusage (via
the small launcher bench/spawn, see run_once), and the numbers each workload
prints on its RESULT lines.  Cells are medians over the
repetitions; ratios are between medians of this same invocation.
"""

import argparse
import csv
import datetime
import hashlib
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
BUILD = os.path.join(BENCH, "build")

# --------------------------------------------------------------- backends
#
# A backend is one column of results.  `build` names the compile-time
# variant of backend.h (-DBK_TERN, -DBK_BDWGC, -DBK_MALLOC); `env` is added to
# the child's environment; `preload` is a shared object to LD_PRELOAD (the
# backend is "n/a" when it does not exist).  `gc` says whether the binary
# uses a collector (GC workloads then drop garbage instead of freeing it).
#
# Adding an allocator is one line here.


def _gcc_file(name):
    try:
        p = subprocess.run(["gcc", "-print-file-name=" + name], capture_output=True,
                           text=True).stdout.strip()
    except OSError:
        return name
    return p if os.path.isabs(p) else name


class Backend:
    def __init__(self, name, build, gc, env=None, preload=None, note="", only=None):
        self.name, self.build, self.gc = name, build, gc
        self.env = env or {}
        self.preload = preload
        self.note = note
        self.only = only  # None: every workload; else the workloads it runs

    def barrier(self):
        """The Tern write barrier kind this backend forces, or None."""
        return self.env.get("TERN_BARRIER") if self.build == "tern" else None

    def available(self):
        if self.preload and not os.path.exists(self.preload):
            rel = os.path.relpath(self.preload, ROOT)
            return False, "%s not found" % (self.preload if rel.startswith("..") else rel)
        return True, ""


TERN_LIBDIR = os.environ.get("TERN_BENCH_LIBDIR", os.path.join(ROOT, ".libs"))

# Tern's write barrier kinds (TERN_BARRIER), each a backend of its own for
# the workloads that compare them (pause, barrier); "tern" is the default
# (auto) everywhere.  Virtual kinds: the kernel finds the written pages.
BARRIER_KINDS = ("uffd", "softdirty", "mprotect", "explicit", "stw")
VIRTUAL_KINDS = ("uffd", "softdirty", "mprotect")
KIND_WORKLOADS = ("pause", "barrier")

BACKENDS = [
    Backend("tern", "tern", True, note="Tern API, libtern.so (TERN_BARRIER from the environment, "
            "default auto)"),
] + [
    Backend("tern-" + k, "tern", True, env={"TERN_BARRIER": k}, only=KIND_WORKLOADS,
            note="Tern API, TERN_BARRIER=%s (pause and barrier workloads only)" % k)
    for k in BARRIER_KINDS
] + [
    # Tern under its memory limit (issue #6): TERN_MEMLIMIT is the limit
    # workload's per-mode value ("{limit}", see Workload.limit).
    Backend("tern-limit", "tern", True, env={"TERN_MEMLIMIT": "{limit}"}, only=("limit",),
            note="Tern API, TERN_MEMLIMIT set a little above the live data (limit workload only)"),
    Backend("bdwgc", "bdwgc", True, note="bdwgc, default markers"),
    Backend("bdwgc-m1", "bdwgc", True, env={"GC_MARKERS": "1"}, note="bdwgc, GC_MARKERS=1"),
    Backend("glibc", "malloc", False, note="glibc malloc/free"),
    Backend("mimalloc", "malloc", False, preload=_gcc_file("libmimalloc.so"),
            note="mimalloc via LD_PRELOAD"),
    Backend("tern-malloc", "malloc", False, preload=os.path.join(TERN_LIBDIR, "libtern-malloc.so"),
            note="Tern drop-in via LD_PRELOAD"),
]
REFS = ("bdwgc", "glibc")   # ratio columns

# --------------------------------------------------------------- workloads
#
# Each row runs one binary (bench/<src>.c) with arguments per mode.  "{file}"
# in the arguments is replaced by a per-run sample file.  `metric` is what the
# time ratios compare: "wall" (process wall time) or a RESULT key.
# `extras` are RESULT keys shown in the notes column (median over runs).


class Workload:
    def __init__(self, name, src, args, kind, metric="wall", extras=(), desc="", env=None,
                 backends=None, matrix=True, limit=None):
        self.name, self.src, self.args, self.kind = name, src, args, kind
        self.metric, self.extras, self.desc = metric, extras, desc
        self.env = env or {}        # added to the child's environment
        self.backends = backends    # None: every backend; else only these
        self.matrix = matrix        # in the time matrix and ratio plot (needs bdwgc)
        self.limit = limit or {}    # mode -> MiB: "{limit}" in a backend's env (tern-limit)


def applies(w, b):
    return (b.only is None or w.name in b.only) and (w.backends is None or b.name in w.backends)


# RESULT keys a cell of these workloads must have to pass the check.
FIGURES = {
    "limit": ("run_ms", "live_kib", "peak_rss_kib", "alloc_failures", "memory_limit_kib"),
    "footprint-one": ("rss_start_kib", "rss_one_kib"),
    "footprint-threads": ("thread_kib", "idle_kib_per_thread"),
    "footprint-live": ("live_kib", "peak_rss_kib", "peak_over_live"),
}
IDLE_EXTRAS = ("rss_init_kib", "rss_peak_sampled_kib", "rss_end_burst_kib", "rss_idle_1s_kib",
               "rss_idle_3s_kib", "rss_idle_5s_kib", "rss_idle_final_kib")
FOOTPRINT_BACKENDS = ("tern", "bdwgc", "glibc", "mimalloc", "tern-malloc")
PROGRAM_BACKENDS = ("glibc", "mimalloc", "tern-malloc")
PROGRAM_TIME_GOAL, PROGRAM_RSS_GOAL = 1.1, 1.2  # issue #4: the drop-in against glibc

WORKLOADS = [
    Workload("gcbench", "gcbench", {
        "smoke": ["14", "12", "100000", "4", "12"],
        "quick": ["16", "14", "500000", "4", "14"],
        "full": ["18", "16", "500000", "4", "16"]}, "gc",
        desc="GCBench (Boehm/Ellis/Kovac): STRETCH LONGLIVED ARRAY MIN MAX; full = the original sizes"),
] + [
    Workload("mtgcbench-t%d" % t, "mtgcbench", {
        "smoke": [str(t), "14", "12", "4", "12", "512"],
        "quick": [str(t), "17", "15", "4", "14", "2048"],
        "full": [str(t), "20", "18", "4", "18", "4096"]}, "gc",
        desc="GCBench trees split over %d thread(s) (same total work for 1, 2, 4), "
             "random-size holes fragment the heap: THREADS STRETCH LONGLIVED MIN MAX SLOTS" % t)
    for t in (1, 2, 4)
] + [
    Workload("binarytrees", "binarytrees", {
        "smoke": ["14"], "quick": ["16"], "full": ["19"]}, "gc",
        desc="Benchmarks Game binary-trees, single thread: MAX_DEPTH"),
    Workload("pause", "pause", {
        "smoke": ["16", "100", "500", "{file}"],
        "quick": ["64", "200", "1000", "{file}"],
        "full": ["256", "200", "1000", "{file}"]}, "gc",
        extras=("step_p50_us", "step_p99_us", "step_max_us", "stw_n", "mmu_1ms", "mmu_10ms"),
        env={"TERN_TRACE": "1"},
        desc="LIVE_MIB of 16..128-byte objects, REPLACE_PCT% of them replaced by one thread "
             "in steps of BATCH objects (table stores through TERN_STORE); step latency, "
             "mutator utilisation and GC pauses recorded (Tern's from its TERN_TRACE=1 lines)"),
    Workload("churn", "churn", {
        "smoke": ["window", "10000", "1000000"],
        "quick": ["window", "100000", "5000000"],
        "full": ["window", "100000", "20000000"]}, "gc",
        extras=("allocs_per_s",),
        desc="window WINDOW COUNT: 16..255-byte objects through a sliding window"),
    Workload("alloc16-t1", "churn", {
        "smoke": ["rate", "1", "2000000"],
        "quick": ["rate", "1", "10000000"],
        "full": ["rate", "1", "50000000"]}, "gc",
        extras=("allocs_per_s",), desc="rate THREADS COUNT: 16-byte allocation rate, 1 thread"),
    Workload("alloc16-t2", "churn", {
        "smoke": ["rate", "2", "2000000"],
        "quick": ["rate", "2", "10000000"],
        "full": ["rate", "2", "50000000"]}, "gc",
        extras=("allocs_per_s",),
        desc="rate THREADS COUNT: 16-byte allocation rate, 2 threads, COUNT each"),
    Workload("larson", "larson", {
        "smoke": ["2", "1000", "4", "50000", "16", "512"],
        "quick": ["2", "4000", "10", "100000", "16", "512"],
        "full": ["2", "4000", "20", "500000", "16", "512"]}, "malloc",
        extras=("ops_per_s",),
        desc="cross-thread free: THREADS SLOTS ROUNDS OPS MIN MAX; tables pass to new threads each round"),
    Workload("xmalloc", "xmalloc", {
        "smoke": ["1", "1", "200000", "256", "16", "1024"],
        "quick": ["1", "1", "1000000", "256", "16", "1024"],
        "full": ["1", "1", "8000000", "256", "16", "1024"]}, "malloc",
        extras=("ops_per_s",),
        desc="producer/consumer: PRODUCERS CONSUMERS OBJECTS BATCH MIN MAX"),
    Workload("alloctest", "alloctest", {
        "smoke": ["2", "10000", "300000"],
        "quick": ["2", "100000", "2000000"],
        "full": ["2", "100000", "12000000"]}, "malloc",
        extras=("ops_per_s", "mean_size"),
        desc="Pareto sizes 8..1024 bytes: THREADS LIVE OPS (per thread)"),
] + [
    # Real programs, unchanged, on each malloc (issue #4): the programs the
    # test suite runs under the drop-in, timed here against glibc and
    # mimalloc.  Every process of the pipeline inherits LD_PRELOAD.
    Workload("prog-" + name, "programs", {
        "smoke": [name, str(smoke)], "quick": [name, str(quick)], "full": [name, str(full)]},
        "malloc", metric="work_ms", extras=("out_bytes",), matrix=False,
        backends=PROGRAM_BACKENDS, desc=desc)
    for name, smoke, quick, full, desc in (
        ("python", 20000, 100000, 200000,
         "python3: a dict of SCALE entries, a JSON round trip, a sort: python SCALE"),
        ("sqlite", 20000, 100000, 400000,
         "sqlite3 in memory: SCALE rows, an index, a group by: sqlite SCALE"),
        ("sortgz", 50000, 200000, 400000,
         "awk writes SCALE lines; sort -n, gzip | gunzip, an awk tally: sortgz SCALE"))
] + [
    Workload("idle", "idle", {
        "smoke": ["64", "16", "300", "100", "{file}"],
        "quick": ["256", "32", "1000", "100", "{file}"],
        "full": ["1024", "64", "5000", "100", "{file}"]}, "gc", metric="burst_ms",
        extras=IDLE_EXTRAS,
        desc="BURST_MIB of garbage with WINDOW_MIB live, then IDLE_MS idle, RSS sampled every "
             "SAMPLE_MS; RSS 1, 3 and 5 s into the idle phase where IDLE_MS reaches them"),
    Workload("limit", "limit", {
        "smoke": ["8", "64", "{file}"],
        "quick": ["32", "256", "{file}"],
        "full": ["64", "1024", "{file}"]}, "gc", metric="run_ms",
        limit={"smoke": 12, "quick": 48, "full": 96},
        extras=("live_kib", "peak_rss_kib", "peak_committed_kib", "memory_limit_kib",
                "alloc_failures", "tern_limit_failures"),
        backends=("tern", "tern-limit", "glibc", "bdwgc"), matrix=False,
        desc="LIVE_MIB of 16..1024-byte objects in a table, then TOTAL_MIB more allocated, each "
             "replacing a random slot (fixed live set, fragmenting heap); run on Tern without "
             "and with TERN_MEMLIMIT = 1.5× the live data (tern-limit); glibc and bdwgc for "
             "reference: LIVE_MIB TOTAL_MIB FILE"),
    Workload("footprint-one", "footprint", {
        "smoke": ["one", "{file}"], "quick": ["one", "{file}"], "full": ["one", "{file}"]}, "gc",
        extras=("rss_start_kib", "rss_one_kib", "one_delta_kib"), matrix=False,
        backends=FOOTPRINT_BACKENDS,
        desc="RSS of the whole process after allocating one 32-byte object, and its growth "
             "since the first line of main; FILE gets RSS per mapping"),
    Workload("footprint-threads", "footprint", {
        "smoke": ["threads", "64", "100"],
        "quick": ["threads", "64", "500"],
        "full": ["threads", "64", "1000"]}, "gc",
        extras=("bare_kib_per_thread", "alloc_kib_per_thread", "thread_kib",
                "idle_kib_per_thread"), matrix=False, backends=FOOTPRINT_BACKENDS,
        desc="threads N SLEEP_MS: N threads each allocate and keep 16 small objects (8 sizes, "
             "16..512 bytes), then wait; resident growth per thread, at once and after "
             "SLEEP_MS idle"),
    Workload("footprint-live", "footprint", {
        "smoke": ["live", "16", "3", "16"],
        "quick": ["live", "64", "3", "64"],
        "full": ["live", "128", "3", "128"]}, "gc",
        extras=("live_kib", "peak_rss_kib", "peak_over_live", "peak_build_over_live"),
        matrix=False,
        env={"TERN_GC": "100"}, backends=FOOTPRINT_BACKENDS,
        desc="live LIVE_MIB GARBAGE STEADY_MIB with TERN_GC=100: builds LIVE_MIB of "
             "16..1024-byte objects with GARBAGE garbage objects after each, then STEADY_MIB "
             "more garbage; peak RSS (VmHWM) ÷ live data"),
    Workload("barrier", "barrier", {
        "smoke": ["4", "100000", "2"],
        "quick": ["16", "2000000", "3"],
        "full": ["64", "4000000", "5"]}, "tern",
        extras=("setup_ms", "swap_ratio", "seq_ratio", "copy_ratio"),
        env={"TERN_GC": "off"}, matrix=False,
        backends=("tern",) + tuple("tern-" + k for k in BARRIER_KINDS),
        desc="write barrier cost with no collection (TERN_GC=off): MIB of 64-byte nodes "
             "(8 pointers) + MIB/4 of 64-pointer arrays; STORES random slot swaps, 16×STORES "
             "sequential slot rotations, 16×STORES pointers memcpy'd; plain stores vs "
             "TERN_STORE/tern_written, fastest of REPS: MIB STORES REPS"),
]

SOURCES = sorted({w.src for w in WORKLOADS})
VARIANTS = {"tern": "-DBK_TERN", "bdwgc": "-DBK_BDWGC", "malloc": "-DBK_MALLOC"}
MODES = {  # reps, per-run timeout (s)
    "smoke": (1, 10),
    "quick": (3, 30),
    "full": (3, 120),
}

# --------------------------------------------------------------- helpers

_tty = sys.stderr.isatty()


def log(msg):
    if _tty:
        sys.stderr.write("\r\033[K")
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def progress(msg, final=False):
    """One line per run on stderr; on a terminal it is rewritten in place."""
    if _tty:
        sys.stderr.write("\r\033[K" + msg + ("\n" if final else ""))
    else:
        sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def sh(cmd, cwd, logf, env=None):
    with open(logf, "a") as f:
        f.write("$ %s\n" % " ".join(cmd))
        f.flush()
        return subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                              env=env).returncode


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------- building


def build_tern(tmp, skip):
    """Builds libtern at the repository root; returns (ok, message)."""
    lib = os.path.join(TERN_LIBDIR, "libtern.so")
    if skip or "TERN_BENCH_LIBDIR" in os.environ:
        return os.path.exists(lib), "not built by the runner"
    logf = os.path.join(tmp, "build-tern.log")
    open(logf, "w").close()
    if not os.path.exists(os.path.join(ROOT, "configure")):
        log("bench: autoreconf -fi (log: %s)" % os.path.relpath(logf, ROOT))
        if sh(["autoreconf", "-fi"], ROOT, logf):
            return os.path.exists(lib), "autoreconf failed, see " + logf
    if not os.path.exists(os.path.join(ROOT, "Makefile")):
        log("bench: ./configure")
        if sh(["./configure"], ROOT, logf):
            return os.path.exists(lib), "configure failed, see " + logf
    log("bench: make -j2 (Tern)")
    if sh(["make", "-j2"], ROOT, logf):
        if os.path.exists(lib):
            return True, "make failed; using the existing (possibly stale) %s" % lib
        return False, "make failed, see " + logf
    return os.path.exists(lib), "" if os.path.exists(lib) else "no %s after make" % lib


def build_workloads(tmp, tern_ok):
    """Compiles bench/<src>.c for each variant into bench/build/.
    Returns {(src, variant): error or None}."""
    os.makedirs(BUILD, exist_ok=True)
    base = ["gcc", "-O2", "-g", "-pthread", "-Wall", "-Wextra", "-std=gnu11",
            "-fno-builtin-malloc", "-fno-builtin-free", "-fno-builtin-calloc",
            "-fno-builtin-realloc", "-I", BENCH]
    extra = {
        "tern": (["-I", os.path.join(ROOT, "include")],
                 ["-L", TERN_LIBDIR, "-Wl,-rpath," + TERN_LIBDIR, "-ltern"]),
        "bdwgc": ([], ["-lgc"]),
        "malloc": ([], []),
    }
    hdr = os.path.join(BENCH, "backend.h")
    tern_h = os.path.join(ROOT, "include", "tern.h")
    # The stamp also holds a hash of the headers' contents: a binary built
    # against another tern.h (struct tern_stats grew in #6; a stale binary's
    # smaller struct made tern_get_stats write past it) is rebuilt even when
    # file times do not show the change (a checkout, a copied tree).
    inc = os.path.join(ROOT, "include")
    hdrs = sorted(os.path.join(d, f) for d, _, fs in os.walk(inc) for f in fs if f.endswith(".h"))
    hdr_hash = {}
    for var in VARIANTS:
        hsh = hashlib.sha1()
        for h in [hdr] + (hdrs if var == "tern" else []):
            try:
                with open(h, "rb") as f:
                    hsh.update(h.encode() + b"\0" + f.read())
            except OSError:
                pass
        hdr_hash[var] = hsh.hexdigest()
    jobs = []
    for src in SOURCES:
        for var in VARIANTS:
            jobs.append((src, var))

    def one(job):
        src, var = job
        if var == "tern" and not tern_ok:
            return job, "libtern not built"
        out = os.path.join(BUILD, "%s-%s" % (src, var))
        c = os.path.join(BENCH, src + ".c")
        deps = [c, hdr, __file__] + ([tern_h] + hdrs if var == "tern" else [])
        if var == "tern":
            deps.append(os.path.join(TERN_LIBDIR, "libtern.so"))
        cf, lf = extra[var]
        cmd = base + [VARIANTS[var]] + cf + ["-o", out, c] + lf + ["-lm"]
        stamp = out + ".cmd"  # rebuild when the command (e.g. the libtern dir) or a header changes
        stamp_text = " ".join(cmd) + "\nheaders " + hdr_hash[var]
        try:
            with open(stamp) as f:
                same = f.read() == stamp_text
        except OSError:
            same = False
        if same and os.path.exists(out) and all(os.path.getmtime(out) >= os.path.getmtime(d)
                                                for d in deps if os.path.exists(d)):
            return job, None
        p = subprocess.run(cmd, capture_output=True, text=True)
        if not p.returncode:
            with open(stamp, "w") as f:
                f.write(stamp_text)
        if p.returncode:
            with open(os.path.join(tmp, "build-%s-%s.log" % (src, var)), "w") as f:
                f.write(" ".join(cmd) + "\n" + p.stdout + p.stderr)
            return job, "compile failed: " + (p.stderr.strip().splitlines() or ["?"])[-1]
        if p.stderr.strip():
            log("bench: warnings building %s-%s:\n%s" % (src, var, p.stderr.strip()))
        return job, None

    sp = os.path.join(BENCH, "spawn.c")
    if not os.path.exists(SPAWN) or os.path.getmtime(SPAWN) < os.path.getmtime(sp):
        p = subprocess.run(["gcc", "-O2", "-Wall", "-o", SPAWN, sp], capture_output=True, text=True)
        if p.returncode:
            sys.exit("bench: cannot build bench/spawn: " + p.stderr)
    with ThreadPoolExecutor(max_workers=2) as ex:
        return dict(ex.map(one, jobs))


# --------------------------------------------------------------- running


def parse_results(text):
    vals = {}
    for line in text.splitlines():
        if not line.startswith("RESULT "):
            continue
        for tok in line.split()[1:]:
            if "=" in tok:
                k, v = tok.split("=", 1)
                try:
                    vals[k] = float(v)
                except ValueError:
                    vals[k] = v
    return vals


SPAWN = os.path.join(BUILD, "spawn")
LOAD_AT_START = "%.2f %.2f %.2f" % os.getloadavg()  # other work on the machine skews timings


def run_once(cmd, env, timeout, outf, errf):
    """Runs cmd under bench/spawn; returns dict(wall, user, sys, maxrss_kib, rc, timed_out).

    Wall time is measured here around the child.  CPU and peak RSS are the
    kernel's rusage from wait4: Python's os.wait4 on the launcher, and the
    launcher's own wait4 on the workload for ru_maxrss (Linux carries a
    process's peak RSS across fork+exec, so a child forked by this Python
    process would report at least Python's RSS; bench/spawn is tiny)."""
    ruf = outf + ".rusage"
    with open(outf, "w") as fo, open(errf, "w") as fe:
        t0 = time.monotonic()
        p = subprocess.Popen([SPAWN, ruf] + cmd, stdout=fo, stderr=fe, env=env, cwd=BENCH,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        killed = []

        def kill():
            killed.append(1)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # keep Popen quiet
    r = {"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime, "maxrss_kib": None,
         "rc": p.returncode, "timed_out": bool(killed)}
    try:
        with open(ruf) as f:
            kv = dict(tok.split("=", 1) for tok in f.read().split())
        r["maxrss_kib"] = int(kv["maxrss_kib"])
        r["user"], r["sys"] = float(kv["utime_s"]), float(kv["stime_s"])
        r["rc"] = int(kv["status"])
    except (OSError, KeyError, ValueError):
        pass  # killed before it could report: the run fails anyway
    return r


def describe_failure(r, vals):
    if r["timed_out"]:
        return "timed out (killed)"
    if r["rc"] < 0:
        try:
            return "killed by signal %s" % signal.Signals(-r["rc"]).name
        except ValueError:
            return "killed by signal %d" % -r["rc"]
    if r["rc"] != 0:
        return "exit status %d" % r["rc"]
    if r["maxrss_kib"] is None:
        return "no rusage from bench/spawn"
    if "ok" not in vals:
        return "no RESULT ok= line"
    if vals.get("ok") != 1:
        return "workload self-check failed (ok=%s)" % vals.get("ok")
    return None


def subst_env(env, w, mode):
    """Fills "{limit}" (the workload's memory limit for this mode) in env values."""
    lim = w.limit.get(mode)
    return {k: v.replace("{limit}", "%dMiB" % lim if lim else "off") for k, v in env.items()}


def repro_cmd(w, b, mode):
    env = ["%s=%s" % kv for kv in sorted(subst_env(dict(w.env, **b.env), w, mode).items())]
    if b.preload:
        env.append("LD_PRELOAD=" + b.preload)
    exe = os.path.relpath(os.path.join(BUILD, "%s-%s" % (w.src, b.build)), ROOT)
    argv = [a.replace("{file}", "/tmp/samples.txt") for a in w.args[mode]]
    return " ".join((["env"] + env if env else []) + [exe] + argv)


TRACE_RE = re.compile(r"^tern: gc (\d+) @([0-9.]+)s (?:([a-z]+): )?.*?\bpause ([0-9.+]+) ms")
ASSIST_RE = re.compile(r"\bassist ([0-9.]+) ms")


def pctl(sorted_xs, p):
    """Nearest rank, as the workloads' own percentiles: index round(p*(n-1))."""
    if not sorted_xs:
        return None
    return sorted_xs[int(p * (len(sorted_xs) - 1) + 0.5)]


def trace_pauses(path):
    """From Tern's TERN_TRACE=1 lines: every stop-the-world pause (ns), the
    kinds named, the number of cycles, the most pauses in one cycle and the
    sum of the mutators' marking assists (ms; None when no line has any).  Each line's "pause A+B+...
    ms" lists one cycle's pauses."""
    pauses, kinds, cycles, most, assist = [], set(), 0, 0, None
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = TRACE_RE.match(line)
                if not m:
                    continue
                cycles += 1
                if m.group(3):
                    kinds.add(m.group(3))
                a = ASSIST_RE.search(line)
                if a:
                    assist = (assist or 0.0) + float(a.group(1))
                xs = [x for x in m.group(4).split("+") if x]
                most = max(most, len(xs))
                pauses.extend(int(round(float(x) * 1e6)) for x in xs)
    except OSError:
        pass
    return pauses, kinds, cycles, most, assist


def pause_figures(b, rec, errf, notes):
    """Stop-the-world pause figures of one pause-workload run, into
    rec["vals"] (stw_n, stw_p50_ms, stw_p99_ms, stw_max_ms, stw_total_ms) and
    rec["stw"] (every pause, ns).  Tern: from the TERN_TRACE lines on its
    stderr; bdwgc: the "gc" lines of the samples file (its event callback
    sees every pause)."""
    v = rec["vals"]
    tag = "pause × %s rep %d" % (b.name, rec["rep"])
    if b.build == "tern":
        xs, kinds, tcycles, most, assist = trace_pauses(errf)
        if assist is not None:   # stw cycles have no assists
            v["assist_ms"] = assist
        # Cross-check the trace against tern_get_stats.
        if v.get("gc_cycles") and not tcycles:
            notes.append("%s: %d cycles but no TERN_TRACE lines parsed" % (tag, v["gc_cycles"]))
        elif tcycles and v.get("gc_cycles") is not None and tcycles != v["gc_cycles"]:
            notes.append("%s: %d trace lines, tern_get_stats counts %d cycles" % (
                tag, tcycles, v["gc_cycles"]))
        # A cycle still running at exit has counted its first pauses but
        # printed no line yet: up to one cycle's worth fewer is expected.
        if xs and v.get("gc_pauses") and not 0 <= v["gc_pauses"] - len(xs) < max(most, 1):
            notes.append("%s: trace lines list %d pauses, tern_get_stats counts %d" % (
                tag, len(xs), v["gc_pauses"]))
        smax = v.get("gc_max_pause_ns")
        if xs and isinstance(smax, float) and abs(max(xs) - smax) > 2000 + 0.01 * smax:
            # The stats may hold a longer pause of a cycle that had not ended
            # (so printed no line) when the workload read them; that pause
            # is real, so the max below takes it.  Anything else is odd.
            unfinished = v.get("gc_pauses", 0) > len(xs) and smax > max(xs)
            if not unfinished:
                notes.append("%s: longest traced pause %.3f ms, tern_get_stats max_pause "
                             "%.3f ms" % (tag, max(xs) / 1e6, smax / 1e6))
        if kinds and isinstance(v.get("barrier"), str) and kinds != {v["barrier"]}:
            notes.append("%s: trace names kind(s) %s, tern_get_stats %s" % (
                tag, ",".join(sorted(kinds)), v["barrier"]))
    else:
        xs = []
        if rec.get("file") and os.path.exists(rec["file"]):
            with open(rec["file"]) as f:
                for line in f:
                    k, x = line.split()[:2]
                    if k == "gc":
                        xs.append(int(x))
    xs.sort()
    rec["stw"] = xs
    v["stw_n"] = float(len(xs))
    if xs:
        v["stw_p50_ms"] = pctl(xs, 0.5) / 1e6
        v["stw_p99_ms"] = pctl(xs, 0.99) / 1e6
        v["stw_max_ms"] = xs[-1] / 1e6
        if b.build == "tern" and isinstance(v.get("gc_max_pause_ns"), float):
            v["stw_max_ms"] = max(xs[-1], v["gc_max_pause_ns"]) / 1e6
        v["stw_total_ms"] = sum(xs) / 1e6


def kind_unavailable(b, vals):
    """A tern-KIND backend whose run used another barrier kind (the kernel
    lacks what KIND needs): the reason, else None."""
    want = b.barrier()
    got = vals.get("barrier")
    if want and isinstance(got, str) and got != want:
        return "TERN_BARRIER=%s not available here (ran %s)" % (want, got)
    return None


def child_env(b, w, mode):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "GC_MARKERS", "GC_NPROCS"):
        env.pop(k, None)
    env.update(subst_env(w.env, w, mode))
    env.update(subst_env(b.env, w, mode))
    if b.preload:
        env["LD_PRELOAD"] = b.preload
    return env


# --------------------------------------------------------------- reporting


def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def fmt(x, nd=3):
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if abs(x) >= 1e6:
        return "%.3g" % x
    if abs(x) >= 100:
        return "%.0f" % x
    if abs(x) >= 10:
        return "%.1f" % x
    return ("%." + str(nd) + "f") % x


def human_extra(k, v):
    if v is None:
        return "%s=n/a" % k
    if k.endswith("_per_s"):
        return "%s=%.1fM/s" % (k[:-6], v / 1e6)
    if k.endswith("_kib"):
        return "%s=%.0fMiB" % (k[:-4], v / 1024)
    if k.endswith("_us"):
        return "%s=%sus" % (k[:-3], fmt(v, 1))
    if isinstance(v, float) and v.is_integer():
        return "%s=%d" % (k, v)
    return "%s=%s" % (k, fmt(v, 1))


def metric_of(w, run):
    if w.metric == "wall":
        return run["wall"]
    v = run["vals"].get(w.metric)
    return v / 1000.0 if isinstance(v, float) and w.metric.endswith("_ms") else v


def aggregate(w, b, runs):
    """One cell: medians over the runs of workload w on backend b."""
    cell = {"workload": w.name, "backend": b.name, "runs": len(runs)}
    fails = [r for r in runs if r["error"]]
    if fails:
        cell["status"] = "FAIL"
        cell["error"] = fails[0]["error"]
        cell["failed_runs"] = len(fails)
        return cell
    na = [r["na"] for r in runs if r.get("na")]
    if na:
        cell["status"] = "n/a"
        cell["error"] = na[0]
        return cell
    cell["status"] = "ok"
    kinds = sorted({r["vals"]["barrier"] for r in runs if isinstance(r["vals"].get("barrier"), str)})
    cell["barrier"] = "/".join(kinds) if kinds else None
    cell["wall_s"] = med([r["wall"] for r in runs])
    cell["wall_min_s"] = min(r["wall"] for r in runs)
    cell["wall_max_s"] = max(r["wall"] for r in runs)
    cell["cpu_s"] = med([r["user"] + r["sys"] for r in runs])
    cell["maxrss_mib"] = med([r["maxrss_kib"] / 1024.0 for r in runs])
    cell["metric_s"] = med([metric_of(w, r) for r in runs])
    mp = med([r["vals"].get("gc_max_pause_ns") for r in runs])
    cell["gc_max_pause_ms"] = mp / 1e6 if mp is not None else None
    cyc = med([r["vals"].get("gc_cycles") for r in runs])
    cell["gc_cycles"] = cyc if b.gc else None
    keys = sorted({k for r in runs for k, v in r["vals"].items() if isinstance(v, float)})
    cell["vals"] = {k: med([r["vals"].get(k) for r in runs]) for k in keys}
    # The run whose wall time is the median supplies the sample files.
    order = sorted(runs, key=lambda r: r["wall"])
    cell["median_run"] = order[(len(order) - 1) // 2]
    return cell


def write_csv(path, cells, workloads, backends):
    extra_keys = sorted({k for c in cells.values() for k in c.get("vals", {})})
    cols = ["workload", "backend", "status", "runs", "wall_s", "wall_min_s", "wall_max_s",
            "cpu_s", "maxrss_mib", "gc_max_pause_ms", "gc_cycles", "metric_s",
            "ratio_vs_bdwgc", "ratio_vs_glibc", "error"] + ["result_" + k for k in extra_keys]
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(cols)
        for w in workloads:
            for b in backends:
                c = cells.get((w.name, b.name))
                if c is None:
                    continue
                row = []
                for col in cols:
                    if col.startswith("result_"):
                        v = c.get("vals", {}).get(col[7:])
                    else:
                        v = c.get(col)
                    row.append("" if v is None else ("%.6g" % v if isinstance(v, float) else v))
                wr.writerow(row)


def write_runs_csv(path, allruns):
    keys = sorted({k for r in allruns for k, v in r["vals"].items()})
    cols = ["workload", "backend", "rep", "wall_s", "user_s", "sys_s", "maxrss_kib", "rc",
            "error"] + ["result_" + k for k in keys]
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(cols)
        for r in allruns:
            row = [r["workload"], r["backend"], r["rep"], "%.4f" % r["wall"], "%.4f" % r["user"],
                   "%.4f" % r["sys"], "" if r["maxrss_kib"] is None else r["maxrss_kib"], r["rc"],
                   r["error"] or ("n/a: " + r["na"] if r.get("na") else "")]
            row += ["" if r["vals"].get(k) is None else r["vals"][k] for k in keys]
            wr.writerow(row)


def sysinfo():
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cores"] = os.cpu_count()
    info["load"] = LOAD_AT_START
    info["kernel"] = platform.release()
    info["glibc"] = " ".join(platform.libc_ver())

    def dpkg(pkg):
        try:
            return subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                                  capture_output=True, text=True).stdout.strip() or "?"
        except OSError:
            return "?"
    info["bdwgc"] = dpkg("libgc-dev")
    info["mimalloc"] = dpkg("libmimalloc-dev")
    try:
        info["gcc"] = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True,
                                     text=True).stdout.strip()
        info["commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True).stdout.strip() or "none"
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "gc", "include"],
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            info["commit"] += " (gc/ or include/ modified)"
    except OSError:
        pass
    return info


def ok_cell(cells, key):
    """The cell at key (workload, backend) if it ran and passed, else None."""
    c = cells.get(key)
    return c if c and c["status"] == "ok" else None


def goal_mark(ok):
    return "✓" if ok else "✗"


def pause_section(L, cells, backends, reps, args_str):
    """The pause workload for each of Tern's barrier kinds next to bdwgc,
    with issue #3's goals."""
    rows = [b for b in backends if ("pause", b.name) in cells]
    if not rows:
        return
    ref = ok_cell(cells, ("pause", "bdwgc"))
    L.append("## Pause workload: Tern's barrier kinds and bdwgc\n")
    L.append("`pause %s`. Stop-the-world pauses from each collector's own accounting (Tern: "
             "every pause on its `TERN_TRACE=1` lines, a cycle's pauses are the `+`-separated "
             "numbers; bdwgc: PRE_STOP_WORLD→POST_START_WORLD); p50/p99/max over the pauses "
             "of one run, then the median over %d run(s), as is every other figure. Worst "
             "step: the longest step (a batch of replacements) the mutator saw; assists: the "
             "marking work Tern's mutator did inside allocation, summed over the run's trace "
             "lines (a stall beside the pauses). MMU: minimum "
             "mutator utilisation over any 1 ms / 10 ms window of the replacement phase, "
             "from the mutator's own step timeline (definition in bench/README.md). "
             "Goals (issue #3): max pause ≤ 1 ms with a virtual barrier (uffd, softdirty, "
             "mprotect), ≤ 0.5 ms with explicit; time ≤ bdwgc's; peak RSS ≤ 0.8× bdwgc's "
             "(✓/✗ beside the figure; ratios between medians of this run).\n" % (args_str, reps))
    L.append("| backend | barrier | pauses | p50 ms | p99 ms | max ms | worst step ms "
             "| assists ms | time s (×bdwgc) | peak RSS MiB (×bdwgc) | MMU 1 ms | MMU 10 ms |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in rows:
        c = cells[("pause", b.name)]
        if c["status"] != "ok":
            L.append("| %s | %s | %s | | | | | | | | | |" % (
                b.name, b.barrier() or "–", ("**FAIL**: " if c["status"] == "FAIL" else "n/a: ")
                + c.get("error", "")))
            continue
        v = c["vals"]
        kind = c.get("barrier") if b.build == "tern" else None
        pause_goal = None if kind is None else 1.0 if kind in VIRTUAL_KINDS else \
            0.5 if kind == "explicit" else None

        def ms(k):
            return fmt(v.get(k)) if v.get(k) is not None else "–"
        mx = ms("stw_max_ms")
        if pause_goal is not None and v.get("stw_max_ms") is not None:
            mx += " " + goal_mark(v["stw_max_ms"] <= pause_goal)
        t = fmt(c["wall_s"])
        r = fmt(c["maxrss_mib"])
        if ref and b.name != "bdwgc":
            tr = c["wall_s"] / ref["wall_s"]
            rr = c["maxrss_mib"] / ref["maxrss_mib"]
            t += " (%.2f%s)" % (tr, " " + goal_mark(tr <= 1.0) if b.build == "tern" else "")
            r += " (%.2f%s)" % (rr, " " + goal_mark(rr <= 0.8) if b.build == "tern" else "")
        step = v.get("step_max_us")
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            b.name, kind or "–", "%d" % v["stw_n"] if v.get("stw_n") is not None else "–",
            ms("stw_p50_ms"), ms("stw_p99_ms"), mx, fmt(step / 1e3) if step is not None else "–",
            ms("assist_ms"), t, r, fmt(v.get("mmu_1ms")), fmt(v.get("mmu_10ms"))))
    L.append("")


def barrier_section(L, cells, backends, reps, args_str):
    """The barrier workload: ns per store for each kind, against plain stores
    with no barrier (tern-stw)."""
    rows = [b for b in backends if ("barrier", b.name) in cells]
    if not rows:
        return
    base = ok_cell(cells, ("barrier", "tern-stw"))
    base = base and base["vals"]
    L.append("## Write barrier cost (barrier workload, no collection running)\n")
    L.append("`barrier %s` with `TERN_GC=off`. ns per pointer store (copy: per pointer "
             "copied), the fastest of the repetitions inside each process, then the median over "
             "%d run(s). Each kind is shown with the stores it needs: TERN_STORE and "
             "tern_written under explicit, plain stores under the others (the kernel finds the "
             "written pages); × divides by tern-stw's plain stores (no barrier at all). "
             "Last column: TERN_STORE ÷ plain stores measured in the same process (the cost a "
             "program pays for using TERN_STORE under that kind). setup: allocating and filling "
             "the heap (first-touch cost of each kind).\n" % (args_str, reps))
    L.append("| backend | barrier | setup ms | swap ns (×) | seq ns (×) | copy ns/ptr (×) "
             "| TERN_STORE ÷ plain: swap / seq / copy |")
    L.append("|---|---|---:|---:|---:|---:|---|")
    for b in rows:
        c = cells[("barrier", b.name)]
        if c["status"] != "ok":
            L.append("| %s | %s | %s | | | | |" % (
                b.name, b.barrier() or "–", ("**FAIL**: " if c["status"] == "FAIL" else "n/a: ")
                + c.get("error", "")))
            continue
        v = c["vals"]
        kind = c.get("barrier") or "?"
        style = "barrier" if kind == "explicit" else "plain"
        cols = []
        for pat in ("swap", "seq", "copy"):
            x = v.get("%s_%s_ns" % (pat, style))
            y = base.get("%s_plain_ns" % pat) if base else None
            cols.append("%s (%s)" % (fmt(x, 2), fmt(x / y, 2) if x is not None and y else "n/a"))
        L.append("| %s | %s | %s | %s | %s |" % (
            b.name, kind, fmt(v.get("setup_ms")), " | ".join(cols),
            " / ".join(fmt(v.get(p + "_ratio"), 2) for p in ("swap", "seq", "copy"))))
    L.append("")

def mib(kib):
    return fmt(kib / 1024.0) if isinstance(kib, float) else "–"


def fail_row(L, b, c, ncols):
    L.append("| %s | %s%s |" % (b.name, ("**FAIL**: " if c["status"] == "FAIL" else "n/a: ")
                                + c.get("error", ""), " |" * (ncols - 2)))


IDLE_GOAL_MIB = 10   # issue #6: after the burst dies, RSS back near the runtime's own


def idle_section(L, cells, backends, reps, args_str):
    """The idle workload: RSS at init, peak, 1/3/5 s into the idle phase."""
    rows = [b for b in backends if ("idle", b.name) in cells]
    if not rows:
        return
    L.append("## Idle workload: memory that comes back\n")
    L.append("`idle %s`. RSS (MiB, from /proc/self/statm) at start, the highest sample, at the "
             "end of the burst (everything dropped or freed), then 1, 3 and 5 s into the idle "
             "phase (the first sample at or after that time; – where IDLE_MS is shorter) and "
             "the last sample; medians over %d run(s). No collection is requested: what comes "
             "back is what the allocator returns by itself. Goal (issue #6, Tern): the final "
             "RSS ≤ %d MiB (the live data is 0 after the burst, so this is the runtime's own "
             "overhead plus 10%%); ×glibc: final RSS ÷ glibc's. Plot: idle_rss.\n" % (
                 args_str, reps, IDLE_GOAL_MIB))
    L.append("| backend | init | peak | end of burst | idle 1 s | idle 3 s | idle 5 s "
             "| idle final | final ×glibc |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ref = ok_cell(cells, ("idle", "glibc"))
    refv = ref and ref["vals"].get("rss_idle_final_kib")
    for b in rows:
        c = cells[("idle", b.name)]
        if c["status"] != "ok":
            fail_row(L, b, c, 9)
            continue
        v = c["vals"]
        fin = v.get("rss_idle_final_kib")
        final = mib(fin)
        if b.build == "tern" and isinstance(fin, float):
            final += " " + goal_mark(fin <= IDLE_GOAL_MIB * 1024)
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            b.name, mib(v.get("rss_init_kib")), mib(v.get("rss_peak_sampled_kib")),
            mib(v.get("rss_end_burst_kib")), mib(v.get("rss_idle_1s_kib")),
            mib(v.get("rss_idle_3s_kib")), mib(v.get("rss_idle_5s_kib")), final,
            fmt(fin / refv, 2) if isinstance(fin, float) and refv else "–"))
    L.append("")


def limit_section(L, cells, backends, reps, args_str, limit_mib):
    """The limit workload: Tern with and without TERN_MEMLIMIT."""
    rows = [b for b in backends if ("limit", b.name) in cells]
    if not rows:
        return
    base = ok_cell(cells, ("limit", "tern"))
    L.append("## Memory limit (limit workload)\n")
    L.append("`limit %s`: a fixed live set churned. `tern-limit` runs with TERN_MEMLIMIT=%sMiB, "
             "about 1.5× the live data; `tern` with no limit; glibc and bdwgc for reference "
             "(no limit). Peak RSS: the process's VmHWM; ÷ limit divides it by %s MiB for every "
             "row; it also holds what the limit does not count (the binary and libraries, about 2 "
             "MiB at start, and Tern's memory outside the heap). Committed: Tern's heap bytes "
             "the limit applies to (spans, free pages held, chunk headers), the highest sample "
             "(one every 4 MiB allocated). Time: build + "
             "churn inside the process, × = ÷ tern's (no limit). Refused spans: spans the limit "
             "refused (the allocating thread then returned pages and collected, and retried). "
             "Failed allocations: NULL returns. Medians over %d run(s). Goals (issue #6, "
             "tern-limit): peak committed ≤ the limit (what TERN_MEMLIMIT bounds, see "
             "include/tern/memory.h), no failed allocation; peak RSS against the limit as "
             "measured. Plot: limit_rss.\n" % (
                 args_str, limit_mib, limit_mib, reps))
    L.append("| backend | limit MiB | live MiB | peak RSS MiB | peak RSS ÷ limit | peak committed "
             "MiB | time s (×tern) | GC cycles | max pause ms | refused spans | failed allocations |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in rows:
        c = cells[("limit", b.name)]
        if c["status"] != "ok":
            fail_row(L, b, c, 11)
            continue
        v = c["vals"]
        lim = v.get("memory_limit_kib")
        peak = v.get("peak_rss_kib")
        ratio = peak / (limit_mib * 1024.0) if isinstance(peak, float) and limit_mib else None
        rt = fmt(ratio, 2)
        com = v.get("peak_committed_kib")
        cm = mib(com) if b.build == "tern" else "–"
        if b.name == "tern-limit" and isinstance(com, float) and lim:
            cm += " " + goal_mark(com <= lim)
        t = fmt(c["metric_s"])
        if base and b.name != "tern" and base["metric_s"]:
            t += " (%.2f)" % (c["metric_s"] / base["metric_s"])
        fails = v.get("alloc_failures")
        fl = "%d" % fails if isinstance(fails, float) else "–"
        if b.name == "tern-limit" and isinstance(fails, float):
            fl += " " + goal_mark(fails == 0)
        refused = v.get("tern_limit_failures")
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            b.name, mib(lim) if lim else "none", mib(v.get("live_kib")), mib(peak), rt, cm, t,
            "%d" % c["gc_cycles"] if c["gc_cycles"] is not None else "–",
            fmt(c["gc_max_pause_ms"]) if c["gc_max_pause_ms"] is not None else "–",
            "%d" % refused if isinstance(refused, float) else "–", fl))
    L.append("")


FP_ONE_GOAL_KIB = 512      # issue #6: one object, RSS ≤ glibc's + 512 KiB
FP_THREAD_GOAL_KIB = 16    # issue #6: an idle thread's cache ≤ 16 KiB resident
FP_LIVE_GOAL = 1.6         # issue #6: peak RSS ≤ 1.6× live data at TERN_GC=100


def programs_section(L, cells, wn, mode, reps):
    """Real programs on each malloc: time and peak RSS against glibc's."""
    names = [n for n in wn if n.startswith("prog-")]
    if not names:
        return
    L.append("## Real programs on each malloc\n")
    L.append("Unchanged programs started by `bench/programs.c` (through /bin/sh, output to a "
             "file), glibc as is, mimalloc and the Tern drop-in by LD_PRELOAD (every process "
             "of a pipeline inherits it; `TERN_FREE=honor`, the default). Time: the program's "
             "wall time from fork to exit; peak RSS: the largest process (wait4); medians over "
             "%d run(s), × divides by glibc's. Goals (issue #4, tern-malloc): time ≤ %.1f× "
             "glibc's, peak RSS ≤ %.1f× glibc's. The test suite checks that the output is the "
             "same under every mode (tests/malloc/test_malloc_programs.c).\n" % (
                 reps, PROGRAM_TIME_GOAL, PROGRAM_RSS_GOAL))
    L.append("| program | args | glibc s | mimalloc s (×) | tern-malloc s (×) | glibc MiB "
             "| mimalloc MiB (×) | tern-malloc MiB (×) |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for n in names:
        ref = ok_cell(cells, (n, "glibc"))
        row = [n[len("prog-"):], " ".join(wn[n].args[mode])]
        for what, goal in (("metric_s", PROGRAM_TIME_GOAL), ("maxrss_mib", PROGRAM_RSS_GOAL)):
            for b in PROGRAM_BACKENDS:
                c = cells.get((n, b))
                if c is None:
                    row.append("–")
                    continue
                if c["status"] != "ok":
                    row.append("**FAIL**" if c["status"] == "FAIL" else "n/a")
                    continue
                v = c[what]
                if b == "glibc" or not ref:
                    row.append(fmt(v) if what == "metric_s" else mib(v * 1024))
                    continue
                r = v / ref[what] if ref[what] else None
                txt = (fmt(v) if what == "metric_s" else mib(v * 1024)) + " (%s" % fmt(r, 2)
                if b == "tern-malloc" and r is not None:
                    txt += " " + goal_mark(r <= goal)
                row.append(txt + ")")
        L.append("| " + " | ".join(row) + " |")
    L.append("")


def footprint_section(L, cells, backends, wn, mode, reps):
    """The footprint workloads: one object, idle threads, peak over live."""
    names = [n for n in ("footprint-one", "footprint-threads", "footprint-live") if n in wn]
    rows = [b for b in backends if any((n, b.name) in cells for n in names)]
    if not rows:
        return

    def vals(n, b):
        c = ok_cell(cells, (n, b))
        return c and c["vals"]

    def status(n, b):
        c = cells.get((n, b.name))
        if c is None:
            return "–"
        return None if c["status"] == "ok" else "**FAIL**" if c["status"] == "FAIL" else "n/a"

    def args(n):
        return " ".join(wn[n].args[mode]).replace("{file}", "FILE") if n in wn else "–"
    L.append("## Footprint\n")
    L.append("Three programs, medians over %d run(s). **One object** (`footprint %s`): RSS of "
             "the whole process after allocating one 32-byte object (binary, libraries and "
             "allocator; from /proc/self/statm), the difference from glibc's, and the growth "
             "since the first line of main (Tern's library constructor runs before main, so "
             "its growth leaves that out). **Threads** (`footprint %s`): resident growth per "
             "thread, threads that each allocate 16 small objects and keep them; at once, and "
             "after the sleep (idle), each also minus glibc's. **Live** (`footprint %s`, "
             "TERN_GC=100): peak RSS (VmHWM) ÷ live data, over the whole run and by the end of "
             "the build (before the steady phase of garbage with the live set fixed). Goals (issue #6, Tern): one object ≤ "
             "glibc + %d KiB; an idle thread ≤ glibc + %d KiB; peak ≤ %.1f× live. `tern-malloc` "
             "is the drop-in (LD_PRELOAD), shown for comparison; the goals are marked on `tern`."
             "\n" % (reps, args("footprint-one"), args("footprint-threads"),
                     args("footprint-live"), FP_ONE_GOAL_KIB, FP_THREAD_GOAL_KIB, FP_LIVE_GOAL))
    L.append("| backend | one object: RSS KiB (−glibc) | growth KiB | per thread KiB (−glibc) "
             "| idle per thread KiB (−glibc) | of which allocating KiB | live MiB | peak RSS "
             "MiB | peak ÷ live | build-phase peak ÷ live |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    g1, gt = vals("footprint-one", "glibc"), vals("footprint-threads", "glibc")
    for b in rows:
        v1, vt, vl = (vals(n, b.name) for n in ("footprint-one", "footprint-threads",
                                                 "footprint-live"))
        goal = b.name == "tern"
        cols = []
        if v1:
            x = v1.get("rss_one_kib")
            d = x - g1["rss_one_kib"] if g1 and isinstance(x, float) and \
                isinstance(g1.get("rss_one_kib"), float) else None
            cell = "%d" % x if isinstance(x, float) else "–"
            if d is not None and b.name != "glibc":
                cell += " (%+d%s)" % (d, " " + goal_mark(d <= FP_ONE_GOAL_KIB) if goal else "")
            cols += [cell, "%d" % v1["one_delta_kib"] if isinstance(v1.get("one_delta_kib"),
                                                                     float) else "–"]
        else:
            cols += [status("footprint-one", b)] * 2
        if vt:
            for k, mark in (("thread_kib", False), ("idle_kib_per_thread", True)):
                x = vt.get(k)
                cell = fmt(x, 1)
                if gt and isinstance(x, float) and isinstance(gt.get(k), float) and \
                        b.name != "glibc":
                    d = x - gt[k]
                    cell += " (%+.1f%s)" % (d, " " + goal_mark(d <= FP_THREAD_GOAL_KIB)
                                            if goal and mark else "")
                cols.append(cell)
            cols.append(fmt(vt.get("alloc_kib_per_thread"), 1))
        else:
            cols += [status("footprint-threads", b)] * 3
        if vl:
            r = vl.get("peak_over_live")
            cols += [mib(vl.get("live_kib")), mib(vl.get("peak_rss_kib")),
                     fmt(r, 2) + (" " + goal_mark(r <= FP_LIVE_GOAL)
                                  if goal and isinstance(r, float) else ""),
                     fmt(vl.get("peak_build_over_live"), 2)]
        else:
            cols += [status("footprint-live", b)] * 4
        L.append("| %s | %s |" % (b.name, " | ".join(cols)))
    L.append("")


def write_md(path, args, mode, reps, cells, workloads, backends, unavailable, info,
             plots, elapsed, tern_msg, notes=()):
    L = []
    L.append("# Tern benchmark results (%s)\n" % mode)
    L.append("Generated %s by `tools/bench%s` in %.0f s; %d repetition(s) per cell, "
             "interleaved. Every number below was measured in this run.\n" % (
                 datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                 "" if mode == "full" else " --" + mode, elapsed, reps))
    L.append("Machine: %s, %s cores, Linux %s, %s; gcc %s; bdwgc %s; mimalloc %s; "
             "Tern commit %s; load average (1/5/15 min) before the runs %s.\n" % (
                 info.get("cpu", "?"), info.get("cores"), info.get("kernel"), info.get("glibc"),
                 info.get("gcc", "?"), info.get("bdwgc"), info.get("mimalloc"),
                 info.get("commit", "?"), info.get("load", "?")))
    envs = ["%s=%s" % (k, v) for k, v in sorted(os.environ.items())
            if k.startswith("TERN_") and k != "TERN_BENCH_LIBDIR"]
    if envs:
        L.append("Environment: %s\n" % ", ".join(envs))
    if tern_msg:
        L.append("Tern build: %s\n" % tern_msg)
    for b, why in unavailable:
        L.append("Backend `%s` n/a: %s.\n" % (b.name, why))

    # Matrix: workload x backend, median time and ratio vs bdwgc.
    L.append("## Time (median seconds; ×bdwgc in parentheses; lower is better)\n")
    cols = [b for b in backends + [b for b, _ in unavailable] if b.only is None]
    L.append("| workload | " + " | ".join(b.name for b in cols) + " |")
    L.append("|---|" + "---:|" * len(cols))
    for w in workloads:
        if not w.matrix:
            continue
        row = []
        for b in cols:
            c = cells.get((w.name, b.name))
            if c is None:
                row.append("n/a")
            elif c["status"] != "ok":
                row.append("**FAIL**" if c["status"] == "FAIL" else "n/a")
            else:
                r = c.get("ratio_vs_bdwgc")
                row.append("%s (%s)" % (fmt(c["metric_s"]), fmt(r, 2) if r else "n/a"))
        L.append("| %s%s | %s |" % (w.name, "¹" if w.metric != "wall" else "", " | ".join(row)))
    L.append("\n¹ idle: time of the burst phase only (the idle sleep is excluded).\n")
    wn = {w.name: w for w in workloads}
    if "pause" in wn:
        pause_section(L, cells, backends, reps,
                      " ".join(wn["pause"].args[mode]).replace("{file}", "FILE"))
    if "barrier" in wn:
        barrier_section(L, cells, backends, reps, " ".join(wn["barrier"].args[mode]))
    if "idle" in wn:
        idle_section(L, cells, backends, reps,
                     " ".join(wn["idle"].args[mode]).replace("{file}", "FILE"))
    if "limit" in wn:
        limit_section(L, cells, backends, reps,
                      " ".join(wn["limit"].args[mode]).replace("{file}", "FILE"),
                      wn["limit"].limit.get(mode))
    footprint_section(L, cells, backends, wn, mode, reps)
    programs_section(L, cells, wn, mode, reps)
    if notes:
        L.append("## Anomalies seen in this run\n")
        for n in notes:
            L.append("- " + n)
        L.append("")

    L.append("## All figures\n")
    L.append("Wall, CPU (user+sys) and peak RSS (ru_maxrss) are medians over the runs; "
             "max pause is the median over runs of the collector's longest stop-the-world "
             "pause (Tern: tern_get_stats; bdwgc: PRE_STOP_WORLD→POST_START_WORLD); "
             "ratios divide this cell's median time by the reference's.\n")
    L.append("| workload | backend | wall s | user+sys s | peak RSS MiB | GC cycles | max pause ms "
             "| ×bdwgc | ×glibc | notes |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for w in workloads:
        for b in backends:
            c = cells.get((w.name, b.name))
            if c is None:
                continue
            if c["status"] != "ok":
                L.append("| %s | %s | %s | | | | | | | %s |" % (
                    w.name, b.name, "FAIL" if c["status"] == "FAIL" else "n/a", c["error"]))
                continue
            notes = " ".join(human_extra(k, c["vals"].get(k)) for k in w.extras)
            if c.get("barrier"):
                notes = "barrier=%s " % c["barrier"] + notes
            if w.metric != "wall":
                notes = "%s %.3fs " % ("burst" if w.metric == "burst_ms" else "timed",
                                        c["metric_s"]) + notes
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                w.name, b.name, fmt(c["wall_s"]), fmt(c["cpu_s"]), fmt(c["maxrss_mib"]),
                "%d" % c["gc_cycles"] if c["gc_cycles"] is not None else "–",
                fmt(c["gc_max_pause_ms"]) if c["gc_max_pause_ms"] is not None else "–",
                fmt(c.get("ratio_vs_bdwgc"), 2), fmt(c.get("ratio_vs_glibc"), 2), notes))
    fails = [c for c in cells.values() if c["status"] == "FAIL"]
    nas = [c for c in cells.values() if c["status"] == "n/a"]
    if nas:
        L.append("\n## Not available here\n")
        for c in nas:
            L.append("- %s × %s: %s" % (c["workload"], c["backend"], c["error"]))
    if fails:
        L.append("\n## Failures\n")
        for c in fails:
            L.append("- **%s × %s**: %s (%d of %d runs). Reproduce: `%s`. Log tail:\n\n```\n%s```" % (
                c["workload"], c["backend"], c["error"], c.get("failed_runs", 0), c["runs"],
                c.get("repro", ""), (c.get("log_tail", "").rstrip() or "(no output)") + "\n"))
    L.append("\n## Workloads and arguments (%s)\n" % mode)
    for w in workloads:
        L.append("- `%s`: `%s %s` — %s%s" % (
            w.name, w.src, " ".join(w.args[mode]), w.desc,
            " (malloc-style: every backend frees explicitly)" if w.kind == "malloc" else
            " (Tern only: one column per barrier kind)" if w.kind == "tern" else
            " (GC backends drop garbage; malloc backends free it, trees by walking them)"))
    L.append("\n## Backends\n")
    for b in backends:
        L.append("- `%s`: %s" % (b.name, b.note))
    L.append("\n## Plots\n")
    for p in plots:
        L.append("- [%s](%s)" % (p, p))
    L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


# --------------------------------------------------------------- plots


COLORS = {"tern": "#8e24aa", "tern-limit": "#1e88e5", "bdwgc": "#00897b", "bdwgc-m1": "#4fc3f7", "glibc": "#ef6c00",
          "mimalloc": "#c0a000", "tern-malloc": "#e91e63",
          "tern-uffd": "#3949ab", "tern-softdirty": "#6d4c41", "tern-mprotect": "#43a047",
          "tern-explicit": "#d81b60", "tern-stw": "#757575"}
MMU_WINDOWS_MS = (1, 2, 5, 10, 20, 50, 100, 200)   # as printed by bench/pause.c
EXTRA_COLORS = ["#3949ab", "#6d4c41", "#757575", "#43a047"]


def color(name, names):
    if name in COLORS:
        return COLORS[name]
    others = [n for n in names if n not in COLORS]
    return EXTRA_COLORS[others.index(name) % len(EXTRA_COLORS)]


def gp_quote(s):
    return '"' + s.replace('"', '\\"') + '"'


def plot_all(out, tmp, cells, workloads, backends):
    """Writes data files and gnuplot scripts; returns (list of plot files, errors)."""
    made, errs = [], []
    allnames = [b.name for b in backends]
    names = [b.name for b in backends if b.only is None]   # ratio plot: the general backends
    rworkloads = [w for w in workloads if w.matrix]
    data = os.path.join(out, "data")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)

    # 1. Time ratios vs bdwgc per workload.
    dat = os.path.join(data, "time_ratios.dat")
    any_ratio = False
    allr = [c["ratio_vs_bdwgc"] for c in cells.values() if c.get("ratio_vs_bdwgc")]
    ylo = 2.0 ** math.floor(math.log2(min(allr + [1.0])) - 0.25)
    yhi = 2.0 ** math.ceil(math.log2(max(allr + [1.0])) + 0.25)
    with open(dat, "w") as f:
        f.write("# workload " + " ".join(names) + "  (time / bdwgc time)\n")
        for w in rworkloads:
            vals = []
            for n in names:
                c = cells.get((w.name, n))
                r = c.get("ratio_vs_bdwgc") if c and c["status"] == "ok" else None
                vals.append("%.4f" % r if r else "NaN")
            f.write(w.name + " " + " ".join(vals) + "\n")
            any_ratio = any_ratio or any(v != "NaN" for v in vals)
    # 2. Pause CDFs (step latency; GC stop-the-world pauses).
    # Stop-the-world pauses: every one, from pause_figures (Tern: its trace
    # lines; bdwgc: its event callback via the samples file).
    step_dat, gc_dat, have_gc, have_step, mmu_dat = [], [], [], [], []
    for n in allnames:
        c = cells.get(("pause", n))
        src = c["median_run"].get("file") if c and c["status"] == "ok" else None
        steps = []
        if src and os.path.exists(src):
            with open(src) as f:
                for line in f:
                    k, v = line.split()[:2]
                    if k == "step":
                        steps.append(int(v))
        steps.sort()
        gcs = sorted(c["median_run"].get("stw") or []) if c and c["status"] == "ok" else []
        if c and c["status"] == "ok":
            pts = [(ms, c["vals"].get("mmu_%dms" % ms)) for ms in MMU_WINDOWS_MS]
            pts = [(ms, v) for ms, v in pts if v is not None]
            if pts:
                p = os.path.join(data, "pause_mmu_%s.dat" % n)
                with open(p, "w") as f:
                    f.write("# window_ms mmu (median over runs)\n")
                    for ms, v in pts:
                        f.write("%g %.4f\n" % (ms, v))
                mmu_dat.append((n, p))
        for kind, xs, lst in (("step", steps, step_dat), ("gc", gcs, gc_dat)):
            if not xs:
                continue
            p = os.path.join(data, "pause_%s_%s.dat" % (kind, n))
            with open(p, "w") as f:
                f.write("# %s latency in microseconds, cumulative fraction\n" % kind)
                f.write("%.3f 0\n" % (xs[0] / 1e3))
                for i, x in enumerate(xs):
                    f.write("%.3f %.6f\n" % (x / 1e3, (i + 1) / len(xs)))
            lst.append((n, p))
            (have_gc if kind == "gc" else have_step).append(n)
    # 3. Idle RSS over time.
    rss_dat = []
    for n in names:
        c = cells.get(("idle", n))
        src = c["median_run"].get("file") if c and c["status"] == "ok" else None
        p = os.path.join(data, "idle_rss_%s.dat" % n)
        rows = 0
        with open(p, "w") as f:
            f.write("# time_s rss_mib phase\n")
            if src and os.path.exists(src):
                with open(src) as g:
                    for line in g:
                        t, kib, ph = line.split()
                        f.write("%.3f %.2f %s\n" % (float(t) / 1e3, int(kib) / 1024, ph))
                        rows += 1
        if rows:
            rss_dat.append((n, p))
    step_dat = [(n, p) for n, p in step_dat if n in have_step]
    # 4. Limit workload: RSS (and Tern's committed heap) over time, the limit.
    lim_dat, lim_names = [], []
    limit_mib = None
    for n in allnames:
        c = cells.get(("limit", n))
        if not c:
            continue
        lim_names.append(n)
        if c["status"] != "ok":
            continue
        if n == "tern-limit" and isinstance(c["vals"].get("memory_limit_kib"), float):
            limit_mib = c["vals"]["memory_limit_kib"] / 1024
        src = c["median_run"].get("file")
        p = os.path.join(data, "limit_rss_%s.dat" % n)
        rows = 0
        with open(p, "w") as f:
            f.write("# time_s rss_mib committed_mib (Tern's heap; 0 elsewhere)\n")
            if src and os.path.exists(src):
                with open(src) as g:
                    for line in g:
                        t, kib, com = line.split()
                        f.write("%.3f %.2f %.2f\n" % (float(t) / 1e3, int(kib) / 1024,
                                                      int(com) / 1024))
                        rows += 1
        if rows:
            lim_dat.append((n, p))

    def plot_or_placeholder(s, series, fmt_one):
        if series:
            s.append("plot " + ", \\\n     ".join(fmt_one(n, p) for n, p in series))
        else:
            s.append("unset logscale\nset xrange [0:1]\nset yrange [0:1]")
            s.append("set label 1 'no data (all cells failed)' at graph 0.35, graph 0.5")
            s.append("plot NaN notitle\nunset label 1\nset xrange [*:*]\nset yrange [*:*]")

    def script(term_line, ext):
        s = []
        s.append("set datafile missing 'NaN'")
        s.append(term_line % (1100, 520))
        s.append("set output %s" % gp_quote(os.path.join(out, "time_ratios." + ext)))
        s.append("set title 'Time relative to bdwgc (median of runs; lower is better; log scale;"
                 " idle: burst phase)'")
        s.append("set style data histograms\nset style histogram clustered gap 1")
        s.append("set style fill solid 0.85 border -1\nset boxwidth 0.9")
        s.append("set logscale y 2\nset yrange [%g:%g]\nset grid ytics" % (ylo, yhi))
        s.append("set xrange [-0.6:%g]" % (len(rworkloads) - 0.4))
        s.append("set ylabel 'time / bdwgc time'\nset xtics rotate by 30 right nomirror")
        s.append("set key outside right top")
        s.append("set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lw 1.5 dt 2 front")
        for i, w in enumerate(rworkloads):
            for j, n in enumerate(names):
                c = cells.get((w.name, n))
                if c and c["status"] == "FAIL":
                    x = i + (j - (len(names) - 1) / 2.0) / (len(names) + 1)
                    s.append("set label %d 'FAIL' at %g, first %g rotate by 90 left "
                             "textcolor rgb '#d00000' font ',9' front" % (
                                 100 + i * len(names) + j, x, ylo * 1.15))
        parts = []
        for i, n in enumerate(names):
            parts.append("%s using %d:xtic(1) title %s lc rgb '%s'" % (
                gp_quote(dat) if i == 0 else "''", i + 2, gp_quote(n), color(n, names)))
        if any_ratio:
            s.append("plot " + ", \\\n     ".join(parts))
        else:
            plot_or_placeholder(s, [], None)
        s.append("unset arrow 1\nunset label\nunset logscale\nunset style\nunset xtics\nset xtics\n"
                 "unset boxwidth")
        s.append("set xrange [*:*]")
        s.append("set style data lines")

        s.append(term_line % (1200, 520))
        s.append("set output %s" % gp_quote(os.path.join(out, "pause_cdf." + ext)))
        s.append("set multiplot layout 1,2 title 'pause workload (median run)'")
        s.append("set logscale x 10\nset format x '10^{%L}'\nset grid\nset key inside bottom right\n"
                 "set yrange [0:1.02]")
        s.append("set title 'step latency (per step, measured by the workload)'")
        s.append("set xlabel 'step latency (us, log)'\nset ylabel 'fraction of steps ≤ x'")
        plot_or_placeholder(s, step_dat, lambda n, p: "%s using 1:2 with steps lw 2 lc rgb '%s' "
                            "title %s" % (gp_quote(p), color(n, allnames), gp_quote(n)))
        s.append("set title \"stop-the-world pauses (collector's own accounting)\"")
        s.append("set xlabel 'pause (us, log)'\nset ylabel 'fraction of pauses ≤ x'")
        gcl = [(n, p) for n, p in gc_dat if n in have_gc]
        plot_or_placeholder(s, gcl, lambda n, p: "%s using 1:2 with steps lw 2 lc rgb '%s' "
                            "title %s" % (gp_quote(p), color(n, allnames), gp_quote(n)))
        s.append("unset multiplot\nunset logscale x\nset format x '%g'\nset yrange [*:*]")

        s.append(term_line % (1000, 520))
        s.append("set output %s" % gp_quote(os.path.join(out, "pause_mmu." + ext)))
        s.append("set title 'pause workload: minimum mutator utilisation (median over runs; "
                 "higher is better)'")
        s.append("set logscale x 10\nset grid\nset key outside right top\nset yrange [0:1.02]")
        s.append("set xlabel 'window (ms, log)'\nset ylabel 'MMU'")
        plot_or_placeholder(s, mmu_dat, lambda n, p: "%s using 1:2 with linespoints pt 7 ps 0.5 "
                            "lw 2 lc rgb '%s' title %s" % (gp_quote(p), color(n, allnames),
                                                           gp_quote(n)))
        s.append("unset logscale x\nset yrange [*:*]")

        s.append(term_line % (1000, 520))
        s.append("set output %s" % gp_quote(os.path.join(out, "idle_rss." + ext)))
        s.append("set title 'idle workload: RSS over time (burst, then idle; median run)'")
        s.append("set xlabel 'time since start (s)'\nset ylabel 'RSS (MiB)'\nset grid")
        s.append("set key outside right top\nset yrange [0:*]")
        plot_or_placeholder(s, rss_dat, lambda n, p: "%s using 1:2 with linespoints pt 7 ps 0.4 "
                            "lw 2 lc rgb '%s' title %s" % (gp_quote(p), color(n, names),
                                                           gp_quote(n)))
        s.append("set key default\nset yrange [*:*]")

        s.append(term_line % (1000, 520))
        s.append("set output %s" % gp_quote(os.path.join(out, "limit_rss." + ext)))
        s.append("set title \"limit workload: RSS over time (median run; red dashes: the limit; "
                 "dotted: Tern's committed heap)\"")
        s.append("set xlabel 'time since start (s)'\nset ylabel 'RSS (MiB)'\nset grid")
        s.append("set key outside right top\nset yrange [0:*]")
        if limit_mib:
            s.append("set arrow 2 from graph 0, first %g to graph 1, first %g nohead lw 2 dt 2 "
                     "lc rgb '#d00000' front" % (limit_mib, limit_mib))
        plot_or_placeholder(s, lim_dat + [(n + " committed", p) for n, p in lim_dat
                                          if n == "tern-limit"],
                            lambda n, p: "%s using 1:%d with lines lw 2 %slc rgb '%s' title %s" % (
                                gp_quote(p), 3 if n.endswith(" committed") else 2,
                                "dt 3 " if n.endswith(" committed") else "",
                                color(n.split()[0], lim_names), gp_quote(n)))
        s.append("unset arrow 2")
        s.append("set output")
        return "\n".join(s) + "\n"

    for ext, term in (("svg", "set terminal svg size %d,%d dynamic enhanced font 'sans,12' background 'white'"),
                      ("png", "set terminal pngcairo size %d,%d enhanced font 'sans,10' background 'white'")):
        gp = os.path.join(tmp, "plots-%s.gp" % ext)
        with open(gp, "w") as f:
            f.write(script(term, ext))
        p = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
        if p.returncode:
            errs.append("gnuplot %s: %s" % (ext, p.stderr.strip()[-500:]))
        for base in ("time_ratios", "pause_cdf", "pause_mmu", "idle_rss", "limit_rss"):
            made.append(base + "." + ext)
    return made, errs


# --------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    g.add_argument("--smoke", action="store_true",
                   help="tiny sizes, 1 repetition, then check every cell and plot")
    ap.add_argument("--reps", type=int, help="repetitions per cell (default: 1 smoke, 3 otherwise)")
    ap.add_argument("--only", help="comma-separated workloads to run")
    ap.add_argument("--backends", help="comma-separated backends to run")
    ap.add_argument("--out", help="output folder (default bench/results, "
                    "or bench/results/tmp/smoke for --smoke)")
    ap.add_argument("--timeout", type=float, help="per-run time limit in seconds")
    ap.add_argument("--no-build-tern", action="store_true",
                    help="use the existing .libs/libtern.so, do not run make")
    ap.add_argument("--list", action="store_true", help="list workloads and backends")
    args = ap.parse_args()

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    reps, timeout = MODES[mode]
    reps = args.reps or reps
    timeout = args.timeout or timeout
    if args.list:
        for w in WORKLOADS:
            print("%-17s %-11s %s%s" % (w.name, w.src, " ".join(w.args[mode]),
                                        "   [%s only]" % ",".join(w.backends) if w.backends else ""))
        for b in BACKENDS:
            ok, why = b.available()
            print("%-17s %s%s" % (b.name, b.note, "" if ok else "  (n/a: %s)" % why))
        return 0

    workloads = WORKLOADS
    if args.only:
        want = args.only.split(",")
        bad = [x for x in want if x not in {w.name for w in WORKLOADS}]
        if bad:
            ap.error("unknown workload(s): %s" % ", ".join(bad))
        workloads = [w for w in WORKLOADS if w.name in want]
    backends, unavailable = [], []
    pool = BACKENDS
    if args.backends:
        want = args.backends.split(",")
        bad = [x for x in want if x not in {b.name for b in BACKENDS}]
        if bad:
            ap.error("unknown backend(s): %s" % ", ".join(bad))
        pool = [b for b in BACKENDS if b.name in want]

    out = os.path.abspath(args.out or (os.path.join(BENCH, "results", "tmp", "smoke")
                                       if mode == "smoke" else os.path.join(BENCH, "results")))
    tmp = os.path.join(BENCH, "results", "tmp", "run-" + mode)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, exist_ok=True)
    os.makedirs(out, exist_ok=True)
    t_start = time.monotonic()

    tern_ok, tern_msg = build_tern(tmp, args.no_build_tern)
    if tern_msg:
        log("bench: Tern: %s" % tern_msg)
    # After the build: libtern-malloc.so exists only once Tern is built.
    for b in pool:
        ok, why = b.available()
        (backends.append(b) if ok else unavailable.append((b, why)))
    built = build_workloads(tmp, tern_ok)
    log("bench: built %d of %d workload binaries in %.0f s" % (
        sum(1 for v in built.values() if v is None), len(built), time.monotonic() - t_start))
    for b, why in unavailable:
        log("bench: backend %s n/a (%s)" % (b.name, why))

    total = sum(1 for w in workloads for b in backends if applies(w, b)) * reps
    done = 0
    allruns = []
    runs = {}
    failed_cells = set()
    notes = []   # anomalies worth a line in results.md
    t_runs = time.monotonic()
    for w in workloads:
        for rep in range(1, reps + 1):
            for b in backends:
                if not applies(w, b):
                    continue
                done += 1
                key = (w.name, b.name)
                argv = w.args[mode]
                exe = os.path.join(BUILD, "%s-%s" % (w.src, b.build))
                tag = "%s-%s-%d" % (w.name, b.name, rep)
                rec = {"workload": w.name, "backend": b.name, "rep": rep, "wall": 0.0,
                       "user": 0.0, "sys": 0.0, "maxrss_kib": 0, "rc": "", "vals": {},
                       "error": None, "args": " ".join(argv), "file": None}
                if key in failed_cells:
                    continue  # a failed cell is FAIL already; don't burn time on it
                err = built.get((w.src, b.build))
                el = time.monotonic() - t_runs
                head = "[%*d/%d %4.0fs] %-13s %-11s rep %d/%d" % (
                    len(str(total)), done, total, el, w.name, b.name, rep, reps)
                if err:
                    rec["error"] = "not built: " + err
                else:
                    sample = os.path.join(tmp, tag + ".samples")
                    cmd = [exe] + [a.replace("{file}", sample) for a in argv]
                    rec["file"] = sample if any("{file}" in a for a in argv) else None
                    progress(head + " running…")
                    outf = os.path.join(tmp, tag + ".out")
                    errf = os.path.join(tmp, tag + ".err")
                    r = run_once(cmd, child_env(b, w, mode), timeout, outf, errf)
                    with open(outf, errors="replace") as f:
                        text = f.read()
                    rec.update(r)
                    rec["vals"] = parse_results(text)
                    rec["error"] = describe_failure(r, rec["vals"])
                    if rec["error"]:
                        rec["log_tail"] = tail(errf) + tail(outf, 5)
                    else:
                        rec["na"] = kind_unavailable(b, rec["vals"])
                        if w.name == "pause" and b.gc and not rec["na"]:
                            pause_figures(b, rec, errf, notes)
                        if w.name == "barrier" and rec["vals"].get("gc_cycles"):
                            notes.append("%s × %s rep %d: %d collection(s) ran although "
                                         "TERN_GC=off" % (w.name, b.name, rep,
                                                          rec["vals"]["gc_cycles"]))
                progress(head + (" FAIL: " + rec["error"] if rec["error"] else
                                 " %.2fs" % rec["wall"] + (" (n/a: %s)" % rec["na"]
                                                           if rec.get("na") else "")), final=True)
                if rec.get("na"):
                    failed_cells.add(key)  # this kernel lacks the barrier kind: skip the rest
                if rec["error"]:
                    failed_cells.add(key)
                    log("bench: FAIL %s × %s (args: %s): %s" % (w.name, b.name, rec["args"],
                                                                rec["error"]))
                    if rec.get("log_tail"):
                        log("  " + rec["log_tail"].rstrip().replace("\n", "\n  "))
                allruns.append(rec)
                runs.setdefault(key, []).append(rec)

    cells = {}
    for w in workloads:
        for b in backends:
            if not applies(w, b):
                continue
            rs = runs.get((w.name, b.name), [])
            if not rs:
                continue
            c = aggregate(w, b, rs)
            c["args"] = " ".join(w.args[mode])
            f = [r for r in rs if r["error"]]
            if f:
                c["log_tail"] = f[0].get("log_tail", "")
                c["repro"] = repro_cmd(w, b, mode)
            cells[(w.name, b.name)] = c
        for ref in REFS:
            rc = cells.get((w.name, ref))
            for b in backends:
                c = cells.get((w.name, b.name))
                if not c or c["status"] != "ok":
                    continue
                ok = rc and rc["status"] == "ok" and rc["metric_s"] and c["metric_s"] is not None
                c["ratio_vs_" + ref] = c["metric_s"] / rc["metric_s"] if ok else None

    plots, plot_errs = plot_all(out, tmp, cells, workloads, backends)
    for e in plot_errs:
        log("bench: " + e)
    info = sysinfo()
    elapsed = time.monotonic() - t_start
    write_csv(os.path.join(out, "results.csv"), cells, workloads, backends)
    write_runs_csv(os.path.join(out, "runs.csv"), allruns)
    write_md(os.path.join(out, "results.md"), args, mode, reps, cells, workloads, backends,
             unavailable, info, plots, elapsed, tern_msg, notes)
    for n in notes:
        log("bench: note: " + n)
    log("bench: %d runs in %.0f s; results in %s" % (len(allruns), elapsed,
                                                     os.path.relpath(out, os.getcwd())))

    # Check: every cell has a number, every plot exists.
    passed = failed = na = 0
    for w in workloads:
        for b in backends:
            if not applies(w, b):
                continue
            c = cells.get((w.name, b.name))
            if c and c["status"] == "n/a":
                na += 1   # the kernel lacks this barrier kind: neither passed nor failed
                log("bench: n/a: %s × %s: %s" % (w.name, b.name, c["error"]))
                continue
            good = bool(c and c["status"] == "ok" and isinstance(c.get("metric_s"), float)
                        and isinstance(c.get("wall_s"), float) and isinstance(c.get("maxrss_mib"), float))
            if good and b.gc and w.name == "pause":
                good = isinstance(c.get("gc_max_pause_ms"), float) and \
                    isinstance(c["vals"].get("mmu_1ms"), float) and \
                    (not c.get("gc_cycles") or isinstance(c["vals"].get("stw_max_ms"), float))
                if not good:
                    c["error"] = "missing pause figures (gc_max_pause_ns, stw_max_ms or mmu_1ms)"
            if good and w.name == "barrier":
                good = all(isinstance(c["vals"].get("%s_%s_ns" % (p, v)), float)
                           for p in ("swap", "seq", "copy") for v in ("plain", "barrier")) \
                    and not c.get("gc_cycles")
                if not good:
                    c["error"] = "missing ns figures, or a collection ran"
            if good:
                need = FIGURES.get(w.name, ())
                if w.name == "idle":   # the 1/3/5 s samples that IDLE_MS reaches
                    idle_ms = float(w.args[mode][2])
                    need = ("rss_idle_final_kib",) + tuple(
                        "rss_idle_%ds_kib" % t for t in (1, 3, 5) if t * 1000 <= idle_ms)
                miss = [k for k in need if not isinstance(c["vals"].get(k), float)]
                if miss:
                    good = False
                    c["error"] = "missing figures: " + ", ".join(miss)
            if good and w.name == "limit":
                if c["vals"]["alloc_failures"]:
                    good = False
                    c["error"] = "%d allocation(s) failed" % c["vals"]["alloc_failures"]
                elif b.name == "tern-limit" and not c["vals"].get("memory_limit_kib"):
                    good = False
                    c["error"] = "TERN_MEMLIMIT was not in effect (memory_limit 0)"
            if good:
                passed += 1
            else:
                failed += 1
                log("bench: check failed: %s × %s: %s" % (
                    w.name, b.name, (c or {}).get("error", "no number")))
    for p in plots:
        f = os.path.join(out, p)
        if os.path.exists(f) and os.path.getsize(f) > 0:
            passed += 1
        else:
            failed += 1
            log("bench: check failed: plot %s missing" % p)
    with open(os.path.join(out, "results.md")) as f:
        sys.stdout.write(f.read().split("## All figures")[0])
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
