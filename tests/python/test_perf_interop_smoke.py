"""Smoke test of the manual interop benchmark `perf/interop.py` (not a benchmark itself: no
timing is asserted): with a few hundred messages it must run every path for two entry formats,
consume exactly what it produced, and write its results."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, magnetar_bin

pytest.importorskip("pulsar")
pytest.importorskip("confluent_kafka")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("starts its own broker"),
              pytest.mark.timeout(120)]


def test_interop_benchmark_runs_every_path(request, tmp_path):
    binary = magnetar_bin(request.config)
    if not binary.exists():
        pytest.skip(f"no binary at {binary}")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "perf" / "interop.py"), "--bin", str(binary),
         "--messages", "200", "--reps", "1", "--formats", "kafka,pulsar",
         "--phase-timeout-s", "30", "--out", str(out)],
        capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    assert result["failures"] == []
    assert [r["entry_format"] for r in result["runs"]] == ["kafka", "pulsar"]
    for run in result["runs"]:
        assert sorted(run["paths"]) == ["kk", "kp", "pk", "pp"]
        for path in run["paths"].values():
            for phase in ("produce", "cold", "warm"):
                assert path[phase]["messages"] == 200
                assert path[phase]["broker_cpu_s"] >= 0
    assert "Kafka -> Pulsar" in (out / "table.md").read_text()
