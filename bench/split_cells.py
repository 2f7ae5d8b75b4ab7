"""What the benches over several splits share (``bench/mix_forms.py``, ``bench/head_neighbours.py``; the mean ± sd
cells also ``bench/listed_paths.py`` and ``bench/description_candidates.py``): their table cells (results grouped by config, a form's test score as mean ± sd, a
gain in points) and their command line."""

from __future__ import annotations

import statistics


def header(title: str, host: dict, command: str, what: str) -> list[str]:
    """A report's title and its line on the machine, the date, the command and ``what`` the table shows."""
    return [
        f"# {title}",
        "",
        f"Machine: {host['cpu']} ({host['arch']}), {host['torch_threads']} torch thread(s). Date: {host['date']}. "
        f"Made by `{command}` {what}",
        "",
    ]


def by_config(results: list[dict]) -> dict[str, list[dict]]:
    """``results`` (each with its ``run`` folder's name, ``<config>-split<seed>``) grouped by config, in order."""
    groups: dict[str, list[dict]] = {}
    for result in results:
        groups.setdefault(result["run"].rsplit("-split", 1)[0], []).append(result)
    return groups


def mean_sd(values: list[float], digits: int = 3) -> str:
    """The mean of ``values``, ± their sd when there are several, to ``digits`` decimals."""
    spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.{digits}f}{spread}"


def mean_cell(members: list[dict], form: str) -> str:
    """The mean test score of ``form`` over ``members``, ± its sd when there are several."""
    return mean_sd([m[form]["test"] for m in members])


def gain_cell(members: list[dict], form: str, against: str) -> str:
    """``form``'s test score minus ``against``'s in points: the mean, then each split's."""
    gains = [100 * (m[form]["test"] - m[against]["test"]) for m in members]
    return f"{statistics.fmean(gains):+.1f} ({', '.join(f'{g:+.1f}' for g in gains)})"


def run_bench(name: str, doc: str, measure, report, runs_help: str) -> None:
    """The command line of ``bench/<name>.py``: ``measure`` each run folder given, then write ``report``'s
    Markdown to ``bench/results/<name>.md`` (or ``--output``) and the results beside it as JSON."""
    import argparse
    import json
    from pathlib import Path

    from tqdm import tqdm

    from bench.speed_measure import machine

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help=runs_help)
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / f"{name}.md")
    args = parser.parse_args()
    host = machine()
    results = [measure(run) for run in tqdm(args.runs, desc="runs", unit="run")]
    command = f"bench/{name}.py " + " ".join(str(run) for run in args.runs)
    args.output.write_text(report(results, host, command))
    args.output.with_suffix(".json").write_text(json.dumps({"machine": host, "runs": results}, indent=2) + "\n")
    print(args.output.read_text())
