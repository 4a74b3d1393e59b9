"""scripts/bench/report-autoscale.py: the figures of the live autoscaling
benchmark, on hand-made request logs."""

import importlib.util
import math
import os
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_spec = importlib.util.spec_from_file_location(
    "report_autoscale", os.path.join(ROOT, "scripts", "bench", "report-autoscale.py"))
ra = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ra)


def reqs(*pairs):
    return [(float(t), tt) for t, tt in pairs]


class Recovery(unittest.TestCase):
    def test_no_breach_after_the_step_is_zero(self):
        r = reqs(*[(t, 0.5) for t in range(100, 140)])
        self.assertEqual(ra.recovery(r, 100.0), 0.0)

    def test_measured_from_the_step_to_the_first_clean_window_after_the_breach(self):
        # The SLO holds for 8 s after the step (the old replicas absorb the
        # first seconds), breaks from 108 to 120, then holds.
        r = reqs(*[(t, 0.5) for t in range(100, 108)], *[(t, 3.0) for t in range(108, 121)],
                 *[(t, 0.5) for t in range(121, 160)])
        self.assertEqual(ra.recovery(r, 100.0), 21.0)

    def test_a_breach_after_a_clean_first_window_counts(self):
        # The SLO holds for 15 s after the step (longer than the 10-s window)
        # and breaks only when the queues have grown: that is the recovery.
        r = reqs(*[(t, 0.5) for t in range(100, 115)], *[(t, 3.0) for t in range(115, 126)],
                 *[(t, 0.5) for t in range(126, 160)])
        self.assertEqual(ra.recovery(r, 100.0), 26.0)

    def test_a_failed_request_is_a_breach(self):
        r = reqs((100, 0.5), (101, None), *[(t, 0.5) for t in range(102, 130)])
        self.assertEqual(ra.recovery(r, 100.0), 2.0)

    def test_a_window_broken_later_does_not_count(self):
        # Clean from 105 but a miss at 112 (inside 105's 10-s window): recovery
        # comes only after 112.
        r = reqs((100, 5.0), *[(t, 0.5) for t in range(105, 112)], (112, 4.0),
                 *[(t, 0.5) for t in range(113, 140)])
        self.assertEqual(ra.recovery(r, 100.0), 13.0)

    def test_never_recovered_is_nan(self):
        r = reqs(*[(t, 3.0) for t in range(100, 130)])
        self.assertTrue(math.isnan(ra.recovery(r, 100.0)))

    def test_requests_before_the_step_are_ignored(self):
        r = reqs((90, 9.0), *[(t, 0.5) for t in range(100, 120)])
        self.assertEqual(ra.recovery(r, 100.0), 0.0)


class Reversals(unittest.TestCase):
    def test_direction_changes_of_spec_replicas(self):
        ev = [{"t": t, "action": "spec", "replicas": n}
              for t, n in [(1, 1), (2, 3), (3, 5), (4, 5), (5, 4), (6, 6), (7, 2)]]
        self.assertEqual(ra.reversals(ev, 0, 10), 3)


class ReplicaSeconds(unittest.TestCase):
    def test_clipped_to_the_run(self):
        ev = [{"t": 5, "action": "create", "pod": "a"}, {"t": 20, "action": "create", "pod": "b"},
              {"t": 30, "action": "delete", "pod": "b"}]
        # a: 10..40 (clipped to the run) = 30; b: 20..30 = 10.
        self.assertEqual(ra.replica_seconds(ev, 10, 40), 40.0)


if __name__ == "__main__":
    unittest.main()
