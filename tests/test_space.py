"""The Space (spaces/app.py): its handlers as plain functions, then the launched app through gradio_client.

The handler tests use a fake engine (fast, and it records every model call); the API tests
launch the real app in-process on the tiny adapters of the ``tiny_runs`` fixture.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd
import pytest

from catalog_lora.engine import Prediction
from catalog_lora.run_files import RunInfo

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "spaces" / "app.py"
ADAPTER_ENV = {
    "tag": "CATALOG_LORA_TAG_ADAPTER",
    "category": "CATALOG_LORA_CATEGORY_ADAPTER",
    "describe": "CATALOG_LORA_DESCRIBE_ADAPTER",
}
TASKS = {"tag": "tagging", "category": "category", "describe": "description"}

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def load_app(module_name: str, **env: str):
    """A fresh copy of spaces/app.py (it is not a package), configured by ``env`` at import."""
    with pytest.MonkeyPatch.context() as patch:
        for key in ("CATALOG_LORA_BASE_MODEL", "CATALOG_LORA_MAX_ROWS", "CATALOG_LORA_MAX_FILE_SIZE_MB"):
            patch.delenv(key, raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        spec = importlib.util.spec_from_file_location(module_name, APP)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_LIVE: dict = {}


def launch_space(tiny_runs: dict[str, Path]):
    """The real app on the tiny adapters, launched once per session: ``(module, url)``."""
    if "url" not in _LIVE:
        app = load_app(
            "space_app_live",
            **{ADAPTER_ENV[name]: str(tiny_runs[TASKS[name]]) for name in ADAPTER_ENV},
        )
        app.MODELS.load()
        assert all(slot.problem is None for slot in app.MODELS.slots.values()), app.MODELS.slots
        port = free_port()
        app.launch(app.demo, port=port, host="127.0.0.1", prevent_thread_lock=True, quiet=True)
        atexit.register(app.demo.close)
        _LIVE.update(app=app, url=f"http://127.0.0.1:{port}/")
    return _LIVE["app"], _LIVE["url"]


# --------------------------------------------------------------------------- a fake engine


class FakeEngine:
    """Answers like the engine, instantly; ``calls`` records every model call."""

    def __init__(self, truncate_over: int = 200):
        self.calls: list[tuple] = []
        self.truncate_over = truncate_over
        self.specs = {
            name: SimpleNamespace(info=RunInfo(task=task, max_length=64), taxonomy=None, source=f"fake-{name}")
            for name, task in TASKS.items()
        }
        self.tokenizer = None

    def spec(self, name):
        return self.specs[name]

    def predict(self, name, texts, attributes=None, *, use_adapter=True, top_k=0, batch_size=16, **options):
        self.calls.append(("predict", name, list(texts), use_adapter, top_k))
        if any("BOOM" in t for t in texts):
            raise RuntimeError("the model failed on this row")
        out = []
        for text in texts:
            truncated = len(text) > self.truncate_over
            if name == "tag":
                out.append(Prediction("Fragrance, Price", ["Fragrance", "Price"], truncated=truncated))
            elif name == "category":
                scores = {f"Grocery > Oils {i}": 1 / (i + 2) for i in range(top_k)} if top_k else {}
                out.append(Prediction("Grocery > Oils", ["Grocery > Oils"], scores, truncated=truncated))
            else:
                base = "" if use_adapter else "base: "
                out.append(Prediction(f"{base}A fine product: {text[:20]}", truncated=truncated))
        return out

    def stream(self, name, text, attributes=None, **options):
        self.calls.append(("stream", name, text, attributes))
        answer = ""
        for word in ["A", " gentle", " body", " wash."]:
            answer += word
            yield answer


@pytest.fixture(scope="module")
def app():
    """The app with no adapter found: it must start anyway, every tab saying why."""
    return load_app(
        "space_app_bare",
        CATALOG_LORA_ADAPTERS_FILE=str(REPO / "spaces" / "no-such-file.yaml"),
        CATALOG_LORA_TAG_ADAPTER="./runs/no-such-adapter",
        CATALOG_LORA_CATEGORY_ADAPTER="",
        CATALOG_LORA_DESCRIBE_ADAPTER="",
    )


@pytest.fixture
def fake(app, monkeypatch):
    engine = FakeEngine()
    models = app.Models(app.Settings(adapters={}))
    for name in TASKS:
        models.use(name, engine)
        models._references[name] = (None, "no index in this test")
    monkeypatch.setattr(app, "MODELS", models)
    monkeypatch.setattr(app, "SETTINGS", app.Settings(adapters={}, max_rows=5000, max_file_size_mb=10))
    return engine


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


def test_settings_come_from_yaml_and_env(app, tmp_path):
    config = write(tmp_path / "adapters.yaml", "adapters:\n  tag: user/tags\n  category: ./runs/c\nmax_rows: 10\n")
    settings = app.read_settings(config, environ={"CATALOG_LORA_CATEGORY_ADAPTER": "user/cats", "CATALOG_LORA_MAX_ROWS": "7"})
    assert settings.adapters == {"tag": "user/tags", "category": "user/cats", "describe": None}
    assert settings.max_rows == 7 and settings.quantization == "auto"
    default = app.read_settings(REPO / "spaces" / "adapters.yaml", environ={})
    assert default.adapters == {
        "tag": "./runs/sample-tagging",
        "category": "./runs/sample-category",
        "describe": "./runs/sample-description",
    }
    assert app.resolve_source("user/tags", "tagging") == ("user/tags", None)
    assert app.resolve_source(["./runs/none", "user/tags"], "tagging") == ("user/tags", None)
    run = tmp_path / "run"
    run.mkdir()
    assert "not a finished" in app.resolve_source(str(run), "tagging")[1]
    RunInfo(task="tagging").save(run)
    assert app.resolve_source([str(run), "user/tags"], "tagging") == (str(run.resolve()), None)
    assert app.resolve_source("./runs/none", "tagging")[1].count("training/configs/sample_tagging.yaml") == 1


def test_missing_adapters_switch_their_tabs_off(app):
    assert isinstance(app.demo, gr.Blocks)
    assert "does not exist" in app.availability("tag") and "no describe adapter is configured" in app.availability("describe")
    tags, notice, _, _ = app.tag("Smells great")
    assert tags is None and "not available" in notice
    category, notice = app.classify("Coconut oil")
    assert category is None and "not available" in notice
    assert "not available" in list(app.describe("Body wash"))[-1][1]
    assert "How to cite" in app.about_markdown()
    assert "No training data" in app.browse_dataset("tag", "")[1]


def test_empty_text_never_reaches_the_model(app, fake):
    assert "empty" in app.tag("   \n ")[1]
    assert "empty" in app.classify("")[1]
    assert "empty" in list(app.describe(" "))[-1][1]
    assert "empty" in app.compare("tag", None)[2]
    assert fake.calls == []


def test_long_text_is_truncated_with_a_notice(app, fake):
    tags, notice, _, _ = app.tag("lathers well " * 30)
    assert tags == "Fragrance, Price" and "truncated" in notice
    _, notice, _, _ = app.tag("x" * (app.MAX_INPUT_CHARS + 10))
    assert f"first {app.MAX_INPUT_CHARS:,}" in notice
    assert len(fake.calls[-1][2][0]) == app.MAX_INPUT_CHARS


def test_describe_streams_and_classify_ranks(app, fake):
    steps = list(app.describe("Lavender Body Wash", "brand: Dermaleaf; category: Personal Care"))
    texts = [step[0] for step in steps]
    assert texts[-1] == "A gentle body wash." and len(set(texts)) >= 4
    assert fake.calls[-1] == ("stream", "describe", "Lavender Body Wash", {"brand": "Dermaleaf", "category": "Personal Care"})
    ranked, _ = app.classify("Coconut oil")
    assert len(ranked) == 5 and fake.calls[-1][4] == 5
    base, tuned, _ = app.compare("describe", "Body wash")
    assert base.startswith("base: ") and not tuned.startswith("base: ")
    assert [call[3] for call in fake.calls[-2:]] == [False, True]


def test_corrupt_reference_index_gives_a_notice(app, fake, tmp_path):
    run = tmp_path / "run"
    (run / "references").mkdir(parents=True)
    RunInfo(task="tagging").save(run)
    write(run / "references" / "chroma.sqlite3", b"this is not a database")
    app.MODELS.slots["tag"].source = str(run)
    app.MODELS._references.clear()
    tags, _, references_note, references = app.tag("Smells great")
    assert tags == "Fragrance, Price"
    assert "No training references" in references_note and references.empty


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "empty"),
        ("latin1.csv", "title\nCr\xe8me br\xfbl\xe9e\n".encode("latin-1"), "not UTF-8"),
        ("header.csv", "title,price\n", "no rows"),
        ("notes.txt", "title\nx\n", "unsupported"),
    ],
)
def test_batch_refuses_unusable_files(app, fake, tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(gr.Error, match=message):
        app.batch(str(path), "title", ["tag"], progress=Recorder())
    assert "cannot be used" in app.inspect_upload(str(path))[2]
    assert fake.calls == []


def test_batch_limits_rows_size_and_columns(app, fake, tmp_path, monkeypatch):
    path = write(tmp_path / "ok.csv", "title\n" + "coconut oil\n" * 20)
    with pytest.raises(gr.Error, match="'name' is not in the file"):
        app.batch(str(path), "name", ["tag"], progress=Recorder())
    monkeypatch.setattr(app.SETTINGS, "max_rows", 10)
    with pytest.raises(gr.Error, match="20 rows; this Space processes at most 10 rows"):
        app.batch(str(path), "title", ["tag"], progress=Recorder())
    monkeypatch.setattr(app.SETTINGS, "max_file_size_mb", 0.0001)
    with pytest.raises(gr.Error, match="limited to 0.0001 MB"):
        app.batch(str(path), "title", ["tag"], progress=Recorder())
    assert fake.calls == []


def test_batch_keeps_every_row_and_marks_the_bad_ones(app, fake, tmp_path):
    csv = (
        "id,title,category\n"
        "1,Coconut oil 500 ml,Food\n"
        "2,,Food\n"
        "3,=1+1,Food\n"
        "4,Dark chocolate,Food,EXTRA\n"
        "5,BOOM bar,Food\n"
        "6,\"Tea, green\",Drinks\n"
    )
    path = write(tmp_path / "catalog.csv", csv)
    dropdown, preview, found = app.inspect_upload(str(path))
    assert dropdown.choices == [("id", "id"), ("title", "title"), ("category", "category")]
    assert dropdown.value == "title" and "1 malformed" in found and len(preview) == 6
    progress = Recorder()
    preview, out_path, summary = app.batch(str(path), "title", ["tag", "category"], progress=progress)
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert list(out["id"]) == ["1", "2", "3", "4", "5", "6"]
    assert list(out.columns) == ["id", "title", "category", "predicted_tags", "predicted_category", "error"]
    assert list(out["category"]) == ["Food"] * 5 + ["Drinks"], "an input column must never be overwritten"
    assert out.loc[2, "title"] == "'=1+1", "formula cells are escaped"
    errors = list(out["error"])
    assert errors[0] == "" and errors[5] == ""
    assert "empty title" in errors[1]
    assert "malformed row" in errors[3]
    assert "the model failed on this row" in errors[4]
    assert out.loc[0, "predicted_tags"] == "Fragrance, Price" and out.loc[0, "predicted_category"] == "Grocery > Oils"
    assert out.loc[1, "predicted_tags"] == "" and out.loc[4, "predicted_tags"] == ""
    assert "6 rows" in summary and "3 marked" in summary
    assert progress.steps[-1] == (12, 12)
    assert all(text.strip() for call in fake.calls for text in call[2]), "empty texts are never sent to the model"


def test_batch_xlsx(app, fake, tmp_path):
    path = tmp_path / "catalog.xlsx"
    pd.DataFrame({"sku": ["a", "b"], "Product": ["Coconut oil", "Basmati rice"], 2024: ["x", "y"]}).to_excel(path, index=False)
    dropdown, _, _ = app.inspect_upload(str(path))
    assert dropdown.value == "Product" and ("2024", "2024") in dropdown.choices
    _, out_path, _ = app.batch(str(path), None, ["category"], progress=Recorder())
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert list(out["predicted_category"]) == ["Grocery > Oils"] * 2 and list(out["error"]) == ["", ""]


def test_batch_with_repeated_header_names(app, fake, tmp_path):
    path = write(tmp_path / "twice.csv", "title,title\nCoconut oil,Oil\n")
    _, out_path, _ = app.batch(str(path), "title_2", ["tag"], progress=Recorder())
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert list(out.columns) == ["title", "title_2", "predicted_tags", "error"]
    assert fake.calls[-1][2] == ["Oil"]


def test_batch_of_5000_rows_completes_with_progress(app, fake, tmp_path):
    rows = "\n".join(f"{i},Product number {i}" for i in range(5000))
    path = write(tmp_path / "big.csv", "id,title\n" + rows + "\n")
    progress = Recorder()
    _, out_path, summary = app.batch(str(path), "title", ["tag", "category"], progress=progress)
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert len(out) == 5000 and list(out["id"]) == [str(i) for i in range(5000)]
    assert (out["predicted_tags"] == "Fragrance, Price").all() and (out["error"] == "").all()
    done = [step[0] for step in progress.steps]
    assert done == sorted(done) and progress.steps[-1] == (10000, 10000) and len(done) > 20
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


def test_api_batch_round_trip(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = write(tmp_path / "products.csv", "id,title\n1,Coconut oil 500 ml\n2,\n3,=1+1\n4,Dark chocolate 70%\n")
    preview, out_path, summary = client.predict(handle_file(str(path)), "title", ["tag", "category"], api_name="/batch")
    out = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert list(out["id"]) == ["1", "2", "3", "4"], "one output row per input row"
    assert {"predicted_tags", "predicted_category", "error"} <= set(out.columns)
    assert out.loc[2, "title"] == "'=1+1"
    assert "empty title" in out.loc[1, "error"]
    assert out.loc[1, "predicted_tags"] == "" and out.loc[0, "predicted_category"] != ""
    assert "4 rows" in summary and len(preview["data"]) == 4

    bad = write(tmp_path / "latin1.csv", "title\nCr\xe8me\n".encode("latin-1"))
    with pytest.raises(AppError, match="not UTF-8"):
        client.predict(handle_file(str(bad)), "title", ["tag"], api_name="/batch")


def test_about_shows_the_run_files(tiny_runs):
    app, _ = launch_space(tiny_runs)
    about = app.about_markdown()
    assert "task: **tagging**" in about and "Label taxonomy" in about
    assert json.loads((tiny_runs["tagging"] / "catalog_lora.json").read_text())["task"] == "tagging"
