"""Figures of ``benchmarks/results/demo.json`` (``python benchmarks/demo.py``): the demo's wall time and test figures.

The file holds the demo's wall time (the fastest of its runs) and its
phases, the matmul rate before and after, the time scaled to the reference
machine (and, if measured, calibrated on the old demo), and the test AUCs.
"""

from __future__ import annotations


def demo(report: dict) -> dict:
    """docs/topics/demo.md: the demo's wall time, its phases, its budget and its test figures."""
    budget = report["reference_budget_seconds"]
    calibrated = report.get("demo_seconds_at_reference_by_old_demo")
    names = list(report["test_auc"])
    return {"report": report, "names": names, "phases": report.get("phase_seconds") or {},
            "epochs": report.get("epoch_seconds") or [], "runs": report.get("demo_seconds_runs") or [],
            "accuracy": report.get("test_accuracy") or {},
            "rate": max(report["matmul_gflops_before"], report["matmul_gflops_after"]),
            "within": report["demo_seconds_at_reference"] <= budget, "calibrated": calibrated,
            "calibrated_within": calibrated is not None and calibrated <= budget,
            "low": [n for n in names if report["test_auc"][n] < 0.95],
            "hardest": min(names, key=report["test_auc"].get)}
