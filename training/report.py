"""Results tables of finished runs: base vs adapter vs baseline, as markdown and JSON.

    python -m training.report runs/bodywash-l1 runs/bigbasket-category --output bench/results/real_data.md \
        --json bench/results/real_data.json --shipped bigbasket-category

Each run's section says whether the adapter beats the baseline on the headline metric and by
how much. The JSON holds one object per run: ``name``, ``dataset``, ``task``, ``method``,
``metric``, ``base``, ``adapter``, ``baseline``, ``train_seconds``, ``threads``, ``shipped``.

**Several splits.** Runs of one config on differently seeded grouped splits are named
``<name>-split<seed>`` (``scripts/real_results.sh`` with ``SPLITS="1 2 3"`` makes them): they are one
record, ``<name>``, holding the means over its splits, ``splits`` (how many), ``adapter_std`` and
``baseline_std`` (sample standard deviations) and ``gain`` / ``gain_std`` (the adapter minus the baseline,
split by split). Its verdict says whether the mean gain exceeds that spread: a one-point win on one split
is within the noise of a new sample of products.

**Earlier reports.** ``--results FILE.json ...`` adds the records of earlier reports (their ``--json``) as they
were measured, ``shipped`` set again from ``--shipped``: one table of the shipped configs gathered from the
reports that measured them when their run folders are elsewhere (another machine, a cleaned disk). A record of
several splits keeps each split's own record (``per_split``), so a config measured now on a new split is folded
with its earlier splits into one record (a split measured again replaces its earlier one); an earlier record
without them is replaced whole.

**The picture.** ``--plot FILE.png`` draws each record's gain over its baseline in points (the mean over its splits,
one standard deviation either side, each split's gain as a dot where the record keeps them); ``--plot-target 3``
adds a dashed line at +3 points. It needs only the records, so ``--results`` alone redraws an earlier report's.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import time
from pathlib import Path

from catalog_lora.model.base_model import public_model_id
from catalog_lora.records.canonical import HEADLINE
from catalog_lora.retrieval.examples import from_each_search
from catalog_lora.runs.folder import RunFolder
from catalog_lora.runs.markdown import markdown_table, metrics_table
from training import plots
from training.verdicts import exceeds_spread

SECOND_METRIC = {"tagging": "macro_f1", "category": "macro_f1", "description": "chrf"}
SPLIT_NAME = re.compile(r"^(?P<name>.+)-split(?P<seed>\d+)$")
MEANS = (
    "base", "adapter", "baseline", "head_alone", "neighbours_alone", "lexical_alone", "without_attributes", "knn_weight",
    "lexical_weight", "train_seconds",
)


def method_label(folder: RunFolder) -> str:
    """How the run answers, in a few words: the method, the attributes it reads beside the text (and the share of
    its training examples that left them out), the labels it learnt beside its own (and their loss's weight) and
    what it uses of the references index, and a tagging head's one threshold for every tag (``eval.threshold_scope``)."""
    info, dropout, weight = folder.info, folder.attribute_dropout, folder.auxiliary_weight
    shared = info.multi_label and info.thresholds and folder.config.get("eval", {}).get("threshold_scope") == "shared"
    auxiliary = folder.auxiliary_field or (f"the path at levels={folder.auxiliary_levels}" if folder.auxiliary_levels else "")
    learnt = f" (learning {auxiliary} beside" + (f" at weight {weight:g}" if weight is not None else "") + ")" if auxiliary else ""
    if info.method == "head" and info.task == "description":
        if info.choice_search == "pooled":
            half = from_each_search(info.prompt_examples)
            trained = folder.config.get("model", {}).get("choice_training_search") == "pooled"
            return f"head choosing among the nearest {half} descriptions by TF-IDF and {half} by meaning" + (
                ", trained on them" if trained else ""
            )
        return f"head choosing among the nearest {info.prompt_examples} descriptions"
    return (
        info.method
        + (f" reading {', '.join(info.attributes)}" if info.attributes else "")
        + (f" ({dropout:.0%} of training without)" if dropout else "")
        + learnt
        + (f" + {info.knn_k} neighbours" if info.knn_weight else "")
        + (" + TF-IDF vote" if info.lexical_weight else "")
        + (f" + nearest {info.prompt_examples} in the prompt" if info.prompt_examples else "")
        + (", one threshold for every tag" if shared else "")
    )


def run_record(run: Path, shipped: bool) -> dict:
    """The headline numbers of one finished run."""
    folder = RunFolder.read(run)
    info, stats, results, config = folder.info, folder.stats, folder.metrics["test"], folder.config
    metric = HEADLINE[info.task]
    value = lambda system: results[system].get(metric) if system in results else None  # noqa: E731
    return {
        "name": run.name,
        "dataset": Path(config["data"]["path"]).name,
        "task": info.task if not info.label_levels else f"{info.task} (levels={info.label_levels})",
        "method": method_label(folder),
        "base_model": info.base_model_hub_id or public_model_id(info.base_model),
        "layers": info.num_layers or None,  # None: all of the base model's layers
        "attributes": info.attributes,  # data.attributes: read beside the text by a tag or category adapter
        # What the adapter and its baseline both read beside the text (a description head: its choice_attributes, or
        # every one its records carry); None where the run has no baseline row.
        "reads": results["baseline"].get("reads") if "baseline" in results else None,
        "attribute_dropout": folder.attribute_dropout,  # the share of training examples shown without them
        "auxiliary_field": folder.auxiliary_field or None,  # a second tag field learnt beside the adapter's own
        "auxiliary_levels": folder.auxiliary_levels or None,  # a category path depth learnt beside the adapter's own
        "auxiliary_weight": folder.auxiliary_weight,  # their loss's weight beside the head's (None: not recorded)
        "metric": metric,
        "base": value("base"),
        "adapter": value("adapter"),
        "baseline": value("baseline"),
        "second_metric": {
            "name": SECOND_METRIC[info.task],
            **{s: results[s].get(SECOND_METRIC[info.task]) for s in ("base", "adapter", "baseline") if s in results},
        },
        "head_alone": value("head_alone"),
        "neighbours_alone": value("neighbours_alone"),
        "lexical_alone": value("lexical_alone"),
        "without_attributes": value("without_attributes"),  # the adapter given the text alone (reads attributes)
        "knn_weight": info.knn_weight,
        "lexical_weight": info.lexical_weight,
        "train_seconds": round(stats["train_runtime_seconds"], 1),
        "threads": stats.get("threads"),
        "cut_by_time": stats.get("cut_by_time", False),
        "shipped": shipped,
    }


def config_name(run: Path) -> str:
    """The name a run is reported under: ``<name>`` for ``<name>-split<seed>``, else the folder's name."""
    match = SPLIT_NAME.match(run.name)
    return match["name"] if match else run.name


def _mean(values: list) -> float | None:
    """The mean over a config's splits; None unless every split has the value (a mean of some splits would read
    as one of all)."""
    return statistics.fmean(values) if values and None not in values else None


def _std(values: list) -> float | None:
    return statistics.stdev(values) if len(values) > 1 and None not in values else None


def combine(name: str, records: list[dict]) -> dict:
    """One record for the runs of a config on several splits: means, spreads and the split-by-split gain."""
    first = records[0]
    combined = {**first, "name": name, **{key: _mean([r[key] for r in records]) for key in MEANS}}
    second = first["second_metric"]
    combined["second_metric"] = {"name": second["name"], **{
        system: _mean([r["second_metric"].get(system) for r in records]) for system in ("base", "adapter", "baseline")
    }}
    gains = [None if None in (r["adapter"], r["baseline"]) else r["adapter"] - r["baseline"] for r in records]
    combined.update(
        dataset=re.sub(r"-split\d+$", "", first["dataset"]),
        threads=max((r["threads"] or 0) for r in records) or None,
        cut_by_time=any(r["cut_by_time"] for r in records),
        shipped=any(r["shipped"] for r in records),
        splits=len(records),
        split_runs=[r["name"] for r in records],
        adapter_std=_std([r["adapter"] for r in records]),
        baseline_std=_std([r["baseline"] for r in records]),
        gain=_mean(gains),
        gain_std=_std(gains),
        per_split=[{key: value for key, value in r.items() if key != "per_split"} for r in records],
    )
    return combined


def _seed(record: dict) -> int:
    match = SPLIT_NAME.match(record["name"])
    return int(match["seed"]) if match else -1


def earlier_records(
    paths: list[Path], shipped: set[str], measured_here: dict[str, set[str]]
) -> tuple[list[dict], list[str], dict[str, list[dict]]]:
    """The records of earlier reports' JSON files (``--json``), in order, ``shipped`` set again from ``shipped``: a
    report of the shipped configs gathered from the measurements that made them, without their run folders.

    ``measured_here`` maps each config among the run folders given to the names of its runs. An earlier record of
    such a config that keeps its splits' records (``per_split``) gives the splits not measured again, to fold
    into the new record (the third value, by config); what was measured again, a whole record or one split, is left
    out and named in the second list (``"name (file)"``). A name in two files is an error: which one is meant?"""
    records, replaced, seen, folded = [], [], set(), {}
    for path in paths:
        try:
            loaded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(f"--results {path}: not a report's JSON file ({error})") from error
        if not isinstance(loaded, list) or not all(isinstance(r, dict) and "name" in r for r in loaded):
            raise SystemExit(f"--results {path}: expected a list of records with a name, as `training.report --json` writes")
        for record in loaded:
            if record["name"] in seen:
                raise SystemExit(f"--results {path}: {record['name']!r} is in an earlier --results file too; give each config once")
            seen.add(record["name"])
            runs_now = measured_here.get(record["name"])
            if runs_now is None:
                records.append({**record, "shipped": record["name"] in shipped})
            elif "per_split" in record:
                for split in record["per_split"]:
                    if split["name"] in runs_now:
                        replaced.append(f"{split['name']} ({path})")
                    else:
                        folded.setdefault(record["name"], []).append({**split, "folded_from": str(path)})
            else:
                replaced.append(f"{record['name']} ({path})")
    return records, replaced, folded


def verdict(record: dict) -> str:
    """Whether the adapter beats the baseline, on the headline metric and on the second one; over several
    splits, whether the mean gain exceeds its spread."""
    if record["adapter"] is None or record["baseline"] is None:
        return "no baseline to compare with"
    parts = []
    second = record["second_metric"]
    for name, adapter, baseline in (
        (record["metric"], record["adapter"], record["baseline"]),
        (second["name"], second.get("adapter"), second.get("baseline")),
    ):
        if adapter is not None and baseline is not None:
            word = "beats" if adapter > baseline else "does not beat"
            parts.append(f"{word} the baseline on {name}: {adapter:.4f} vs {baseline:.4f} ({adapter - baseline:+.4f})")
    text = "the adapter " + "; it ".join(parts)
    if record.get("splits", 1) > 1:
        shown = "exceeds" if exceeds_spread(record) else "does not exceed"
        text += (f" (means of {record['splits']} splits; the gain {record['gain']:+.4f} {shown} its spread "
                 f"{record['gain_std']:.4f} across splits)")
    return text


def _cell(value, digits: int, spread: float | None = None) -> str:
    if not isinstance(value, float):
        return "—"
    return f"{value:.{digits}f}" + (f" ± {spread:.{digits}f}" if spread is not None else "")


def _minutes(record: dict) -> str:
    return f"{record['train_seconds'] / 60:.1f} ({record['threads']})" + (" cut" if record["cut_by_time"] else "")


def summary_table(records: list[dict]) -> str:
    """One row per run and metric (headline, second): base, adapter and baseline, minutes (threads)."""
    rows = []
    for r in records:
        second = r["second_metric"]
        name = r["name"] + (f" ({r['splits']} splits)" if r.get("splits", 1) > 1 else "")
        rows.append([name, r["task"], r["method"], r["metric"], _cell(r["base"], 3), f"**{_cell(r['adapter'], 3, r.get('adapter_std'))}**",
                     _cell(r["baseline"], 3, r.get("baseline_std")), _minutes(r), "yes" if r["shipped"] else ""])
        rows.append(["", "", "", second["name"], _cell(second.get("base"), 3), f"**{_cell(second.get('adapter'), 3)}**",
                     _cell(second.get("baseline"), 3), "", ""])
    header = ["run", "task", "method", "metric", "base", "**adapter**", "TF-IDF baseline", "training min (threads)", "shipped"]
    return markdown_table(header, rows) + "\n"


def ablation(records: list[dict]) -> str:
    """The votes' levers, head run by head run: each part of the mix alone, the mix, and the shares chosen on
    validation; same training minutes and test split."""
    rows = []
    for r in (r for r in records if r["method"].startswith("head")):
        mixed = r["adapter"] if r["head_alone"] is not None else None
        head = r["head_alone"] if r["head_alone"] is not None else r["adapter"]
        shares = f"{round(r.get('knn_weight') or 0, 3):g} / {round(r.get('lexical_weight') or 0, 3):g}"  # a mean over splits: 3 places
        layers = f" ({r['layers']} layers)" if r["layers"] else ""
        rows.append([r["name"], f"{r['base_model'].split('/')[-1]}{layers}", r["metric"], _cell(head, 4), _cell(r["neighbours_alone"], 4), _cell(r.get("lexical_alone"), 4),
                     _cell(mixed, 4), _cell(r.get("without_attributes"), 4), shares, _cell(r["baseline"], 4), _minutes(r)])
    header = ["run", "base model", "metric", "head alone", "neighbours alone", "TF-IDF vote alone", "the mix",
              "the mix, text alone", "shares (neighbours / TF-IDF)", "TF-IDF baseline", "training min (threads)"]
    return markdown_table(header, rows) + "\n"


def run_section(run: Path, record: dict) -> str:
    folder = RunFolder.read(run)
    info, stats, results = folder.info, folder.stats, folder.metrics["test"]
    n = results["adapter"].get("n", "?")
    cut = " (cut by its time budget)" if record["cut_by_time"] else ""
    header = (
        f"### {run.name}: {info.task} ({record['method']}), {info.base_model_hub_id}"
        f"{' — shipped default' if record['shipped'] else ''}\n\n"
        f"{stats['examples']['train']:,} training examples, {n} test examples; "
        f"{stats['optimizer_steps']} steps in {stats['train_runtime_seconds'] / 60:.1f} min{cut} on {stats['hardware']}. "
        f"Verdict: {verdict(record)}.\n"
    )
    return header + "\n" + metrics_table(results, info.task) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="finished run folders")
    parser.add_argument("--results", nargs="*", type=Path, default=[], help="earlier reports' --json files whose records to include as they are")
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    parser.add_argument("--json", type=Path, help="also write the machine-readable results here")
    parser.add_argument("--ablation", type=Path, help="also write the ablation table of the votes mixed into heads here")
    parser.add_argument("--shipped", nargs="*", default=[], help="names of the runs whose configs each task ships as its default")
    parser.add_argument("--plot", type=Path, help="also draw each record's gain over its baseline across splits here (PNG)")
    parser.add_argument("--plot-target", type=float, help="a dashed line at this gain, in points (e.g. 3)")
    args = parser.parse_args(argv)
    if not args.runs and not args.results:
        parser.error("give finished run folders, --results files of earlier reports, or both")
    per_run = [run_record(run, config_name(run) in args.shipped) for run in args.runs]
    groups: dict[str, list[dict]] = {}
    for run, record in zip(args.runs, per_run, strict=True):
        groups.setdefault(config_name(run), []).append(record)
    earlier, replaced, folded = earlier_records(
        args.results, set(args.shipped), {name: {r["name"] for r in group} for name, group in groups.items()}
    )
    for name, splits in folded.items():  # earlier splits beside the new ones, in the order of their seeds
        groups[name] = sorted([*({**r, "shipped": name in args.shipped} for r in splits), *groups[name]], key=_seed)
    records = [combine(name, group) for name, group in groups.items()] + earlier
    machine = f"Made by `python -m training.report` on {time.strftime('%Y-%m-%d')} ({platform.machine()})."
    if args.results:
        machine += (" With the records of earlier reports as they were measured (their run sections are in each "
                    "report's markdown): " + ", ".join(f"`{path}`" for path in args.results) + "."
                    + (" Measured again here, in place of their earlier records: " + ", ".join(replaced) + "." if replaced else "")
                    + (" Folded with the splits measured here: " + ", ".join(
                        f"{r['name']} ({r['folded_from']})" for splits in folded.values() for r in splits) + "."
                       if folded else ""))
    verdicts = "".join(f"- {r['name']}: {verdict(r)}.\n" for r in records if r.get("splits", 1) > 1)
    text = (machine + "\n\n" + summary_table(records) + ("\n" + verdicts if verdicts else "") + "\n"
            + "\n".join(run_section(run, record) for run, record in zip(args.runs, per_run, strict=True)))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    if args.ablation:
        args.ablation.write_text(f"# Ablation: the votes mixed into a head\n\n{machine}\n\n" + ablation(records))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        try:
            plots.gains(records, args.plot, "Gain over the TF-IDF baseline on the headline metric", args.plot_target)
        except ValueError as error:
            parser.error(f"--plot {args.plot}: {error}")
    print(text)
    return text


if __name__ == "__main__":
    main()
