"""Fine-tune a decoder-only model with LoRA (QLoRA on CUDA) on one catalog task.

    python -m training.train --config training/configs/sample_tagging.yaml [key=value ...]

:func:`train` reads top to bottom: :func:`setup` (data, model with LoRA, tokens, optimizer),
:func:`fit` (the step loop, with :func:`validate`, early stopping, the time budget and
resumable checkpoints), :func:`best_engine` (the best adapter on the inference engine, tuned on
validation), then :func:`training.run_folder.write_run_folder` (adapter, config, statistics,
plots, the evaluation against the base model and the baseline, ``COMPLETE`` last).
It runs unchanged under ``accelerate launch`` or ``torchrun`` on several processes.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from catalog_lora.base_model import HEAD_MODULES, Precision, load_base_model, public_model_id
from catalog_lora.engine import Engine
from catalog_lora.examples import nearest_examples
from catalog_lora.labels import Taxonomy
from catalog_lora.markdown import scalars
from catalog_lora.prompts import Example, PromptTemplate
from catalog_lora.run_files import COMPLETE_MARKER, PROGRESS_FILE, REFERENCES_DIR, RunInfo
from training.config import TrainConfig, load_config
from training.data import (
    Collator,
    answer_loss,
    build_taxonomy,
    check_labels,
    class_weights,
    encode_generation,
    encode_head,
    head_loss,
    length_grouped_batches,
    pack,
    read_splits,
    target_of,
)
from training.evaluate import evaluate_engine
from training.run_folder import CHECKPOINTS, Timing, write_run_folder
from training.tuning import NAME, tune_on_validation

STATE_FILE = "trainer_state.json"
STOPPED_EXIT = 3  # the exit status of a run stopped by SIGTERM/SIGINT (its best checkpoint kept)
STOP = threading.Event()  # set by the first SIGTERM/SIGINT while the step loop runs
_IN_LOOP = threading.Event()


class TrainingStopped(RuntimeError):
    """The run was asked to stop (SIGTERM/SIGINT): its best checkpoint and a resumable state are kept."""


def make_optimizer(config: TrainConfig, model, device_type: str):
    """AdamW over the trainable parameters; a head's new output layer may get its own ``train.head_lr``."""
    choice = config.train.optimizer
    if choice == "auto":
        choice = "adamw_8bit" if device_type == "cuda" else "adamw"
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    # The head starts from random weights while LoRA starts from the identity: a higher rate lets it catch up.
    is_head = lambda name: any(f".{module}." in f".{name}" for module in HEAD_MODULES)  # noqa: E731
    head = [p for name, p in trainable if is_head(name)] if config.train.head_lr else []
    params = [{"params": [p for name, p in trainable if not (head and is_head(name))], "lr": config.train.lr}]
    if head:
        params.append({"params": head, "lr": config.train.head_lr})
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


def encode_split(records, shown: list[list[Example]], encode, desc: str, main: bool) -> tuple[list, int]:
    """Every record encoded with the examples its prompt shows; how many texts were cut."""
    pairs = zip(records, shown, strict=True)
    encoded = [encode(r, examples) for r, examples in tqdm(pairs, total=len(records), desc=desc, disable=not main, leave=False)]
    return encoded, sum(e.truncated for e in encoded)


def shown_examples(config: TrainConfig, splits: dict[str, list[dict]], out: Path, accelerator) -> dict[str, list[list[Example]]]:
    """The training examples each train and validation prompt shows (``model.prompt_examples``).

    The references index is built here, before the first step, so training sees the prompts the
    adapter will get; a training row sees its nearest *other* rows, never itself."""
    k = config.model.prompt_examples
    if not k:
        return {split: [[] for _ in records] for split, records in splits.items()}
    from catalog_lora.references import ReferenceIndex, build_index

    if accelerator.is_main_process:
        build_index(splits["train"], out / REFERENCES_DIR, config.task).close()
    accelerator.wait_for_everyone()
    with ReferenceIndex.open(out / REFERENCES_DIR) as index:
        train = splits["train"]
        return {
            "train": nearest_examples(index, [r["text"] for r in train], k, skip_ids=[r["id"] for r in train]),
            "validation": nearest_examples(index, [r["text"] for r in splits["validation"]], k),
        }


def compute_loss(model, batch, weights: torch.Tensor | None = None):
    """Causal LMs use the answer-only loss of training.data; heads their own loss, or the class-weighted one."""
    if "position_ids" in batch:
        return answer_loss(model, batch)
    return model(**batch).loss if weights is None else head_loss(model, batch, weights)


@torch.no_grad()
def validation_loss(model, loader, accelerator, weights: torch.Tensor | None = None) -> float:
    model.eval()
    total, count = torch.zeros((), device=accelerator.device), torch.zeros((), device=accelerator.device)
    for batch in loader:
        loss = compute_loss(model, batch, weights)
        total += loss.detach().float() * batch["input_ids"].shape[0]
        count += batch["input_ids"].shape[0]
    model.train()
    total, count = accelerator.reduce(total, "sum"), accelerator.reduce(count, "sum")
    return float(total / count)


@dataclass
class Progress:
    """How far the loop is: saved with every checkpoint, so that a run can resume from it."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    log_history: list[dict] = field(default_factory=list)
    best: dict | None = None
    bad_evals: int = 0
    tokens: int = 0
    padded: int = 0
    samples: int = 0
    cut_by_time: bool = False
    stopped: bool = False

    def save(self, folder: Path) -> None:
        (folder / STATE_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: str | Path) -> Progress:
        data = json.loads((Path(folder) / STATE_FILE).read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class Session:
    """Everything :func:`setup` prepares for one run, shared by the loop and the run folder."""

    config: TrainConfig
    accelerator: Accelerator
    out: Path
    splits: dict[str, list[dict]]
    taxonomy: Taxonomy | None
    unseen: dict[str, int]
    info: RunInfo
    model: object
    tokenizer: object
    precision: Precision
    optimizer: object
    optimizer_name: str
    train_set: list
    collate: Callable
    truncated: dict[str, int]
    parameters: dict[str, int]
    started: float
    scheduler: object = None
    val_loader: object = None
    steps_per_epoch: int = 0
    total_steps: int = 0
    loss_weights: torch.Tensor | None = None
    fit_started: float = 0.0

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def log(self, text: str) -> None:
        self.accelerator.print(text)

    def loader(self, dataset: list, batches: list[list[int]]):
        dl = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=self.collate)
        return self.accelerator.prepare_data_loader(dl)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This epoch's batches of training rows: shuffled by epoch, grouped by length."""
        lengths = [len(e.input_ids) for e in self.train_set]
        train = self.config.train
        return length_grouped_batches(lengths, train.batch_size, train.seed + epoch, train.group_by_length)


def train(config: TrainConfig) -> Path:
    """Train, evaluate and write the run folder; return its path."""
    session = setup(config)
    progress = resume(session)
    timing = fit(session, progress)
    if progress.stopped:
        write_progress(session, progress, "stopped")
        raise TrainingStopped(stopped_message(session, progress))
    write_progress(session, progress, "evaluating")
    engine = best_engine(session, progress)
    if session.main:
        write_run_folder(session, progress, timing, engine)
        if config.push_to_hub:  # the publishing command as its own process: training does not import publishing
            command = [sys.executable, "-m", "model_cards.publish", str(session.out), "--repo-id", config.push_to_hub]
            subprocess.run(command, check=True)
    session.accelerator.wait_for_everyone()
    session.accelerator.end_training()
    return session.out


def write_progress(session: Session, progress: Progress, phase: str) -> None:
    """``progress.json`` in the run folder, rewritten at every logged step: what an app shows while it trains."""
    if not session.main:
        return
    state = {
        "phase": phase,
        "step": progress.step,
        "total_steps": session.total_steps,
        "epoch": progress.epoch,
        "elapsed_seconds": time.time() - session.started,
        "train_seconds": time.time() - session.fit_started if session.fit_started else 0.0,
        "max_minutes": session.config.train.max_minutes or None,
        "best": progress.best,
        "cut_by_time": progress.cut_by_time,
        "log_history": progress.log_history,
    }
    partial = session.out / (PROGRESS_FILE + ".tmp")
    partial.write_text(json.dumps(state))
    partial.replace(session.out / PROGRESS_FILE)  # a reader never sees half a file


def stopped_message(session: Session, progress: Progress) -> str:
    best = progress.best
    kept = (
        f"the best checkpoint (step {best['step']}) is in {session.out / CHECKPOINTS / 'best'}"
        if best
        else "no validation had run yet, so there is no best checkpoint"
    )
    return (
        f"Stopped on request at step {progress.step} of {session.total_steps}: {kept}; resume with "
        f"train.resume_from={session.out / CHECKPOINTS / 'last'}. No run folder was written (no {COMPLETE_MARKER})."
    )


def _on_stop_signal(signum, frame) -> None:
    """The first SIGTERM/SIGINT in the step loop ends it at the next step (validated, checkpoints kept);
    outside the loop, or a second time, it stops the process at once."""
    if STOP.is_set() or not _IN_LOOP.is_set():
        raise SystemExit(128 + signum)
    STOP.set()


def setup(config: TrainConfig) -> Session:
    """Data, the base model with LoRA, the tokenized splits, the optimizer: everything before the first step."""
    # cpu=True without CUDA: otherwise accelerate ignores torchrun's WORLD_SIZE on CPU and runs each process alone.
    accelerator = Accelerator(gradient_accumulation_steps=config.train.grad_accum, cpu=not torch.cuda.is_available())
    log, main = accelerator.print, accelerator.is_main_process
    out = Path(config.output_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / COMPLETE_MARKER).unlink(missing_ok=True)
    set_seed(config.train.seed)
    started = time.time()
    task, head, levels, label_field = config.task, config.method == "head", config.data.label_levels, config.data.label_field

    splits = read_splits(config.data.path, config.data.max_train_examples, config.data.max_eval_examples)
    taxonomy = build_taxonomy(splits["train"], task, levels, label_field)
    unseen = check_labels(splits, taxonomy, task, levels, label_field) if taxonomy else {}
    if unseen:
        log(f"Note: {sum(unseen.values())} validation/test labels never occur in training ({len(unseen)} distinct); they count as errors.")

    model, tokenizer, precision = load_base_model(
        config.model.base_model,
        config.model.quantization,
        device=str(accelerator.device),
        num_labels=len(taxonomy) if head else None,
        problem_type=("multi_label_classification" if task == "tagging" else "single_label_classification") if head else None,
        num_layers=config.model.num_layers or None,
    )
    log(f"Precision: {precision.describe()}")
    template = PromptTemplate(task, config.model.prompt_template, tuple(taxonomy.labels) if config.model.prompt_labels and taxonomy else ())
    info = run_info(config, taxonomy, template, tokenizer, splits["train"])
    model = add_lora(model, config, precision)
    trainable, total = sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters())
    log(f"Parameters: {total:,} total, {trainable:,} trainable ({100 * trainable / total:.3f}%)")

    max_length = config.model.max_length
    if head:
        encode = lambda r, _: encode_head(r, taxonomy, tokenizer, task, max_length, levels, label_field)  # noqa: E731
    else:
        encode = lambda r, shown: encode_generation(r, template, tokenizer, task, max_length, levels, label_field, shown)  # noqa: E731
    shown = shown_examples(config, splits, out, accelerator)
    train_set, truncated_train = encode_split(splits["train"], shown["train"], encode, "tokenize train", main)
    val_set, truncated_val = encode_split(splits["validation"], shown["validation"], encode, "tokenize validation", main)
    if truncated_train or truncated_val:
        log(f"Truncated to model.max_length={max_length}: {truncated_train} train, {truncated_val} validation texts.")
    if config.train.packing:
        train_set = pack(train_set, max_length, tokenizer.eos_token_id)
    pad_to = max_length if config.train.padding == "max_length" else None
    collate = Collator(tokenizer.pad_token_id, pad_to, classification=head, multi_label=task == "tagging")

    optimizer, optimizer_name = make_optimizer(config, model, accelerator.device.type)
    session = Session(
        config, accelerator, out, splits, taxonomy, unseen, info, model, tokenizer, precision, optimizer, optimizer_name,
        train_set, collate, {"train": truncated_train, "validation": truncated_val},
        {"trainable": trainable, "total": total}, started,
    )
    if head:
        session.loss_weights = class_weights(train_set, len(taxonomy), task == "tagging", config.train.class_weight)
    val_batches = length_grouped_batches([len(e.input_ids) for e in val_set], config.eval.batch_size, 0, True)
    session.val_loader = session.loader(val_set, val_batches)
    session.steps_per_epoch = max(1, math.ceil(len(session.epoch_batches(0)) / accelerator.num_processes / config.train.grad_accum))
    session.total_steps = config.train.max_steps or max(1, math.ceil(config.train.epochs * session.steps_per_epoch))

    from transformers import get_scheduler

    warmup = math.ceil(config.train.warmup_ratio * session.total_steps)
    scheduler = get_scheduler(config.train.scheduler, optimizer, warmup, session.total_steps)
    session.model, session.optimizer, session.scheduler = accelerator.prepare(model, optimizer, scheduler)
    log(f"Training: {len(train_set)} rows, {session.total_steps} optimizer steps ({session.steps_per_epoch}/epoch), optimizer {optimizer_name}")
    write_progress(session, Progress(), "training")
    return session


def run_info(config: TrainConfig, taxonomy: Taxonomy | None, template: PromptTemplate, tokenizer, train: list[dict]) -> RunInfo:
    """How the adapter is to be used (``catalog_lora.json``); what is tuned on validation is filled in later."""
    answers = [target_of(r, config.task, config.data.label_levels, config.data.label_field) for r in train]
    return RunInfo(
        task=config.task,
        method=config.method,
        base_model=config.model.base_model,
        base_model_hub_id=public_model_id(config.model.base_model),
        prompt_template=config.model.prompt_template,
        prompt_labels=config.model.prompt_labels,
        label_levels=config.data.label_levels or None,
        label_field=config.data.label_field,
        max_new_tokens=config.model.max_new_tokens or derive_max_new_tokens(answers, tokenizer, template, config),
        max_length=config.model.max_length,
        at_least_one_label=config.eval.at_least_one_label,
        labels=taxonomy.labels if taxonomy else [],
        num_layers=config.model.num_layers or None,
        knn_k=config.neighbours.k,
        knn_temperature=config.neighbours.temperature,
        prompt_examples=config.model.prompt_examples,
    )


def add_lora(model, config: TrainConfig, precision: Precision):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if precision.quantization in ("4bit", "8bit"):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.model.gradient_checkpointing)
    elif config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    depth = model.config.num_hidden_layers
    if config.lora.layers > depth:
        raise ValueError(f"lora.layers={config.lora.layers} but the model has {depth} decoder layers")
    targets = config.lora.target_modules
    if config.lora.layers and targets == "all-linear":  # peft takes layers_to_transform with module names only
        targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and ".layers." in name})
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=targets,
        layers_to_transform=list(range(depth - config.lora.layers, depth)) if config.lora.layers else None,
        task_type="SEQ_CLS" if config.method == "head" else "CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def resume(session: Session) -> Progress:
    """A fresh start, or where ``train.resume_from`` left off (model, optimizer, scheduler, RNG and progress)."""
    folder = session.config.train.resume_from
    if not folder:
        return Progress()
    session.accelerator.load_state(folder)
    progress = Progress.load(folder)
    session.log(f"Resumed from {folder} at step {progress.step}")
    return progress


def fit(session: Session, progress: Progress) -> Timing:
    """The step loop: gradient accumulation, logging, validation, early stopping, the time budget."""
    config, accelerator, model = session.config, session.accelerator, session.model
    eval_every = config.train.eval_every or session.steps_per_epoch
    running, running_n = 0.0, 0
    bar = tqdm(total=session.total_steps, initial=progress.step, desc="train", disable=not session.main)
    timing = Timing(resumed_tokens=progress.tokens, resumed_samples=progress.samples)  # throughput counts this session only
    started = session.fit_started = time.time()
    stop = False
    model.train()
    handlers = _catch_stop_signals()
    try:
        while not stop and progress.step < session.total_steps:
            dl = session.loader(session.train_set, session.epoch_batches(progress.epoch))
            batches = accelerator.skip_first_batches(dl, progress.batches_done) if progress.batches_done else dl
            for batch in batches:
                with accelerator.accumulate(model):
                    loss = compute_loss(model, batch, session.loss_weights)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(model.parameters(), config.train.max_grad_norm)
                    session.optimizer.step()
                    session.scheduler.step()
                    session.optimizer.zero_grad()
                progress.batches_done += 1
                progress.tokens += int(accelerator.reduce(batch["attention_mask"].sum(), "sum"))
                progress.padded += int(batch["attention_mask"].numel()) * accelerator.num_processes
                progress.samples += batch["input_ids"].shape[0] * accelerator.num_processes
                running += float(loss.detach())
                running_n += 1
                if not accelerator.sync_gradients:
                    continue
                progress.step += 1
                bar.update(1)
                if progress.step % config.train.logging_steps == 0 or progress.step == session.total_steps:
                    mean = float(accelerator.reduce(torch.tensor(running / running_n, device=accelerator.device), "mean"))
                    progress.log_history.append({"step": progress.step, "loss": mean, "lr": session.scheduler.get_last_lr()[0]})
                    bar.set_postfix(loss=f"{mean:.4f}")
                    running, running_n = 0.0, 0
                    write_progress(session, progress, "training")
                # The time budget ends the run once what is left would not also cover the validation at the cut.
                budget, spent = 60 * config.train.max_minutes, time.time() - started
                out_of_time = bool(budget) and spent + closing_validation_seconds(session, progress, timing, spent) > budget
                if out_of_time and progress.step < session.total_steps:
                    progress.cut_by_time = True
                    session.log(f"Time budget of {config.train.max_minutes:g} minutes reached at step {progress.step} of {session.total_steps}: stopping.")
                progress.stopped = STOP.is_set()
                if progress.step % eval_every == 0 or progress.step == session.total_steps or out_of_time or progress.stopped:
                    validation_started = time.time()
                    stop = validate(session, progress) or out_of_time or progress.stopped
                    timing.validation_seconds += time.time() - validation_started
                    timing.validations += 1
                    write_progress(session, progress, "training")
                if stop or progress.step >= session.total_steps:
                    break
            else:
                progress.epoch += 1
                progress.batches_done = 0
    except torch.OutOfMemoryError as error:
        raise RuntimeError(
            f"Out of memory at step {progress.step} with train.batch_size={config.train.batch_size}. "
            "Try a smaller train.batch_size with a larger train.grad_accum, model.quantization=4bit, "
            "model.gradient_checkpointing=true or a smaller model.max_length. "
            f"{session.out} is incomplete (no {COMPLETE_MARKER} file)."
        ) from error
    finally:
        _restore_signals(handlers)
    bar.close()
    timing.train_seconds = time.time() - started
    return timing


def closing_validation_seconds(session: Session, progress: Progress, timing: Timing, elapsed: float) -> float:
    """What a validation will cost: the mean of this session's validations so far or, before the first,
    a forward pass over the validation rows at the training pace (about a third of a training step)."""
    if timing.validations:
        return timing.validation_seconds / timing.validations
    trained = progress.samples - timing.resumed_samples
    seconds_per_row = (elapsed - timing.validation_seconds) / max(1, trained)
    return len(session.splits["validation"]) * seconds_per_row / 3


def _catch_stop_signals() -> dict:
    """Route SIGTERM/SIGINT to :func:`_on_stop_signal` while the loop runs (main thread only); the old handlers."""
    STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        return {}
    _IN_LOOP.set()
    return {sig: signal.signal(sig, _on_stop_signal) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_signals(handlers: dict) -> None:
    _IN_LOOP.clear()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def validate(session: Session, progress: Progress) -> bool:
    """Log validation results, keep the best adapter and a resumable checkpoint; True means stop early."""
    config, accelerator, model = session.config, session.accelerator, session.model
    entry = {"step": progress.step, "eval_loss": validation_loss(model, session.val_loader, accelerator, session.loss_weights)}
    metric = config.train.metric_for_best
    if metric != "eval_loss":
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        engine = Engine(unwrapped, session.tokenizer)
        engine.register(NAME, session.info, session.taxonomy, source=str(session.out))
        scores = scalars(evaluate_engine(engine, NAME, session.splits["validation"], True, config.eval.batch_size, config.eval.constrained))
        if metric not in scores:
            raise ValueError(f"train.metric_for_best={metric!r} is not a {config.task} metric; choose from eval_loss, {', '.join(scores)}")
        entry.update({f"eval_{k}": v for k, v in scores.items()})
        entry[metric] = scores[metric]
        model.train()
    progress.log_history.append(entry)
    value = entry[metric]
    higher_is_better = metric != "eval_loss"
    improved = progress.best is None or (value > progress.best["value"] if higher_is_better else value < progress.best["value"])
    session.log(f"step {progress.step}: eval_loss={entry['eval_loss']:.4f}" + (f" {metric}={value:.4f}" if metric != "eval_loss" else ""))
    checkpoints = session.out / CHECKPOINTS
    if improved:
        progress.best = {"step": progress.step, "value": value}
        progress.bad_evals = 0
        if session.main:
            accelerator.unwrap_model(model).save_pretrained(checkpoints / "best")
    else:
        progress.bad_evals += 1
    # Every process writes its own RNG state into the folder, so each must find it there.
    (checkpoints / "last").mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(checkpoints / "last")
    if session.main:
        progress.save(checkpoints / "last")
    accelerator.wait_for_everyone()
    patience = config.train.early_stopping_patience
    if patience and progress.bad_evals >= patience:
        session.log(f"Early stopping: no improvement of {metric} in {patience} validations.")
        return True
    return False


def best_engine(session: Session, progress: Progress) -> Engine:
    """The best checkpoint's adapter on the inference engine, with its references index, tuned on validation."""
    accelerator, out = session.accelerator, session.out
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(session.model)
    best_dir = out / CHECKPOINTS / "best"
    if progress.best is not None and (best_dir / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(unwrapped, load_file(best_dir / "adapter_model.safetensors"))
        session.log(f"Best checkpoint: step {progress.best['step']} ({session.config.train.metric_for_best}={progress.best['value']:.4f})")
    unwrapped.eval()
    engine = Engine(unwrapped, session.tokenizer, session.precision)
    engine.register(NAME, session.info, session.taxonomy, source=str(out))
    if session.config.references:
        if session.main:
            from catalog_lora.references import build_index

            build_index(session.splits["train"], out / REFERENCES_DIR, session.config.task).close()
        accelerator.wait_for_everyone()
    tune_on_validation(engine, session.splits["validation"], session.config, session.taxonomy, session.log)
    return engine


def main(argv: list[str] | None = None) -> Path:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (training/configs/*.yaml)")
    args, overrides = parser.parse_known_args(argv)
    try:
        config = load_config(args.config, overrides)
    except ValueError as error:
        sys.exit(f"error: {error}")
    try:
        return train(config)
    except TrainingStopped as stopped:
        print(stopped, file=sys.stderr, flush=True)
        sys.exit(STOPPED_EXIT)


if __name__ == "__main__":
    main()
