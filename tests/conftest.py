"""Shared fixtures: the prepared sample catalog and tiny adapters really trained on it.

Tiny means a couple of optimizer steps: enough to produce every file of a real run
folder through the real training code, fast enough for the default suite.

The suite runs on pytest-xdist workers (``-n auto --dist loadfile`` in pyproject.toml): each module on one
worker, each worker with its share of the cores. The session's shared data and runs are built once for all
workers (:func:`built_once`), by whichever worker needs them first.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent
SHARED_RAW = Path(os.environ.get("CATALOG_LORA_SHARED_DATA", REPO.parent / "shared" / "data" / "raw"))

TINY = [
    "train.max_steps=2",
    "train.batch_size=4",
    "train.logging_steps=1",
    "data.max_eval_examples=6",
    "lora.r=4",
    "eval.batch_size=8",
    "eval.bf16_check=0",  # a head's bf16 agreement: two more model loads; measured by the shared heads below only
]


WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... under pytest-xdist; None in a plain run
if WORKER:
    # Each worker gets its share of the cores, set before torch is first imported and inherited by the
    # processes tests start: two workers each spinning two threads on two cores wait for each other
    # (a two-thread training ran several times slower beside another job).
    _threads = str(max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = _threads


def built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder ``build(folder)`` fills, built once for the whole test session: the first worker to ask
    builds it under a file lock, the others wait for that lock and reuse the folder. Tests read it and
    copy what they change."""
    root = tmp_path_factory.getbasetemp()
    if WORKER:
        root = root.parent  # the folder all workers' temporary folders share
    folder = root / "built" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    done = folder.with_name(f"{name}.done")
    with FileLock(folder.with_name(f"{name}.lock")):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def bf16_check() -> str:
    """The override that gives a tiny run the config's own bf16 check back: the heads most tests share measure
    it (their modules check it, and the Space reads it)."""
    from training.config import EvalSettings

    return f"eval.bf16_check={EvalSettings.bf16_check}"


def shared_file(relative: str) -> Path:
    """A file of ../shared/data/raw, or a skip that says why the test cannot run."""
    path = SHARED_RAW / relative
    if not path.is_file():
        pytest.skip(f"real data {relative} is not present under {SHARED_RAW} (set CATALOG_LORA_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    from datasets_prep.prepare import prepare_sample

    return built_once(tmp_path_factory, "sample-data", prepare_sample)


def train_tiny(config_name: str, data: Path, out: Path, *extra: str) -> Path:
    from training.config import load_config
    from training.train import train

    config = load_config(
        REPO / "training" / "configs" / config_name,
        [f"data.path={data}", f"output_dir={out}", *TINY, *extra],
    )
    return train(config)


class _Lines(logging.Handler):
    """A library's log records as the lines it would print."""

    def __init__(self, out: io.StringIO):
        super().__init__()
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.write(record.getMessage() + "\n")


def train_tiny_printed(config_name: str, data: Path, out: Path, *extra: str) -> tuple[Path, str]:
    """``train_tiny``, and all that the training printed: stdout, stderr and the log records of transformers,
    peft and accelerate (their handlers keep the stream they were made with, out of a redirection's reach).
    It is printed again as it came, so that a shared run's output still shows with the test it ran for."""
    printed = io.StringIO()
    handler = _Lines(printed)
    loggers = [logging.getLogger(name) for name in ("transformers", "peft", "accelerate")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with redirect_stdout(printed), redirect_stderr(printed):
            run = train_tiny(config_name, data, out, *extra)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        sys.stdout.write(printed.getvalue())
    return run, printed.getvalue()


def shared_run(tmp_path_factory, name: str, config_name: str, data: Path, *extra: str) -> Path:
    """A tiny run trained once for the session (:func:`built_once`): ``<name>/run``."""
    folder = built_once(tmp_path_factory, name, lambda folder: train_tiny(config_name, data, folder / "run", *extra))
    return folder / "run"


def shared_run_printed(tmp_path_factory, name: str, config_name: str, data: Path, *extra: str) -> tuple[Path, str]:
    """:func:`shared_run`, and what its training printed (kept beside it for the workers that did not train it)."""

    def build(folder: Path) -> None:
        _, printed = train_tiny_printed(config_name, data, folder / "run", *extra)
        (folder / "printed.txt").write_text(printed)

    folder = built_once(tmp_path_factory, name, build)
    return folder / "run", (folder / "printed.txt").read_text()


@pytest.fixture(scope="session")
def tiny_runs(sample_data, tmp_path_factory) -> dict[str, Path]:
    """Three generative adapters (tagging, category, description) as the Space uses them."""

    def build(root: Path) -> None:
        train_tiny("sample_tagging.yaml", sample_data / "tagging", root / "tagging")
        train_tiny("sample_category.yaml", sample_data / "category", root / "category")
        train_tiny(
            "sample_description.yaml", sample_data / "description", root / "description", "model.max_length=128",
            "model.max_new_tokens=24",
        )

    root = built_once(tmp_path_factory, "runs", build)
    return {task: root / task for task in ("tagging", "category", "description")}


@pytest.fixture(scope="session")
def tagging_head_trained(sample_data, tmp_path_factory) -> tuple[Path, str]:
    """A sigmoid-head tagging adapter of the sample (all 30 layers), trained once for the modules that read,
    check or publish one, and what its training printed."""
    return shared_run_printed(
        tmp_path_factory, "tagging-head", "sample_tagging_head.yaml", sample_data / "tagging", bf16_check()
    )


@pytest.fixture(scope="session")
def tagging_head(tagging_head_trained) -> Path:
    """The run folder of ``tagging_head_trained`` (publishing writes into a run folder: copy it first)."""
    return tagging_head_trained[0]


@pytest.fixture(scope="session")
def tagging_head_with_neighbours_trained(sample_data, tmp_path_factory) -> tuple[Path, str]:
    """A tagging head mixing its scores with its 5 nearest training examples and its TF-IDF model, on the first
    6 layers as the real runs do, with square-root class weights and its own rate for the new output layer; and
    what its training printed."""
    return shared_run_printed(
        tmp_path_factory, "tagging-head-neighbours", "sample_tagging_head.yaml", sample_data / "tagging",
        "references=true", "neighbours.k=5", "lexical.vote=true", "model.num_layers=6", "eval.base=false",
        "train.class_weight=sqrt", "train.head_lr=5e-3", bf16_check(),
    )


@pytest.fixture(scope="session")
def tagging_head_with_neighbours(tagging_head_with_neighbours_trained) -> Path:
    """The run folder of ``tagging_head_with_neighbours_trained`` (copy it before publishing)."""
    return tagging_head_with_neighbours_trained[0]


def prepare_branded(root: Path) -> None:
    """The sample's categories with a ``brand`` column (each title's first word: the sample's invented brands),
    prepared into ``root/category`` with the generic mapping and ``--attribute-column brand``."""
    import pandas as pd

    from datasets_prep.prepare import main as prepare

    frame = pd.read_csv(REPO / "datasets_prep" / "sample" / "categories.csv", dtype=str)
    frame["brand"] = [title.split()[0] for title in frame["title"]]
    frame.loc[0, "brand"] = ""
    frame.to_csv(root / "categories.csv", index=False)
    prepare([
        "--format", "generic", "--input", str(root / "categories.csv"), "--output", str(root / "category"),
        "--text-column", "title", "--path-column", "category", "--path-column", "sub_category",
        "--attribute-column", "brand",
    ])


@pytest.fixture(scope="session")
def branded_category_data(tmp_path_factory) -> Path:
    """The sample's categories with a brand column: records that carry a brand, as BigBasket's do; one title
    has none (:func:`prepare_branded`)."""
    return built_once(tmp_path_factory, "branded", prepare_branded) / "category"


@pytest.fixture(scope="session")
def category_head_with_brand(branded_category_data, tmp_path_factory) -> Path:
    """A category head reading each product's brand, mixed with its 5 nearest training examples and its
    TF-IDF model (both searched by ``title [brand]``), on the first 6 layers (copy it before publishing)."""
    return shared_run(
        tmp_path_factory, "category-head-brand", "sample_category_head.yaml", branded_category_data,
        "references=true", "neighbours.k=5", "lexical.vote=true", "model.num_layers=6", "eval.base=false",
        "train.head_lr=5e-3",
    )


@pytest.fixture(scope="session")
def description_examples(sample_data, tmp_path_factory) -> Path:
    """A description adapter whose prompts show the nearest training example, LoRA on the top 4 layers only,
    in a window (max_length 128) that often has to cut the example's answer (copy it before publishing)."""
    return shared_run(
        tmp_path_factory, "description-examples", "sample_description.yaml", sample_data / "description",
        "model.prompt_examples=1", "lora.layers=4", "model.max_length=128", "model.max_new_tokens=16", "eval.base=false",
    )


@pytest.fixture(scope="session")
def description_choice(sample_data, tmp_path_factory) -> Path:
    """A description head choosing among its 3 nearest training descriptions, on the first 4 layers
    (copy it before publishing)."""
    return shared_run(
        tmp_path_factory, "choice", "bigbasket_description_head.yaml", sample_data / "description",
        "model.prompt_examples=3", "model.num_layers=4", "train.max_minutes=0",
    )


@pytest.fixture(scope="session")
def head_cut_by_time(sample_data, tmp_path_factory) -> Path:
    """A category head whose time budget (0.0001 minutes) cuts it after its first step, in micro-batches of
    at most 64 tokens."""
    return shared_run(
        tmp_path_factory, "cut-by-time", "sample_category_head.yaml", sample_data / "category",
        "train.max_steps=200", "train.max_minutes=0.0001", "train.batch_tokens=64",
    )


def running_hub(root: Path, tokens: dict[str, str]) -> Iterator:
    """A Hub-compatible server on 127.0.0.1 for a module's tests, stopped when they are done."""
    from hub_server import HubServer
    from huggingface_hub import constants

    server = HubServer(root, tokens=tokens)
    server.start()
    with pytest.MonkeyPatch.context() as patch:  # LFS, not Xet (the client picks Xet whenever hf_xet is installed)
        patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        yield server
    server.stop()


@pytest.fixture
def hub_online(monkeypatch):
    """Other tests may switch the process to offline mode; the test server is local, so allow it."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def hub_client_env(hub, home: Path, token: str | None) -> dict:
    """Environment of a fresh client process: endpoint, token and an empty HF_HOME, all set before import."""
    from hub_server import CLIENT_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0",
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(REPO), **CLIENT_ENV)
    if token:
        env["HF_TOKEN"] = token
    return env


def upload_embedded_base(hub, token: str) -> str:
    """The embedded base checkpoint on the test server under its Hub id (``token`` must own that namespace)."""
    from huggingface_hub import HfApi

    from catalog_lora.model.base_model import EMBEDDED_HUB_ID, ensure_embedded_checkpoint

    api = HfApi(endpoint=hub.url, token=token)
    api.create_repo(EMBEDDED_HUB_ID)
    api.upload_folder(repo_id=EMBEDDED_HUB_ID, folder_path=ensure_embedded_checkpoint())
    return EMBEDDED_HUB_ID
