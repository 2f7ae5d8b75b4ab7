"""Training traps of issue 30: a failed start that spoils a finished run, impossible numbers that train,
a YAML typo that prints a traceback, and library noise on every CPU run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, train_tiny

from catalog_lora.runs.folder import COMPLETE_MARKER
from training.config import ConfigError, load_config
from training.data import DataError

CONFIG = REPO / "training" / "configs" / "sample_category.yaml"


def finished_run(folder: Path) -> dict[str, bytes]:
    """A run folder as a finished run leaves it (its files and ``COMPLETE``); their bytes, to compare later."""
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"the finished run's weights")
    (folder / "metrics.json").write_text('{"test": {}}\n')
    (folder / COMPLETE_MARKER).write_text("finished 2026-01-01 00:00:00\n")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_start_that_fails_early_leaves_the_finished_run_untouched(sample_data, tmp_path):
    out = tmp_path / "run"
    before = finished_run(out)
    with pytest.raises(DataError, match="prepare the data"):
        train_tiny("sample_category.yaml", tmp_path / "no-such-data", out)
    empty = tmp_path / "empty-validation"
    empty.mkdir()
    for split in ("train", "test"):
        (empty / f"{split}.jsonl").write_text((sample_data / "category" / f"{split}.jsonl").read_text())
    (empty / "validation.jsonl").write_text("")
    with pytest.raises(DataError, match="split 'validation' .* has no examples"):
        train_tiny("sample_category.yaml", empty, out)
    with pytest.raises(OSError):
        train_tiny("sample_category.yaml", sample_data / "category", out, f"model.base_model={tmp_path / 'no-such-model'}")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "a failed start touched the finished run"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=-1", r"train\.epochs=-1\.0 is out of range: it must be > 0"),
        ("train.epochs=0", r"train\.epochs=0\.0 is out of range: it must be > 0"),
        ("train.max_steps=-5", r"train\.max_steps=-5 must be 0 \(off\) or positive"),
        ("train.batch_size=0", r"train\.batch_size=0 is out of range: it must be >= 1"),
        ("train.grad_accum=0", r"train\.grad_accum=0 is out of range: it must be >= 1"),
        ("train.lr=0", r"train\.lr=0\.0 is out of range: it must be > 0"),
        ("train.lr=-1e-4", r"train\.lr=-0\.0001 is out of range: it must be > 0"),
        ("train.lr=nan", r"train\.lr=nan is out of range: it must be > 0"),
        ("train.head_lr=-1", r"train\.head_lr=-1\.0 must be 0 \(off\) or positive"),
        ("train.weight_decay=-0.1", r"train\.weight_decay=-0\.1 is out of range: it must be >= 0"),
        ("train.warmup_ratio=1", r"train\.warmup_ratio=1\.0 is out of range: it must be in \[0, 1\)"),
        ("train.warmup_ratio=-0.1", r"train\.warmup_ratio=-0\.1 is out of range: it must be in \[0, 1\)"),
        ("train.max_grad_norm=0", r"train\.max_grad_norm=0\.0 is out of range: it must be > 0"),
        ("train.logging_steps=0", r"train\.logging_steps=0 is out of range: it must be >= 1"),
        ("train.eval_every=-1", r"train\.eval_every=-1 must be 0 \(off\) or positive"),
        ("train.max_minutes=-2", r"train\.max_minutes=-2\.0 must be 0 \(off\) or positive"),
        ("train.seed=-1", r"train\.seed=-1 is out of range: it must be in \[0, 4294967295\]"),
        ("lora.dropout=1", r"lora\.dropout=1\.0 is out of range: it must be in \[0, 1\)"),
        ("lora.r=0", r"lora\.r=0 is out of range: it must be >= 1"),
        ("lora.alpha=0", r"lora\.alpha=0 is out of range: it must be > 0"),
        ("model.max_length=8", r"model\.max_length=8 is out of range: it must be >= 32"),
        ("model.max_new_tokens=-1", r"model\.max_new_tokens=-1 must be 0 \(off\) or positive"),
        ("eval.batch_size=0", r"eval\.batch_size=0 is out of range: it must be >= 1"),
        ("neighbours.k=-3", r"neighbours\.k=-3 must be 0 \(off\) or positive"),
        ("neighbours.temperature=0", r"neighbours\.temperature=0\.0 is out of range: it must be > 0"),
        ("data.max_train_examples=-1", r"data\.max_train_examples=-1 must be 0 \(off\) or positive"),
    ],
)
def test_impossible_numbers_are_refused_with_their_range(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIG, [override])


def test_an_unknown_embedded_base_model_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"model\.base_model='embedded-gemma' is not an embedded base model; choose one "
                       r"of: embedded, embedded-gemma-3-270m, or give a Hub id or a local folder"):
        load_config(CONFIG, ["model.base_model=embedded-gemma"])
    assert load_config(CONFIG, ["model.base_model=embedded-gemma-3-270m"]).model.base_model == "embedded-gemma-3-270m"


def test_a_yaml_syntax_error_is_one_line_naming_the_file_and_place(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text() + "train:\n  lr: [1e-4\n  epochs: 2\n")
    result = subprocess.run(
        [sys.executable, "-m", "training.train", "--config", str(bad)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path, timeout=300,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    line = len(CONFIG.read_text().splitlines()) + 3
    assert lines[0].startswith(f"error: {bad}: YAML syntax error at line {line}, column "), lines[0]
    with pytest.raises(ConfigError, match=r"the override train\.lr=\[1: YAML syntax error at line 1"):
        load_config(CONFIG, ["train.lr=[1"])


NOISE = ("kernels-community", "is_gradient_checkpointing", "Removed shared tensor")


def warnings_in(stderr: str) -> list[str]:
    """The lines of a process's stderr that warn, progress bars (tqdm's ``\\r`` updates) left out."""
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines()]
    return [line for line in lines if any(n in line for n in NOISE) or "warn" in line.lower()]


def test_a_cpu_run_and_its_predictions_print_no_library_noise(sample_data, tmp_path):
    from conftest import TINY

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = tmp_path / "run"
    # a generating adapter (SmolLM2's tied output layer) validated twice: two checkpoints saved
    trained = subprocess.run(
        [sys.executable, "-m", "training.train", "--config", str(REPO / "training/configs/sample_tagging.yaml"),
         f"data.path={sample_data / 'tagging'}", f"output_dir={run}", *TINY, "train.eval_every=1", "eval.base=false"],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "step 1: eval_loss" in trained.stdout and "step 2: eval_loss" in trained.stdout
    assert warnings_in(trained.stderr) == []
    few = tmp_path / "few.jsonl"  # a few rows: the messages come at loading and at the first batch
    few.write_text("".join((sample_data / "tagging" / "test.jsonl").read_text().splitlines(keepends=True)[:4]))
    predicted = subprocess.run(
        [sys.executable, "-m", "training.predict", "--adapter", str(run), "--input", str(few),
         "--text-column", "text", "--output", str(tmp_path / "out.csv")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert warnings_in(predicted.stderr) == []


def test_only_the_known_bitsandbytes_message_is_dropped():
    """bitsandbytes logs its kernels message only on CPUs with AVX512-BF16 (not this one): its own logger, filtered."""
    import logging

    import bitsandbytes.backends.cpu.ops as cpu_ops

    from catalog_lora.model.library_noise import silence_known_noise

    silence_known_noise()
    logger = cpu_ops.logger

    def passes(message: str, *args) -> bool:
        return bool(logger.filter(logger.makeRecord(logger.name, logging.WARNING, __file__, 0, message, args, None)))

    template = "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already `pip install kernels` and the kernels >= 0.11.1"
    assert not passes(template, ModuleNotFoundError("No module named 'kernels'"))
    assert passes(template, ConnectionError("the Hub is out of reach")), "another failure still warns"
    assert passes("Some other bitsandbytes warning")


def test_a_run_that_loses_to_its_baseline_says_so_in_its_last_lines(tagging_head_trained):
    """Two steps of a head cannot beat TF-IDF on the sample: training's log says so with both numbers."""
    import json

    from catalog_lora.runs.markdown import below_baseline

    run, printed = tagging_head_trained  # the suite's shared two-step head (conftest) and what its training printed
    test = json.loads((run / "metrics.json").read_text())["test"]
    adapter, baseline = test["adapter"]["micro_f1"], test["baseline"]["micro_f1"]
    assert adapter < baseline, "the premise: a two-step head loses to the baseline"
    expected = f"on micro_f1: {adapter:.4f} vs {baseline:.4f} on the test split"
    assert f"Warning: The adapter scores below the TF-IDF baseline {expected}" in printed
    assert below_baseline({**test, "adapter": {"micro_f1": baseline + 0.01}}, "tagging") is None
