"""The speed figures README.md and docs/speed.md quote come from bench/results/, through bench/speed_docs.py.

A rerun of a benchmark whose documents were not rewritten, or a figure typed over by hand, fails here."""

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import speed_docs  # noqa: E402


def test_the_documents_quote_the_result_files():
    assert speed_docs.stale() == [], "run .venv/bin/python bench/speed_docs.py after a benchmark"


@pytest.fixture
def repo(tmp_path):
    """A copy of the documents, the speed results and the Space's settings: what bench/speed_docs.py reads."""
    for name in (*speed_docs.DOCUMENTS, "spaces/adapters.yaml", "bench/results/speed.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    for name in ("load.json", "load_head.json", "batch.json", "real_data.json"):
        if (REPO / "bench/results" / name).is_file():
            shutil.copy(REPO / "bench/results" / name, tmp_path / "bench/results" / name)
    return tmp_path


def _edit_rows(repo: Path, edit) -> None:
    path = repo / "bench/results/speed.json"
    speed = json.loads(path.read_text())
    for row in speed["rows"]:
        edit(row)
    path.write_text(json.dumps(speed))


def _row(text: str, starts: str, contains: str = "") -> str:
    return next(line for line in text.splitlines() if line.startswith(starts) and contains in line)


def test_a_new_measurement_rewrites_figures_and_verdicts(repo):
    """Twice the constrained rate halves the batch job's minutes; an int8 head row at 10.2x and 99% agreement,
    ahead of llama.cpp, meets the targets it did not; llama.cpp failing to run leaves the speed target unmet."""
    before = (repo / "README.md").read_text()
    c_rate = next(r for r in json.loads((repo / "bench/results/speed.json").read_text())["rows"] if r["key"] == "c")[
        "products_per_s"
    ]

    def faster(row):
        if row["key"] == "c":
            row["products_per_s"] = 2 * c_rate
        if row["key"] == "d-int8":
            row.update(vs_reference=10.2, agreement=0.99, products_per_s=99.0)

    _edit_rows(repo, faster)
    assert speed_docs.write(repo) == list(speed_docs.DOCUMENTS)
    readme, doc = (repo / "README.md").read_text(), (repo / "docs/speed.md").read_text()
    assert readme != before
    assert f"({2 * c_rate:.2f} products/s" in readme
    assert f"about {20000 / (2 * c_rate) / 60:.0f} minutes for one label job" in readme
    assert _row(doc, "| tagging ≥ 10x", "(d) merged adapter, int8").endswith("| **met** |")
    assert _row(doc, "| quantized:", "(d) merged adapter, int8").endswith("| **met** |")
    assert _row(doc, "| (d) merged adapter, int8 |").startswith("| (d) merged adapter, int8 | 99.00 | 10.2x |")
    assert speed_docs.stale(repo) == []

    def llama_failed(row):
        if row["key"].startswith("llama"):
            row.clear()
            row.update(key="llama-q8_0-c", name="llama.cpp", error="llama-cpp-python is not installed")

    _edit_rows(repo, llama_failed)
    assert speed_docs.stale(repo) == list(speed_docs.DOCUMENTS)
    speed_docs.write(repo)
    readme, doc = (repo / "README.md").read_text(), (repo / "docs/speed.md").read_text()
    assert "llama.cpp Q8_0 with a grammar" not in readme
    assert "llama.cpp Q8_0 greedy" not in doc
    assert _row(doc, "| tagging ≥ 10x", "(d) merged adapter, int8").endswith("llama.cpp not measured | not met |")


def test_markers_that_do_not_pair_or_name_no_block_are_refused():
    results = speed_docs.Results.read()
    with pytest.raises(ValueError, match="do not pair up: opened \\['summary'\\], closed \\[\\]"):
        speed_docs.render("<!-- speed_docs:summary -->\ntext", results, "README.md")
    with pytest.raises(ValueError, match="unknown block <!-- speed_docs:speeed -->"):
        speed_docs.render("<!-- speed_docs:speeed --><!-- /speed_docs:speeed -->", results, "README.md")


def test_a_new_batch_run_rewrites_the_readmes_batch_figures(repo):
    """The batch benchmark's rates, memory and projection, and a resumed run that came out different, reach the
    README."""
    path = repo / "bench/results/batch.json"
    if not path.is_file():
        pytest.skip("no bench/results/batch.json: run bench/batch_bench.py")
    batch = json.loads(path.read_text())
    fastest = batch["speed"]["runs"][-1]
    fastest["rows_per_s"] = 2 * fastest["rows_per_s"]
    fastest["peak_mb"] = 1234.4
    batch["memory"][-1]["read_seconds"] = 3.31
    batch["resume"]["identical"] = False
    path.write_text(json.dumps(batch))
    assert speed_docs.write(repo) == ["README.md"]
    readme = (repo / "README.md").read_text()
    assert f"| {fastest['rows_per_s']:.2f} |" in readme and "**output differs**" in readme
    assert f"| peak RSS of that process, {fastest['precision']} (the embedded model, the adapter, its votes) | 1,234 MB |" in readme
    assert f"each reads the whole file, 3.3 s for {batch['memory'][-1]['rows']:,} rows here" in readme
    one = speed_docs.duration(batch["catalog"] / fastest["rows_per_s"])
    assert f"**A {batch['catalog']:,}-product catalog** at these rates, one process per core: {fastest['precision']}: {one} on 1" in readme


def test_a_new_results_record_rewrites_the_readmes_results_table_and_verdicts(repo):
    """The README's results table and its read-out come from real_data.json: a config measured again at +3.5
    points moves into the verdict's list of those at the target, with its new figures in the table."""
    path = repo / "bench/results/real_data.json"
    if not path.is_file():
        pytest.skip("no bench/results/real_data.json: run scripts/real_results.sh")
    records = json.loads(path.read_text())
    record = next(r for r in records if r["shipped"] and 100 * r["gain"] < 3)
    record["adapter"] = record["baseline"] + 0.035
    record["gain"] = 0.035
    path.write_text(json.dumps(records))
    assert speed_docs.write(repo) == ["README.md"]
    readme = (repo / "README.md").read_text()
    row = _row(readme, f"| {record['name']} (shipped) |")
    assert f"| {record['adapter']:.3f} ± {record['adapter_std']:.3f} |" in row and "| +3.5 |" in row
    target = _row(readme, "- **At least +3 points")
    assert f"{record['name']} (+3.5)" in target.split("**short of it**")[0]
