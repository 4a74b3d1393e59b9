#!/usr/bin/env python3
"""report-autoscale.py OUT_DIR [--series DIR]: scripts/bench/autoscale's results, per policy.

Reads OUT_DIR/<policy>/run.json (the segments' wall-clock starts and their
kvlb-loadgen reports) and OUT_DIR/controller-events.jsonl (the deployment
controller's pod lifecycle). Prints a Markdown table and writes results.json:
  slo        share of requests with TTFT < 2 s (failed and cut ones count as misses)
  p99_ttft   99th percentile TTFT of the answered requests, s
  replica_s  replica-seconds: each pod from its creation to its deletion,
             clipped to the policy's run (from its first arrival to its last answer)
  recovery   from the step (segment 2's start) to the SLO restored after its
             first breach: the first request after that breach from which every
             request sent in the next 10 s meets the SLO, s (0: never breached)
  reversals  direction changes of the Deployment's spec.replicas during the run
  failed     requests with an error or cut
With --series DIR, also one CSV per policy in DIR, second by second, in the
columns kvlb-sim autoscale writes (t,rate,spec,existing,starting,ready,serving,
p99_ttft; p99 TTFT over the last 30 s of requests sent, a failed request
counting as 60 s), for scripts/bench/autoscale-plot.
Standard library only.
"""
import json
import math
import os
import sys

SLO_S = 2.0
RECOVERY_HOLD_S = 10.0


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def requests_of(pdir, run):
    """Every request: (wall time sent, ttft or None when it failed)."""
    out = []
    for seg in run["segments"]:
        path = os.path.join(pdir, seg["file"])
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rep = json.load(f)
        for r in rep.get("results", []):
            sent = seg["start"] + r.get("sent", r.get("scheduled", 0))
            ok = "error" not in r and r.get("first", -1) >= 0
            out.append((sent, r["first"] - r["sent"] if ok else None))
    return sorted(out)


def replica_seconds(events, t0, t1):
    created, total = {}, 0.0
    for e in events:
        if e["action"] == "create":
            created[e["pod"]] = e["t"]
        elif e["action"] in ("delete", "failed") and e.get("pod") in created:
            a = max(created.pop(e["pod"]), t0)
            total += max(0.0, min(e["t"], t1) - a)
    for start in created.values():  # still running at the end of the run
        total += max(0.0, t1 - max(start, t0))
    return total


def alive_before(events, t0):
    """Pods created before t0 and not deleted by then (they count from t0)."""
    alive = {}
    for e in events:
        if e["t"] >= t0:
            break
        if e["action"] == "create":
            alive[e["pod"]] = e
        elif e["action"] in ("delete", "failed"):
            alive.pop(e.get("pod"), None)
    return [dict(e, t=t0) for e in alive.values()]


def reversals(events, t0, t1):
    specs = [e["replicas"] for e in events if e["action"] == "spec" and t0 <= e["t"] <= t1]
    n, last_dir = 0, 0
    for a, b in zip(specs, specs[1:]):
        d = (b > a) - (b < a)
        if d and last_dir and d != last_dir:
            n += 1
        if d:
            last_dir = d
    return n


def recovery(reqs, step):
    """From the step to the SLO restored after its first breach: 0 when no
    request after the step missed it; nan when it never held again."""
    after = [(t, ttft) for t, ttft in reqs if t >= step]
    miss = next((i for i, (_, tt) in enumerate(after) if tt is None or tt >= SLO_S), None)
    if miss is None:
        return 0.0
    for i in range(miss + 1, len(after)):
        t = after[i][0]
        window = [x for x in after[i:] if x[0] < t + RECOVERY_HOLD_S]
        if window and all(tt is not None and tt < SLO_S for _, tt in window):
            return t - step
    return float("nan")


P99_WINDOW_S = 30.0
FAILED_TTFT_S = 60.0


def series(run, reqs, events, t0, t1):
    """Rows (t, rate, spec, existing, starting, ready, serving, p99) per second
    of the run, t from its start."""
    rows = []
    segs = run["segments"]
    for k in range(int(t1 - t0) + 1):
        t = t0 + k
        rate = 0.0
        for seg in segs:
            if seg["start"] <= t < seg["start"] + seg["seconds"]:
                rate = seg["rate"]
        spec, created, ready, gone, terminating = None, set(), set(), set(), set()
        for e in events:
            if e["t"] > t:
                break
            a, pod = e["action"], e.get("pod")
            if a == "spec":
                spec = e["replicas"]
            elif a == "create":
                created.add(pod)
            elif a == "ready":
                ready.add(pod)
            elif a == "terminate":
                terminating.add(pod)
            elif a in ("delete", "failed"):
                gone.add(pod)
        existing = created - gone
        ready_now = (ready & existing) - terminating
        starting = existing - ready - terminating
        window = [tt if tt is not None else FAILED_TTFT_S
                  for ts, tt in reqs if t - P99_WINDOW_S <= ts <= t]
        rows.append((k, rate, spec if spec is not None else "", len(existing), len(starting),
                     len(ready_now), len(ready_now), pct(window, 0.99) if window else ""))
    return rows


def main():
    args = sys.argv[1:]
    series_dir = None
    if "--series" in args:
        i = args.index("--series")
        series_dir = args[i + 1]
        del args[i:i + 2]
    out = args[0]
    events = []
    path = os.path.join(out, "controller-events.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            events = [json.loads(line) for line in f if line.strip()]
    events.sort(key=lambda e: e["t"])
    rows = []
    for name in sorted(os.listdir(out)):
        rj = os.path.join(out, name, "run.json")
        if not os.path.exists(rj):
            continue
        with open(rj) as f:
            run = json.load(f)
        reqs = requests_of(os.path.join(out, name), run)
        if not reqs:
            continue
        ttfts = [t for _, t in reqs if t is not None]
        t0 = run["t0"]
        t1 = run.get("t1", reqs[-1][0])
        evs = alive_before(events, t0) + [e for e in events if t0 <= e["t"] <= t1]
        step = run["segments"][1]["start"] if len(run["segments"]) > 1 else t0
        rows.append({
            "policy": run["policy"],
            "requests": len(reqs),
            "slo": sum(1 for _, t in reqs if t is not None and t < SLO_S) / len(reqs),
            "p99_ttft": pct(ttfts, 0.99),
            "replica_s": replica_seconds(evs, t0, t1),
            "recovery_s": recovery(reqs, step),
            "reversals": reversals(events, t0, t1),
            "failed": sum(1 for _, t in reqs if t is None),
            "duration_s": t1 - t0,
        })
        if series_dir:
            os.makedirs(series_dir, exist_ok=True)
            with open(os.path.join(series_dir, run["policy"] + ".csv"), "w") as f:
                f.write("t,rate,spec,existing,starting,ready,serving,p99_ttft\n")
                for row in series(run, reqs, events, t0, t1):
                    f.write(",".join(str(x) for x in row) + "\n")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    print("| policy | requests | SLO (TTFT < 2 s) | p99 TTFT s | replica-s | recovery s | reversals | failed |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d | %.1f%% | %.2f | %.0f | %.1f | %d | %d |" % (
            r["policy"], r["requests"], 100 * r["slo"], r["p99_ttft"], r["replica_s"],
            r["recovery_s"], r["reversals"], r["failed"]))


if __name__ == "__main__":
    main()
