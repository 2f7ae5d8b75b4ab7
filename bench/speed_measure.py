"""The measurements of ``bench/speed.py``: the machine line, the fp32 matmul peak, the products and
runs it uses, and one measurement per process (inference, llama.cpp, training, memory).

``in_subprocess`` runs one measurement as ``bench/speed.py --measure kind mode arg options`` in a
process of its own, so its peak memory is its own; ``bench/speed.py``'s ``main`` dispatches it here.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED_BODYWASH = REPO.parent / "shared/data/raw/bodywash/bodywash-train_L1_L2.DERIVED.csv"
BODYWASH = REPO / "data/bodywash"
# The first complete run of each list is used. The sample tagging run is trained when there is no
# tagging run; the head row is measured only when a head run exists, and the memory rows use the
# tagging run in place of a missing category or description run (the same size of adapter).
CANDIDATES = {
    "tagging": ["bodywash-l1", "sample-tagging"],
    "tagging-head": ["bodywash-l1-head", "sample-tagging-head"],
    "category": ["sample-category", "bodywash-l1", "sample-tagging"],
    "description": ["sample-description", "bodywash-l1", "sample-tagging"],
}
WORK = REPO / "bench/.work"
SCRIPT = REPO / "bench/speed.py"  # the entry point in_subprocess re-invokes with --measure


def run_for(kind: str) -> Path:
    """The run folder the benchmark uses for ``kind``."""
    runs = [REPO / "runs" / name for name in CANDIDATES[kind]]
    return next((run for run in runs if (run / "COMPLETE").is_file()), runs[-1])


def proc_status_mb(field: str) -> float:
    """A memory line of /proc/self/status in MB. ``VmHWM`` is this process's own peak: unlike
    ``ru_maxrss``, it does not inherit the peak of the parent that started it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field} line")


def peak_memory() -> dict:
    """Peak resident memory of this process, and peak GPU memory allocated by torch when on CUDA."""
    import torch

    memory = {"peak_rss_mb": proc_status_mb("VmHWM")}
    if torch.cuda.is_available():
        memory["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return memory


def products(n: int) -> tuple[list[str], list[list[str]] | None, str]:
    """``n`` texts, their gold tags (``None`` without them) and where they come from."""
    import pandas as pd

    if (BODYWASH / "test.jsonl").is_file():
        from catalog_lora.records.dataset_files import load_split

        records = (load_split(BODYWASH, "test") + load_split(BODYWASH, "validation"))[:n]
        if len(records) == n:
            return (
                [r["text"] for r in records],
                [r["labels"] for r in records],
                "held-out body-wash reviews (data/bodywash test + validation)",
            )
    if SHARED_BODYWASH.is_file():
        texts = pd.read_csv(SHARED_BODYWASH)["Core Item"].dropna().astype(str).str.strip().drop_duplicates().tolist()
        source = "body-wash reviews (../shared)"
    else:
        texts = pd.read_csv(REPO / "datasets_prep/sample/tagging.csv")["text"].tolist()
        source = "bundled sample reviews"
    return [texts[i % len(texts)] for i in range(n)], None, source


def ensure_tagging_run() -> None:
    from training.config import load_config
    from training.train import train

    if (run_for("tagging") / "COMPLETE").is_file():
        return
    if not (REPO / "data/sample/tagging/train.jsonl").is_file():
        from datasets_prep.prepare import prepare_sample

        prepare_sample(REPO / "data/sample")
    print(f"Training the sample adapter first ({run_for('tagging')})...")
    train(load_config(REPO / "training/configs/sample_tagging.yaml"))


def matmul_peak_gflops() -> float:
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    return 2 * 1024**3 * reps / (time.perf_counter() - start) / 1e9


def machine() -> dict:
    """The machine a benchmark ran on, for its result line: the CPU's name says whether it computes bf16 and int8
    natively (the machines lent here differ, and bf16 and int8 figures mean little without it)."""
    import torch

    from catalog_lora.model.base_model import cpu_computes_bf16, cpu_computes_int8

    bf16, int8 = cpu_computes_bf16(), cpu_computes_int8()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    features = [name for name, has in (("native bf16", bf16), ("int8 dot products", int8)) if has]
    return {
        "cpu": f"{cpu} [{', '.join(features) or 'no native bf16 or int8 dot products'}]",
        "cpu_computes_bf16": bf16,
        "cpu_computes_int8": int8,
        "arch": platform.machine(),
        "cpu_cores": os.cpu_count(),
        "cores_allowed": sorted(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_at_start": os.getloadavg(),
        "torch": torch.__version__,
        "device": f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


# One measurement per process ------------------------------------------------------------------


def measure_inference(mode: str, n: int, options: dict) -> dict:
    import torch

    from catalog_lora.inference.engine import Engine

    texts, _, _ = products(n)
    adapter = run_for("tagging-head" if mode == "d" else "tagging")
    engine = Engine.load({"tagging": str(adapter)}, **options)
    # Off the clock: the first call's one-time work (kernels chosen, a head's references index opened).
    engine.predict("tagging", texts[:2], max_new_tokens=2)
    engine.tokens_processed = 0
    start = time.perf_counter()
    if mode in ("a", "a50"):
        spec = engine.spec("tagging")
        engine.model.set_adapter(spec.peft_name)
        torch.manual_seed(0)
        tokens, answers = 0, None
        for text in texts:
            batch = engine.tokenizer(spec.template.prompt(text), return_tensors="pt", add_special_tokens=False)
            with torch.inference_mode():
                out = engine.model.generate(
                    **batch,
                    do_sample=True,
                    temperature=0.3,
                    max_new_tokens=50,
                    min_new_tokens=50 if mode == "a50" else 0,
                    pad_token_id=engine.tokenizer.pad_token_id,
                )
            tokens += out.shape[1]
        engine.tokens_processed = tokens
    else:
        predictions = engine.predict("tagging", texts, batch_size=32, constrained=mode == "c")
        answers = [p.labels for p in predictions]
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "products_per_second": n / seconds,
        "tokens": engine.tokens_processed,
        "precision": engine.precision.label + (", merged adapter" if engine.merged else ""),
        "adapter": adapter.name,
        "labels": answers,
        **peak_memory(),
    }


def measure_llama(outtype: str, n: int, constrained: bool) -> dict:
    import llama_cpp_peer
    import torch

    from catalog_lora.inference.engine import Engine
    from catalog_lora.records.labels import parse_answer
    from model_cards.export import taxonomy_grammar

    texts, _, _ = products(n)
    adapter = run_for("tagging")
    engine = Engine.load({"tagging": str(adapter)}, quantization="none")
    spec = engine.spec("tagging")
    prompts = [engine.prompt_for(spec, text)[0] for text in texts]
    grammar = (
        taxonomy_grammar(spec.taxonomy.labels, spec.info.multi_label, spec.info.prompt_template == "alpaca")
        if constrained
        else None
    )
    llama_cpp_peer.export_gguf(adapter, outtype)  # before the clock
    del engine
    result = llama_cpp_peer.run(adapter, outtype, prompts, spec.info.max_new_tokens, grammar, torch.get_num_threads())
    import llama_cpp

    return {
        "seconds": result["seconds"],
        "products_per_second": n / result["seconds"],
        "tokens": result["tokens"],
        "precision": f"llama.cpp {llama_cpp.__version__} {outtype.upper()}, merged adapter",
        "adapter": adapter.name,
        "labels": [parse_answer(answer, spec.taxonomy).labels for answer in result["answers"]],
        **peak_memory(),
    }


def measure_training(mode: str, steps: int) -> dict:
    from training.config import load_config
    from training.train import train

    data = BODYWASH if (BODYWASH / "train.jsonl").is_file() else REPO / "data/sample/tagging"
    overrides = {
        "a": ["train.padding=max_length", "train.group_by_length=false", "model.max_length=512"],
        "b": ["train.padding=dynamic", "train.group_by_length=true", "model.max_length=512"],
        "c": ["train.packing=true", "model.max_length=512", "train.group_by_length=false"],
    }[mode]
    out = WORK / f"train-{mode}"
    config = load_config(
        REPO / "training/configs/sample_tagging.yaml",
        [
            f"data.path={data}",
            f"output_dir={out}",
            f"train.max_steps={steps}",
            "train.batch_size=8",
            "eval.enabled=false",
            "references=false",
            "train.eval_every=100000",
            "data.max_eval_examples=16",
            *overrides,
        ],
    )
    train(config)
    stats = json.loads((out / "train_stats.json").read_text())
    return {
        "tokens_per_second": stats["train_tokens_per_second"],
        "padding_efficiency": stats["padding_efficiency"],
        "seconds": stats["train_runtime_seconds"],
        **peak_memory(),
    }


def measure_memory(mode: str) -> dict:
    """Whole-process RSS with three generate adapters: on one base (``shared``) or three models."""
    from catalog_lora.inference.engine import Engine

    adapters = {
        name: str(run_for(kind))
        for name, kind in (("tags", "tagging"), ("category", "category"), ("describe", "description"))
    }
    runtime = proc_status_mb("VmRSS")
    if mode == "shared":
        engines = [Engine.load(adapters)]
    else:
        engines = [Engine.load({name: source}) for name, source in adapters.items()]
    for engine in engines:
        for name in engine.adapters:
            engine.predict(name, ["warm-up product"], max_new_tokens=2)
    return {**peak_memory(), "rss_mb": proc_status_mb("VmRSS"), "runtime_rss_mb": runtime}


def in_subprocess(kind: str, mode: str, arg: int, options: dict | None = None) -> dict:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--measure", kind, mode, str(arg), json.dumps(options or {})],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    if result.returncode:
        raise RuntimeError(f"{kind} {mode} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
