"""bench/batch_bench.py's kill-and-resume, on a tiny random model as the benchmark runs it."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO))
from bench import batch_bench  # noqa: E402

CHUNK = 50


@pytest.fixture(scope="module")
def tiny(tiny_runs, tmp_path_factory):
    """The benchmark's tiny random-weight category run over the sample category adapter's labels."""
    return batch_bench.tiny_run(tiny_runs["category"], tmp_path_factory.mktemp("tiny"))


def titles(path, n: int):
    pd.DataFrame({"title": [f"Organic toor dal, {i} g pouch" for i in range(n)]}).to_csv(path, index=False)
    return path


def test_a_run_killed_between_chunks_and_run_again_writes_the_uninterrupted_file(tiny, tmp_path):
    source = titles(tmp_path / "titles.csv", 40 * CHUNK)
    whole = batch_bench.measured(batch_bench.predict_cmd(tiny, source, tmp_path / "whole.csv", CHUNK), threads=1)
    assert not whole["killed"] and whole["peak_mb"] > 0
    resume = batch_bench.kill_and_resume(tiny, source, tmp_path / "whole.csv", tmp_path / "resumed.csv", CHUNK, 1)
    assert resume["identical"]
    assert batch_bench.KILL_AFTER_CHUNKS * CHUNK <= resume["rows_at_kill"] < 40 * CHUNK


def test_a_run_that_ends_before_its_kill_is_measured_not_lost(tiny, tmp_path):
    """Too few chunks to reach the kill: the process is reaped once, its figures kept (it raised ChildProcessError
    when the poll for the manifest reaped it first)."""
    source = titles(tmp_path / "titles.csv", 2 * CHUNK)
    result = batch_bench.measured(batch_bench.predict_cmd(tiny, source, tmp_path / "out.csv", CHUNK), threads=1,
                                  kill_after_chunks=50)
    assert not result["killed"] and result["peak_mb"] > 0
    assert len(pd.read_csv(tmp_path / "out.csv")) == 2 * CHUNK


def test_an_input_of_one_chunk_is_refused_with_what_to_give(tiny, tmp_path):
    source = titles(tmp_path / "titles.csv", CHUNK // 2)
    with pytest.raises(SystemExit, match="at least two chunks.*--rows"):
        batch_bench.kill_and_resume(tiny, source, source, tmp_path / "out.csv", CHUNK, 1)


def test_the_command_names_the_sizes_that_are_not_the_defaults():
    args = batch_bench.argparse.Namespace(adapter="runs/a", threads=2, quantization="auto", merge=True,
                                          rows=[1_000], speed_rows=batch_bench.SPEED_ROWS, chunk_rows=250)
    assert batch_bench.command_line(args) == ("python bench/batch_bench.py --adapter runs/a --threads 2 "
                                              "--quantization auto --merge --rows 1000 --chunk-rows 250")
