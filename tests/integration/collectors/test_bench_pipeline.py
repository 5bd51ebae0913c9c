"""The pipeline benchmark runs end to end on a tiny load (no speed asserted, only correctness)."""

from __future__ import annotations

import argparse

from bench import pipeline


def test_bench_pipeline_small_run_loses_nothing():
    parser = argparse.ArgumentParser()
    pipeline.add_arguments(parser)
    args = parser.parse_args(
        [
            "--stores",
            "embedded",
            "--outage-s",
            "3",  # long enough for a few snapshot jobs to queue up even on a loaded machine
            "--steady-s",
            "1",
            "--resources",
            "50",
            "--throughput-points",
            "2000",
            "--batch-size",
            "500",
        ]
    )
    result = pipeline.run(args)
    assert set(result) >= {"points_per_s", "lost", "drain_x_realtime", "node_cpu_pct"}
    assert result["lost"] == 0
    emb = result["stores"]["embedded"]
    assert emb["backlog_points"] >= 50 and emb["health_during_outage"]["store_reachable"] is False
    assert emb["dropped"] == 0 and emb["quarantined"] == 0
