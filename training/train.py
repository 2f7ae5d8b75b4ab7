"""Fine-tune a decoder-only model with LoRA (QLoRA on CUDA) on one catalog task.

    python -m training.train --config training/configs/sample_tagging.yaml [key=value ...]

:func:`train` reads top to bottom: :func:`setup` (data, model with LoRA, tokens, optimizer),
:func:`training.fit.fit` (the step loop, with :func:`training.fit.validate`, early stopping, the
time budget and resumable checkpoints), :func:`training.fit.best_engine` (the best adapter on the
inference engine, tuned on validation), then :func:`training.run_folder.write_run_folder` (adapter,
config, statistics, plots, the evaluation against the base model and the baseline, ``COMPLETE``
last). The run's state (:class:`training.session.Session`, :class:`training.session.Progress`,
``progress.json``, the stop signals) is in :mod:`training.session`.
It runs unchanged under ``accelerate launch`` or ``torchrun`` on several processes.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from catalog_lora.model.base_model import HEAD_MODULES, Precision, free_memory, load_base_model, public_model_id
from catalog_lora.records.labels import Taxonomy
from catalog_lora.records.prompts import Example, PromptTemplate
from catalog_lora.retrieval.examples import index_word_search, nearest_examples, pooled_examples
from catalog_lora.runs.folder import COMPLETE_MARKER, REFERENCES_DIR, SEARCH_FILES, RunInfo
from training.config import TrainConfig, load_config
from training.data import (
    Collator,
    HeadLoss,
    check_labels,
    class_weights,
    drop_attributes,
    encode_choice,
    encode_generation,
    encode_head,
    length_grouped_batches,
    pack,
    read_config_splits,
    run_attributes,
)
from training.fit import best_engine, fit, resume
from training.plan import (
    ModelShape,
    activation_bytes,
    choose_checkpointing,
    choose_optimizer,
    compile_model,
    length_multiple,
    mixed_precision,
    upcast_trainable,
)
from training.run_folder import write_run_folder
from training.schedule import make_scheduler
from training.session import Progress, Session, TrainingStopped, stopped_message, write_progress
from training.tuning import fit_search

STOPPED_EXIT = 3  # the exit status of a run stopped by SIGTERM/SIGINT (its best checkpoint kept)


def make_optimizer(config: TrainConfig, model, precision: Precision):
    """AdamW over the trainable parameters (:func:`training.plan.choose_optimizer`); a head's new output layer
    may get its own ``train.head_lr``. Returns the optimizer and its name as the run reports it."""
    choice, fused = choose_optimizer(config.train.optimizer, precision)
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
    # fused=None leaves torch's own default (foreach) where the fused kernel is not used
    optimizer = torch.optim.AdamW(params, lr=config.train.lr, weight_decay=config.train.weight_decay, fused=fused or None)
    return optimizer, "adamw (fused)" if fused else choice


def plan_checkpointing(config: TrainConfig, model, precision: Precision) -> tuple[bool, str]:
    """``model.gradient_checkpointing`` resolved against one micro-batch's estimated activations (training.plan)."""
    rows_tokens = config.train.batch_size * config.model.max_length
    tokens = min(rows_tokens, config.train.batch_tokens) if config.train.batch_tokens else rows_tokens
    width = min(config.model.max_length, tokens)
    estimate = activation_bytes(
        ModelShape.of(model.config), max(1, tokens // width), width, model.config.num_hidden_layers,
        torch.finfo(precision.dtype).bits // 8, logits=config.method != "head",
    )
    return choose_checkpointing(config.model.gradient_checkpointing, precision.device, estimate, free_memory(precision.device))


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


def build_references(config: TrainConfig, splits: dict[str, list[dict]], out: Path, accelerator) -> None:
    """The references index of the training split (``references: true``), built once, before the first
    step: the examples a prompt shows come from it during training, and a head's neighbours at tuning."""
    if not config.references:
        return
    if accelerator.is_main_process:
        from catalog_lora.retrieval.references import build_index

        # a description head searches its candidates by title and the attributes its input shows; tags and
        # categories search by the text with the values of the attributes the adapter reads (`Oats [Saffola]`)
        if config.task == "description":
            keys = config.model.choice_attributes if config.method == "head" else None
        else:
            keys = run_attributes(splits["train"], config.task) or None
        build_index(splits["train"], out / REFERENCES_DIR, config.task, reset=True, key_attributes=keys).close()
        if "pooled" in (config.model.choice_search, config.model.choice_training_search):
            fit_search(splits["train"], config, out, accelerator.print)
    accelerator.wait_for_everyone()


def shown_examples(config: TrainConfig, splits: dict[str, list[dict]], out: Path) -> dict[str, list[list[Example]]]:
    """The training examples each train and validation prompt shows (``model.prompt_examples``), from the
    references index, so training sees the prompts the adapter will get; a training row sees its nearest
    *other* rows, never itself. A description head with ``model.choice_training_search: pooled`` is shown the
    TF-IDF search's nearest pooled with the index's (catalog_lora.retrieval.examples.pooled_examples)."""
    k = config.model.prompt_examples
    if not k:
        return {split: [[] for _ in records] for split, records in splits.items()}
    from catalog_lora.retrieval.references import ReferenceIndex

    texts = {split: [r["text"] for r in splits[split]] for split in ("train", "validation")}
    attributes = {split: [r.get("attributes") for r in splits[split]] for split in ("train", "validation")}
    ids = [r["id"] for r in splits["train"]]
    with ReferenceIndex.open(out / REFERENCES_DIR) as index:
        if config.model.choice_training_search != "pooled":
            return {
                "train": nearest_examples(index, texts["train"], k, ids, attributes["train"]),
                "validation": nearest_examples(index, texts["validation"], k, attributes=attributes["validation"]),
            }
        keys = config.model.choice_attributes
        search, rows = index_word_search(index, [out / name for name in SEARCH_FILES], keys)
        return {
            "train": pooled_examples(index, search, rows, texts["train"], k, keys, attributes["train"], ids),
            "validation": pooled_examples(index, search, rows, texts["validation"], k, keys, attributes["validation"]),
        }


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


def setup(config: TrainConfig) -> Session:
    """Data, the base model with LoRA, the tokenized splits, the optimizer: everything before the first step."""
    # cpu=True without CUDA: otherwise accelerate ignores torchrun's WORLD_SIZE on CPU and runs each process alone.
    # The loop steps the scheduler once per optimizer step itself: accelerate's default steps it once per
    # process, which would run the schedule num_processes times too fast under torchrun.
    # On CUDA the steps compute under autocast with fp32 trainable weights (training.plan.mixed_precision).
    cuda = torch.cuda.is_available()
    accelerator = Accelerator(
        gradient_accumulation_steps=config.train.grad_accum,
        cpu=not cuda,
        step_scheduler_with_optimizer=False,
        mixed_precision=mixed_precision("cuda" if cuda else "cpu"),
        dataloader_config=DataLoaderConfiguration(non_blocking=cuda),
    )
    log, main = accelerator.print, accelerator.is_main_process
    out = Path(config.output_dir)
    set_seed(config.train.seed)
    started = time.time()
    task, head, spec = config.task, config.method == "head", config.spec
    # a head over the nearest training descriptions (catalog_lora.inference.choice)
    choosing = head and task == "description"

    splits = read_config_splits(config)
    taxonomy = spec.taxonomy(splits["train"])  # None for descriptions
    unseen = check_labels(splits, taxonomy, spec) if taxonomy else {}
    # data.auxiliary_field / auxiliary_levels: outputs after the head's, for the loss only (dropped in best_engine)
    auxiliary = (config.auxiliary_spec, config.auxiliary_spec.taxonomy(splits["train"])) if config.auxiliary_spec else None
    extra_outputs = len(auxiliary[1]) if auxiliary else 0
    if auxiliary:
        what = f"{config.data.auxiliary_field} tags" if task == "tagging" else f"categories at levels={config.data.auxiliary_levels}"
        log(f"Auxiliary outputs: {extra_outputs} {what} beside the head's {len(taxonomy)}, for the loss only.")
    if unseen:
        log(f"Note: {sum(unseen.values())} validation/test labels never occur in training ({len(unseen)} distinct); they count as errors.")

    model, tokenizer, precision = load_base_model(
        config.model.base_model,
        config.model.quantization,
        device=str(accelerator.device),
        num_labels=(1 if choosing else len(taxonomy) + extra_outputs) if head else None,  # a description head scores each candidate
        problem_type=("multi_label_classification" if task == "tagging" else "single_label_classification") if head else None,
        num_layers=config.model.num_layers or None,
    )
    log(f"Precision: {precision.describe()}")
    template = PromptTemplate(task, config.model.prompt_template, tuple(taxonomy.labels) if config.model.prompt_labels and taxonomy else ())
    info = run_info(config, taxonomy, template, tokenizer, splits["train"])
    checkpointing, why = plan_checkpointing(config, model, precision)
    log(f"Gradient checkpointing: {'on' if checkpointing else 'off'} ({why})")
    model = add_lora(model, config, precision, checkpointing)
    compile_model(model, config.train.compile)
    trainable, total = sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters())
    log(f"Parameters: {total:,} total, {trainable:,} trainable ({100 * trainable / total:.3f}%)")

    max_length = config.model.max_length
    if choosing:
        encode = lambda r, shown: encode_choice(r, shown, tokenizer, max_length, config.model.choice_attributes)  # noqa: E731
    elif head:
        encode = lambda r, _: encode_head(r, taxonomy, tokenizer, spec, max_length, auxiliary)  # noqa: E731
    else:
        encode = lambda r, shown: encode_generation(r, template, tokenizer, spec, max_length, shown)  # noqa: E731
    if main:  # the first write: what can fail early (config, data, the model) has not touched a finished run
        out.mkdir(parents=True, exist_ok=True)
        (out / COMPLETE_MARKER).unlink(missing_ok=True)
    build_references(config, splits, out, accelerator)
    shown = shown_examples(config, splits, out)
    # the adapter's own examples only: the references index and the votes keep every attribute
    train_examples = drop_attributes(splits["train"], config.data.attribute_dropout, config.train.seed)
    train_set, truncated_train = encode_split(train_examples, shown["train"], encode, "tokenize train", main)
    val_set, truncated_val = encode_split(splits["validation"], shown["validation"], encode, "tokenize validation", main)
    if truncated_train or truncated_val:
        log(f"Truncated to model.max_length={max_length}: {truncated_train} train, {truncated_val} validation texts.")
    if config.train.packing:
        train_set = pack(train_set, max_length, tokenizer.eos_token_id)
    pad_to = max_length if config.train.padding == "max_length" else None
    collate = Collator(
        tokenizer.pad_token_id, pad_to, classification=head, multi_label=task == "tagging",
        multiple=length_multiple(config.train.compile),
    )

    optimizer, optimizer_name = make_optimizer(config, model, precision)
    session = Session(
        config, accelerator, out, splits, taxonomy, unseen, info, model, tokenizer, precision, optimizer, optimizer_name,
        train_set, collate, {"train": truncated_train, "validation": truncated_val},
        {"trainable": trainable, "total": total}, started,
    )
    session.plan = {
        "gradient_checkpointing": checkpointing,
        "gradient_checkpointing_reason": why,
        "mixed_precision": accelerator.mixed_precision,
        "batch_tokens": config.train.batch_tokens,
        "compile": config.train.compile,
    }
    if head and not choosing:
        # a tag head weighs every output, its auxiliary ones too; a category head its own categories
        weighed = len(taxonomy) + (extra_outputs if task == "tagging" else 0)
        weights = class_weights(train_set, weighed, task == "tagging", config.train.class_weight)
        if weights is not None or extra_outputs:
            session.head_loss = HeadLoss(weights, len(taxonomy) if extra_outputs else 0, config.train.auxiliary_weight)
    val_batches = length_grouped_batches([len(e.input_ids) for e in val_set], config.eval.batch_size, 0, True, config.eval.batch_tokens)
    session.val_loader = session.loader(val_set, val_batches)
    session.steps_per_epoch = max(1, math.ceil(len(session.epoch_batches(0)) / accelerator.num_processes / config.train.grad_accum))
    session.total_steps = config.train.max_steps or max(1, math.ceil(config.train.epochs * session.steps_per_epoch))

    scheduler, session.schedule = make_scheduler(optimizer, config.train.scheduler, config.train.warmup_ratio, session.total_steps)
    session.model, session.optimizer, session.scheduler = accelerator.prepare(model, optimizer, scheduler)
    log(f"Training: {len(train_set)} rows, {session.total_steps} optimizer steps ({session.steps_per_epoch}/epoch), optimizer {optimizer_name}")
    write_progress(session, Progress(), "training")
    return session


def run_info(config: TrainConfig, taxonomy: Taxonomy | None, template: PromptTemplate, tokenizer, train: list[dict]) -> RunInfo:
    """How the adapter is to be used (``catalog_lora.json``); what is tuned on validation is filled in later."""
    spec = config.spec
    answers = [spec.answer(r) for r in train]
    return RunInfo(
        task=spec.task,
        method=config.method,
        base_model=config.model.base_model,
        base_model_hub_id=public_model_id(config.model.base_model),
        prompt_template=config.model.prompt_template,
        prompt_labels=config.model.prompt_labels,
        label_levels=spec.levels,
        label_field=spec.label_field,
        max_new_tokens=config.model.max_new_tokens or derive_max_new_tokens(answers, tokenizer, template, config),
        max_length=config.model.max_length,
        at_least_one_label=config.eval.at_least_one_label,
        labels=taxonomy.labels if taxonomy else [],
        num_layers=config.model.num_layers or None,
        knn_k=config.neighbours.k,
        knn_temperature=config.neighbours.temperature,
        prompt_examples=config.model.prompt_examples,
        choice_attributes=list(config.model.choice_attributes),
        choice_search=config.model.choice_search,
        attributes=run_attributes(train, spec.task),
    )


def add_lora(model, config: TrainConfig, precision: Precision, checkpointing: bool = False):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if precision.quantization in ("4bit", "8bit"):  # it also casts the unquantized weights to fp32
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
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
    model = get_peft_model(model, lora)
    if mixed_precision(precision.device.split(":")[0]) != "no":
        upcast_trainable(model)  # fp32 master weights under autocast (a head's new layer is loaded in bf16)
    return model


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
