"""The bench report tool on the committed results: it must reproduce the
figures docs/benchmarks.md and docs/results/ publish."""

import io
import json
import os
import sys
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts", "bench"))
import report  # noqa: E402


def committed(path):
    return os.path.join(ROOT, path)


class Connect(unittest.TestCase):
    def test_recomputes_the_published_medians_and_paired_ratios(self):
        with open(committed("docs/results/connect.json")) as f:
            rows = json.load(f)
        for row in rows:
            s = report.connect_summary(row)
            for key in ("direct", "kvlb", "iptables", "kvlb_vs_direct", "kvlb_vs_iptables",
                        "paired_kvlb_vs_direct", "paired_kvlb_vs_iptables"):
                # The shell version printed 6 significant digits.
                self.assertAlmostEqual(s[key], row[key], delta=abs(row[key]) * 1e-5, msg=key)

    def test_the_table_row_of_docs_benchmarks(self):
        with open(committed("docs/results/connect.json")) as f:
            table = report.connect_table([report.connect_summary(r) for r in json.load(f)])
        self.assertIn("| 1000 | 30364 | 29370 | 22122 | 0.967 | 1.33 | 0.959 | 1.31 |", table)

    def test_paired_is_the_median_of_per_round_ratios(self):
        self.assertEqual(report.paired_median([10, 20, 30], [10, 10, 10]), 2.0)
        self.assertIsNone(report.paired_median([1], [0]))


class Seed(unittest.TestCase):
    def test_reproduces_the_committed_live_tables(self):
        runs = report.seed_runs(committed("docs/results/seed-live/summaries.json"))
        tables = report.seed_tables(runs)
        with open(committed("docs/results/seed-live/results.md")) as f:
            published = f.read().split("### virtual time")[0]
        self.assertEqual(tables.strip(), published.strip())


class Quantile(unittest.TestCase):
    TEXT = """# TYPE h histogram
h_bucket{le="0.01"} 50
h_bucket{le="0.05"} 98
h_bucket{le="0.1"} 100
h_bucket{le="+Inf"} 100
h_sum 2
h_count 100
"""

    def test_the_first_bucket_holding_the_fraction(self):
        self.assertEqual(report.histogram_quantile(self.TEXT, "h", 0.5), 0.01)
        self.assertEqual(report.histogram_quantile(self.TEXT, "h", 0.99), 0.1)
        self.assertIsNone(report.histogram_quantile("", "h", 0.99))


class PairedMedianCommand(unittest.TestCase):
    def test_reads_before_after_lines(self):
        sys.stdin = io.StringIO("100 90\n100 110\n100 95\n")
        out = io.StringIO()
        sys.stdout, saved = out, sys.stdout
        try:
            report.main(["paired-median"])
        finally:
            sys.stdout = saved
            sys.stdin = sys.__stdin__
        self.assertIn("median after/before: 0.950 over 3 rounds", out.getvalue())


if __name__ == "__main__":
    unittest.main()


class SeedsLive(unittest.TestCase):
    @staticmethod
    def live(bal, seed, p99, wait=3, rate=12.0):
        return {"config": {"rps": rate, "seed": seed, "label": f"{bal} @ {rate:g} req/s"},
                "summary": {"ttft_s": {"p99": p99},
                            "trend": {"queue_growth_per_min": 0.5},
                            "window": {"goodput_req_s": 11.9}},
                "replicas": [{"waiting_max": wait}, {"waiting_max": 1}]}

    @staticmethod
    def virtual(seed, p99s, rate=12.0):
        return {"config": {"rps": rate, "seed": seed},
                "runs": [{"balancer": b, "summary": {"ttft_s": {"p99": p}},
                          "replicas": [{"waiting_max": 2}]} for b, p in p99s.items()]}

    def test_pairs_each_seed_with_the_oracle_and_with_virtual_time(self):
        runs = [self.live("kvlb", 1, 1.0), self.live("kvlb", 2, 3.0), self.live("kvlb", 3, 2.0),
                self.live("oracle", 1, 0.5), self.live("oracle", 2, 3.0), self.live("oracle", 3, 1.0)]
        virtual = {(12.0, k): self.virtual(k, {"kvlb": 1.0, "oracle": 1.0}) for k in (1, 2, 3)}
        table = report.seeds_live_tables(runs, virtual)
        # p99 over seeds: median 2.0 [1.0-3.0]; paired to the oracle: 2, 1, 2 -> 2.00
        # [1.00-2.00]; virtual 1.0 each; live/virtual: 1, 3, 2 -> 2.00 [1.00-3.00].
        self.assertIn("| kvlb | 1,2,3 | 2.000 [1.000-3.000] | 2.00 [1.00-2.00] | "
                      "1.000 [1.000-1.000] | 2.00 [1.00-3.00] | 3 [3-3] | 2 [2-2] | "
                      "0.50 [0.50-0.50] | 11.90 [11.90-11.90] |", table)
        self.assertIn("| oracle | 1,2,3 | 1.000 [0.500-3.000] | 1.00 [1.00-1.00] |", table)

    def test_a_seed_without_its_oracle_or_virtual_run_is_left_out_of_the_pairs(self):
        runs = [self.live("kvlb", 1, 1.0), self.live("kvlb", 2, 4.0), self.live("oracle", 1, 0.5)]
        table = report.seeds_live_tables(runs, {})
        self.assertIn("| kvlb | 1,2 | 2.500 [1.000-4.000] | 2.00 [2.00-2.00] | n/a | n/a |", table)


class Clients(unittest.TestCase):
    def test_per_request_differences_from_the_load_generator(self):
        loadgen = {"results": [{"i": 0, "sent": 1.0, "first": 1.1},
                               {"i": 1, "sent": 2.0, "first": 2.3},
                               {"i": 2, "sent": 3.0, "first": -1, "error": "timeout"}]}
        sdk = [{"i": 0, "ttft": 0.102}, {"i": 1, "ttft": 0.304}, {"i": 2, "ttft": 0.5}]
        table = report.clients_table([(loadgen, {"sdk": sdk})])
        self.assertIn("| kvlb-loadgen | 2 | 200.00 | (reference) |", table)
        # request 2 failed for the load generator: its SDK time has no pair.
        self.assertIn("| sdk | 3 | 304.00 | +3.00 |", table)
