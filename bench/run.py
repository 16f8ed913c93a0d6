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
import math
import os
import platform
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
    def __init__(self, name, build, gc, env=None, preload=None, note=""):
        self.name, self.build, self.gc = name, build, gc
        self.env = env or {}
        self.preload = preload
        self.note = note

    def available(self):
        if self.preload and not os.path.exists(self.preload):
            rel = os.path.relpath(self.preload, ROOT)
            return False, "%s not found" % (self.preload if rel.startswith("..") else rel)
        return True, ""


TERN_LIBDIR = os.environ.get("TERN_BENCH_LIBDIR", os.path.join(ROOT, ".libs"))

BACKENDS = [
    Backend("tern", "tern", True, note="Tern API, libtern.so"),
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
    def __init__(self, name, src, args, kind, metric="wall", extras=(), desc=""):
        self.name, self.src, self.args, self.kind = name, src, args, kind
        self.metric, self.extras, self.desc = metric, extras, desc


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
        extras=("step_p50_us", "step_p99_us", "step_max_us", "pause_samples"),
        desc="LIVE_MIB of 16..128-byte objects, REPLACE_PCT% of them replaced by one thread "
             "in steps of BATCH objects; step latency and GC pauses recorded"),
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
    Workload("idle", "idle", {
        "smoke": ["64", "16", "300", "100", "{file}"],
        "quick": ["256", "32", "1000", "100", "{file}"],
        "full": ["1024", "64", "5000", "100", "{file}"]}, "gc", metric="burst_ms",
        extras=("rss_init_kib", "rss_peak_sampled_kib", "rss_end_burst_kib", "rss_idle_final_kib"),
        desc="BURST_MIB of garbage with WINDOW_MIB live, then IDLE_MS idle, RSS sampled every "
             "SAMPLE_MS"),
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
        deps = [c, hdr, __file__] + ([tern_h] if var == "tern" else [])
        if var == "tern":
            deps.append(os.path.join(TERN_LIBDIR, "libtern.so"))
        cf, lf = extra[var]
        cmd = base + [VARIANTS[var]] + cf + ["-o", out, c] + lf + ["-lm"]
        stamp = out + ".cmd"  # rebuild when the command (e.g. the libtern dir) changes
        try:
            with open(stamp) as f:
                same = f.read() == " ".join(cmd)
        except OSError:
            same = False
        if same and os.path.exists(out) and all(os.path.getmtime(out) >= os.path.getmtime(d)
                                                for d in deps if os.path.exists(d)):
            return job, None
        p = subprocess.run(cmd, capture_output=True, text=True)
        if not p.returncode:
            with open(stamp, "w") as f:
                f.write(" ".join(cmd))
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


def repro_cmd(w, b, mode):
    env = ["%s=%s" % kv for kv in sorted(b.env.items())]
    if b.preload:
        env.append("LD_PRELOAD=" + b.preload)
    exe = os.path.relpath(os.path.join(BUILD, "%s-%s" % (w.src, b.build)), ROOT)
    argv = [a.replace("{file}", "/tmp/samples.txt") for a in w.args[mode]]
    return " ".join((["env"] + env if env else []) + [exe] + argv)


def child_env(b):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "GC_MARKERS", "GC_NPROCS"):
        env.pop(k, None)
    env.update(b.env)
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
    cell["status"] = "ok"
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
                   r["error"] or ""]
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


def write_md(path, args, mode, reps, cells, workloads, backends, unavailable, info,
             plots, elapsed, tern_msg):
    L = []
    L.append("# Tern benchmark results (%s)\n" % mode)
    L.append("Generated %s by `tools/bench%s` in %.0f s; %d repetition(s) per cell, "
             "interleaved. Every number below was measured in this run.\n" % (
                 datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                 "" if mode == "full" else " --" + mode, elapsed, reps))
    L.append("Machine: %s, %s cores, Linux %s, %s; gcc %s; bdwgc %s; mimalloc %s; "
             "Tern commit %s.\n" % (info.get("cpu", "?"), info.get("cores"), info.get("kernel"),
                                    info.get("glibc"), info.get("gcc", "?"), info.get("bdwgc"),
                                    info.get("mimalloc"), info.get("commit", "?")))
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
    cols = backends + [b for b, _ in unavailable]
    L.append("| workload | " + " | ".join(b.name for b in cols) + " |")
    L.append("|---|" + "---:|" * len(cols))
    for w in workloads:
        row = []
        for b in cols:
            c = cells.get((w.name, b.name))
            if c is None:
                row.append("n/a")
            elif c["status"] != "ok":
                row.append("**FAIL**")
            else:
                r = c.get("ratio_vs_bdwgc")
                row.append("%s (%s)" % (fmt(c["metric_s"]), fmt(r, 2) if r else "n/a"))
        L.append("| %s%s | %s |" % (w.name, "¹" if w.metric != "wall" else "", " | ".join(row)))
    L.append("\n¹ idle: time of the burst phase only (the idle sleep is excluded).\n")

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
                L.append("| %s | %s | FAIL | | | | | | | %s |" % (w.name, b.name, c["error"]))
                continue
            notes = " ".join(human_extra(k, c["vals"].get(k)) for k in w.extras)
            if w.metric != "wall":
                notes = "burst %.3fs " % c["metric_s"] + notes
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                w.name, b.name, fmt(c["wall_s"]), fmt(c["cpu_s"]), fmt(c["maxrss_mib"]),
                "%d" % c["gc_cycles"] if c["gc_cycles"] is not None else "–",
                fmt(c["gc_max_pause_ms"]) if c["gc_max_pause_ms"] is not None else "–",
                fmt(c.get("ratio_vs_bdwgc"), 2), fmt(c.get("ratio_vs_glibc"), 2), notes))
    fails = [c for c in cells.values() if c["status"] != "ok"]
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


COLORS = {"tern": "#8e24aa", "bdwgc": "#00897b", "bdwgc-m1": "#4fc3f7", "glibc": "#ef6c00",
          "mimalloc": "#c0a000", "tern-malloc": "#e91e63"}
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
    names = [b.name for b in backends]
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
        for w in workloads:
            vals = []
            for n in names:
                c = cells.get((w.name, n))
                r = c.get("ratio_vs_bdwgc") if c and c["status"] == "ok" else None
                vals.append("%.4f" % r if r else "NaN")
            f.write(w.name + " " + " ".join(vals) + "\n")
            any_ratio = any_ratio or any(v != "NaN" for v in vals)
    # 2. Pause CDFs (step latency; GC stop-the-world pauses).
    step_dat, gc_dat, have_gc, have_step = [], [], [], []
    for n in names:
        c = cells.get(("pause", n))
        src = c["median_run"].get("file") if c and c["status"] == "ok" else None
        steps, gcs = [], []
        if src and os.path.exists(src):
            with open(src) as f:
                for line in f:
                    k, v = line.split()
                    (steps if k == "step" else gcs).append(int(v))
        steps.sort()
        gcs.sort()
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
        s.append("set xrange [-0.6:%g]" % (len(workloads) - 0.4))
        s.append("set ylabel 'time / bdwgc time'\nset xtics rotate by 30 right nomirror")
        s.append("set key outside right top")
        s.append("set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lw 1.5 dt 2 front")
        for i, w in enumerate(workloads):
            for j, n in enumerate(names):
                c = cells.get((w.name, n))
                if c and c["status"] != "ok":
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
                            "title %s" % (gp_quote(p), color(n, names), gp_quote(n)))
        s.append("set title \"stop-the-world pauses (collector's own accounting)\"")
        s.append("set xlabel 'pause (us, log)'\nset ylabel 'fraction of pauses ≤ x'")
        gcl = [(n, p) for n, p in gc_dat if n in have_gc]
        plot_or_placeholder(s, gcl, lambda n, p: "%s using 1:2 with steps lw 2 lc rgb '%s' "
                            "title %s" % (gp_quote(p), color(n, names), gp_quote(n)))
        s.append("unset multiplot\nunset logscale x\nset format x '%g'\nset yrange [*:*]")

        s.append(term_line % (1000, 520))
        s.append("set output %s" % gp_quote(os.path.join(out, "idle_rss." + ext)))
        s.append("set title 'idle workload: RSS over time (burst, then idle; median run)'")
        s.append("set xlabel 'time since start (s)'\nset ylabel 'RSS (MiB)'\nset grid")
        s.append("set key outside right top\nset yrange [0:*]")
        plot_or_placeholder(s, rss_dat, lambda n, p: "%s using 1:2 with linespoints pt 7 ps 0.4 "
                            "lw 2 lc rgb '%s' title %s" % (gp_quote(p), color(n, names),
                                                           gp_quote(n)))
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
        for base in ("time_ratios", "pause_cdf", "idle_rss"):
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
            print("%-13s %-11s %s" % (w.name, w.src, " ".join(w.args[mode])))
        for b in BACKENDS:
            ok, why = b.available()
            print("%-13s %s%s" % (b.name, b.note, "" if ok else "  (n/a: %s)" % why))
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

    total = len(workloads) * reps * len(backends)
    done = 0
    allruns = []
    runs = {}
    failed_cells = set()
    t_runs = time.monotonic()
    for w in workloads:
        for rep in range(1, reps + 1):
            for b in backends:
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
                    r = run_once(cmd, child_env(b), timeout, outf, errf)
                    with open(outf, errors="replace") as f:
                        text = f.read()
                    rec.update(r)
                    rec["vals"] = parse_results(text)
                    rec["error"] = describe_failure(r, rec["vals"])
                    if rec["error"]:
                        rec["log_tail"] = tail(errf) + tail(outf, 5)
                progress(head + (" %.2fs" % rec["wall"] if not rec["error"] else
                                 " FAIL: " + rec["error"]), final=True)
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
             unavailable, info, plots, elapsed, tern_msg)
    log("bench: %d runs in %.0f s; results in %s" % (len(allruns), elapsed,
                                                     os.path.relpath(out, os.getcwd())))

    # Check: every cell has a number, every plot exists.
    passed = failed = 0
    for w in workloads:
        for b in backends:
            c = cells.get((w.name, b.name))
            good = bool(c and c["status"] == "ok" and isinstance(c.get("metric_s"), float)
                        and isinstance(c.get("wall_s"), float) and isinstance(c.get("maxrss_mib"), float))
            if good and b.gc and w.name == "pause":
                good = isinstance(c.get("gc_max_pause_ms"), float)
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
