#!/usr/bin/env python3
"""check_timeline.py FILE.json PAUSES TOTAL_PAUSE_NS — checks a TERN_TRACE_FILE
timeline (test_trace runs it): valid JSON {"traceEvents": [...]}, every event
well-formed, "X" events on each thread properly nested or disjoint, one pause
event per stop-the-world pause whose durations add up to the stats' total,
and a "heap" counter track.  Prints what is wrong and exits 1, else exits 0."""
import json
import sys


def fail(msg):
    print("check_timeline: " + msg)
    sys.exit(1)


def main():
    path, pauses, total_ns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(path) as f:
        doc = json.load(f)
    evs = doc.get("traceEvents")
    if not isinstance(evs, list) or not evs:
        fail("no traceEvents list")
    per_tid, npause, pause_us, heap = {}, 0, 0.0, 0
    for e in evs:
        for k in ("name", "ph", "pid", "tid"):
            if k not in e:
                fail("event without %s: %r" % (k, e))
        if e["ph"] == "X":
            if not (isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float))) or e["dur"] < 0:
                fail("bad X event %r" % e)
            per_tid.setdefault(e["tid"], []).append((e["ts"], round(e["ts"] + e["dur"], 3), e["name"]))
            if "pause" in e["name"]:
                npause += 1
                pause_us += e["dur"]
        elif e["ph"] == "C":
            if e["name"] == "heap" and "in_use" in e["args"] and "live" in e["args"]:
                heap += 1
            elif not (e["name"] == "gc cpu" and 0 <= e["args"].get("percent", -1) <= 100):
                fail("bad counter event %r" % e)
        elif e["ph"] != "M":
            fail("unexpected phase %r" % e)
    # complete events on one thread: each begins after the last open one ends,
    # or lies inside it (balanced, like B/E pairs)
    for tid, xs in per_tid.items():
        xs.sort(key=lambda x: (x[0], -x[1]))
        open_ = []
        for b, end, name in xs:
            while open_ and open_[-1][1] <= b:
                open_.pop()
            if open_ and end > open_[-1][1]:
                fail("tid %s: %s [%s, %s] overlaps %s" % (tid, name, b, end, open_[-1]))
            open_.append((b, end, name))
    if npause != pauses:
        fail("%d pause events, stats say %d pauses" % (npause, pauses))
    if abs(pause_us * 1000 - total_ns) > 2000 * max(pauses, 1):
        fail("pause events add up to %.0f ns, stats say %d" % (pause_us * 1000, total_ns))
    if heap < 1:
        fail("no heap counter events")
    print("ok: %d events, %d threads, %d pauses" % (len(evs), len(per_tid), npause))


main()
