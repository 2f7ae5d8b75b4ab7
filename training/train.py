"""Fine-tune a decoder-only model with LoRA (QLoRA on CUDA) on one catalog task.

    python -m training.train --config training/configs/sample_tagging.yaml [key=value ...]

The whole loop is in :func:`train`, top to bottom: data, model, optimizer, the step loop
with validation, early stopping and checkpoints, then the run folder (adapter, config,
taxonomy, statistics, plots) and the evaluation against the base model and the baseline.
It runs unchanged under ``accelerate launch`` or ``torchrun`` on several processes.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from catalog_lora.base_model import load_base_model, public_model_id
from catalog_lora.engine import Engine
from catalog_lora.markdown import metrics_table, scalars
from catalog_lora.neighbours import best_thresholds, neighbour_votes, tune_weight
from catalog_lora.prompts import PromptTemplate
from catalog_lora.records import record_labels
from catalog_lora.run_files import (
    COMPLETE_MARKER,
    CONFIG_FILE,
    LOSS_PLOT,
    METRICS_FILE,
    REFERENCES_DIR,
    STATS_FILE,
    TAXONOMY_FILE,
    RunInfo,
)
from training import plots
from training.config import TrainConfig, load_config, save_config
from training.data import (
    Collator,
    answer_loss,
    build_taxonomy,
    check_labels,
    encode_generation,
    encode_head,
    length_grouped_batches,
    pack,
    read_splits,
    target_of,
)
from training.evaluate import evaluate_all, evaluate_engine, save_plots
from training.review import review_threshold

CHECKPOINTS = "checkpoints"


def hardware(accelerator: Accelerator) -> str:
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return f"{accelerator.num_processes} x {name}"
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"CPU ({cpu}, {torch.get_num_threads()} threads) x {accelerator.num_processes} process(es)"


def make_optimizer(config: TrainConfig, params, device_type: str):
    choice = config.train.optimizer
    if choice == "auto":
        choice = "adamw_8bit" if device_type == "cuda" else "adamw"
    if choice == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=config.train.lr, weight_decay=config.train.weight_decay), choice
    return torch.optim.AdamW(params, lr=config.train.lr, weight_decay=config.train.weight_decay), choice


def derive_max_new_tokens(train_examples, tokenizer, template, config) -> int:
    """Room for the longest training answer plus a margin, instead of a fixed 50."""
    longest = max(
        len(tokenizer.encode(template.answer(t, tokenizer), add_special_tokens=False)) for t in train_examples
    )
    return min(config.model.max_length // 2, longest + 4)


def encode_split(records, encode, desc: str, main: bool) -> tuple[list, int]:
    encoded = [encode(r) for r in tqdm(records, desc=desc, disable=not main, leave=False)]
    return encoded, sum(e.truncated for e in encoded)


def compute_loss(model, batch):
    """Head models compute their own loss; causal LMs use the answer-only loss of training.data."""
    return answer_loss(model, batch) if "position_ids" in batch else model(**batch).loss


@torch.no_grad()
def validation_loss(model, loader, accelerator) -> float:
    model.eval()
    total, count = torch.zeros((), device=accelerator.device), torch.zeros((), device=accelerator.device)
    for batch in loader:
        loss = compute_loss(model, batch)
        total += loss.detach().float() * batch["input_ids"].shape[0]
        count += batch["input_ids"].shape[0]
    model.train()
    total, count = accelerator.reduce(total, "sum"), accelerator.reduce(count, "sum")
    return float(total / count)


def train(config: TrainConfig) -> Path:
    """Train, evaluate and write the run folder; return its path."""
    # cpu=True without CUDA: otherwise accelerate ignores torchrun's WORLD_SIZE on CPU and runs each process alone.
    accelerator = Accelerator(gradient_accumulation_steps=config.train.grad_accum, cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    log = accelerator.print
    out = Path(config.output_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / COMPLETE_MARKER).unlink(missing_ok=True)
    set_seed(config.train.seed)
    started = time.time()
    task, head = config.task, config.method == "head"
    levels, label_field = config.data.label_levels, config.data.label_field

    # Data
    splits = read_splits(config.data.path, config.data.max_train_examples, config.data.max_eval_examples)
    taxonomy = build_taxonomy(splits["train"], task, levels, label_field)
    unseen = check_labels(splits, taxonomy, task, levels, label_field) if taxonomy else {}
    if unseen:
        log(f"Note: {sum(unseen.values())} validation/test labels never occur in training ({len(unseen)} distinct); they count as errors.")

    # Model
    model, tokenizer, precision = load_base_model(
        config.model.base_model,
        config.model.quantization,
        device=str(accelerator.device),
        num_labels=len(taxonomy) if head else None,
        problem_type=("multi_label_classification" if task == "tagging" else "single_label_classification") if head else None,
        num_layers=config.model.num_layers or None,
    )
    log(f"Precision: {precision.describe()}")
    template = PromptTemplate(
        task, config.model.prompt_template, tuple(taxonomy.labels) if config.model.prompt_labels and taxonomy else ()
    )
    answers = [target_of(r, task, levels, label_field) for r in splits["train"]]
    info = RunInfo(
        task=task,
        method=config.method,
        base_model=config.model.base_model,
        base_model_hub_id=public_model_id(config.model.base_model),
        prompt_template=config.model.prompt_template,
        prompt_labels=config.model.prompt_labels,
        label_levels=levels or None,
        label_field=label_field,
        max_new_tokens=config.model.max_new_tokens or derive_max_new_tokens(answers, tokenizer, template, config),
        max_length=config.model.max_length,
        at_least_one_label=config.eval.at_least_one_label,
        labels=taxonomy.labels if taxonomy else [],
        num_layers=config.model.num_layers or None,
        knn_k=config.neighbours.k,
        knn_temperature=config.neighbours.temperature,
    )

    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if precision.quantization in ("4bit", "8bit"):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.model.gradient_checkpointing)
    elif config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        task_type="SEQ_CLS" if head else "CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in model.parameters())
    log(f"Parameters: {total_params:,} total, {trainable:,} trainable ({100 * trainable / total_params:.3f}%)")

    # Tokenize
    max_length = config.model.max_length
    if head:
        encode = lambda r: encode_head(r, taxonomy, tokenizer, task, max_length, levels, label_field)  # noqa: E731
    else:
        encode = lambda r: encode_generation(r, template, tokenizer, task, max_length, levels, label_field)  # noqa: E731
    train_set, truncated_train = encode_split(splits["train"], encode, "tokenize train", main)
    val_set, truncated_val = encode_split(splits["validation"], encode, "tokenize validation", main)
    if truncated_train or truncated_val:
        log(f"Truncated to model.max_length={max_length}: {truncated_train} train, {truncated_val} validation texts.")
    if config.train.packing:
        train_set = pack(train_set, max_length, tokenizer.eos_token_id)
    pad_to = max_length if config.train.padding == "max_length" else None
    collate = Collator(tokenizer.pad_token_id, pad_to, classification=head, multi_label=task == "tagging")

    def loader(dataset, batches):
        dl = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate)
        return accelerator.prepare_data_loader(dl)

    lengths = [len(e.input_ids) for e in train_set]
    epoch_batches = lambda epoch: length_grouped_batches(  # noqa: E731
        lengths, config.train.batch_size, config.train.seed + epoch, config.train.group_by_length
    )
    val_loader = loader(val_set, length_grouped_batches([len(e.input_ids) for e in val_set], config.eval.batch_size, 0, True))
    steps_per_epoch = max(1, math.ceil(len(epoch_batches(0)) / accelerator.num_processes / config.train.grad_accum))
    total_steps = config.train.max_steps or max(1, math.ceil(config.train.epochs * steps_per_epoch))
    eval_every = config.train.eval_every or steps_per_epoch

    # Optimizer
    from transformers import get_scheduler

    optimizer, optimizer_name = make_optimizer(config, [p for p in model.parameters() if p.requires_grad], accelerator.device.type)
    scheduler = get_scheduler(
        config.train.scheduler, optimizer, math.ceil(config.train.warmup_ratio * total_steps), total_steps
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    log(f"Training: {len(train_set)} rows, {total_steps} optimizer steps ({steps_per_epoch}/epoch), optimizer {optimizer_name}")

    # State, resumable
    state = {"step": 0, "epoch": 0, "batches_done": 0, "log_history": [], "best": None, "bad_evals": 0, "tokens": 0, "padded": 0, "samples": 0, "cut_by_time": False}
    if config.train.resume_from:
        accelerator.load_state(config.train.resume_from)
        state = json.loads((Path(config.train.resume_from) / "trainer_state.json").read_text())
        log(f"Resumed from {config.train.resume_from} at step {state['step']}")
    higher_is_better = config.train.metric_for_best != "eval_loss"
    running, running_n = 0.0, 0
    bar = tqdm(total=total_steps, initial=state["step"], desc="train", disable=not main)
    train_started, validation_seconds = time.time(), 0.0
    resumed = {key: state[key] for key in ("tokens", "samples")}  # throughput counts this session only
    stop = False
    model.train()
    try:
        while not stop and state["step"] < total_steps:
            dl = loader(train_set, epoch_batches(state["epoch"]))
            batches = accelerator.skip_first_batches(dl, state["batches_done"]) if state["batches_done"] else dl
            for batch in batches:
                with accelerator.accumulate(model):
                    loss = compute_loss(model, batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(model.parameters(), config.train.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                state["batches_done"] += 1
                real = int(accelerator.reduce(batch["attention_mask"].sum(), "sum"))
                state["tokens"] += real
                state["padded"] += int(batch["attention_mask"].numel()) * accelerator.num_processes
                state["samples"] += batch["input_ids"].shape[0] * accelerator.num_processes
                running += float(loss.detach())
                running_n += 1
                if not accelerator.sync_gradients:
                    continue
                state["step"] += 1
                bar.update(1)
                if state["step"] % config.train.logging_steps == 0 or state["step"] == total_steps:
                    mean = float(accelerator.reduce(torch.tensor(running / running_n, device=accelerator.device), "mean"))
                    state["log_history"].append({"step": state["step"], "loss": mean, "lr": scheduler.get_last_lr()[0]})
                    bar.set_postfix(loss=f"{mean:.4f}")
                    running, running_n = 0.0, 0
                # The time budget ends the run at the next step; it is validated like the last one.
                out_of_time = bool(config.train.max_minutes) and time.time() - train_started > 60 * config.train.max_minutes
                if out_of_time and state["step"] < total_steps:
                    state["cut_by_time"] = True
                    log(f"Time budget of {config.train.max_minutes:g} minutes reached at step {state['step']} of {total_steps}: stopping.")
                if state["step"] % eval_every == 0 or state["step"] == total_steps or out_of_time:
                    validation_started = time.time()
                    stop = validate(config, model, accelerator, val_loader, state, info, taxonomy, tokenizer, splits, out, higher_is_better) or out_of_time
                    validation_seconds += time.time() - validation_started
                if stop or state["step"] >= total_steps:
                    break
            else:
                state["epoch"] += 1
                state["batches_done"] = 0
    except torch.OutOfMemoryError as error:
        raise RuntimeError(
            f"Out of memory at step {state['step']} with train.batch_size={config.train.batch_size}. "
            "Try a smaller train.batch_size with a larger train.grad_accum, model.quantization=4bit, "
            "model.gradient_checkpointing=true or a smaller model.max_length. "
            f"{out} is incomplete (no {COMPLETE_MARKER} file)."
        ) from error
    bar.close()
    train_seconds = time.time() - train_started
    step_seconds = max(1e-9, train_seconds - validation_seconds)

    # The run folder
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    best_dir = out / CHECKPOINTS / "best"
    if state["best"] is not None and (best_dir / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(unwrapped, load_file(best_dir / "adapter_model.safetensors"))
        log(f"Best checkpoint: step {state['best']['step']} ({config.train.metric_for_best}={state['best']['value']:.4f})")
    unwrapped.eval()
    engine = Engine(unwrapped, tokenizer, precision)
    engine.register("adapter", info, taxonomy, source=str(out))
    if config.references:
        if main:
            from catalog_lora.references import build_index

            build_index(splits["train"], out / REFERENCES_DIR, task).close()
        accelerator.wait_for_everyone()
    if config.neighbours.k:
        info.knn_weight, weights = tune_neighbour_weight(engine, splits["validation"], config, taxonomy)
        log(f"Neighbours: k={config.neighbours.k}, weight {info.knn_weight} chosen on validation ({weights[info.knn_weight]:.4f} vs {weights[0.0]:.4f} for the head alone)")
    if head and task == "tagging" and config.eval.tune_thresholds:
        info.thresholds = tune_thresholds(engine, splits["validation"], config)
    if taxonomy:
        info.review_threshold = review_threshold(engine, "adapter", splits["validation"], config)
    if main:
        unwrapped.save_pretrained(out)
        # peft writes a template card full of placeholders; the real card comes from model_cards.
        (out / "README.md").unlink(missing_ok=True)
        tokenizer.save_pretrained(out)
        info.save(out)
        if taxonomy:
            taxonomy.save(out / TAXONOMY_FILE)
        save_config(config, out / CONFIG_FILE)
        final_train = next((e["loss"] for e in reversed(state["log_history"]) if "loss" in e), None)
        final_val = next((e["eval_loss"] for e in reversed(state["log_history"]) if "eval_loss" in e), None)
        stats = {
            "task": task,
            "method": config.method,
            "base_model": info.base_model_hub_id,
            "precision": precision.describe(),
            "quantization": precision.quantization,
            "optimizer": optimizer_name,
            "total_parameters": total_params,
            "trainable_parameters": trainable,
            "trainable_percent": 100 * trainable / total_params,
            "hardware": hardware(accelerator),
            "threads": torch.get_num_threads(),
            "processes": accelerator.num_processes,
            "train_runtime_seconds": train_seconds,
            "validation_seconds": validation_seconds,
            "optimizer_steps": state["step"],
            "epochs_completed": state["epoch"] + state["batches_done"] / max(1, len(epoch_batches(0))),
            # throughput of the training steps alone, without the time spent validating
            "train_samples_per_second": (state["samples"] - resumed["samples"]) / step_seconds,
            "train_tokens_per_second": (state["tokens"] - resumed["tokens"]) / step_seconds,
            "padding_efficiency": state["tokens"] / max(1, state["padded"]),
            "final_train_loss": final_train,
            "final_validation_loss": final_val,
            "best_checkpoint": state["best"],
            "max_minutes": config.train.max_minutes or None,
            "cut_by_time": state["cut_by_time"],
            "examples": {split: len(records) for split, records in splits.items()},
            "truncated": {"train": truncated_train, "validation": truncated_val},
            "unseen_eval_labels": unseen,
            "log_history": state["log_history"],
        }
        plots.loss_curve(state["log_history"], out / LOSS_PLOT, f"{task} ({config.method}) on {Path(config.data.path).name}")
        if config.eval.enabled:
            results = evaluate_all(
                engine, "adapter", splits["train"], splits["test"], base=config.eval.base,
                baseline=config.eval.baseline, batch_size=config.eval.batch_size,
                constrained=config.eval.constrained, seed=config.train.seed,
            )
            (out / METRICS_FILE).write_text(json.dumps({"test": results}, indent=2) + "\n")
            save_plots(results, task, out)
            log(metrics_table(results, task))
        stats["total_runtime_seconds"] = time.time() - started
        (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
        if not config.train.keep_checkpoints:
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        (out / COMPLETE_MARKER).write_text(f"finished {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        log(f"Run folder: {out.resolve()}")
        if config.push_to_hub:  # the publishing command as its own process: training does not import publishing
            command = [sys.executable, "-m", "model_cards.publish", str(out), "--repo-id", config.push_to_hub]
            subprocess.run(command, check=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out


def validate(config, model, accelerator, val_loader, state, info, taxonomy, tokenizer, splits, out, higher_is_better) -> bool:
    """Log validation results, keep the best adapter and a resumable checkpoint; True means stop early."""
    entry = {"step": state["step"], "eval_loss": validation_loss(model, val_loader, accelerator)}
    metric = config.train.metric_for_best
    if metric != "eval_loss":
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        engine = Engine(unwrapped, tokenizer)
        engine.register("adapter", info, taxonomy)
        scores = scalars(evaluate_engine(engine, "adapter", splits["validation"], True, config.eval.batch_size, config.eval.constrained))
        if metric not in scores:
            raise ValueError(f"train.metric_for_best={metric!r} is not a {config.task} metric; choose from eval_loss, {', '.join(scores)}")
        entry.update({f"eval_{k}": v for k, v in scores.items()})
        entry[metric] = scores[metric]
        model.train()
    state["log_history"].append(entry)
    value = entry[metric]
    best = state["best"]
    improved = best is None or (value > best["value"] if higher_is_better else value < best["value"])
    accelerator.print(f"step {state['step']}: eval_loss={entry['eval_loss']:.4f}" + (f" {metric}={value:.4f}" if metric != "eval_loss" else ""))
    checkpoints = out / CHECKPOINTS
    if improved:
        state["best"] = {"step": state["step"], "value": value}
        state["bad_evals"] = 0
        if accelerator.is_main_process:
            accelerator.unwrap_model(model).save_pretrained(checkpoints / "best")
    else:
        state["bad_evals"] += 1
    # Every process writes its own RNG state into the folder, so each must find it there.
    (checkpoints / "last").mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(checkpoints / "last")
    if accelerator.is_main_process:
        (checkpoints / "last" / "trainer_state.json").write_text(json.dumps(state))
    accelerator.wait_for_everyone()
    patience = config.train.early_stopping_patience
    if patience and state["bad_evals"] >= patience:
        accelerator.print(f"Early stopping: no improvement of {metric} in {patience} validations.")
        return True
    return False


def validation_scores(engine: Engine, validation: list[dict], config: TrainConfig):
    """The adapter's score for every label on every validation row, and the gold labels.

    Gold is a 0/1 matrix for tags and a label-index vector for categories.
    """
    import numpy as np

    spec = engine.spec("adapter")
    labels = spec.taxonomy.labels
    predictions = engine.predict(
        "adapter", [r["text"] for r in validation], [r.get("attributes") for r in validation],
        batch_size=config.eval.batch_size, top_k=len(labels),
    )
    scores = np.array([[p.scores.get(label, 0.0) for label in labels] for p in predictions])
    gold_labels = [record_labels(r, config.task, config.data.label_levels or None, config.data.label_field) for r in validation]
    if spec.taxonomy.multi_label:
        return scores, np.array([[label in gold for label in labels] for gold in gold_labels])
    return scores, np.array([labels.index(g[0]) if g[0] in labels else -1 for g in gold_labels])


def tune_thresholds(engine: Engine, validation: list[dict], config: TrainConfig) -> list[float]:
    """Per-label decision thresholds that maximize each label's F1 on validation."""
    engine.spec("adapter").info.thresholds = []
    scores, gold = validation_scores(engine, validation, config)
    return best_thresholds(scores, gold).tolist()


def tune_neighbour_weight(engine: Engine, validation: list[dict], config: TrainConfig, taxonomy) -> tuple[float, dict]:
    """The share of the neighbours' vote that scores best on validation (the head alone is weight 0)."""
    spec = engine.spec("adapter")
    spec.info.knn_weight, spec.info.thresholds = 0.0, []
    head, gold = validation_scores(engine, validation, config)
    hits = spec.neighbours.query([r["text"] for r in validation], config.neighbours.k)
    votes = neighbour_votes(hits, taxonomy, config.data.label_levels or None, config.neighbours.temperature)
    return tune_weight(head, votes, gold, taxonomy.multi_label)


def main(argv: list[str] | None = None) -> Path:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (training/configs/*.yaml)")
    args, overrides = parser.parse_known_args(argv)
    try:
        config = load_config(args.config, overrides)
    except ValueError as error:
        sys.exit(f"error: {error}")
    return train(config)


if __name__ == "__main__":
    main()
