"""Each task trains end to end on the bundled sample with the real training code, on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, train_tiny

from catalog_lora.runs.folder import (
    COMPLETE_MARKER,
    CONFUSION_PLOT,
    LOSS_PLOT,
    METRICS_FILE,
    PER_LABEL_PLOT,
    STATS_FILE,
    SYSTEMS_PLOT,
    read_run_info,
)
from training.config import ConfigError, load_config
from training.data import DataError
from training.schedule import Schedule

RUN_FILES = [
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "catalog_lora.json",
    "config.yaml",
    METRICS_FILE,
    STATS_FILE,
    LOSS_PLOT,
    COMPLETE_MARKER,
]
STATS_KEYS = [
    "total_parameters",
    "trainable_parameters",
    "trainable_percent",
    "hardware",
    "train_runtime_seconds",
    "train_samples_per_second",
    "train_tokens_per_second",
    "final_train_loss",
    "final_validation_loss",
]


def check_run(run: Path, systems=("base", "adapter", "baseline")) -> dict:
    for name in RUN_FILES:
        assert (run / name).is_file(), f"{name} missing from {run}"
    assert not (run / "README.md").exists(), "peft's placeholder card must not be left in the run folder"
    stats = json.loads((run / STATS_FILE).read_text())
    for key in STATS_KEYS:
        assert stats[key] is not None, key
    assert 0 < stats["trainable_parameters"] < stats["total_parameters"]
    metrics = json.loads((run / METRICS_FILE).read_text())["test"]
    assert set(systems) <= set(metrics)
    return metrics


def test_tagging_generate(tiny_runs):
    run = tiny_runs["tagging"]
    metrics = check_run(run)
    assert (run / "taxonomy.json").is_file() and (run / PER_LABEL_PLOT).is_file() and (run / SYSTEMS_PLOT).is_file()
    for system in ("base", "adapter", "baseline"):
        assert 0.0 <= metrics[system]["micro_f1"] <= 1.0
    # Constrained decoding: the adapter never answers outside the taxonomy.
    assert metrics["adapter"]["out_of_taxonomy_rate"] == 0.0
    info = read_run_info(str(run))
    assert info.task == "tagging" and "Fragrance" in info.labels and info.max_new_tokens > 0
    assert 0.0 <= info.review_threshold <= 1.0, "chosen on the validation split"


def test_category_generate(tiny_runs):
    run = tiny_runs["category"]
    metrics = check_run(run)
    assert (run / CONFUSION_PLOT).is_file()
    labels = metrics["adapter"]["confusion_matrix"]["labels"]
    assert all(" > " in label for label in labels), "label_levels=2 gives category > sub_category paths"
    assert 0.0 <= metrics["adapter"]["accuracy"] <= 1.0


def test_description_generate(tiny_runs):
    metrics = check_run(tiny_runs["description"])
    for key in ("rouge1", "rouge2", "rougeL", "bleu", "chrf", "length_mean"):
        assert key in metrics["adapter"]
    # The nearest-neighbour baseline copies real descriptions, so it always scores something.
    assert metrics["baseline"]["rougeL"] > 0


@pytest.mark.parametrize("config_name, plot", [("sample_tagging_head.yaml", PER_LABEL_PLOT), ("sample_category_head.yaml", CONFUSION_PLOT)])
def test_head_methods(sample_data, tmp_path, config_name, plot, request):
    task = "tagging" if "tagging" in config_name else "category"
    if task == "tagging":  # the suite's shared head of this config (conftest.tagging_head)
        run = request.getfixturevalue("tagging_head")
    else:
        run = train_tiny(config_name, sample_data / task, tmp_path / "run", "eval.base=false")
    check_run(run, systems=("adapter", "baseline"))
    assert (run / plot).is_file()
    info = read_run_info(str(run))
    assert info.method == "head" and info.num_labels == len(info.labels)
    if task == "tagging":
        assert len(info.thresholds) == len(info.labels), "thresholds are tuned per label on validation"


def test_resume_from_checkpoint(sample_data, tmp_path):
    first = train_tiny(
        "sample_category.yaml", sample_data / "category", tmp_path / "run",
        "train.max_steps=1", "train.keep_checkpoints=true", "eval.enabled=false", "references=false",
    )
    last = first / "checkpoints" / "last"
    assert (last / "trainer_state.json").is_file()
    resumed = train_tiny(
        "sample_category.yaml", sample_data / "category", tmp_path / "run",
        f"train.resume_from={last}", "eval.enabled=false", "references=false",
    )
    stats = json.loads((resumed / STATS_FILE).read_text())
    assert stats["optimizer_steps"] == 2
    assert [e["step"] for e in stats["log_history"] if "loss" in e] == [1, 2]


@pytest.mark.parametrize("path", sorted((REPO / "training/configs").glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_config_is_valid(path):
    """A typo in a key of a shipped config fails here, not an hour into scripts/real_results.sh."""
    config = load_config(path)
    assert Path(config.output_dir).parts[0] == "runs" and Path(config.data.path).parts[0] == "data"


def test_config_errors_name_the_key_and_allowed_values(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'train\.lrr'.*allowed keys: epochs"):
        load_config(None, ["data.path=x", "train.lrr=1"])
    with pytest.raises(ConfigError, match="task='sorting' is not allowed; choose one of: tagging, category, description"):
        load_config(None, ["data.path=x", "task=sorting"])
    with pytest.raises(ConfigError, match="description"):
        load_config(None, ["data.path=x", "task=description", "method=head"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_empty_split_is_refused_and_no_run_is_marked_complete(sample_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text((sample_data / "tagging" / f"{split}.jsonl").read_text())
    (data / "validation.jsonl").write_text("")
    with pytest.raises(DataError, match="split 'validation' .* has no examples"):
        train_tiny("sample_tagging.yaml", data, tmp_path / "run")
    assert not (tmp_path / "run" / COMPLETE_MARKER).exists()


def test_two_processes_train(sample_data, tmp_path):
    """The same code under torchrun with two CPU processes (gloo). Sharded prediction under torchrun, with
    the nearest training examples' ids: tests/test_predict_stream.py."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    run = tmp_path / "ddp-run"
    subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "training.train",
            "--config", str(REPO / "training/configs/sample_category.yaml"),
            f"data.path={sample_data / 'category'}", f"output_dir={run}", "train.max_steps=4", "train.batch_size=2",
            "train.logging_steps=1", "eval.enabled=false", "references=false", "lora.r=4",
        ],
        check=True, cwd=REPO, env=env, timeout=600,
    )
    stats = json.loads((run / STATS_FILE).read_text())
    assert stats["processes"] == 2 and (run / COMPLETE_MARKER).is_file()
    peak, schedule = load_config(REPO / "training/configs/sample_category.yaml").train.lr, Schedule("cosine", 1, 4)
    logged = [entry["lr"] for entry in stats["log_history"] if "lr" in entry]
    assert logged == pytest.approx([peak * schedule(step) for step in (1, 2, 3, 4)]), "one scheduler step per optimizer step"


def test_answer_only_loss_equals_the_full_causal_lm_loss():
    """Left padding + logits for the answer tail gives exactly the loss of the full right-padded forward."""
    import torch

    from catalog_lora.model.base_model import load_base_model
    from catalog_lora.records.prompts import PromptTemplate
    from catalog_lora.records.task_spec import TaskSpec
    from training.data import Collator, answer_loss, encode_generation

    model, tokenizer, _ = load_base_model("embedded", "none")
    template = PromptTemplate("tagging")
    records = [{"text": "smells great " * k, "labels": ["Fragrance", "Price"][: 1 + k % 2]} for k in range(1, 5)]
    encoded = [encode_generation(r, template, tokenizer, TaskSpec("tagging"), 128) for r in records]
    width = max(len(e.input_ids) for e in encoded)
    ids = torch.full((4, width), tokenizer.pad_token_id)
    mask = torch.zeros(4, width, dtype=torch.long)
    labels = torch.full((4, width), -100)
    for i, e in enumerate(encoded):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        mask[i, : len(e.input_ids)] = 1
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
    with torch.no_grad():
        fast = answer_loss(model, Collator(tokenizer.pad_token_id)(encoded))
        full = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert torch.allclose(fast, full, atol=1e-5)
