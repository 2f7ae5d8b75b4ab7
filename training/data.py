"""From canonical records to token batches: loss masking, padding, length grouping, packing."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from catalog_lora.inference.choice import NO_POSITION, candidate_scores, choice_lines, fit_lines
from catalog_lora.model.batching import cut_batches, pad_rows
from catalog_lora.records.canonical import SPLITS
from catalog_lora.records.dataset_files import attribute_keys, load_split
from catalog_lora.records.labels import Taxonomy
from catalog_lora.records.prompts import Example, PromptTemplate, select_attributes, vote_text
from catalog_lora.records.task_spec import TaskSpec
from training.config import CLASS_WEIGHTS, TrainConfig

IGNORE_INDEX = -100
# A description head's targets: chrF points per factor e of preference between two candidates (encode_choice).
CHOICE_TARGET_TEMPERATURE = 5.0


class DataError(ValueError):
    pass


def read_split(folder: str | Path, split: str, limit: int = 0) -> list[dict]:
    """A split of a prepared folder, refused when empty; ``limit`` keeps the first N records."""
    try:
        records = load_split(folder, split)
    except FileNotFoundError as error:
        raise DataError(f"{error}; prepare the data with `python -m datasets_prep.prepare` first") from None
    if not records:
        raise DataError(f"split {split!r} in {folder} has no examples; every split needs at least one")
    return records[:limit] if limit else records


def read_splits(folder: str | Path, max_train: int = 0, max_eval: int = 0) -> dict[str, list[dict]]:
    return {split: read_split(folder, split, max_train if split == "train" else max_eval) for split in SPLITS}


def read_config_splits(config: TrainConfig) -> dict[str, list[dict]]:
    """The splits a run reads: ``data.path``'s, capped by ``data.max_*_examples``. With ``data.attributes: false``
    the records' attributes are dropped (the text alone). Otherwise a tag or category record keeps those its
    training split carries (:func:`run_attributes`), in their order, as the adapter will read them
    (catalog_lora.records.prompts.select_attributes); a description keeps all of its own."""
    data = config.data
    splits = read_splits(data.path, data.max_train_examples, data.max_eval_examples)
    names = attribute_keys({"train": splits["train"]})
    for records in splits.values():
        for record in records:
            if not data.attributes:
                record.pop("attributes", None)
            elif config.task != "description":
                record["attributes"] = select_attributes(record.get("attributes"), names)
    return splits


def drop_attributes(records: list[dict], share: float, seed: int) -> list[dict]:
    """``records`` with the attributes of a seeded draw of ``share`` of them left out (copies; the rest as they
    are): ``data.attribute_dropout``'s training examples, meant to teach the adapter the text alone too."""
    if not share:
        return records
    rng = random.Random(seed)
    return [{k: v for k, v in r.items() if k != "attributes"} if rng.random() < share else r for r in records]


def run_attributes(train: list[dict], task: str) -> list[str]:
    """The attributes a tag or category adapter reads beside the text (``RunInfo.attributes``): every one its
    training records carry (as :func:`read_config_splits` left them); none for a description adapter, which
    shows what each product has."""
    return [] if task == "description" else attribute_keys({"train": train})


def vote_texts(records: list[dict], attributes: Sequence[str]) -> list[str]:
    """What the classical model and a head's votes read of each record: its text with the values of the
    ``attributes`` the adapter reads (``Oats 1 kg [Saffola]``), as the engine's votes do; the text alone when
    it reads none."""
    return [vote_text(r["text"], select_attributes(r.get("attributes"), attributes)) for r in records]


def check_labels(splits: dict[str, list[dict]], taxonomy: Taxonomy, spec: TaskSpec) -> dict:
    """Labels in validation/test that training never saw: counted, so metrics can be read honestly."""
    unseen: dict[str, int] = {}
    for split in ("validation", "test"):
        for record in splits[split]:
            for label in spec.labels(record):
                if label not in taxonomy:
                    unseen[label] = unseen.get(label, 0) + 1
    return unseen


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int] | list[float] | int
    truncated: bool
    positions: list[int] | None = None
    """A description head's candidate places: where each candidate's line ends (catalog_lora.inference.choice)."""


def encode_generation(
    record, template: PromptTemplate, tokenizer, spec: TaskSpec, max_length, examples: Sequence[Example] = ()
) -> Encoded:
    """Prompt + answer tokens; the loss sees only the answer (prompt labels are ``IGNORE_INDEX``).

    ``examples``: the nearest training examples the prompt shows (``model.prompt_examples``)."""
    answer_ids = tokenizer.encode(
        template.answer(spec.answer(record), tokenizer), add_special_tokens=False
    )
    answer_ids = answer_ids[: max(1, max_length // 2)] if len(answer_ids) > max_length // 2 else answer_ids
    prompt, truncated = template.fit(
        record["text"], tokenizer, max_length - len(answer_ids), record.get("attributes"), examples
    )
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    return Encoded(prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids, truncated)


def encode_head(
    record, taxonomy: Taxonomy, tokenizer, spec: TaskSpec, max_length, auxiliary: tuple[TaskSpec, Taxonomy] | None = None
) -> Encoded:
    """A head's input and target. ``auxiliary`` (a spec and its taxonomy) adds labels learnt beside the head's:
    a tag head's ``data.auxiliary_field`` tags follow its own in the target, one output each; a category head's
    target becomes the pair of its own label's index and the ``data.auxiliary_levels`` path's."""
    text = PromptTemplate(spec.task, "alpaca").user_input(record["text"], record.get("attributes"))
    ids = tokenizer.encode(text, add_special_tokens=False)
    gold = [taxonomy.canonical(label) for label in spec.labels(record)]
    if taxonomy.multi_label:
        target: list[float] | int = [1.0 if label in gold else 0.0 for label in taxonomy.labels]
        if auxiliary:
            extra, extra_taxonomy = auxiliary
            tags = {extra_taxonomy.canonical(label) for label in extra.labels(record)}
            target += [1.0 if label in tags else 0.0 for label in extra_taxonomy.labels]
    else:
        target = taxonomy.index(gold[0]) if gold[0] is not None else IGNORE_INDEX
        if auxiliary:
            extra, extra_taxonomy = auxiliary
            path = extra_taxonomy.canonical(extra.labels(record)[0])
            target = [target, extra_taxonomy.index(path) if path is not None else IGNORE_INDEX]
    return Encoded(ids[:max_length], target, len(ids) > max_length)


def encode_choice(
    record, candidates: Sequence[Example], tokenizer, max_length, attribute_keys: Sequence[str] = ()
) -> Encoded:
    """A description head's input (:mod:`catalog_lora.inference.choice`) with its candidate places, and its target:
    a share for each candidate shown, ``softmax(chrF / CHOICE_TARGET_TEMPERATURE)`` of its description
    against the record's own. Candidates with the same description (a product line's sizes) share alike,
    so the head is not taught to prefer one of two equal answers; a clearly closer one takes nearly all."""
    import sacrebleu

    if not candidates:
        raise DataError(f"record {record.get('id')!r} has no candidate descriptions: the references index is empty")
    lines = choice_lines(record["text"], record.get("attributes"), candidates, tokenizer, attribute_keys)
    _, ids, positions, truncated = fit_lines(lines, tokenizer, max_length)
    closeness = torch.tensor([sacrebleu.sentence_chrf(c.answer, [record["description"]]).score for c in candidates[: len(positions)]])
    return Encoded(ids, torch.softmax(closeness / CHOICE_TARGET_TEMPERATURE, dim=0).tolist(), truncated, positions)


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, group: bool, batch_tokens: int = 0) -> list[list[int]]:
    """Shuffled batches; with ``group`` each batch holds examples of similar length.

    Sorting within shuffled mega-batches of 50 batches keeps the order random from epoch
    to epoch while padding stays small. With ``batch_tokens`` a batch holds as many rows as fit
    in that many padded tokens, up to ``batch_size`` (:func:`catalog_lora.model.batching.cut_batches`).
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group:
        mega = batch_size * 50
        order = [i for s in range(0, len(order), mega) for i in sorted(order[s : s + mega], key=lambda j: -lengths[j])]
    batches = cut_batches(order, lengths, batch_size, batch_tokens)
    if group:
        rng.shuffle(batches)
    return batches


def pack(examples: list[Encoded], max_length: int, eos_id: int) -> list[Encoded]:
    """Concatenate examples into rows of exactly ``max_length`` tokens (the last row may be shorter).

    Examples are separated by their own end-of-answer token; attention crosses example
    borders, the usual price of packing without varlen attention kernels.
    """
    rows, ids, labels = [], [], []
    for example in examples:
        ids.extend(example.input_ids)
        labels.extend(example.labels)
        while len(ids) >= max_length:
            rows.append(Encoded(ids[:max_length], labels[:max_length], False))
            ids, labels = ids[max_length:], labels[max_length:]
    if ids:
        rows.append(Encoded(ids, labels, False))
    return rows


class Collator:
    """Pads a list of :class:`Encoded` into tensors, to the batch's longest or to ``max_length``.

    Generation examples are padded on the left, so every answer ends in the last column and
    :func:`answer_loss` needs logits for the tail only; ``position_ids`` start at 0 on the
    first real token, as they do in ``generate``.
    """

    def __init__(self, pad_id: int, pad_to: int | None = None, classification: bool = False, multi_label: bool = False,
                 multiple: int = 1):
        self.pad_id = pad_id
        self.pad_to = pad_to
        self.multiple = multiple  # the longest row's length rounded up to it: fewer distinct shapes (CUDA graphs)
        self.classification = classification
        self.multi_label = multi_label

    def __call__(self, batch: list[Encoded]) -> dict[str, torch.Tensor]:
        width = self.pad_to or -(-max(len(e.input_ids) for e in batch) // self.multiple) * self.multiple
        left = not self.classification
        ids = torch.tensor(pad_rows([e.input_ids for e in batch], self.pad_id, width, left))
        mask = torch.tensor(pad_rows([[1] * len(e.input_ids) for e in batch], 0, width, left))
        out = {"input_ids": ids, "attention_mask": mask}
        if self.classification and batch[0].positions is not None:  # a description head: k places, a share each
            out["positions"] = torch.tensor(pad_rows([e.positions for e in batch], NO_POSITION))
            out["labels"] = torch.tensor(pad_rows([e.labels for e in batch], 0.0))
        elif self.classification:
            dtype = torch.float if self.multi_label else torch.long
            out["labels"] = torch.tensor([e.labels for e in batch], dtype=dtype)
        else:
            out["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
            out["labels"] = torch.tensor(pad_rows([e.labels for e in batch], IGNORE_INDEX, width, left))
        return out


def class_weights(train_set: list[Encoded], num_labels: int, multi_label: bool, mode: str) -> torch.Tensor | None:
    """Loss weights that count rare labels up, the head's counterpart of scikit-learn's ``class_weight``.

    Tags: a ``pos_weight`` per label of ``negatives / positives`` (``balanced``) or its square root
    (``sqrt``, gentler), so a label seen in 1% of the rows is not learned as "always no". Categories:
    ``rows / (classes * rows of the class)`` or its square root. ``none``: plain mean loss. A label
    absent from training gets weight 1 (there are no positives to count up).
    """
    if mode not in CLASS_WEIGHTS:
        raise ValueError(f"class weight mode {mode!r} is not one of {', '.join(CLASS_WEIGHTS)}")
    if mode == "none":
        return None
    if multi_label:
        positives = torch.tensor([e.labels for e in train_set], dtype=torch.float).sum(0)
        ratio = (len(train_set) - positives) / positives
    else:
        own = [e.labels if isinstance(e.labels, int) else e.labels[0] for e in train_set]  # [own, auxiliary] pairs
        targets = torch.tensor([label for label in own if label != IGNORE_INDEX])
        ratio = len(targets) / (num_labels * torch.bincount(targets, minlength=num_labels).float())
    weights = ratio.sqrt() if mode == "sqrt" else ratio
    return torch.where(torch.isfinite(weights) & (weights > 0), weights, torch.ones_like(weights))


@dataclass(frozen=True)
class HeadLoss:
    """How a head's loss is made beyond the model's own: rare labels counted up (:func:`class_weights`, one per
    output of a tag head, one per own category of a category head) and the auxiliary outputs
    (``data.auxiliary_field`` or ``data.auxiliary_levels``): where they start, and the weight of their loss, a
    mean of its own, beside the head's (``train.auxiliary_weight``)."""

    weights: torch.Tensor | None = None
    auxiliary_from: int = 0
    """The first auxiliary output (0: none)."""
    auxiliary_weight: float = 0.0


def head_loss(model, batch: dict[str, torch.Tensor], loss: HeadLoss) -> torch.Tensor:
    """The head's loss: BCE (with ``pos_weight``) for tags, CE (with class weights) for categories, plus the
    auxiliary outputs' BCE or CE at their weight, so that many auxiliary labels do not outweigh the head's own."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits.float()
    labels = batch["labels"]
    weights = None if loss.weights is None else loss.weights.to(logits.device)
    cut = loss.auxiliary_from or logits.shape[1]
    if not labels.dtype.is_floating_point:  # a category: the label's index, or [own, auxiliary] pairs
        ce = torch.nn.functional.cross_entropy
        if not loss.auxiliary_from:
            return ce(logits, labels, weight=weights, ignore_index=IGNORE_INDEX)
        own = ce(logits[:, :cut], labels[:, 0], weight=weights, ignore_index=IGNORE_INDEX)
        return own + loss.auxiliary_weight * ce(logits[:, cut:], labels[:, 1], ignore_index=IGNORE_INDEX)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    own = bce(logits[:, :cut], labels[:, :cut], pos_weight=None if weights is None else weights[:cut])
    if not loss.auxiliary_from:
        return own
    extra = bce(logits[:, cut:], labels[:, cut:], pos_weight=None if weights is None else weights[cut:])
    return own + loss.auxiliary_weight * extra


def choice_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """A description head's loss: cross-entropy of the softmax over its candidates' scores against their shares."""
    scores = candidate_scores(model, batch["input_ids"], batch["attention_mask"], batch["positions"])
    log_probs = torch.log_softmax(scores, dim=-1).masked_fill(batch["positions"] == NO_POSITION, 0.0)
    return -(batch["labels"] * log_probs).sum(dim=-1).mean()


def answer_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens, with logits computed only from the first answer column on.

    The vocabulary projection is the largest single matmul of a small model; with left
    padding the answers sit at the end of every row, so most rows need it for a few columns.
    """
    labels = batch["labels"]
    width = labels.shape[1]
    first = int((labels != IGNORE_INDEX).float().argmax(dim=1).min())
    keep = min(width, width - first + 1)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, logits_to_keep=keep).logits
    targets = labels[:, width - keep + 1 :]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )
