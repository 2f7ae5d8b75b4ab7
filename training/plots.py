"""The pictures a person would rather look at than read: loss curves, confusion matrices, each system's score,
and a report's gains over the baseline across splits."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.verdicts import exceeds_spread  # noqa: E402


def loss_curve(log_history: list[dict], path: str | Path, title: str) -> None:
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    val = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="training loss", color="#1f77b4")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", color="#d62728")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def confusion_matrix(matrix: list[list[int]], labels: list[str], path: str | Path, title: str, top: int = 20) -> None:
    """Row-normalized confusion matrix of the ``top`` most frequent gold labels (plus 'no valid label')."""
    counts = np.array(matrix)
    keep = np.argsort(-counts.sum(axis=1))[: min(top, len(labels))]
    columns = list(keep) + [counts.shape[1] - 1]
    sub = counts[np.ix_(keep, columns)]
    rates = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1)
    names = [labels[i] for i in keep]
    size = max(5, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(columns)), [_short(n) for n in names] + ["(none)"], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), [_short(n) for n in names], fontsize=8)
    for (r, c), value in np.ndenumerate(sub):
        if value:
            ax.text(c, r, str(value), ha="center", va="center", fontsize=7, color="white" if rates[r, c] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of gold row")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def multilabel_f1_bars(per_label: dict, path: str | Path, title: str) -> None:
    """Per-tag F1 with support, for multi-label runs where a confusion matrix does not apply."""
    items = sorted(per_label.items(), key=lambda kv: -kv[1]["support"])
    names = [_short(k) for k, _ in items]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(items) + 1)))
    ax.barh(names[::-1], [v["f1"] for _, v in items][::-1], color="#2ca02c")
    for i, (_, v) in enumerate(items[::-1]):
        ax.text(v["f1"] + 0.01, i, f"n={v['support']}", va="center", fontsize=7)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("F1 on the test split")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def system_bars(values: dict[str, float], metric: str, path: str | Path, title: str, names: dict[str, str] | None = None) -> None:
    """One metric of every system side by side (base model, the adapter's parts, the adapter, the baseline), one
    labelled bar each, top to bottom in ``values``' order; ``names`` says what each key is. The adapter's bar is
    blue, the baseline's orange, the rest grey."""
    keys = list(values)
    colours = {"adapter": "#1f77b4", "baseline": "#ff7f0e"}
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(keys) + 1.3))
    positions = np.arange(len(keys))[::-1]
    ax.barh(positions, [values[k] for k in keys], color=[colours.get(k, "#9e9e9e") for k in keys])
    ax.set_yticks(positions, [(names or {}).get(k, k) for k in keys])
    top = max(1.0, 1.1 * max(values.values(), default=0.0))
    for y, key in zip(positions, keys, strict=True):
        ax.text(values[key] + 0.01 * top, y, f"{values[key]:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.12 * top)
    ax.set_xlabel(metric)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def gains(records: list[dict], path: str | Path, title: str, target: float | None = None) -> None:
    """Each record's gain over its baseline on its headline metric, in points, top to bottom in ``records``' order:
    the mean over its splits with one standard deviation either side, each split's own gain as a dot where the
    record keeps its splits (``per_split``); a dashed line at ``target`` points where one is asked for. A bar is blue
    where its mean gain exceeds its spread (``training.verdicts``; a record of one split has none), grey where it
    does not."""
    rows = [r for r in records if r.get("adapter") is not None and r.get("baseline") is not None]
    if not rows:
        raise ValueError("no record has both an adapter and a baseline score: no gain to plot")
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(rows) + 1.6))
    positions = np.arange(len(rows))[::-1]
    for y, r in zip(positions, rows, strict=True):
        mean = 100 * (r["adapter"] - r["baseline"])
        spread = 100 * r["gain_std"] if r.get("gain_std") is not None else 0.0
        ax.barh(y, mean, xerr=spread or None, color="#1f77b4" if exceeds_spread(r) else "#9e9e9e", capsize=4, height=0.6)
        splits = [100 * (s["adapter"] - s["baseline"]) for s in r.get("per_split", []) if None not in (s["adapter"], s["baseline"])]
        ax.plot(splits, [y] * len(splits), "o", color="black", markersize=4, zorder=3)
        ax.text(max([mean + spread, *splits]) + 0.15, y, f"{mean:+.1f}", va="center", fontsize=8)
    labels = [
        f"{r['name']}\n{r['metric']}, {r.get('splits', 1)} split(s)" + ("" if r.get("shipped") else ", not shipped")
        for r in rows
    ]
    ax.set_yticks(positions, labels, fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    if target is not None:
        ax.axvline(target, color="#d62728", linestyle="--", linewidth=1, label=f"{target:+g} points")
        ax.legend(loc="lower right", fontsize=8)
    dots = "; dots: each split" if any(r.get("per_split") for r in rows) else ""
    ax.set_xlabel(f"adapter minus TF-IDF baseline, points (mean ± sd across splits{dots})")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]
