#!/usr/bin/env python3
"""report.py - the analysis of every benchmark: medians, paired ratios, tables.

Python's standard library only. The bench scripts (bash) drive namespaces,
processes and peers and save raw results as JSON; this tool turns those into
the figures and tables of docs/benchmarks.md, and is tested on the committed
results (tests/bench/report_test.py).

  report.py connect ROUNDS.json [--out SUMMARY.json]   connection-rate table
  report.py seed DIR|summaries.json [--cdf-dir DIR]    seed experiment tables
  report.py seeds-live DIR|summaries.json              the same over seeds, live
                                                       against virtual time
  report.py clients --round LOADGEN.json NAME=FILE.jsonl... [--round ...]
                                                       other clients' TTFT against
                                                       kvlb-loadgen's, same requests
  report.py quantile METRICS.txt HISTOGRAM Q           a histogram's bucket bound
  report.py paired-median                              stdin "before after" lines
"""

import argparse
import json
import os
import re
import statistics
import sys


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def paired_median(numerators, denominators):
    """The ratio within each round, then the median over rounds: the modes of a
    round run back to back under the same machine conditions."""
    ratios = [n / d for n, d in zip(numerators, denominators) if d]
    return median(ratios)


def ratio(a, b):
    return a / b if a is not None and b else None


# ---- connect -----------------------------------------------------------------

def connect_summary(row):
    """One service count: its rounds -> medians and ratios (the bench's JSON row)."""
    r = row["rounds"]
    d, k, t = median(r["direct"]), median(r["kvlb"]), median(r["iptables"])
    return {
        "services": row["services"],
        "direct": d,
        "kvlb": k,
        "iptables": t,
        "kvlb_vs_direct": ratio(k, d),
        "kvlb_vs_iptables": ratio(k, t),
        "paired_kvlb_vs_direct": paired_median(r["kvlb"], r["direct"]),
        "paired_kvlb_vs_iptables": paired_median(r["kvlb"], r["iptables"]),
        "rounds": r,
    }


def fmt(v, digits):
    if v is None:
        return "-"
    return str(round(v)) if digits == 0 else f"{round(v, digits):g}"


def connect_table(summaries):
    lines = [
        "| services x 8 endpoints | direct (conn/s) | kvlb socket LB (conn/s) | "
        "kube-proxy iptables (conn/s) | kvlb / direct | kvlb / iptables | "
        "kvlb / direct, paired | kvlb / iptables, paired |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summaries:
        lines.append(
            f"| {s['services']} | {fmt(s['direct'], 0)} | {fmt(s['kvlb'], 0)} | "
            f"{fmt(s['iptables'], 0)} | {fmt(s['kvlb_vs_direct'], 3)} | "
            f"{fmt(s['kvlb_vs_iptables'], 2)} | {fmt(s['paired_kvlb_vs_direct'], 3)} | "
            f"{fmt(s['paired_kvlb_vs_iptables'], 2)} |")
    return "\n".join(lines) + "\n"


# ---- seed experiment -----------------------------------------------------------

def balancer_of(label):
    return re.sub(r" @.*", "", label)


def seed_runs(source):
    """Run reports: the files rate<R>-<balancer>.json of a directory, or a
    summaries.json (the same reports without their per-request results)."""
    if os.path.isdir(source):
        runs = []
        for name in sorted(os.listdir(source)):
            if re.match(r"rate[0-9.]+-.*\.json$", name):
                with open(os.path.join(source, name)) as f:
                    runs.append(json.load(f))
        return runs
    with open(source) as f:
        return json.load(f)


def r3(v):
    return f"{round(v, 3):g}"


def seed_tables(runs):
    by_rate = {}
    for run in runs:
        by_rate.setdefault(run["config"]["rps"], []).append(run)
    # A seed column when the runs span several seeds.
    many = len({run["config"].get("seed") for run in runs}) > 1
    out = []
    for rate in sorted(by_rate):
        out += [f"### {rate:g} req/s", "",
                "| balancer |" + (" seed |" if many else "") +
                " TTFT p50 (s) | TTFT p90 | TTFT p99 | ITL p99 (s) | throughput (tok/s) "
                "| max waiting (any replica) | max waiting per replica | errors | cut | CPU busy |",
                "| --- |" + (" ---: |" if many else "") +
                " ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
        for run in sorted(by_rate[rate], key=lambda r: (balancer_of(r["config"]["label"]),
                                                        r["config"].get("seed", 0))):
            s = run["summary"]
            waits = [int(r["waiting_max"]) for r in run["replicas"]]
            busy = run["config"].get("cpu_busy", "n/a")
            busy = f"{busy:g}" if isinstance(busy, (int, float)) else busy
            seed = f" {run['config'].get('seed')} |" if many else ""
            out.append(
                f"| {balancer_of(run['config']['label'])} |{seed} {r3(s['ttft_s']['median'])} | "
                f"{r3(s['ttft_s']['p90'])} | {r3(s['ttft_s']['p99'])} | {r3(s['itl_s']['p99'])} | "
                f"{round(s['throughput_tok_s'])} | {max(waits)} | {' '.join(map(str, waits))} | "
                f"{s['error_count']} | {s['cut']} | {busy} |")
        out.append("")
    return "\n".join(out) + "\n"


def seed_cdf(runs, out_dir):
    """Per rate and balancer, the TTFT empirical CDF of its requests over every
    seed, as 'seconds fraction' lines (for gnuplot)."""
    pooled = {}
    for run in runs:
        warm = run["config"]["warmup_s"]
        key = f"rate{run['config']['rps']:g}-{balancer_of(run['config']['label'])}.ttft"
        pooled.setdefault(key, []).extend(
            r["first"] - r["sent"] for r in run.get("results", [])
            if r["scheduled"] >= warm and r["first"] >= 0 and r.get("error") is None)
    files = []
    for name, values in sorted(pooled.items()):
        ttft = sorted(values)
        if not ttft:
            continue
        with open(os.path.join(out_dir, name), "w") as f:
            for i, v in enumerate(ttft, 1):
                f.write(f"{v} {i / len(ttft)}\n")
        files.append(name)
    return files


def spread3(values, digits=3):
    """'median [min-max]' of a few values (the live seeds: too few for quartiles)."""
    v = [x for x in values if x is not None]
    if not v:
        return "n/a"
    return f"{statistics.median(v):.{digits}f} [{min(v):.{digits}f}-{max(v):.{digits}f}]"


def live_figures(run):
    s = run["summary"]
    return {"p99": s["ttft_s"]["p99"],
            "max_waiting": max((r["waiting_max"] for r in run["replicas"]), default=0),
            "growth": s.get("trend", {}).get("queue_growth_per_min"),
            "goodput": s.get("window", {}).get("goodput_req_s")}


def virtual_figures(sim_report):
    out = {}
    for run in sim_report["runs"]:
        out[run["balancer"]] = {
            "p99": run["summary"]["ttft_s"]["p99"],
            "max_waiting": max((r["waiting_max"] for r in run["replicas"]), default=0)}
    return out


def seeds_live_tables(runs, virtual):
    """runs: live reports (any seeds); virtual: {(rate, seed): kvlb-sim report}
    for the same rates and seeds. Per rate and balancer, over its seeds: live p99
    TTFT, the paired ratio to the live oracle on the same seed, the same seeds in
    virtual time, the live/virtual ratio per seed, max waiting, queue growth and
    goodput. Figures are 'median [min-max]' over the seeds."""
    cells = {}
    for run in runs:
        c = run["config"]
        cells.setdefault(c["rps"], {}).setdefault(balancer_of(c["label"]), {})[c["seed"]] = \
            live_figures(run)
    out = []
    for rate in sorted(cells):
        by_bal = cells[rate]
        oracle = by_bal.get("oracle", {})
        out += [f"### {rate:g} req/s", "",
                "| balancer | seeds | p99 TTFT live (s) | p99 / oracle, live (paired) | "
                "p99 TTFT virtual, same seeds (s) | live / virtual (paired) | "
                "max waiting live | max waiting virtual | queue growth live (req/min) | "
                "goodput live (req/s) |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for bal in sorted(by_bal):
            seeds = sorted(by_bal[bal])
            live = [by_bal[bal][k] for k in seeds]
            virt = [virtual_figures(virtual[(rate, k)]).get(bal) if (rate, k) in virtual else None
                    for k in seeds]
            to_oracle = [by_bal[bal][k]["p99"] / oracle[k]["p99"]
                         for k in seeds if k in oracle and oracle[k]["p99"] > 0]
            to_virtual = [lv["p99"] / vv["p99"] for lv, vv in zip(live, virt)
                          if vv and vv["p99"] > 0]
            out.append(
                f"| {bal} | {','.join(str(k) for k in seeds)} | "
                f"{spread3([x['p99'] for x in live])} | {spread3(to_oracle, 2)} | "
                f"{spread3([v['p99'] for v in virt if v])} | {spread3(to_virtual, 2)} | "
                f"{spread3([x['max_waiting'] for x in live], 0)} | "
                f"{spread3([v['max_waiting'] for v in virt if v], 0)} | "
                f"{spread3([x['growth'] for x in live], 2)} | "
                f"{spread3([x['goodput'] for x in live], 2)} |")
        out.append("")
    return "\n".join(out) + "\n"


def virtual_runs(directory):
    """{(rate, seed): report} of the virtual-rate<R>-seed<S>.json files."""
    out = {}
    for name in sorted(os.listdir(directory)):
        if re.match(r"virtual-rate[0-9.]+-seed[0-9]+\.json$", name):
            with open(os.path.join(directory, name)) as f:
                rep = json.load(f)
            out[(rep["config"]["rps"], rep["config"]["seed"])] = rep
    return out


# ---- simulator sweep, histograms, A/B ------------------------------------------

def clients_table(rounds):
    """rounds: [(loadgen report, {client: [json lines]})], the same requests in
    each. Per client over every round: the median TTFT, and the median over
    requests of (client TTFT - kvlb-loadgen TTFT, same request, same round) in ms."""
    ttft = {"kvlb-loadgen": []}
    diffs = {}
    for loadgen, others in rounds:
        base = {r["i"]: r["first"] - r["sent"] for r in loadgen["results"]
                if r.get("error") is None and r["first"] >= 0}
        ttft["kvlb-loadgen"] += list(base.values())
        for name, lines in others.items():
            for l in lines:
                if l.get("error") or l["ttft"] < 0:
                    continue
                ttft.setdefault(name, []).append(l["ttft"])
                if l["i"] in base:
                    diffs.setdefault(name, []).append((l["ttft"] - base[l["i"]]) * 1000)
    out = ["| client | requests | TTFT median (ms) | minus kvlb-loadgen's, per request: median (ms) |",
           "| --- | ---: | ---: | ---: |"]
    for name, values in ttft.items():
        d = f"{median(diffs[name]):+.2f}" if name in diffs else "(reference)"
        out.append(f"| {name} | {len(values)} | {median(values) * 1000:.2f} | {d} |")
    return "\n".join(out) + "\n"


def histogram_quantile(text, name, q):
    """The upper bound of the first bucket holding a fraction q of the
    observations (Prometheus text format), or None without observations."""
    count = None
    buckets = []
    for line in text.splitlines():
        if line.startswith(name + "_count"):
            count = float(line.split()[-1])
        m = re.match(re.escape(name) + r'_bucket\{.*le="([^"]+)".*\}\s+(\S+)', line)
        if m:
            buckets.append((float(m.group(1)), float(m.group(2))))
    if not count:
        return None
    for bound, cumulative in sorted(buckets):
        if cumulative >= q * count:
            return bound
    return None


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("connect")
    c.add_argument("rounds")
    c.add_argument("--out")
    s = sub.add_parser("seed")
    s.add_argument("source")
    s.add_argument("--cdf-dir")
    sl = sub.add_parser("seeds-live")
    sl.add_argument("dir")
    cl = sub.add_parser("clients")
    cl.add_argument("--round", nargs="+", action="append", required=True,
                    metavar="LOADGEN.json NAME=FILE.jsonl")
    h = sub.add_parser("quantile")
    h.add_argument("metrics")
    h.add_argument("histogram")
    h.add_argument("q", type=float)
    sub.add_parser("paired-median")
    a = p.parse_args(argv)

    if a.cmd == "connect":
        with open(a.rounds) as f:
            summaries = [connect_summary(row) for row in json.load(f)]
        if a.out:
            with open(a.out, "w") as f:
                json.dump(summaries, f, indent=2)
                f.write("\n")
        sys.stdout.write(connect_table(summaries))
    elif a.cmd == "seed":
        runs = seed_runs(a.source)
        sys.stdout.write(seed_tables(runs))
        if a.cdf_dir:
            for name in seed_cdf(runs, a.cdf_dir):
                print(name, file=sys.stderr)
    elif a.cmd == "seeds-live":
        sys.stdout.write(seeds_live_tables(seed_runs(a.dir), virtual_runs(a.dir)))
    elif a.cmd == "clients":
        rounds = []
        for group in a.round:
            with open(group[0]) as f:
                loadgen = json.load(f)
            others = {}
            for spec in group[1:]:
                name, path = spec.split("=", 1)
                with open(path) as f:
                    others[name] = [json.loads(l) for l in f if l.strip()]
            rounds.append((loadgen, others))
        sys.stdout.write(clients_table(rounds))
    elif a.cmd == "quantile":
        with open(a.metrics) as f:
            v = histogram_quantile(f.read(), a.histogram, a.q)
        print("n/a" if v is None else f"{v:g}")
    elif a.cmd == "paired-median":
        before, after = [], []
        for line in sys.stdin:
            parts = line.split()
            if len(parts) == 2:
                before.append(float(parts[0]))
                after.append(float(parts[1]))
        for b, x in zip(before, after):
            print(f"{b:g} / {x:g} = {x / b:.3f}")
        m = paired_median(after, before)
        print(f"median after/before: {m:.3f} over {len(before)} rounds" if m else "no rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
