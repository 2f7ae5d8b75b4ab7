"""The Space's resident memory with one, three and six adapters, and the heavy modules it has imported.

    .venv/bin/python bench/space_memory.py RUN [RUN ...] [--counts 1,3,6] [--output bench/results/space_memory.md]

For each count N, a fresh process builds the Space's own pool (``catalog_space.models.Models`` with its
default settings), loads the first run as its Tag adapter and adds the next N - 1 as the Train tab adds
a finished run (``Models.add``), answers one product with each through its tab's handler (Tag with the
similar training products, Classify), and reports its resident memory
(``VmRSS``) and peak (``VmHWM``) from ``/proc/self/status``. Generate adapters on one base share it; a head
adapter needs a classification model of its own, so each head adds a base. Also listed: which of the
modules that serving does not need (bitsandbytes, the compiler stack, scikit-learn, …) the process holds.
Writes the markdown and a ``.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "spaces"))  # the Space's own modules sit beside its app.py
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# Imported by some library on the way, not needed to serve on a CPU.
PRODUCT = "A gentle shower gel that smells of lemon"
NOT_FOR_SERVING = ("bitsandbytes", "torch._dynamo", "torch._inductor", "triton", "sklearn", "accelerate", "datasets")


def measure(runs: list[str]) -> dict:
    """In this process: the Space's pool with ``runs`` loaded, one answer each; its memory."""
    from bench.speed_measure import proc_status_mb
    from catalog_lora.runs.folder import read_run_info
    from catalog_space import handlers
    from catalog_space.models import Models
    from catalog_space.settings import Settings

    start = proc_status_mb("VmRSS")
    models = Models(Settings(adapters={"tag": runs[0]}))
    models.load()
    if models.slots["tag"].problem:
        raise SystemExit(f"{runs[0]}: {models.slots['tag'].problem}")
    names = ["tag"]
    for index, run in enumerate(runs[1:], start=1):
        names.append(models.add(f"added-{index}", run, f"added {index}").name)
    for name in names:  # as a user of its tab asks: Tag with the similar training products, Classify
        task = models.slots[name].task
        answer = (handlers.tag if task == "tagging" else handlers.classify)(models, PRODUCT, adapter=name)
        if answer[0] is None:
            raise SystemExit(f"{name} gave no answer: {answer[1]}")
    engines = {id(models.engine(name)) for name in names}
    return {
        "adapters": len(runs),
        "methods": [read_run_info(run).method for run in runs],
        "engines": len(engines),
        "rss_mb": proc_status_mb("VmRSS"),
        "peak_rss_mb": proc_status_mb("VmHWM"),
        "before_loading_mb": start,
        "not_for_serving": [name for name in NOT_FOR_SERVING if name in sys.modules],
    }


def main() -> None:
    from bench.speed_measure import machine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="run folders or Hub ids; the first is the Tag adapter")
    parser.add_argument("--counts", default="1,3,6")
    parser.add_argument("--output", default=str(REPO / "bench/results/space_memory.md"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one measurement, in the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return
    counts = [int(c) for c in args.counts.split(",")]
    if not args.runs or max(counts) > len(args.runs):
        raise SystemExit(f"--counts {args.counts} needs at least {max(counts)} runs, got {len(args.runs)}")
    rows = []
    for count in counts:
        child = subprocess.run(
            [sys.executable, __file__, "--measure", json.dumps(args.runs[:count])], capture_output=True, text=True, cwd=REPO
        )
        if child.returncode:
            raise SystemExit(f"measuring {count} adapter(s) failed:\n{child.stderr[-3000:]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    host = machine()
    lines = [
        f"Machine: {host['cpu']}, {host['torch_threads']} torch thread(s); torch {host['torch']}. Date: {host['date']}. "
        "Made by `bench/space_memory.py`: the Space's pool (`Models`, default settings) in a fresh process per row.",
        "",
        "Runs, in order: " + ", ".join(f"`{run}`" for run in args.runs[: max(counts)]) + ".",
        "",
        "| adapters | methods | engines (bases loaded) | RSS MB | peak RSS MB | RSS before loading MB | loaded, not needed to serve |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        methods = ", ".join(f"{row['methods'].count(m)} {m}" for m in sorted(set(row["methods"])))
        lines.append(
            f"| {row['adapters']} | {methods} | {row['engines']} | {row['rss_mb']:.0f} | {row['peak_rss_mb']:.0f} | "
            f"{row['before_loading_mb']:.0f} | {', '.join(row['not_for_serving']) or 'none'} |"
        )
    text = "\n".join(lines) + "\n"
    Path(args.output).write_text(text)
    Path(args.output).with_suffix(".json").write_text(json.dumps({"machine": host, "rows": rows}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
