"""The step loop of a training run: :func:`fit` (gradient accumulation, logging, :func:`validate`,
early stopping, the time budget, resumable checkpoints) and :func:`best_engine` (the best adapter on
the inference engine, tuned on validation).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from catalog_lora.inference.engine import Engine
from catalog_lora.model.base_model import HEAD_MODULES
from catalog_lora.runs.folder import COMPLETE_MARKER
from catalog_lora.runs.markdown import scalars
from training.data import HeadLoss, answer_loss, choice_loss, head_loss
from training.evaluate import evaluate_engine
from training.run_folder import CHECKPOINTS, Timing
from training.session import STOP, Progress, Session, catch_stop_signals, restore_signals, write_progress
from training.tuning import NAME, fit_lexical, tune_on_validation


def compute_loss(model, batch, loss: HeadLoss | None = None):
    """Causal LMs use the answer-only loss of training.data; heads their own loss, or ``loss``'s (class weights,
    auxiliary outputs); a description head the softmax over its candidates."""
    if "position_ids" in batch:
        return answer_loss(model, batch)
    if "positions" in batch:
        return choice_loss(model, batch)
    return model(**batch).loss if loss is None else head_loss(model, batch, loss)


@torch.no_grad()
def validation_loss(model, loader, accelerator, loss: HeadLoss | None = None) -> float:
    model.eval()
    total, count = torch.zeros((), device=accelerator.device), torch.zeros((), device=accelerator.device)
    for batch in loader:
        value = compute_loss(model, batch, loss)
        total += value.detach().float() * batch["input_ids"].shape[0]
        count += batch["input_ids"].shape[0]
    model.train()
    total, count = accelerator.reduce(total, "sum"), accelerator.reduce(count, "sum")
    return float(total / count)


def resume(session: Session) -> Progress:
    """A fresh start, or where ``train.resume_from`` left off (model, optimizer, scheduler, RNG and progress)."""
    folder = session.config.train.resume_from
    if not folder:
        return Progress()
    session.accelerator.load_state(folder)
    progress = Progress.load(folder)
    session.log(f"Resumed from {folder} at step {progress.step}")
    return progress


def train_step(session: Session, batch: dict) -> torch.Tensor:
    """One batch: the loss, its gradients and, where a gradient accumulation ends, clipping, the optimizer's
    step and the schedule's. Returns the loss as it is, on the device: reading it would make the host wait."""
    accelerator, model = session.accelerator, session.model
    with accelerator.accumulate(model):
        loss = compute_loss(model, batch, session.head_loss)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), session.config.train.max_grad_norm)
        session.optimizer.step()
        if accelerator.sync_gradients:
            session.scheduler.step()
        session.optimizer.zero_grad()
    return loss


def fit(session: Session, progress: Progress) -> Timing:
    """The step loop: gradient accumulation, logging, validation, early stopping, the time budget."""
    config, accelerator, model = session.config, session.accelerator, session.model
    eval_every = config.train.eval_every or session.steps_per_epoch
    # The loss and token counts stay on the device between logging steps: reading them every step would make
    # the host wait for the GPU each step instead of queueing the next one (a launch-bound small model's speed).
    running, running_n = torch.zeros((), device=accelerator.device), 0
    tokens = torch.zeros((), dtype=torch.long, device=accelerator.device)

    def fold_tokens() -> None:  # every process calls it at the same steps (a collective)
        progress.tokens += int(accelerator.reduce(tokens, "sum"))
        tokens.zero_()

    bar = tqdm(total=session.total_steps, initial=progress.step, desc="train", disable=not session.main)
    timing = Timing(resumed_tokens=progress.tokens, resumed_samples=progress.samples)  # throughput counts this session only
    started = session.fit_started = time.time()
    stop = False
    model.train()
    handlers = catch_stop_signals()
    try:
        while not stop and progress.step < session.total_steps:
            dl = session.loader(session.train_set, session.epoch_batches(progress.epoch))
            batches = accelerator.skip_first_batches(dl, progress.batches_done) if progress.batches_done else dl
            for batch in batches:
                loss = train_step(session, batch)
                progress.batches_done += 1
                tokens += batch["attention_mask"].sum()
                progress.padded += int(batch["attention_mask"].numel()) * accelerator.num_processes
                progress.samples += batch["input_ids"].shape[0] * accelerator.num_processes
                running += loss.detach().float()
                running_n += 1
                if not accelerator.sync_gradients:
                    continue
                progress.step += 1
                bar.update(1)
                if progress.step % config.train.logging_steps == 0 or progress.step == session.total_steps:
                    fold_tokens()
                    mean = float(accelerator.reduce(running / running_n, "mean"))
                    progress.log_history.append({"step": progress.step, "loss": mean, "lr": session.scheduler.get_last_lr()[0]})
                    bar.set_postfix(loss=f"{mean:.4f}")
                    running, running_n = torch.zeros((), device=accelerator.device), 0
                    write_progress(session, progress, "training")
                # The time budget ends the run once what is left would not also cover the validation at the cut,
                # and (anneal_to_budget) moves the learning rate's decay along with the share of it spent.
                out_of_time = False
                if config.train.max_minutes:
                    share = budget_share(session, progress, timing, time.time() - started)
                    out_of_time = share >= 1.0
                    if config.train.anneal_to_budget:
                        session.schedule.time_share = share
                if out_of_time and progress.step < session.total_steps:
                    progress.cut_by_time = True
                    session.log(f"Time budget of {config.train.max_minutes:g} minutes reached at step {progress.step} of {session.total_steps}: stopping.")
                progress.stopped = STOP.is_set()
                if progress.step % eval_every == 0 or progress.step == session.total_steps or out_of_time or progress.stopped:
                    fold_tokens()  # the checkpoint's progress counts them
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
            "model.gradient_checkpointing=on, a train.batch_tokens budget or a smaller model.max_length. "
            f"{session.out} is incomplete (no {COMPLETE_MARKER} file)."
        ) from error
    finally:
        restore_signals(handlers)
    bar.close()
    timing.train_seconds = time.time() - started
    return timing


def budget_share(session: Session, progress: Progress, timing: Timing, spent: float) -> float:
    """The share of ``train.max_minutes`` that is spent once the validation at a cut is counted in; the
    largest over the processes, so that all of them stop (and anneal) at the same step."""
    needed = spent + closing_validation_seconds(session, progress, timing, spent)
    if session.accelerator.num_processes == 1:  # no gather: it would make the host wait for the GPU each step
        return needed / (60 * session.config.train.max_minutes)
    share = torch.tensor([needed / (60 * session.config.train.max_minutes)], device=session.accelerator.device)
    return float(session.accelerator.gather(share).max())


def closing_validation_seconds(session: Session, progress: Progress, timing: Timing, elapsed: float) -> float:
    """What a validation will cost: the mean of this session's validations so far or, before the first,
    a forward pass over the validation rows at the training pace (about a third of a training step)."""
    if timing.validations:
        return timing.validation_seconds / timing.validations
    trained = progress.samples - timing.resumed_samples
    seconds_per_row = (elapsed - timing.validation_seconds) / max(1, trained)
    return len(session.splits["validation"]) * seconds_per_row / 3


def validate(session: Session, progress: Progress) -> bool:
    """Log validation results, keep the best adapter and a resumable checkpoint; True means stop early."""
    config, accelerator, model = session.config, session.accelerator, session.model
    entry = {"step": progress.step, "eval_loss": validation_loss(model, session.val_loader, accelerator, session.head_loss)}
    metric = config.train.metric_for_best
    if metric != "eval_loss":
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        engine = Engine(unwrapped, session.tokenizer, session.precision)
        engine.register(NAME, session.info, session.taxonomy, source=str(session.out))
        with own_outputs(unwrapped, len(session.taxonomy) if config.auxiliary_spec else None):
            scores = scalars(evaluate_engine(engine, NAME, session.splits["validation"], True, config.eval.batch_size, config.eval.constrained, config.eval.batch_tokens))
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
    """The best checkpoint's adapter on the inference engine (with the references index setup built), tuned on validation."""
    accelerator, out = session.accelerator, session.out
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(session.model)
    best_dir = out / CHECKPOINTS / "best"
    if progress.best is not None and (best_dir / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(unwrapped, load_file(best_dir / "adapter_model.safetensors"))
        session.log(f"Best checkpoint: step {progress.best['step']} ({session.config.train.metric_for_best}={progress.best['value']:.4f})")
    if session.config.auxiliary_spec:
        drop_auxiliary_outputs(unwrapped, len(session.taxonomy))
    unwrapped.eval()
    engine = Engine(unwrapped, session.tokenizer, session.precision)
    engine.register(NAME, session.info, session.taxonomy, source=str(out))
    if session.config.lexical.vote:  # the lexical vote's model, fitted once and saved beside the adapter
        if session.main:
            session.baseline = fit_lexical(
                session.splits["train"], session.splits["validation"], session.config, session.taxonomy, session.info.attributes, out, session.log
            )
        accelerator.wait_for_everyone()
    with engine.reusing_passes():  # each choice scores the same validation rows with the same head
        tune_on_validation(engine, session.splits["validation"], session.config, session.taxonomy, session.log)
    return engine


def widened_output_layers(model, num_labels: int) -> list[torch.nn.Linear]:
    """A head's output layers (peft's trained copy and the original) that carry more than its ``num_labels``
    outputs: those of ``data.auxiliary_field`` or ``data.auxiliary_levels`` follow the head's own, for the loss only."""
    return [
        module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and set(HEAD_MODULES) & set(name.split(".")) and module.out_features > num_labels
    ]


@contextmanager
def own_outputs(model, num_labels: int | None):
    """While inside, the head answers with its first ``num_labels`` outputs only, as the engine expects of a
    head (a validation during training scores the widened head as it will be saved); None leaves it as it is."""
    layers = widened_output_layers(model, num_labels) if num_labels is not None else []
    hooks = [layer.register_forward_hook(lambda _module, _args, output: output[..., :num_labels]) for layer in layers]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def drop_auxiliary_outputs(model, num_labels: int) -> None:
    """Cut a head's output layer to its first ``num_labels`` outputs (the auxiliary ones follow them, for the
    loss only): the adapter is then scored, saved and loaded as a plain head of its own labels."""
    for module in widened_output_layers(model, num_labels):
        module.weight = torch.nn.Parameter(module.weight[:num_labels].detach().clone(), requires_grad=module.weight.requires_grad)
        if module.bias is not None:
            module.bias = torch.nn.Parameter(module.bias[:num_labels].detach().clone(), requires_grad=module.bias.requires_grad)
        module.out_features = num_labels
    base = model.get_base_model()
    base.num_labels = base.config.num_labels = num_labels
