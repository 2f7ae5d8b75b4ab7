"""Writing a finished run's folder: the adapter and how to use it, the config, the statistics, the
plots, the evaluation against the base model and the baseline, and ``COMPLETE`` last.

Only the main process writes; :func:`training.train.train` calls :func:`write_run_folder` once the
best adapter is on the engine and tuned on validation.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from catalog_lora.inference.bf16_check import measure_bf16_agreement
from catalog_lora.inference.engine import Engine
from catalog_lora.runs.folder import (
    COMPLETE_MARKER,
    CONFIG_FILE,
    LOSS_PLOT,
    METRICS_FILE,
    STATS_FILE,
    TAXONOMY_FILE,
    RunInfo,
)
from catalog_lora.runs.markdown import below_baseline, metrics_table
from training import plots
from training.config import save_config
from training.evaluate import evaluate_all, save_plots
from training.tuning import NAME

CHECKPOINTS = "checkpoints"


@dataclass
class Timing:
    """Where this session's training time went; tokens and samples done before a resume are not counted."""

    resumed_tokens: int = 0
    resumed_samples: int = 0
    train_seconds: float = 0.0
    validation_seconds: float = 0.0
    validations: int = 0


def hardware(accelerator) -> str:
    if torch.cuda.is_available():
        return f"{accelerator.num_processes} x {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"CPU ({cpu}, {torch.get_num_threads()} threads) x {accelerator.num_processes} process(es)"


def run_stats(session, progress, timing: Timing) -> dict:
    """``train_stats.json``: what was trained on what, how fast, and how it ended."""
    config, info, parameters = session.config, session.info, session.parameters
    step_seconds = max(1e-9, timing.train_seconds - timing.validation_seconds)
    last = lambda key: next((e[key] for e in reversed(progress.log_history) if key in e), None)  # noqa: E731
    return {
        "task": config.task,
        "method": config.method,
        "base_model": info.base_model_hub_id,
        "precision": session.precision.describe(),
        "precision_label": session.precision.label,
        "quantization": session.precision.quantization,
        "optimizer": session.optimizer_name,
        **session.plan,
        "total_parameters": parameters["total"],
        "trainable_parameters": parameters["trainable"],
        "trainable_percent": 100 * parameters["trainable"] / parameters["total"],
        "hardware": hardware(session.accelerator),
        "threads": torch.get_num_threads(),
        "processes": session.accelerator.num_processes,
        "train_runtime_seconds": timing.train_seconds,
        "validation_seconds": timing.validation_seconds,
        "lexical_fit_seconds": session.baseline.fit_seconds if session.baseline else None,
        "optimizer_steps": progress.step,
        "epochs_completed": progress.epoch + progress.batches_done / max(1, len(session.epoch_batches(0))),
        # throughput of the training steps alone, without the time spent validating
        "train_samples_per_second": (progress.samples - timing.resumed_samples) / step_seconds,
        "train_tokens_per_second": (progress.tokens - timing.resumed_tokens) / step_seconds,
        "padding_efficiency": progress.tokens / max(1, progress.padded),
        "final_train_loss": last("loss"),
        "final_validation_loss": last("eval_loss"),
        "best_checkpoint": progress.best,
        "max_minutes": config.train.max_minutes or None,
        "cut_by_time": progress.cut_by_time,
        "examples": {split: len(records) for split, records in session.splits.items()},
        "truncated": session.truncated,
        "unseen_eval_labels": session.unseen,
        "log_history": progress.log_history,
    }


def write_run_folder(session, progress, timing: Timing, engine: Engine) -> Path:
    """Everything a finished run folder holds (see :mod:`catalog_lora.runs.folder`), ``COMPLETE`` last."""
    config, out = session.config, session.out
    model = session.accelerator.unwrap_model(session.model)
    model.save_pretrained(out)
    (out / "README.md").unlink(missing_ok=True)  # peft's template card is all placeholders; the real card comes from model_cards
    session.tokenizer.save_pretrained(out)
    session.info.save(out)
    if session.taxonomy:
        session.taxonomy.save(out / TAXONOMY_FILE)
    save_config(config, out / CONFIG_FILE)
    stats = run_stats(session, progress, timing)
    plots.loss_curve(progress.log_history, out / LOSS_PLOT, f"{config.task} ({config.method}) on {Path(config.data.path).name}")
    if config.eval.enabled:
        results = evaluate_all(
            engine, NAME, session.splits["train"], session.splits["test"], base=config.eval.base,
            baseline=config.eval.baseline, batch_size=config.eval.batch_size, batch_tokens=config.eval.batch_tokens,
            constrained=config.eval.constrained, seed=config.train.seed, validation=session.splits["validation"],
            fitted_baseline=session.baseline,
        )
        (out / METRICS_FILE).write_text(json.dumps({"test": results}, indent=2) + "\n")
        save_plots(results, config.task, out)
        session.log(metrics_table(results, config.task))
        if warning := below_baseline(results, config.task):
            session.log(f"Warning: {warning}")
    if config.method == "head" and config.eval.bf16_check:
        stats["bf16_check_seconds"] = record_bf16_agreement(out, session.info, session.splits["validation"], config.eval.bf16_check, session.log)
    stats["total_runtime_seconds"] = time.time() - session.started
    (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    if not config.train.keep_checkpoints:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    mark_complete(out, "finished")
    session.log(f"Run folder: {out.resolve()}")
    return out


def record_bf16_agreement(out: Path, info: RunInfo, validation: list[dict], texts: int, log=print) -> float:
    """Measure how often the head in ``out`` answers the first ``texts`` validation records the same in bf16
    as in fp32 (catalog_lora.inference.bf16_check), store it in ``catalog_lora.json``; returns the seconds taken."""
    started = time.time()
    records = validation[:texts]
    if not records:
        log("bf16 agreement: no validation texts to measure it on; not recorded")
        return 0.0
    measured = measure_bf16_agreement(str(out), [r["text"] for r in records], [r.get("attributes") for r in records])
    info.bf16_agreement, info.bf16_agreement_texts = measured.agreement, measured.texts
    info.save(out)
    how = "native" if measured.native else "emulated: this CPU has no native bf16"
    log(f"bf16 agreement with fp32: {measured.agreement:.1%} of {measured.texts} validation texts ({how})")
    return time.time() - started


def mark_complete(out: Path, what: str) -> None:
    """Write the ``COMPLETE`` marker last: the end of a real training run, or of ``training.tune`` re-tuning one."""
    (out / COMPLETE_MARKER).write_text(f"{what} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
