"""The model card of a finished run folder.

    python -m model_cards.card runs/sample-tagging --repo-id user/catalog-tagging [--output README.md]

:func:`render_adapter_card` reads a run folder (:class:`model_cards.card_run.Run`, over the core's
:class:`catalog_lora.runs.folder.RunFolder`) and returns a ``huggingface_hub.ModelCard`` rendered from
``templates/adapter_card.md``: the template holds the prose, this module the values. Everything in
the card comes from the run: ``catalog_lora.json``, ``adapter_config.json``, the adapter weights'
header, ``metrics.json``, and when present ``taxonomy.json``, ``config.yaml``, ``train_stats.json``,
the plots and the prepared data folder's ``report.json``. A missing optional file makes its section
say so; a folder without adapter files, ``catalog_lora.json`` or ``metrics.json`` is refused.
"""

from __future__ import annotations

import argparse
import math
import shlex
from importlib.metadata import version
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from catalog_lora.inference import choice
from catalog_lora.inference.bf16_check import BF16_MIN_AGREEMENT
from catalog_lora.records.canonical import HEADLINE
from catalog_lora.records.prompts import (
    CUT_MARK,
    RESPONSE_PREFIX,
    WITH_ATTRIBUTES,
    PromptTemplate,
    format_answer,
    vote_text,
)
from catalog_lora.retrieval.embeddings import MODEL_NAME
from catalog_lora.runs.citation import TASK_TITLES, adapter_citation, run_year
from catalog_lora.runs.folder import (
    CONFIG_FILE,
    CONFUSION_PLOT,
    EXAMPLES_FILE,
    LEXICAL_FILES,
    LOSS_PLOT,
    NEIGHBOURS_FILE,
    PER_LABEL_PLOT,
    REFERENCES_DIR,
    SEARCH_FILES,
    STATS_FILE,
    SYSTEMS_PLOT,
    TAXONOMY_FILE,
    check_repo_id,
)
from catalog_lora.runs.markdown import COUNT_KEYS, format_value, markdown_table, metrics_table, scalars, system_names
from model_cards.card_code import EXAMPLE_TEXT, example_attributes, usage_code
from model_cards.card_run import CardError, Run, find
from model_cards.templating import render

PLOT_CAPTIONS = {
    SYSTEMS_PLOT: "Base model vs adapter vs baseline on the test split",
    PER_LABEL_PLOT: "F1 per tag on the test split",
    CONFUSION_PLOT: "Confusion matrix on the test split",
}
# The packages the card's code imports (model_cards/templates/usage_*.py.jinja), pinned in its install line.
CODE_PACKAGES = ("transformers", "peft", "torch", "huggingface_hub")
# What the card's code reads of the sentence model (nearest.py.jinja): AutoTokenizer, AutoModel, its pooling settings.
EMBEDDER_FILES = (
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
    "special_tokens_map.json", "sentence_bert_config.json",
)
RARE_BELOW = 10  # labels with fewer training examples are named in the limitations
SMALL_TEST = 200  # a test split this small is said to be noisy
TRAIN_KEYS = (
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "lr",
    "scheduler",
    "warmup_ratio",
    "weight_decay",
    "optimizer",
    "max_grad_norm",
    "seed",
)
MODEL_KEYS = ("quantization", "max_length", "prompt_template")


def _targets(value) -> str:
    return ", ".join(f"`{t}`" for t in sorted(value)) if isinstance(value, list) else f"`{value}`"


def _taxonomy_table(run: Run) -> str | None:
    if run.taxonomy is None:
        return None
    rows = [[label, format_value(run.taxonomy.counts.get(label, 0))] for label in run.taxonomy.labels]
    return markdown_table(["label", "training examples"], rows)


def _prompt(run: Run) -> dict:
    """The example product's model input, and for generation an answer the model could give."""
    task, text = run.info.task, EXAMPLE_TEXT[run.info.task]
    if run.info.method == "head" and task == "description":  # the input's format, with its slots named
        title = lambda place: f"<title of the {place} nearest training product>"  # noqa: E731
        candidate = lambda slot, place: choice.CANDIDATE_LINE.format(  # noqa: E731
            slot=slot,
            product=WITH_ATTRIBUTES.format(text=title(place), values="<its attribute values>"),
            description=f"<its description's first {choice.CANDIDATE_TOKENS} tokens>{CUT_MARK}",
        )
        lines = [choice.PRODUCT_LINE.format(product=text), candidate(1, "1st"), candidate(2, "2nd"), "…"]
        return {"prompt": "\n".join(lines), "answer_example": None, "response_prefix": None}
    if run.info.method == "head":
        return {
            "prompt": PromptTemplate(task, "alpaca").user_input(text, example_attributes(run.info.attributes)),
            "answer_example": None,
            "response_prefix": None,
        }
    tokenizer = run.tokenizer() if run.info.prompt_template == "chat" else None
    answer = None
    if task != "description" and run.taxonomy and run.taxonomy.labels:
        answer = format_answer(task, run.taxonomy.labels[:2] if task == "tagging" else run.taxonomy.labels[0])
    return {
        "prompt": run.template().prompt(text, tokenizer),
        "answer_example": answer,
        "response_prefix": RESPONSE_PREFIX[task] if run.info.prompt_template == "alpaca" else None,
    }


def _training_data(run: Run) -> dict:
    data = (run.config or {}).get("data") or {}
    report = run.report or {}
    return {
        "source_description": (report.get("settings") or {}).get("name"),
        "raw_inputs": {Path(k).name: v for k, v in (report.get("inputs") or {}).items()},
        "split_counts": run.split_counts(),
        "test_n": ((run.metrics.get("test") or {}).get("adapter") or {}).get("n"),
        "max_train_examples": data.get("max_train_examples"),
        "max_eval_examples": data.get("max_eval_examples"),
    }


def _hyperparameters(run: Run) -> dict:
    cfg = run.adapter_config or {}
    rows = [
        ["LoRA rank `r`", cfg.get("r")],
        ["LoRA alpha", cfg.get("lora_alpha")],
        ["LoRA dropout", cfg.get("lora_dropout")],
        [
            "target modules",
            format_value(
                sorted(cfg["target_modules"])
                if isinstance(cfg.get("target_modules"), list)
                else cfg.get("target_modules")
            ),
        ],
    ]
    if cfg.get("modules_to_save"):
        rows.append(["trained in full", format_value(cfg["modules_to_save"])])
    values = {"adapter_table": markdown_table(["setting", "value"], rows), "config_table": None, "config_yaml": None}
    if run.config is not None:
        train, model = run.config.get("train") or {}, run.config.get("model") or {}
        picked = [[f"train.{k}", format_value(train[k], None)] for k in TRAIN_KEYS if k in train]
        picked += [[f"model.{k}", format_value(model[k], None)] for k in MODEL_KEYS if k in model]
        values["config_table"] = markdown_table(["setting", "value"], picked) if picked else None
        values["config_yaml"] = yaml.safe_dump(run.config, sort_keys=False).strip()
    return values


def _specs_table(run: Run) -> str | None:
    stats = run.stats
    if stats is None:
        return None
    total = find(stats, "total_parameters")
    trainable = find(stats, "trainable_parameters") or run.adapter_values
    percent = find(stats, "trainable_percent")
    if percent is None and total:
        percent = 100.0 * trainable / total
    train_loss, val_loss = run.losses()
    runtime = run.runtime
    not_recorded = "not recorded"
    rows = [
        ["total parameters", format_value(total) if total else not_recorded],
        ["trainable parameters", format_value(trainable)],
        ["trainable %", f"{percent:.4f} %" if percent is not None else not_recorded],
        ["hardware", run.hardware or not_recorded],
        ["precision", stats.get("precision") or not_recorded],
        ["training runtime", f"{runtime:,.0f} s ({runtime / 3600:.2f} h)" if runtime is not None else not_recorded],
        ["final training loss", format_value(train_loss) if train_loss is not None else not_recorded],
        ["final validation loss", format_value(val_loss) if val_loss is not None else not_recorded],
    ]
    return markdown_table(["", "value"], rows)


def _splits(run: Run) -> list[dict]:
    """Each evaluated split (test and validation first) as a metrics table, with the systems it lacks."""
    systems = system_names(run.info.task) | {"adapter": "**this adapter**"}
    splits = []
    for name in ("test", "validation", *[s for s in run.metrics if s not in ("test", "validation")]):
        results = run.metrics.get(name)
        if not isinstance(results, dict) or not results.get("adapter"):
            continue
        splits.append(
            {
                "name": name,
                "n": results["adapter"].get("n"),
                "table": metrics_table(results, run.info.task, systems),
                "missing": [
                    systems[s].strip("*") for s in ("base", "baseline") if not isinstance(results.get(s), dict)
                ],
            }
        )
    return splits


def _limits(run: Run) -> dict:
    """The facts the limitations name: rare labels, a small test split, a baseline as good as the adapter or
    beating it by less than two standard errors of the test accuracy."""
    test = run.metrics.get("test") or {}
    adapter = test.get("adapter") or {}
    headline = HEADLINE[run.info.task]
    baseline, score = (test.get("baseline") or {}).get(headline), adapter.get(headline)
    rare = []
    if run.taxonomy is not None and run.info.task != "description":
        rare = [label for label in run.taxonomy.labels if run.taxonomy.counts.get(label, 0) < RARE_BELOW]
    small_margin = None
    if headline == "accuracy" and isinstance(baseline, float) and isinstance(score, float) and adapter.get("n"):
        # A test accuracy's binomial standard error: a gain below two of them may be the sample's, not the adapter's
        standard_error = math.sqrt(score * (1 - score) / adapter["n"])
        if 0 < score - baseline < 2 * standard_error:
            small_margin = {"gain": 100 * (score - baseline), "standard_error": 100 * standard_error, "n": adapter["n"]}
    return {
        "rare_labels": rare,
        "rare_below": RARE_BELOW,
        "small_margin": small_margin,
        "small_test_n": adapter["n"] if adapter.get("n") and adapter["n"] < SMALL_TEST else None,
        "baseline_wins": isinstance(baseline, float) and isinstance(score, float) and baseline >= score,
        "baseline_score": baseline,
    }


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


def install_line() -> str:
    """``pip install`` of the packages the card's code imports, pinned to the versions it was rendered (and tested)
    with: those installed here, as requirements.txt pins them; a local build tag (``+cpu``) is left off."""
    return "pip install " + " ".join(f"{name}=={version(name).split('+')[0]}" for name in CODE_PACKAGES)


def export_values(records: list[dict], info) -> list[dict]:
    """Each export's ``export.json`` (:mod:`model_cards.export`) with ``repo_id``, as the card's export section
    reads it: the repo's name, the example as a shell word, the context and answer lengths."""
    return [
        {
            **record,
            "name": record["repo_id"].split("/")[1].lower(),
            "example_shell": shlex.quote(EXAMPLE_TEXT[info.task]),
            "n_ctx": info.max_length,
            "max_new_tokens": info.max_new_tokens,
        }
        for record in records
    ]


def render_adapter_card(
    run_dir: str | Path,
    repo_id: str,
    *,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
    year: int | None = None,
    exports: list[dict] = (),
) -> ModelCard:
    """The model card of a finished run folder, to be published as ``repo_id``. ``exports``: the ``export.json``
    of each export published beside it, with its ``repo_id``: each gets a section on how to run it."""
    check_repo_id(repo_id)
    if dataset_id is not None:
        check_repo_id(dataset_id)
    run = Run.read(run_dir)
    info = run.info
    headline = HEADLINE[info.task]
    adapter_score = (run.metrics.get("test") or {}).get("adapter", {}).get(headline)
    card_data = ModelCardData(
        base_model=run.base_model,
        library_name="peft",
        pipeline_tag=run.pipeline_tag,
        license=license,
        language="en",
        datasets=[dataset_id] if dataset_id else None,
        tags=["lora", *(["qlora"] if run.qlora else []), info.task, "catalog-lora"],
        model_name=repo_id.split("/")[1],
        eval_results=_eval_results(run, dataset_id) or None,
    )
    content = render(
        "adapter_card.md",
        card_data=card_data.to_yaml(),
        title=repo_id.split("/")[1],
        repo_id=repo_id,
        dataset_id=dataset_id,
        license=license,
        task=info.task,
        task_title=TASK_TITLES[info.task],
        method=info.method,
        multi_label=info.multi_label,
        labels=run.has_labels,
        label_field=info.label_field,
        label_levels=info.label_levels,
        prompt_template=info.prompt_template,
        prompt_labels=info.prompt_labels,
        base_model=run.base_model,
        embedded=run.embedded,
        source_name=run.source_name,
        headline=headline,
        adapter_score=adapter_score if isinstance(adapter_score, float) else None,
        lora=run.adapter_config or {},
        targets=_targets((run.adapter_config or {}).get("target_modules")),
        adapter_values=run.adapter_values,
        quantization=run.quantization,
        num_labels=len(run.taxonomy) if run.taxonomy else 0,
        taxonomy_table=_taxonomy_table(run),
        taxonomy_file=TAXONOMY_FILE,
        **_prompt(run),
        knn_k=run.knn_k,
        knn_weight=info.knn_weight,
        lexical_weight=info.lexical_weight,
        bf16_agreement=info.bf16_agreement,
        bf16_agreement_texts=info.bf16_agreement_texts,
        bf16_min_agreement=BF16_MIN_AGREEMENT,
        lexical_settings=run.lexical_settings,
        lexical_files=LEXICAL_FILES,
        prompt_examples=info.prompt_examples if info.method == "generate" else 0,
        choice_candidates=info.prompt_examples if info.method == "head" and info.task == "description" else 0,
        choice_attributes=info.choice_attributes,
        choice_pooled=info.choice_search == "pooled",
        search_files=SEARCH_FILES,
        baseline_reads=((run.metrics.get("test") or {}).get("baseline") or {}).get("reads"),  # None: not recorded
        attributes=info.attributes,
        attribute_dropout=run.attribute_dropout,
        auxiliary_field=run.auxiliary_field,
        auxiliary_levels=run.auxiliary_levels,
        auxiliary_weight=run.auxiliary_weight,
        attribute_example=vote_text(EXAMPLE_TEXT[info.task], example_attributes(info.attributes)),
        choice_tokens=choice.CANDIDATE_TOKENS,
        embedder=MODEL_NAME,
        neighbours_file=NEIGHBOURS_FILE,
        examples_file=EXAMPLES_FILE,
        references_dir=REFERENCES_DIR,
        usage_code=usage_code(run, repo_id),
        install_line=install_line(),
        uses_embedder=bool(run.knn_k or info.prompt_examples),
        embedder_files=EMBEDDER_FILES,
        head_outputs=1 if info.task == "description" else len(run.taxonomy or ()),
        example=EXAMPLE_TEXT[info.task],
        **_training_data(run),
        **_hyperparameters(run),
        config_file=CONFIG_FILE,
        specs_table=_specs_table(run),
        stats_file=STATS_FILE,
        has_stats=run.stats is not None,
        loss_plot=LOSS_PLOT if LOSS_PLOT in run.plots else None,
        splits=_splits(run),
        plots=[(plot, PLOT_CAPTIONS[plot]) for plot in PLOT_CAPTIONS if plot in run.plots],
        **_limits(run),
        runtime=run.runtime,
        budget=run.budget,
        hardware=run.hardware,
        citation=adapter_citation(repo_id, run.base_model, info.task, year or run_year(str(run_dir)), run.qlora),
        exports=export_values(list(exports), info),
    )
    return ModelCard(content)


def render_export_card(run_dir: str | Path, repo_id: str, record: dict, license: str = "apache-2.0") -> ModelCard:
    """The card of an export's own repo (``record``: its ``export.json`` with ``repo_id``, the adapter's repo)."""
    run = Run.read(run_dir)
    card_data = ModelCardData(
        base_model=repo_id,
        library_name=record["format"],
        pipeline_tag=run.pipeline_tag,
        license=license,
        language="en",
        tags=[record["format"], run.info.task, "catalog-lora"],
    )
    content = render(
        "export_card.md",
        card_data=card_data.to_yaml(),
        title=record["repo_id"].split("/")[1],
        adapter_repo_id=repo_id,
        task_title=TASK_TITLES[run.info.task],
        exports=export_values([record], run.info),
        example=EXAMPLE_TEXT[run.info.task],
        multi_label=run.info.multi_label,
        neighbours_file=NEIGHBOURS_FILE,
    )
    return ModelCard(content)


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
