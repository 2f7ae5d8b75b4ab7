"""Results tables of finished runs: base vs adapter vs baseline, as markdown.

    python -m training.report runs/bodywash-l1 runs/bigbasket-category --output bench/results/real_data.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from catalog_lora.markdown import metrics_table
from catalog_lora.run_files import METRICS_FILE, STATS_FILE, read_run_info


def run_section(run: Path) -> str:
    info = read_run_info(str(run))
    stats = json.loads((run / STATS_FILE).read_text())
    results = json.loads((run / METRICS_FILE).read_text())["test"]
    n = results["adapter"].get("n", "?")
    header = (
        f"### {run.name}: {info.task} ({info.method}), {info.base_model_hub_id}\n\n"
        f"{stats['examples']['train']:,} training examples, {n} test examples; "
        f"{stats['optimizer_steps']} steps in {stats['train_runtime_seconds'] / 60:.1f} min on {stats['hardware']}.\n"
    )
    return header + "\n" + metrics_table(results, info.task) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    args = parser.parse_args(argv)
    text = "\n".join(run_section(run) for run in args.runs)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
