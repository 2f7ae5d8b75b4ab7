"""The Space (spaces/app.py): its handlers as plain functions, then the launched app through gradio_client.

Everything runs the real engine on the tiny adapters of the ``tiny_runs`` fixture (real forward
passes of the embedded base model). The handler tests load them once and watch the engine
through :class:`Spy`, which records each model call and forwards it; the API tests launch the
real app in-process. Outputs of a barely trained adapter are checked for their structure
(labels from the taxonomy, non-empty text, one row per input row), never for exact strings.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest
import torch

from catalog_lora.catalogs.background import find_job
from catalog_lora.inference.engine import Engine
from catalog_lora.runs.folder import RunInfo, read_run_info

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "spaces"))  # the Space's own modules sit beside its app.py

from catalog_space import about, batch_runs, dataset, handlers  # noqa: E402
from catalog_space import models as pool  # noqa: E402
from catalog_space.models import Models  # noqa: E402
from catalog_space.settings import Settings, read_settings, resolve_source  # noqa: E402
from catalog_space.ui import build_demo, launch  # noqa: E402

ADAPTER_ENV = {
    "tag": "CATALOG_LORA_TAG_ADAPTER",
    "category": "CATALOG_LORA_CATEGORY_ADAPTER",
    "describe": "CATALOG_LORA_DESCRIBE_ADAPTER",
}
TASKS = {"tag": "tagging", "category": "category", "describe": "description"}

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_LIVE: dict = {}


def launch_space(tiny_runs: dict[str, Path]):
    """The real app on the tiny adapters, built by ``build_demo`` and launched once per session: ``(models, url)``."""
    if "url" not in _LIVE:
        environ = {ADAPTER_ENV[name]: str(tiny_runs[TASKS[name]]) for name in ADAPTER_ENV}
        jobs = tempfile.mkdtemp(prefix="space-train-jobs-")
        atexit.register(shutil.rmtree, jobs, True)
        # Train tab jobs evaluate on a few rows and validate every 2 steps: tiny real runs, like tiny_runs
        settings = replace(
            read_settings(REPO / "spaces" / "adapters.yaml", environ=environ),
            train_dir=jobs,
            train_eval_examples=6,
            train_eval_every=2,
        )
        models = Models(settings)
        models.load()
        assert all(slot.problem is None for slot in models.slots.values()), models.slots
        demo = build_demo(models)
        port = free_port()
        launch(demo, models, port=port, host="127.0.0.1", prevent_thread_lock=True, quiet=True)
        atexit.register(demo.close)
        _LIVE.update(models=models, url=f"http://127.0.0.1:{port}/")
    return _LIVE["models"], _LIVE["url"]


# --------------------------------------------------------------------------- the real engine, watched


@dataclass
class Call:
    kind: str
    name: str
    texts: list[str]
    attributes: object
    options: dict
    result: object = None


class Spy:
    """The real engine with every model call recorded (arguments and real results) before it is forwarded.

    ``fail_on`` injects a fault: a call whose texts include it raises instead of reaching the model."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.calls: list[Call] = []
        self.fail_on: str | None = None

    def __getattr__(self, attribute):  # spec, prompt_for, tokenizer, precision…: the engine's own
        return getattr(self.engine, attribute)

    def _record(self, kind, name, texts, attributes, options) -> Call:
        call = Call(kind, name, list(texts), attributes, dict(options))
        self.calls.append(call)
        if self.fail_on is not None and self.fail_on in call.texts:
            raise RuntimeError(f"injected model failure on {self.fail_on!r}")
        return call

    def predict(self, name, texts, attributes=None, **options):
        call = self._record("predict", name, texts, attributes, options)
        call.result = self.engine.predict(name, texts, attributes, **options)
        return call.result

    def stream(self, name, text, attributes=None, **options):
        call = self._record("stream", name, [text], attributes, options)
        call.result = []
        for answer in self.engine.stream(name, text, attributes, **options):
            call.result.append(answer)
            yield answer

    def labels(self, name: str) -> list[str]:
        return self.engine.spec(name).taxonomy.labels


@pytest.fixture(scope="module")
def bare():
    """The adapters of an app with none found: it must start anyway, every tab saying why."""
    environ = {
        "CATALOG_LORA_ADAPTERS_FILE": str(REPO / "spaces" / "no-such-file.yaml"),
        "CATALOG_LORA_TAG_ADAPTER": "./runs/no-such-adapter",
        "CATALOG_LORA_CATEGORY_ADAPTER": "",
        "CATALOG_LORA_DESCRIBE_ADAPTER": "",
    }
    return Models(read_settings(environ=environ))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread for this module: on a small, shared CPU two threads spin against each
    other and against the other jobs (a one-row prediction took 6-10x longer); the model is tiny."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(tiny_runs):
    """The three tiny adapters on one base model, loaded once, as the app loads them."""
    return Engine.load({name: str(tiny_runs[task]) for name, task in TASKS.items()}, quantization="auto")


@pytest.fixture(scope="module")
def references():
    """The reference indexes of the tiny runs, opened once for the module."""
    return {}


@pytest.fixture
def spy(engine):
    return Spy(engine)


@pytest.fixture
def models(spy, references):
    """The Space's adapter pool served by the watched engine."""
    served = Models(Settings(adapters={}, max_rows=5000, max_file_size_mb=10))
    for name in TASKS:
        served.use(name, spy)
    served._references = references
    return served


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


class Recorder:
    """Stands in for gr.Progress."""

    def __init__(self):
        self.steps = []

    def __call__(self, progress, desc=None, total=None, unit="steps"):
        self.steps.append(progress)


def shown_labels(value) -> list[str]:
    """The labels a ``gr.Label`` value shows: its scores' keys, or the comma-joined answer."""
    if isinstance(value, dict):
        return list(value)
    return [label for label in str(value).split(", ") if label]


def column_labels(cells) -> list[str]:
    return [label for cell in cells for label in str(cell).split(", ") if label]


# --------------------------------------------------------------------------- the files of the Space


def test_space_folder_is_not_a_package_and_pins_what_it_needs():
    spaces = REPO / "spaces"
    assert not (spaces / "__init__.py").exists(), "spaces/ must not shadow the ZeroGPU `spaces` package"
    front = (spaces / "README.md").read_text(encoding="utf-8").split("---")[1]
    assert f"sdk_version: {gr.__version__}" in front
    assert "sdk: gradio" in front and "app_file: app.py" in front and "license: apache-2.0" in front
    pins = dict(line.split("==") for line in (spaces / "requirements.txt").read_text().splitlines() if "==" in line)
    assert pins["gradio"] == gr.__version__
    for package in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "pandas", "openpyxl", "chromadb"):
        assert package in pins


def test_settings_come_from_yaml_and_env(tmp_path):
    config = write(tmp_path / "adapters.yaml", "adapters:\n  tag: user/tags\n  category: ./runs/c\nmax_rows: 10\n")
    settings = read_settings(
        config, environ={"CATALOG_LORA_CATEGORY_ADAPTER": "user/cats", "CATALOG_LORA_MAX_ROWS": "7"}
    )
    assert settings.adapters == {"tag": "user/tags", "category": "user/cats", "describe": None}
    assert settings.max_rows == 7 and settings.quantization == "auto"
    default = read_settings(REPO / "spaces" / "adapters.yaml", environ={})
    assert default.adapters == {
        "tag": "./runs/sample-tagging",
        "category": "./runs/sample-category",
        "describe": "./runs/sample-description",
    }
    assert resolve_source("user/tags", "tagging") == ("user/tags", None)
    assert resolve_source(["./runs/none", "user/tags"], "tagging") == ("user/tags", None)
    run = tmp_path / "run"
    run.mkdir()
    assert "not a finished" in resolve_source(str(run), "tagging")[1]
    RunInfo(task="tagging").save(run)
    assert resolve_source([str(run), "user/tags"], "tagging") == (str(run.resolve()), None)
    assert resolve_source("./runs/none", "tagging")[1].count("training/configs/sample_tagging.yaml") == 1


def test_missing_adapters_switch_their_tabs_off(bare):
    assert isinstance(build_demo(bare), gr.Blocks)
    assert all(slot.engine is None for slot in bare.slots.values()), "building the page loads nothing"
    assert "does not exist" in about.availability(bare, "tag")
    assert "no describe adapter is configured" in about.availability(bare, "describe")
    tags, notice, _, _ = handlers.tag(bare, "Smells great")
    assert tags is None and "not available" in notice
    category, notice = handlers.classify(bare, "Coconut oil")
    assert category is None and "not available" in notice
    assert "not available" in list(handlers.describe(bare, "Body wash"))[-1][1]
    assert "How to cite" in about.about_markdown(bare)
    assert "No training data" in dataset.browse_dataset(bare, "tag", "")[1]


def test_importing_the_app_loads_nothing():
    """``import spaces.app`` builds no page, loads no model and asks the Hub for nothing."""
    code = (
        "import sys, huggingface_hub.file_download as f\n"
        "def refuse(*a, **k): raise SystemExit('fetched from the Hub at import')\n"
        "f.hf_hub_download = refuse\n"
        "import spaces.app\n"
        "assert 'catalog_space.ui' in sys.modules\n"
        "loaded = [m for m in ('peft', 'chromadb', 'sentence_transformers') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "import gc, torch\n"
        "assert not [o for o in gc.get_objects() if isinstance(o, torch.nn.Module)], 'a model was built'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_empty_text_never_reaches_the_model(models, spy):
    assert "empty" in handlers.tag(models, "   \n ")[1]
    assert "empty" in handlers.classify(models, "")[1]
    assert "empty" in list(handlers.describe(models, " "))[-1][1]
    assert "empty" in handlers.compare(models, "tag", None)[4]
    assert (
        "no letters" in handlers.tag(models, "12345 ---")[1]
        and "no letters" in handlers.classify(models, "500 / 42")[1]
    )
    assert spy.calls == []


def test_tag_answers_from_the_taxonomy_with_its_references(models, spy):
    tags, notice, references_note, references = handlers.tag(
        models, "Smells amazing and lathers well, but the bottle is tiny."
    )
    [call] = spy.calls
    assert (
        call.kind == "predict"
        and call.name == "tag"
        and call.texts == ["Smells amazing and lathers well, but the bottle is tiny."]
    )
    prediction = call.result[0]
    assert tags == handlers.label_value(prediction, "tagging")
    assert tags == dict(sorted(prediction.confidence.items(), key=lambda kv: -kv[1])), "each tag with its probability"
    assert set(tags) == set(prediction.labels) and all(0 < p <= 1 for p in tags.values())
    assert set(prediction.labels) <= set(spy.labels("tag")) and not prediction.truncated
    assert "truncated" not in notice
    if (Path(spy.spec("tag").source) / "references").is_dir():
        assert "most similar" in references_note and len(references) == handlers.REFERENCES_K
        assert list(references.columns) == ["similarity", "training product", "tags"]


def test_long_text_is_truncated_with_a_notice(models, spy):
    window = spy.spec("tag").info.max_length
    tags, notice, _, _ = handlers.tag(models, "lathers well " * window)
    assert spy.calls[-1].result[0].truncated and f"{window}-token window" in notice
    assert set(shown_labels(tags)) <= set(spy.labels("tag")) | {"(no tags)"}
    _, notice, _, _ = handlers.tag(models, "x" * (handlers.MAX_INPUT_CHARS + 10))
    assert f"first {handlers.MAX_INPUT_CHARS:,}" in notice
    assert spy.calls[-1].texts == ["x" * handlers.MAX_INPUT_CHARS]
    # the stream does not say it cut the text: the notice comes from the engine's own prompt
    steps = list(handlers.describe(models, "Lavender body wash " * 100))
    assert "truncated" in steps[0][1] and "truncated" in steps[-1][1]


def test_describe_streams_and_classify_ranks(models, spy):
    steps = list(handlers.describe(models, "Lavender Body Wash", "brand: Dermaleaf; category: Personal Care"))
    [call] = spy.calls
    assert (call.kind, call.name, call.texts) == ("stream", "describe", ["Lavender Body Wash"])
    assert call.attributes == {"brand": "Dermaleaf", "category": "Personal Care"}
    texts = [step[0] for step in steps]
    assert texts[0] == "" and texts[-1] == (call.result[-1] if call.result else "")
    assert texts[1:-1] == call.result, "every piece of the stream reaches the page"
    assert all(a == b[: len(a)] for a, b in zip(call.result, call.result[1:], strict=False)), "the answer grows"
    if texts[-1].strip():
        assert len(set(call.result)) >= 2, "the answer arrives in pieces"
    else:
        assert "empty description" in steps[-1][1]

    ranked, notice = handlers.classify(models, "Organic Cold-Pressed Virgin Coconut Oil, 500 ml")
    call = spy.calls[-1]
    assert call.name == "category" and call.options["top_k"] == 5
    assert isinstance(ranked, dict) and 1 <= len(ranked) <= 5
    assert set(ranked) <= set(spy.labels("category"))
    assert list(ranked.values()) == sorted(ranked.values(), reverse=True)

    base_labels, tuned_labels, base, tuned, _ = handlers.compare(models, "describe", "Body wash")
    assert [(c.name, c.options["use_adapter"]) for c in spy.calls[-2:]] == [("describe", False), ("describe", True)]
    assert (base, tuned) == tuple(c.result[0].text for c in spy.calls[-2:]) and base_labels is tuned_labels is None
    base_labels, tuned_labels, _, _, _ = handlers.compare(models, "category", "Coconut oil")
    adapter = spy.calls[-1].result[0]
    assert tuned_labels == {adapter.labels[0]: adapter.confidence[adapter.labels[0]]} and isinstance(base_labels, dict)


def test_low_confidence_answers_are_marked_for_review(models, spy, monkeypatch):
    info = spy.spec("tag").info
    monkeypatch.setattr(info, "review_threshold", 1.01)  # every answer is below it
    tags, notice, _, _ = handlers.tag(models, "Smells amazing and lathers well")
    assert "Low confidence — review" in notice and "101%" in notice
    assert all(label in notice for label in tags)
    monkeypatch.setattr(info, "review_threshold", 0.0)
    assert "review" not in handlers.tag(models, "Smells amazing and lathers well")[1]


def test_corrupt_reference_index_gives_a_notice(models, spy, tmp_path):
    run = tmp_path / "run"
    (run / "references").mkdir(parents=True)
    RunInfo(task="tagging").save(run)
    write(run / "references" / "chroma.sqlite3", b"this is not a database")
    models.slots["tag"].source = str(run)
    models._references = {}
    tags, notice, references_note, references = handlers.tag(models, "Smells great")
    assert tags == handlers.label_value(spy.calls[-1].result[0], "tagging") and "wrong" not in notice
    assert "No training references" in references_note and references.empty


def test_a_model_error_is_the_handlers_normal_error_path(models, spy):
    spy.fail_on = "Smells great"
    tags, notice, _, _ = handlers.tag(models, "Smells great")
    assert tags is None and "Something went wrong" in notice and "injected model failure" in notice
    spy.fail_on = "Body wash"
    steps = list(handlers.describe(models, "Body wash"))
    assert steps[-1][0] == "" and "injected model failure" in steps[-1][1]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "empty"),
        ("latin1.csv", "title\nCr\xe8me br\xfbl\xe9e\n".encode("latin-1"), "not UTF-8"),
        ("header.csv", "title,price\n", "no rows"),
        ("notes.txt", "title\nx\n", "unsupported"),
    ],
)
def test_batch_refuses_unusable_files(models, spy, tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(gr.Error, match=message):
        batch_runs.batch(models, str(path), "title", ["tag"], progress=Recorder())
    assert "cannot be used" in batch_runs.inspect_upload(models, str(path))[2]
    assert spy.calls == []


def test_batch_limits_rows_size_and_columns(models, spy, tmp_path, monkeypatch):
    path = write(tmp_path / "ok.csv", "title\n" + "coconut oil\n" * 20)
    with pytest.raises(gr.Error, match="'name' is not in the file"):
        batch_runs.batch(models, str(path), "name", ["tag"], progress=Recorder())
    monkeypatch.setattr(models.settings, "max_rows", 10)
    with pytest.raises(gr.Error, match="20 rows; this Space processes at most 10 rows"):
        batch_runs.batch(models, str(path), "title", ["tag"], progress=Recorder())
    monkeypatch.setattr(models.settings, "max_file_size_mb", 0.0001)
    with pytest.raises(gr.Error, match="limited to 0.0001 MB"):
        batch_runs.batch(models, str(path), "title", ["tag"], progress=Recorder())
    assert spy.calls == []


def test_batch_keeps_every_row_and_marks_the_bad_ones(models, spy, tmp_path):
    csv = (
        "id,title,category\n"
        "1,Coconut oil 500 ml,Food\n"
        "2,,Food\n"
        "3,=SUM(A1),Food\n"
        "4,Dark chocolate,Food,EXTRA\n"
        "5,BOOM bar,Food\n"
        '6,"Tea, green",Drinks\n'
    )
    path = write(tmp_path / "catalog.csv", csv)
    dropdown, preview, found, run = batch_runs.inspect_upload(models, str(path))
    assert dropdown.choices == [("id", "id"), ("title", "title"), ("category", "category")]
    assert dropdown.value == "title" and "1 malformed" in found and len(preview) == 6
    assert "choose at least one job" in found and run.interactive is False, "no job is pre-checked"
    notice, run = batch_runs.batch_readiness(models, str(path), "title", ["tag"])
    assert run.interactive is True and "Press **Run**" in notice
    spy.fail_on = "BOOM bar"  # fault injection: the model fails on this row, and on it only
    progress = Recorder()
    preview, out_path, summary = batch_runs.batch(models, str(path), "title", ["tag", "category"], progress=progress)
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert list(out["id"]) == ["1", "2", "3", "4", "5", "6"]
    assert list(out.columns) == [
        "id",
        "title",
        "category",
        "predicted_tags",
        "tags_confidence",
        "predicted_category",
        "category_confidence",
        "needs_review",
        "error",
    ]
    assert list(preview.columns)[:2] == ["predicted_tags", "tags_confidence"], "predictions first in the preview"
    assert list(out["category"]) == ["Food"] * 5 + ["Drinks"], "an input column must never be overwritten"
    assert out.loc[2, "title"] == "'=SUM(A1)", "formula cells are escaped"
    errors = list(out["error"])
    assert errors[0] == "" and errors[2] == "" and errors[5] == ""
    assert "empty title" in errors[1]
    assert "malformed row" in errors[3]
    assert "tag: injected model failure" in errors[4] and "category: injected model failure" in errors[4]
    processed = [0, 2, 3, 5]
    assert all(out.loc[processed, "predicted_tags"]) and all(out.loc[processed, "predicted_category"])
    assert set(column_labels(out.loc[processed, "predicted_tags"])) <= set(spy.labels("tag"))
    assert set(out.loc[processed, "predicted_category"]) <= set(spy.labels("category"))
    assert out.loc[1, ["predicted_tags", "predicted_category"]].tolist() == ["", ""]
    assert out.loc[4, ["predicted_tags", "predicted_category"]].tolist() == ["", ""]
    for job, answers, scores in (
        ("tag", "predicted_tags", "tags_confidence"),
        ("category", "predicted_category", "category_confidence"),
    ):
        threshold = spy.spec(job).info.review_threshold
        for i in processed:
            values = [float(x) for x in out.loc[i, scores].split(", ")]
            assert len(values) == len(out.loc[i, answers].split(", ")) and all(0 < v <= 1 for v in values)
            name = "tags" if job == "tag" else "category"
            assert (name in out.loc[i, "needs_review"].split("; ")) == any(v < threshold for v in values)
    assert out.loc[1, ["tags_confidence", "needs_review"]].tolist() == ["", ""]
    done = {text for call in spy.calls if call.result for text in call.texts}
    assert done == {"Coconut oil 500 ml", "=SUM(A1)", "Dark chocolate", "Tea, green"}, "the other rows went through"
    assert "6 rows" in summary and "3 marked" in summary
    assert progress.steps[-1] == (12, 12)
    assert all(text.strip() for call in spy.calls for text in call.texts), "empty texts are never sent to the model"


def test_batch_xlsx(models, spy, tmp_path):
    path = tmp_path / "catalog.xlsx"
    pd.DataFrame({"sku": ["a", "b"], "Product": ["Coconut oil", "Basmati rice"], 2024: ["x", "y"]}).to_excel(
        path, index=False
    )
    dropdown, _, notice, run = batch_runs.inspect_upload(models, str(path))
    assert dropdown.value is None and ("2024", "2024") in dropdown.choices, "the text column is never guessed"
    assert "choose the text column" in notice and run.interactive is False
    with pytest.raises(gr.Error, match="choose the text column"):
        batch_runs.batch(models, str(path), None, ["category"], progress=Recorder())
    assert spy.calls == []
    _, out_path, _ = batch_runs.batch(models, str(path), "Product", ["category"], progress=Recorder())
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert list(out.columns) == [
        "sku",
        "Product",
        "2024",
        "predicted_category",
        "category_confidence",
        "needs_review",
        "error",
    ]
    assert list(out["sku"]) == ["a", "b"] and list(out["error"]) == ["", ""]
    assert set(out["predicted_category"]) <= set(spy.labels("category"))
    assert [text for call in spy.calls for text in call.texts] == ["Coconut oil", "Basmati rice"]


def test_batch_with_repeated_header_names(models, spy, tmp_path):
    path = write(tmp_path / "twice.csv", "title,title\nCoconut oil,Oil\n")
    _, out_path, _ = batch_runs.batch(models, str(path), "title_2", ["tag"], progress=Recorder())
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert list(out.columns) == ["title", "title_2", "predicted_tags", "tags_confidence", "needs_review", "error"]
    assert spy.calls[-1].texts == ["Oil"] and len(out) == 1 and out.loc[0, "title"] == "Coconut oil"
    assert out.loc[0, "predicted_tags"] and set(column_labels(out["predicted_tags"])) <= set(spy.labels("tag"))


def test_batch_marks_letterless_rows_as_the_tag_tab_refuses_them(models, spy, tmp_path):
    """Prices and SKUs get no confident tags: each letterless row is marked, none reaches the model."""
    path = write(tmp_path / "prices.csv", "sku,title\n1001,129.99\n1002,4711 / 12\n1003,Coconut oil\n1004,=1+1\n")
    _, out_path, summary = batch_runs.batch(models, str(path), "title", ["tag", "category"], progress=Recorder())
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert list(out["sku"]) == ["1001", "1002", "1003", "1004"]
    for row in (0, 1, 3):
        assert "no letters in title" in out.loc[row, "error"]
        assert out.loc[row, ["predicted_tags", "tags_confidence", "predicted_category", "needs_review"]].tolist() == [
            "", "", "", ""]
    assert out.loc[2, "error"] == "" and out.loc[2, "predicted_tags"] and out.loc[2, "predicted_category"]
    assert {text for call in spy.calls for text in call.texts} == {"Coconut oil"}
    assert "3 marked" in summary and "no letters in title" in summary
    assert "no letters" in handlers.tag(models, "129.99")[1], "the Tag tab refuses the same texts"


def test_batch_says_how_the_file_was_read(models, spy, tmp_path):
    """A semicolon-separated .csv whose header repeats a name: read, and both said before Run."""
    path = write(tmp_path / "export.csv", "title;title;price\nCoconut oil;Oil;-5\nGreen tea;Tea;+44 20 7946 0000\n")
    notice, run = batch_runs.batch_readiness(models, str(path), "title_2", ["category"])
    assert run.interactive is True and "2 rows and 3 columns" in notice
    assert "read as semicolon-separated" in notice
    assert "repeats a column name: 'title' (columns 1, 2)" in notice
    _, out_path, _ = batch_runs.batch(models, str(path), "title_2", ["category"], progress=Recorder())
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert list(out["title_2"]) == ["Oil", "Tea"] and list(out["price"]) == ["-5", "+44 20 7946 0000"]


def test_batch_runs_in_the_background_and_keeps_what_is_done(models, spy, tmp_path, monkeypatch):
    """The Run button starts a job that outlives the page; each finished chunk is saved, so a fault
    (injected here on the third row's chunk) loses only the rows not yet done."""
    monkeypatch.setattr(batch_runs, "CHUNK_ROWS", 2)
    real_chunk = batch_runs.run_chunk

    def chunk_or_fault(served, chunk, *args):
        if "STOP" in chunk["title"].tolist():
            raise RuntimeError("injected fault: the machine went away")
        return real_chunk(served, chunk, *args)

    monkeypatch.setattr(batch_runs, "run_chunk", chunk_or_fault)
    path = write(tmp_path / "catalog.csv", "id,title\n1,Coconut oil\n2,Basmati rice\n3,STOP\n4,Green tea\n")
    job_id, timer, notice = batch_runs.start_batch(models, str(path), "title", ["category"])
    assert timer.active is True and job_id
    job = find_job(job_id).wait()
    bar, preview, download, notice, timer = batch_runs.batch_status(job_id)
    assert job.status == "failed" and "stopped after 2 of 4 rows" in notice and timer.active is False
    assert 'value="2"' in bar and 'max="4"' in bar
    out = pd.read_csv(download, dtype=str, keep_default_na=False)
    assert list(out["id"]) == ["1", "2"] and all(out["predicted_category"]) and all(out["category_confidence"])
    assert list(preview.columns)[:3] == ["predicted_category", "category_confidence", "needs_review"]

    monkeypatch.setattr(batch_runs, "run_chunk", real_chunk)
    job_id, _, _ = batch_runs.start_batch(models, str(path), "title", ["category"])
    find_job(job_id).wait()
    _, _, download, notice, timer = batch_runs.batch_status(job_id)
    assert "Done: 4 rows" in notice and timer.active is False and download.endswith("catalog-predictions.csv")
    assert list(pd.read_csv(download, dtype=str)["id"]) == ["1", "2", "3", "4"]


@pytest.mark.slow
@pytest.mark.timeout(2400)  # minutes of CPU on its own, plus the tiny_runs fixture when it runs alone
def test_batch_of_5000_rows_completes_with_progress(models, spy, tmp_path, monkeypatch):
    """5,000 real predictions: the category job (the shorter answer), one forward pass per chunk of rows."""
    monkeypatch.setattr(pool, "BATCH_ROWS", batch_runs.CHUNK_ROWS)
    rows = "\n".join(f"{i},Oil {i}" for i in range(5000))
    path = write(tmp_path / "big.csv", "id,title\n" + rows + "\n")
    progress = Recorder()
    _, out_path, summary = batch_runs.batch(models, str(path), "title", ["category"], progress=progress)
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert len(out) == 5000 and list(out["id"]) == [str(i) for i in range(5000)]
    assert list(out["title"]) == [f"Oil {i}" for i in range(5000)]
    assert list(out.columns) == ["id", "title", "predicted_category", "category_confidence", "needs_review", "error"]
    assert (out["error"] == "").all()
    assert set(out["predicted_category"]) <= set(spy.labels("category")), "constrained to the taxonomy"
    assert sorted(text for call in spy.calls for text in call.texts) == sorted(out["title"]), "each row once"
    done = [step[0] for step in progress.steps]
    assert done == sorted(done) and progress.steps[-1] == (5000, 5000) and len(done) > 20
    assert max(b - a for a, b in zip(done, done[1:], strict=False)) <= batch_runs.CHUNK_ROWS, "progress moves steadily"
    assert "5,000 rows" in summary


# --------------------------------------------------------------------------- the launched app, through its API


@pytest.fixture(scope="module")
def client(tiny_runs, tmp_path_factory):
    from gradio_client import Client

    _, url = launch_space(tiny_runs)
    return Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def test_api_names(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/tag", "/describe", "/classify", "/batch", "/compare"} <= names


def test_api_tag(client, tiny_runs):
    tags, notice, references_note, references = client.predict("Smells amazing and lathers well", api_name="/tag")
    assert tags["label"], tags
    confidences = {c["label"]: c["confidence"] for c in tags["confidences"]}
    assert tags["label"] in confidences and all(0 < p <= 1 for p in confidences.values()), tags
    if (tiny_runs["tagging"] / "references").is_dir():
        assert "most similar" in references_note and len(references["data"]) == 5
    _, notice, _, _ = client.predict("   ", api_name="/tag")
    assert "empty" in notice


def test_api_describe_streams(client):
    job = client.submit("Lavender Body Wash, 400 ml", "brand: Dermaleaf", api_name="/describe")
    description, notice, _, _ = job.result()
    assert isinstance(description, str) and "wrong" not in notice
    assert len(job.outputs()) >= 2, "the answer arrives in pieces"


def test_api_classify(client):
    category, _ = client.predict("Organic Coconut Oil, 500 ml", api_name="/classify")
    assert category["label"]
    assert 1 <= len(category.get("confidences") or []) <= 5
    assert all(0 < c["confidence"] <= 1 for c in category["confidences"])


def test_api_tag_batches_concurrent_users_each_getting_its_own_answer(client, tiny_runs):
    """Eight users ask /tag at once: each gets the tags of its own product (as the engine answers that
    product alone), and the app answered them in fewer model calls than requests."""
    from gradio_client import Client

    models, url = launch_space(tiny_runs)
    engine = models.engine("tag")
    texts = [
        "Smells amazing and lathers well",
        "Way too pricey for such a tiny bottle",
        "The pump broke on day two",
        "Gentle on my sensitive skin",
        "Leaves my skin dry and tight",
        "Love the fresh citrus scent",
        "Rinses off clean, no residue",
        "The bottle leaked in my bag",
    ]
    users = [client] + [Client(url, verbose=False, analytics_enabled=False) for _ in texts[1:]]
    before = models.batches
    jobs = [user.submit(text, api_name="/tag") for user, text in zip(users, texts, strict=True)]
    answers = [job.result(timeout=120)[0] for job in jobs]
    for text, answer in zip(texts, answers, strict=True):
        alone = engine.predict("tag", [text])[0]
        confidences = {c["label"]: c["confidence"] for c in answer["confidences"]}
        assert sorted(confidences) == sorted(alone.labels), (text, answer, alone)
        assert confidences == pytest.approx(alone.confidence, abs=1e-3), (text, answer, alone)
    assert models.batching and models.batches - before < len(texts)


def test_api_batch_round_trip(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = write(tmp_path / "products.csv", "id,title\n1,Coconut oil 500 ml\n2,\n3,=1+1\n4,Dark chocolate 70%\n")
    preview, out_path, summary = client.predict(handle_file(str(path)), "title", ["tag", "category"], api_name="/batch")
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert list(out["id"]) == ["1", "2", "3", "4"], "one output row per input row"
    assert {
        "predicted_tags",
        "tags_confidence",
        "predicted_category",
        "category_confidence",
        "needs_review",
        "error",
    } <= set(out.columns)
    assert out.loc[0, "category_confidence"] and 0 < float(out.loc[0, "category_confidence"]) <= 1
    assert out.loc[2, "title"] == "'=1+1"
    assert "empty title" in out.loc[1, "error"]
    assert out.loc[1, "predicted_tags"] == "" and out.loc[0, "predicted_category"] != ""
    assert "4 rows" in summary and len(preview["data"]) == 4

    bad = write(tmp_path / "latin1.csv", "title\nCr\xe8me\n".encode("latin-1"))
    with pytest.raises(AppError, match="not UTF-8"):
        client.predict(handle_file(str(bad)), "title", ["tag"], api_name="/batch")


def test_about_shows_the_run_files(tiny_runs):
    models, _ = launch_space(tiny_runs)
    text = about.about_markdown(models)
    assert "task: **tagging**" in text and "Label taxonomy" in text
    assert str(tiny_runs["tagging"]) not in text and str(tiny_runs["tagging"].parent) not in text, "no server paths"
    assert "local run(s), not published" in text and text.count("hu2021lora") == 1 and "2025" not in text
    assert [caption for _, caption in about.adapter_plots(models.slots["tag"])] == [
        "Training and validation loss",
        "Base vs adapter vs baseline (test split)",
        "F1 per tag (test split)",
    ]
    assert json.loads((tiny_runs["tagging"] / "catalog_lora.json").read_text())["task"] == "tagging"


def test_the_space_says_what_a_head_is_served_in_and_why(tagging_head_with_neighbours):
    from catalog_lora.inference.bf16_check import serving_quantization

    models = Models(Settings(adapters={"tag": str(tagging_head_with_neighbours)}))
    models.load()
    slot = models.slots["tag"]
    info = read_run_info(str(tagging_head_with_neighbours))
    expected, why = serving_quantization("auto", info, "cpu")
    assert slot.engine.precision.quantization == expected
    assert why and slot.precision.endswith(why)
    assert f"- served in {slot.precision}" in about.about_markdown(models)


def test_classify_and_batch_give_the_brand_to_an_adapter_trained_with_it(category_head_with_brand, branded_category_data, tmp_path):
    from catalog_lora.catalogs.batch import predict_table
    from catalog_lora.records.dataset_files import load_split

    models = Models(Settings(adapters={"category": str(category_head_with_brand)}))
    models.load()
    engine = models.engine("category")
    test = [r for r in load_split(branded_category_data, "test") if r.get("attributes")]
    texts, attributes = [r["text"] for r in test], [r["attributes"] for r in test]
    expected = engine.predict("category", texts, attributes, top_k=5)
    for text, extra, prediction in zip(texts, attributes, expected, strict=True):
        value, notice = handlers.classify(models, text, None, f"brand: {extra['brand']}")
        shown = handlers.label_value(prediction, "category")  # a batch of one here: the scores agree to float noise
        assert list(value) == list(shown) and all(abs(value[label] - shown[label]) < 1e-4 for label in shown)
        assert "trained with each product's brand" not in notice
    # given no brand (or another attribute only), the answer comes with a notice that says what it missed
    for given in ("", "color: red"):
        _, notice = handlers.classify(models, texts[0], None, given)
        assert "trained with each product's brand beside its name" in notice and "`brand: …`" in notice
    frame = pd.DataFrame({"title": texts, "brand": [extra["brand"] for extra in attributes]})
    served = pool.run_chunk(models, frame, "title", ["category"])
    options = dict(batch_size=pool.BATCH_ROWS, confidence=True)
    with_brand = predict_table(engine, frame, "title", ["category"], attribute_columns=["brand"], **options)
    title_only = predict_table(engine, frame, "title", ["category"], **options)
    pd.testing.assert_frame_equal(served, with_brand)
    assert list(served["category_confidence"]) != list(title_only["category_confidence"]), "the file's brand column is read"
    # before the run, the Batch tab says when the file has no column the adapter was trained with
    frame.to_csv(tmp_path / "branded.csv", index=False)
    frame[["title"]].to_csv(tmp_path / "titles.csv", index=False)
    notice, run = batch_runs.batch_readiness(models, str(tmp_path / "branded.csv"), "title", ["category"])
    assert run.interactive and "no such column" not in notice
    notice, run = batch_runs.batch_readiness(models, str(tmp_path / "titles.csv"), "title", ["category"])
    assert run.interactive and "was trained with `brand` beside the text, and the file has no such column" in notice
