"""Markdown the project writes in several places: values and tables, the metrics table, front matter.

:func:`metrics_table` is the one renderer of a ``metrics.json`` split (base vs adapter vs
baseline): training prints it, ``training.report`` writes it, the model card and the Space's
About tab show it.
"""

from __future__ import annotations

from catalog_lora.records.canonical import HEADLINE

# per-system values that count examples rather than score them: not metrics rows
COUNT_KEYS = frozenset({"n", "truncated"})
FRONT_MATTER = "---"
# What a reader is told each system is (the card's columns, the plot's bars)
SYSTEM_NAMES = {
    "base": "base model (adapter off)",
    "head_alone": "head alone",
    "neighbours_alone": "nearest training examples alone",
    "lexical_alone": "its TF-IDF model alone",
    "adapter": "this adapter",
    "without_attributes": "this adapter given the text alone",
    "baseline": "TF-IDF + logistic regression baseline",
}
SYSTEMS = tuple(SYSTEM_NAMES)  # the order of the columns and bars
# A description's baseline is no classifier: it answers with the description of the nearest training product.
DESCRIPTION_BASELINE = "TF-IDF nearest-neighbour baseline"


def system_names(task: str) -> dict[str, str]:
    """:data:`SYSTEM_NAMES` for ``task``'s results."""
    return SYSTEM_NAMES | {"baseline": DESCRIPTION_BASELINE} if task == "description" else dict(SYSTEM_NAMES)


def scalars(metrics: dict) -> dict:
    """The numeric values of a metrics dict (no per-label tables, matrices or flags)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def format_value(value, digits: int | None = 4) -> str:
    """A value for a table: thousands separators, ``digits`` decimals (None: as short as exact)."""
    if isinstance(value, list | tuple):
        return ", ".join(f"`{v}`" for v in value)
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}" if digits is None else f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table; a ``|`` inside a cell is escaped so that it does not end the cell."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def metrics_table(results: dict, task: str, headers: dict[str, str] | None = None, keys: list[str] | None = None) -> str:
    """One split of ``metrics.json`` as a table: a row per adapter metric (the task's headline in
    bold), a column per system present; ``headers`` renames the system columns, ``keys`` keeps those rows only."""
    systems = [s for s in SYSTEMS if isinstance(results.get(s), dict)]
    values = {s: scalars(results[s]) for s in systems}
    rows = [
        [f"**{key}**" if key == HEADLINE[task] else key]
        + [format_value(values[s][key]) if key in values[s] else "—" for s in systems]
        for key in values["adapter"]
        if key not in COUNT_KEYS and (keys is None or key in keys)
    ]
    return markdown_table(["metric", *((headers or {}).get(s, s) for s in systems)], rows)


def below_baseline(results: dict, task: str) -> str | None:
    """A plain sentence when the adapter scores below the TF-IDF baseline on the task's headline metric (the
    end of training, the Space's Train tab), else None."""
    metric = HEADLINE[task]
    adapter, baseline = results.get("adapter", {}).get(metric), results.get("baseline", {}).get(metric)
    if not (isinstance(adapter, float) and isinstance(baseline, float)) or adapter >= baseline:
        return None
    return (
        f"The adapter scores below the TF-IDF baseline on {metric}: {adapter:.4f} vs {baseline:.4f} on the test split. "
        "Use the baseline, or train longer or on more data, before relying on this adapter."
    )


def split_front_matter(markdown: str) -> tuple[str | None, str]:
    """``(YAML front matter, body)`` of a README; ``(None, markdown)`` when it has no front matter."""
    if markdown.startswith(FRONT_MATTER) and markdown.count(FRONT_MATTER) >= 2:
        _, front, body = markdown.split(FRONT_MATTER, 2)
        return front, body
    return None, markdown
