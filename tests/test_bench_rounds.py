"""bench.py's rounds: the providers' order alternates round by round, and a cell is the median round."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench  # noqa: E402


def test_rounds_alternate_and_take_the_median(monkeypatch):
    times = {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 4.0, 9.0])}
    order = []

    def fake_measure(name, case, prepare, dtype, timing):
        order.append(name)
        ms = next(times[name])
        return {"ms": ms, "tflops": case.flops() / (ms * 1e-3) / 1e12}

    monkeypatch.setattr(bench, "measure_cell", fake_measure)
    case = bench.Case("fwd", 128, False, 1024, 16, 16)
    cells = bench.run_all([case], ["a", "b", "c"], {"a": None, "b": None}, {"c": "not installed"}, None,
                          bench.Timing(rounds=3))
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert cells[case, "a"]["ms"] == 2.0 and cells[case, "a"]["rounds"] == [3.0, 1.0, 2.0]  # in the order measured
    assert cells[case, "b"]["ms"] == 5.0
    assert cells[case, "a"]["tflops"] == case.flops() / 2e-3 / 1e12
    assert cells[case, "c"] == {"error": "not installed"}


def test_a_failed_round_leaves_the_others():
    case = bench.Case("bwd", 64, True, 4096, 4, 32)
    cell = bench.median_cell(case, [{"error": "boom"}, {"ms": 4.0, "tflops": 0.0}, {"ms": 2.0, "tflops": 0.0}])
    assert cell["ms"] == 3.0 and cell["rounds"] == [4.0, 2.0]
    assert bench.median_cell(case, [{"error": "boom"}]) == {"error": "boom"}
