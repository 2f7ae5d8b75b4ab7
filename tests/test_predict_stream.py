"""training.predict on whole catalogs: every row exactly once, streamed, resumable after a kill, sharded."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

from catalog_lora.catalogs.batch_job import MANIFEST, PARTS_SUFFIX, adapter_fingerprint
from catalog_lora.catalogs.tables import ERROR_COLUMN, iter_chunks, read_table, scan
from catalog_lora.inference.engine import Engine
from training.predict import REFERENCES_COLUMN
from training.predict import main as predict_main

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
HUGE = 200_000

# Each bad input of the batch promise: (file name, content, rows in, the line an error names or None).
BAD_INPUTS = [
    ("stray-quote.csv", 'text\nGood lather\n"Unbalanced, cheap\nThird row\nFourth row\n', 4, "line 3"),
    ("stray-quote-3-columns.csv", 'text,brand,price\nA,b,1\n"Unbalanced, cheap,b,2\nC,d,3\nD,e,4\nE,f,5\n', 5, "line 3"),
    ("stray-quote-last-line.csv", 'text\nA\nB\n"C never closed', 3, "line 4"),
    ("fields.csv", "text,brand\nA,b\ntoo,many,fields\nfew\nB,c\n", 4, "line 3"),
    ("blank-lines.csv", "text,brand\nA,b\n\nB,c\n\n", 4, "line 3"),
    ("long-cell.csv", "text,brand\n" + "lather " * (HUGE // 7) + ",b\nB,c\n", 2, None),
    ("tabs.tsv", 'text\tbrand\nA\tb\n"open\tc\nB\td\n', 3, "line 3"),
    ("lines.jsonl", '{"text": "A"}\n\nnot json\n[1, 2]\n{"text": "B", "other": 1}\n', 5, "line 2"),
]


@pytest.mark.parametrize(("name", "content", "rows", "line"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_every_physical_row_is_read_exactly_once(tmp_path, name, content, rows, line):
    path = tmp_path / name
    path.write_text(content)
    assert scan(path).rows == rows
    whole = read_table(path)
    assert len(whole) == rows
    if line:
        assert any(line in e for e in whole[ERROR_COLUMN]), whole[ERROR_COLUMN].tolist()
    chunks = list(iter_chunks(path, 2))
    assert sum(len(c) for c in chunks) == rows and [len(c) for c in chunks[:-1]] == [2] * (len(chunks) - 1)
    expected = whole if ERROR_COLUMN in whole.columns else whole.assign(**{ERROR_COLUMN: ""})
    assert pd.concat(chunks).reset_index(drop=True).to_dict("list") == expected.to_dict("list")


def test_parquet_is_streamed(tmp_path):
    frame = pd.DataFrame({"text": ["A", None, "C", "D", "E"], "price": [1.5, 2.0, None, 4.0, 5.0]})
    frame.to_parquet(tmp_path / "catalog.parquet")
    chunks = list(iter_chunks(tmp_path / "catalog.parquet", 2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert pd.concat(chunks)["text"].tolist() == ["A", "", "C", "D", "E"]


def predict(adapter: Path, source: Path, output: Path, *extra: str):
    return predict_main(["--adapter", f"category={adapter}", "--input", str(source), "--text-column", "title",
                         "--output", str(output), *extra])


def predict_cmd(adapter: Path, source: Path, output: Path, *extra: str, processes: int = 1) -> list[str]:
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)] if processes > 1 else []
    return [sys.executable, *launcher, "-m", "training.predict", "--adapter", f"category={adapter}", "--input", str(source),
            "--text-column", "title", "--output", str(output), *extra]


@pytest.fixture(scope="module")
def catalog(sample_data, tmp_path_factory) -> Path:
    """Real sample titles with the bad rows of the batch promise between them."""
    titles = [json.loads(line)["text"] for line in (sample_data / "category" / "test.jsonl").read_text().splitlines()]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["title", "brand"])
    for title in titles[:6]:
        writer.writerow([title, "acme"])
    path = tmp_path_factory.mktemp("catalog") / "catalog.csv"
    bad = '"Unbalanced, cheap soap,acme\n\n' + "foam " * (HUGE // 5) + ",acme\ntoo,many,fields\n=SUM(A1),acme\n"
    path.write_text(buffer.getvalue() + bad)
    return path


@pytest.fixture(scope="module")
def whole(tiny_runs, catalog, tmp_path_factory) -> bytes:
    """The output of one uninterrupted run in a single chunk: what every other way must equal."""
    output = tmp_path_factory.mktemp("whole") / "out.csv"
    state = predict(tiny_runs["category"], catalog, output, "--chunk-rows", "1000")
    assert state.rows == scan(catalog).rows == 11 and state.errors == 4
    assert not output.with_name(output.name + PARTS_SUFFIX).exists()
    out = pd.read_csv(output, dtype=str, keep_default_na=False)
    assert list(out.columns) == ["title", "brand", "category", "error"]
    assert all(" > " in c for c in out["category"][:6]) and out["error"][:6].eq("").all()
    assert "unterminated quote (line 8)" in out.loc[6, "error"] and "blank line (line 9)" in out.loc[7, "error"]
    assert "truncated" in out.loc[8, "error"] and len(out.loc[8, "title"]) == HUGE and out.loc[8, "category"]
    assert "malformed row (line 11)" in out.loc[9, "error"] and out.loc[10, "title"] == "'=SUM(A1)"
    return output.read_bytes()


def test_chunked_output_equals_whole_file_output(tiny_runs, catalog, whole, tmp_path):
    predict(tiny_runs["category"], catalog, tmp_path / "out.csv", "--chunk-rows", "2")
    assert (tmp_path / "out.csv").read_bytes() == whole


def test_merged_adapter_writes_the_same_file(tiny_runs, catalog, whole, tmp_path):
    """--merge folds the one adapter into the base: faster, and the same answers row for row."""
    predict(tiny_runs["category"], catalog, tmp_path / "out.csv", "--chunk-rows", "1000", "--merge")
    assert (tmp_path / "out.csv").read_bytes() == whole


def test_batches_by_tokens_write_the_same_file(tiny_runs, catalog, whole, tmp_path):
    """--batch-tokens cuts each model call by padded tokens (a GPU's setting): the answers stay row for row."""
    predict(tiny_runs["category"], catalog, tmp_path / "out.csv", "--chunk-rows", "1000", "--batch-size", "64", "--batch-tokens", "200")
    assert (tmp_path / "out.csv").read_bytes() == whole
    with pytest.raises(SystemExit):
        predict(tiny_runs["category"], catalog, tmp_path / "bad.csv", "--batch-tokens", "-1")
    assert not (tmp_path / "bad.csv").exists()


def test_missing_column_or_bad_bytes_are_refused_before_the_model_loads(tiny_runs, tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded for a file that must be refused first")

    monkeypatch.setattr(Engine, "load", no_model)
    (tmp_path / "prices.csv").write_text("sku,price\n1,2\n2,3\n3,4\n")
    with pytest.raises(SystemExit, match="column 'title' not found; the file has: sku, price"):
        predict(tiny_runs["category"], tmp_path / "prices.csv", tmp_path / "out.csv")
    (tmp_path / "latin.csv").write_bytes("title\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(SystemExit, match="not UTF-8"):
        predict(tiny_runs["category"], tmp_path / "latin.csv", tmp_path / "out.csv")
    (tmp_path / "header.csv").write_text("title,price\n")
    with pytest.raises(SystemExit, match="has a header but no rows"):
        predict(tiny_runs["category"], tmp_path / "header.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def chunks_done(output: Path) -> int:
    parts = output.with_name(output.name + PARTS_SUFFIX)
    try:
        written = json.loads((parts / MANIFEST).read_text())["chunks_written"]
    except (OSError, ValueError):
        return 0
    return written + len(list(parts.glob("*.csv")))


def start_and_kill(cmd: list[str], output: Path, kill) -> None:
    """Start a real run, SIGKILL it (``kill(proc)``) once two chunks are done, and check it stopped part way."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while chunks_done(output) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    kill(proc)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert output.with_name(output.name + PARTS_SUFFIX).is_dir(), "an interrupted run keeps its finished chunks"


def test_kill_and_resume_equals_an_uninterrupted_run(tiny_runs, catalog, whole, tmp_path):
    source, output = tmp_path / "catalog.csv", tmp_path / "out.csv"
    source.write_bytes(catalog.read_bytes())
    start_and_kill(predict_cmd(tiny_runs["category"], source, output, "--chunk-rows", "1"), output,
                   lambda proc: proc.send_signal(signal.SIGKILL))
    with pytest.raises(SystemExit, match="different settings"):
        predict(tiny_runs["category"], source, output, "--chunk-rows", "1", "--batch-size", "8")
    with source.open("a") as file:
        file.write("one more row,acme\n")
    with pytest.raises(SystemExit, match="different input"):
        predict(tiny_runs["category"], source, output, "--chunk-rows", "1")
    source.write_bytes(catalog.read_bytes())

    state = predict(tiny_runs["category"], source, output, "--chunk-rows", "1")
    assert state.rows == 11 and output.read_bytes() == whole


def test_a_retrained_adapter_changes_the_fingerprint(tiny_runs, tmp_path):
    copy = Path(shutil.copytree(tiny_runs["category"], tmp_path / "category"))
    before = adapter_fingerprint(str(copy))
    assert adapter_fingerprint(str(tiny_runs["category"])) == before
    weights = copy / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert adapter_fingerprint(str(copy)) != before
    assert adapter_fingerprint("user/catalog-category") == "user/catalog-category", "a Hub id is named, not hashed"


def worker_pids(launcher: int) -> list[int]:
    """The processes torchrun started (children of its agent)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    return [int(pid) for pid in children]


def test_two_processes_equal_one_and_resume_after_a_worker_is_killed(tiny_runs, catalog, whole, tmp_path):
    """Sharded over two processes (torchrun), a worker killed, resumed: one process's file, byte for byte, with
    the ids of each row's 2 nearest training examples (every process opens the references index)."""
    output, one = tmp_path / "out.csv", tmp_path / "one.csv"
    cmd = predict_cmd(tiny_runs["category"], catalog, output, "--chunk-rows", "1", "--references", "2", processes=2)
    start_and_kill(cmd, output, lambda proc: os.kill(worker_pids(proc.pid)[-1], signal.SIGKILL))
    subprocess.run(cmd, cwd=REPO, env=ENV, check=True, timeout=600)
    predict(tiny_runs["category"], catalog, one, "--chunk-rows", "1000", "--references", "2")
    assert output.read_bytes() == one.read_bytes()
    out = pd.read_csv(one, dtype=str, keep_default_na=False)
    assert all(len(ids.split()) == 2 for ids in out.pop(REFERENCES_COLUMN)), "ids of the 2 nearest training examples"
    pd.testing.assert_frame_equal(out, pd.read_csv(io.BytesIO(whole), dtype=str, keep_default_na=False))


def test_batching_defaults_follow_the_device():
    """Unset, the batch and chunk sizes are the CPU's (as every CPU result was made) or a GPU's larger ones;
    what a user sets is kept on either."""
    from argparse import Namespace

    from training.predict import DEFAULTS, device_defaults

    for cuda, device in ((False, "cpu"), (True, "cuda")):
        args = Namespace(batch_size=None, batch_tokens=None, chunk_rows=None)
        device_defaults(args, cuda)
        assert vars(args) == DEFAULTS[device]
        asked = Namespace(batch_size=8, batch_tokens=0, chunk_rows=100)
        device_defaults(asked, cuda)
        assert vars(asked) == {"batch_size": 8, "batch_tokens": 0, "chunk_rows": 100}
    assert DEFAULTS["cpu"] == {"batch_size": 16, "batch_tokens": 0, "chunk_rows": 500}
    assert DEFAULTS["cuda"]["batch_size"] > DEFAULTS["cpu"]["batch_size"] and DEFAULTS["cuda"]["batch_tokens"] > 0
