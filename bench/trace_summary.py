#!/usr/bin/env python3
"""Summarises an `mdps ... --trace FILE.json` timeline: time, calls, GFLOP/s
and GB/s per op name, largest total first. Standard library only. Events
that carry a device time (args "device_us": CUDA events around the op, on a
device run) are summed by it; --host uses the host durations (launch times).

  python3 bench/trace_summary.py run.json [--cat op|kernel|span] [--top 20] [--within SPAN] [--host]
"""
import argparse
import collections
import json


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace")
    p.add_argument("--cat", default="op", help="event category: op (default), kernel or span")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--within", help="only events inside spans of this name (e.g. train.step)")
    p.add_argument("--host", action="store_true", help="host durations even where a device time exists")
    a = p.parse_args()
    with open(a.trace) as f:
        evs = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    spans = [(e["ts"], e["ts"] + e["dur"]) for e in evs if a.within and e["name"] == a.within]
    inside = lambda e: not a.within or any(b <= e["ts"] and e["ts"] + e["dur"] <= s for b, s in spans)
    rows = collections.defaultdict(lambda: [0.0, 0, 0.0, 0.0])  # us, calls, flops, bytes
    for e in evs:
        if e.get("cat") != a.cat or not inside(e):
            continue
        r = rows[e["name"]]
        r[0] += e["dur"] if a.host or "device_us" not in e["args"] else e["args"]["device_us"]
        r[1] += 1
        r[2] += e["args"].get("flops", 0)
        r[3] += e["args"].get("bytes", 0)
    total = sum(r[0] for r in rows.values()) or 1.0
    print(f"{'name':28s} {'ms':>10s} {'share':>6s} {'calls':>6s} {'GFLOP/s':>8s} {'GB/s':>7s}")
    for name, (us, n, fl, by) in sorted(rows.items(), key=lambda kv: -kv[1][0])[: a.top]:
        s = us / 1e6
        print(f"{name:28s} {us / 1e3:10.1f} {100 * us / total:5.1f}% {n:6d} "
              f"{(fl / s / 1e9 if fl and s else 0):8.1f} {(by / s / 1e9 if by and s else 0):7.2f}")
    print(f"{'total':28s} {total / 1e3:10.1f}")


if __name__ == "__main__":
    main()
