"""bench/gpu.py's code path on CPU (``--smoke``): the GPU benchmark must run when a GPU session gets one.

Slow (a few tiny training runs and generations): ``pytest -m slow tests/test_gpu_bench.py``."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))


@pytest.mark.slow
def test_gpu_bench_smoke_writes_its_results(sample_data, tmp_path):
    import gpu

    out = tmp_path / "out"
    gpu.main(["--smoke", "--smoke-data", str(sample_data), "--output-dir", str(out)])
    results = json.loads((out / "gpu.json").read_text())
    assert results["complete"] and results["errors"] == {} and results["skipped"] == {}
    assert results["machine"]["device"] == "CPU" and results["conversion_seconds"] > 0
    [head] = results["heads"].values()
    for run in ("full", "bf16_steps", "4bit_steps"):  # rates to three significant digits: never rounded to 0
        assert head[run]["titles_per_second"] > 0 and head[run]["steps_per_second"] > 0
    assert head["bf16_steps"]["optimizer_steps"] == 2
    assert 0.0 <= head["full"]["test"] <= 1.0 and head["full"]["metric"] == "accuracy"
    assert set(head["predict_rows_per_second"]) == {"1", "4"}
    assert all(rate > 0 for rate in results["generate"]["predict_rows_per_second"].values())
    variants = results["step_variants"]  # the training step alone, and the profile of its operators
    assert variants["bf16"]["steps_per_second"] > 0 and variants["4-bit"]["titles_per_second"] > 0
    assert results["profile"]["compile"] == "off" and results["profile"]["kernels_per_step"] == 0  # no GPU kernels on CPU
    assert "aten::" in (out / "gpu-profile.txt").read_text()
    table = (out / "gpu.md").read_text()
    assert "# The GPU path" in table and "head, merged" in table and "constrained generation" in table


def test_gpu_bench_refuses_cpu_measurements_and_smoke_results_in_bench_results():
    import gpu

    with pytest.raises(SystemExit, match="none is here"):
        gpu.main([])
    with pytest.raises(SystemExit, match="--smoke writes no result file into bench/results"):
        gpu.main(["--smoke"])
