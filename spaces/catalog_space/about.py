"""The About tab: each adapter's run (task, metrics against base and baseline, plots, taxonomy) and how to cite.

Run files are read (or fetched from the Hub) when the page asks for them, never at import.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from catalog_lora.records.canonical import HEADLINE
from catalog_lora.runs.citation import adapter_citation, methods_citation, run_year
from catalog_lora.runs.folder import (
    CONFUSION_PLOT,
    LOSS_PLOT,
    PER_LABEL_PLOT,
    STATS_FILE,
    SYSTEMS_PLOT,
    TAXONOMY_FILE,
    fetch_file,
    read_metrics,
    read_run_info,
)
from catalog_lora.runs.markdown import SYSTEMS, metrics_table
from catalog_space.models import Models, Slot
from catalog_space.settings import REPO_DIR

logger = logging.getLogger("catalog_lora.space")

PLOTS = [
    (LOSS_PLOT, "Training and validation loss"),
    (SYSTEMS_PLOT, "Base vs adapter vs baseline (test split)"),
    (CONFUSION_PLOT, "Confusion matrix (test split)"),
    (PER_LABEL_PLOT, "F1 per tag (test split)"),
]


def display_source(slot: Slot) -> str:
    """The adapter as a reader may name it: a Hub id, or a run folder relative to the repository (never a server path)."""
    if slot.source is None:
        return str(slot.configured or "not configured")
    path = Path(slot.source)
    if not path.is_dir():
        return slot.source
    try:
        return str(path.resolve().relative_to(REPO_DIR.resolve()))
    except ValueError:
        return path.name


def metrics_on_test(slot: Slot) -> dict[str, dict]:
    """``{system: metrics}`` of the run's test split (base, adapter, baseline… when present)."""
    metrics = read_metrics(slot.source)
    test = (metrics.get("test") or {}) if isinstance(metrics, dict) else {}
    return {s: test[s] for s in SYSTEMS if isinstance(test.get(s), dict)}


def adapter_summary(slot: Slot) -> tuple[str, str]:
    """The About tab's text for an adapter: ``(summary with its headline metric, every test metric)``."""
    title = f"## {slot.label}: `{display_source(slot)}`"
    if slot.source is None:
        return f"{title}\n\nNot available: {slot.problem}", ""
    try:
        info = read_run_info(slot.source)
        threshold = f"{info.review_threshold:.0%}" if info.review_threshold is not None else "none (an older run)"
        lines = [
            title,
            "",
            f"- task: **{info.task}**, method: {info.method}, prompt template: {info.prompt_template}",
            f"- base model: `{info.base_model_hub_id or info.base_model}`",
            f"- context window: {info.max_length} tokens, answers up to {info.max_new_tokens} tokens",
        ]
        if slot.precision:
            lines.append(f"- served in {slot.precision}")
        if info.task != "description":
            lines.append(f"- review threshold (answers below it are marked for review): {threshold}")
        values = metrics_on_test(slot)
        headline = HEADLINE[info.task]
        if "adapter" in values:
            table = metrics_table(values, info.task, keys=[headline])
            lines += ["", f"**Test split, headline metric ({headline})**", "", table]
        taxonomy = fetch_file(slot.source, TAXONOMY_FILE, required=False)
        if taxonomy is not None:
            labels = json.loads(taxonomy.read_text(encoding="utf-8")).get("labels", [])
            shown = ", ".join(f"{item['label']} ({item.get('count', 0)})" for item in labels[:60])
            more = f" … and {len(labels) - 60} more" if len(labels) > 60 else ""
            lines += ["", f"**Label taxonomy** ({len(labels)} labels, training counts): {shown}{more}"]
        details = metrics_table(values, info.task) if "adapter" in values else "No test metrics in this run."
        return "\n".join(lines), details
    except Exception as error:  # the About tab must render even when a run cannot be read
        logger.warning("About: %s cannot be read: %s", slot.source, error)
        return f"{title}\n\nIts run files could not be read: {error}", ""


def adapter_plots(slot: Slot) -> list[tuple[str, str]]:
    """``(image path, caption)`` of the run's plots: loss curve, every system's headline metric (the card's
    picture), confusion matrix or per-label F1."""
    if slot.source is None:
        return []
    plots = []
    for name, caption in PLOTS:
        try:
            path = fetch_file(slot.source, name, required=False)
        except Exception as error:  # an unreachable Hub repo: no picture, the rest of the tab renders
            logger.warning("About: %s of %s: %s", name, slot.source, error)
            path = None
        if path is not None:
            plots.append((str(path), caption))
    return plots


def citations(models: Models) -> str:
    """How to cite the adapters: each published one by its Hub repo (the same entry as its model card),
    the local runs named as such, then the methods once."""
    parts, local = [], []
    for slot in models.slots.values():
        if slot.source is None:
            continue
        if Path(slot.source).is_dir():
            local.append(f"`{display_source(slot)}`")
            continue
        info = read_run_info(slot.source)
        entry = adapter_citation(
            slot.source,
            info.base_model_hub_id or info.base_model,
            info.task,
            run_year(slot.source),
            trained_in_4bit(slot.source),
            methods=False,
        )
        parts.append(f"**{slot.label}** (`{slot.source}`):\n\n{entry}")
    if local:
        parts.append(
            f"{', '.join(local)}: local run(s), not published on the Hub, so without a URL to cite yet; publish "
            "with `python -m model_cards.publish` and cite the repo."
        )
    return "\n\n".join([*parts, "**Methods:**", methods_citation()])


def trained_in_4bit(source: str) -> bool:
    """Whether the run trained with QLoRA, as its ``train_stats.json`` records."""
    stats = fetch_file(source, STATS_FILE, required=False)
    return stats is not None and json.loads(stats.read_text()).get("quantization") == "4bit"


def about_intro(models: Models) -> str:
    settings = models.settings
    return (
        "# About\n\nOne base model with a LoRA adapter per task, trained by catalog-lora (LoRA; QLoRA on CUDA). "
        f"Batch uploads: at most {settings.max_rows:,} rows and {settings.max_file_size_mb:g} MB per file."
    )


def about_markdown(models: Models) -> str:
    """The About tab's text in one piece (what the UI shows, less the pictures)."""
    parts = [about_intro(models)]
    for slot in models.slots.values():
        summary, details = adapter_summary(slot)
        parts += [summary, details]
    return "\n\n".join([*parts, "## How to cite", citations(models)])


def availability(models: Models, name: str) -> str:
    """Why a tab has no adapter to answer with, or ``""`` (its own adapter, or one trained in the app, is there)."""
    slot = models.slots[name]
    if any(models.available(other) for other, s in models.slots.items() if s.task == slot.task):
        return ""
    return f"⚠️ **This tab is switched off:** {slot.problem}"
