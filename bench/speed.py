"""Speed benchmark: this project's engine against the reference approach, on the same model and machine.

    .venv/bin/python bench/speed.py [--products 256] [--output bench/results/speed.md]

Inference (products/s, peak memory, compute floor): (a) the reference, one product at a time,
sampling at temperature 0.3 with max_new_tokens=50 (and the same forced to generate all 50 tokens,
which is what it costs with an adapter that never emits EOS); (b) batched greedy; (c) batched
greedy with constrained decoding; (d) the classification head. On CUDA the default is 4-bit NF4,
and (b) and (c) are measured in bf16 too. Training (non-padding tokens/s): (a) padding
to 512 as the reference; (b) dynamic padding with length grouping; (c) packing. The Space: /tag
latency on a warm app, and the memory of one base with three adapters against three models.

Each measurement runs in its own process, so its peak memory is its own. The adapters are the
sample ones trained by ``bash run.sh`` (trained here first when missing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED_BODYWASH = REPO.parent / "shared/data/raw/bodywash/bodywash-train_L1_L2.DERIVED.csv"
RUNS = {
    "tagging": REPO / "runs/sample-tagging",
    "category": REPO / "runs/sample-category",
    "description": REPO / "runs/sample-description",
    "tagging-head": REPO / "runs/sample-tagging-head",
}
CONFIGS = {
    "tagging": "sample_tagging.yaml",
    "category": "sample_category.yaml",
    "description": "sample_description.yaml",
    "tagging-head": "sample_tagging_head.yaml",
}
WORK = REPO / "bench/.work"


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


def product_texts(n: int) -> tuple[list[str], str]:
    """Real body-wash reviews when ../shared is present, else the bundled sample, cycled to ``n``."""
    import pandas as pd

    if SHARED_BODYWASH.is_file():
        texts = pd.read_csv(SHARED_BODYWASH)["Core Item"].dropna().astype(str).str.strip().drop_duplicates().tolist()
        source = "body-wash reviews (../shared)"
    else:
        texts = pd.read_csv(REPO / "datasets_prep/sample/tagging.csv")["text"].tolist()
        source = "bundled sample reviews"
    return [texts[i % len(texts)] for i in range(n)], source


def ensure_runs() -> None:
    from training.config import load_config
    from training.train import train

    if not (REPO / "data/sample/tagging/train.jsonl").is_file():
        from datasets_prep.prepare import prepare_sample

        prepare_sample(REPO / "data/sample")
    for name, run in RUNS.items():
        if not (run / "COMPLETE").is_file():
            print(f"Training the sample adapter {name} first ({run})...")
            train(load_config(REPO / "training/configs" / CONFIGS[name]))


def matmul_peak_gflops() -> float:
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    return 2 * 1024**3 * reps / (time.perf_counter() - start) / 1e9


def non_embedding_params(model) -> int:
    embeddings = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" in n)
    return sum(p.numel() for p in model.parameters()) - embeddings


# One measurement per process ------------------------------------------------------------------


def measure_inference(mode: str, n: int, quantization: str = "auto") -> dict:
    import torch

    from catalog_lora.engine import Engine

    texts, _ = product_texts(n)
    adapter = RUNS["tagging-head" if mode == "d" else "tagging"]
    engine = Engine.load({"tagging": str(adapter)}, quantization=quantization)
    base = engine.model.get_base_model()
    start = time.perf_counter()
    if mode in ("a", "a50"):
        spec = engine.spec("tagging")
        engine.model.set_adapter(spec.peft_name)
        torch.manual_seed(0)
        tokens = 0
        for text in texts:
            batch = engine.tokenizer(spec.template.prompt(text), return_tensors="pt", add_special_tokens=False)
            with torch.inference_mode():
                out = engine.model.generate(**batch, do_sample=True, temperature=0.3, max_new_tokens=50,
                                            min_new_tokens=50 if mode == "a50" else 0,
                                            pad_token_id=engine.tokenizer.pad_token_id)
            tokens += out.shape[1]
        engine.tokens_processed = tokens
    else:
        engine.predict("tagging", texts, batch_size=32, constrained=mode == "c")
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "products_per_second": n / seconds,
        "tokens": engine.tokens_processed,
        "non_embedding_params": non_embedding_params(base),
        "precision": engine.precision.describe().split(":")[0],
        **peak_memory(),
    }


def measure_training(mode: str, steps: int) -> dict:
    from training.config import load_config
    from training.train import train

    data = REPO / "data/bodywash" if (REPO / "data/bodywash/train.jsonl").is_file() else REPO / "data/sample/tagging"
    overrides = {
        "a": ["train.padding=max_length", "train.group_by_length=false", "model.max_length=512"],
        "b": ["train.padding=dynamic", "train.group_by_length=true", "model.max_length=512"],
        "c": ["train.packing=true", "model.max_length=512", "train.group_by_length=false"],
    }[mode]
    out = WORK / f"train-{mode}"
    config = load_config(
        REPO / "training/configs/sample_tagging.yaml",
        [f"data.path={data}", f"output_dir={out}", f"train.max_steps={steps}", "train.batch_size=8",
         "eval.enabled=false", "references=false", "train.eval_every=100000", "data.max_eval_examples=16", *overrides],
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
    from catalog_lora.engine import Engine

    names = ("tagging", "category", "description")
    runtime = proc_status_mb("VmRSS")
    if mode == "shared":
        engines = [Engine.load({name: str(RUNS[name]) for name in names})]
    else:
        engines = [Engine.load({name: str(RUNS[name])}) for name in names]
    for engine in engines:
        for name in engine.adapters:
            engine.predict(name, ["warm-up product"], max_new_tokens=2)
    return {**peak_memory(), "runtime_rss_mb": runtime}


def measure_space(requests: int) -> dict:
    import socket

    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "GRADIO_SERVER_PORT": str(port),
        "CATALOG_LORA_TAG_ADAPTER": str(RUNS["tagging"]),
        "CATALOG_LORA_CATEGORY_ADAPTER": str(RUNS["category"]),
        "CATALOG_LORA_DESCRIBE_ADAPTER": str(RUNS["description"]),
    }
    app = subprocess.Popen([sys.executable, str(REPO / "spaces/app.py")], env=env, cwd=REPO)
    try:
        client = None
        for _ in range(240):
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:
                time.sleep(1)
        if client is None:
            raise RuntimeError("the app did not come up in 240 s")
        texts, _ = product_texts(requests + 3)
        for text in texts[:3]:
            client.predict(text, api_name="/tag")
        latencies = []
        for text in texts[3:]:
            start = time.perf_counter()
            client.predict(text, api_name="/tag")
            latencies.append(time.perf_counter() - start)
    finally:
        app.terminate()
        app.wait(30)
    latencies.sort()
    nearest_rank_95 = latencies[math.ceil(0.95 * len(latencies)) - 1]
    return {"median_s": statistics.median(latencies), "p95_s": nearest_rank_95}


def in_subprocess(kind: str, mode: str, arg: int, quantization: str = "auto") -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--measure", kind, mode, str(arg), quantization],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"},
    )
    if result.returncode:
        raise RuntimeError(f"{kind} {mode} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(args) -> str:
    import torch

    ensure_runs()
    peak = matmul_peak_gflops()
    _, source = product_texts(1)
    cuda = torch.cuda.is_available()
    memory, key = ("peak GPU MB", "peak_gpu_mb") if cuda else ("peak RSS MB", "peak_rss_mb")
    # One product at a time costs the same per product however many there are, and the forced
    # 50 tokens take ~5 s a product on a 2-core CPU: its rate is measured on the first 32.
    counts = {"a50": min(32, args.products)}
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
        f"({'CUDA ' + torch.cuda.get_device_name(0) if cuda else 'CPU, fp32'}); "
        f"measured fp32 matmul peak {peak:.0f} GFLOP/s. Products: {args.products} {source}. "
        f"Date: {time.strftime('%Y-%m-%d')}.",
        "",
        f"| inference | precision | products/s | vs (a) | {memory} | tokens processed | compute floor s | time s | of floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {
        "a": "(a) reference: one at a time, sampled, max_new_tokens=50",
        "a50": f"(a) forced to all 50 new tokens (an adapter that never emits EOS; first {counts['a50']} products)",
        "b": "(b) batched greedy",
        "c": "(c) batched greedy + constrained",
        "d": "(d) classification head",
    }
    rows = [(names[mode], mode, "auto") for mode in ("a", "a50", "b", "c", "d")]
    if cuda:  # the default on CUDA is 4-bit NF4; the same engine unquantized in bf16 beside it
        rows += [(f"{names[mode]}, bf16", mode, "none") for mode in "bc"]
    inference = [(name, in_subprocess("inference", mode, counts.get(mode, args.products), q)) for name, mode, q in rows]
    reference = inference[0][1]["products_per_second"]
    for name, r in inference:
        if cuda:
            floor_cells = f"— | {r['seconds']:.1f} | — "
        else:  # the CPU floor: tokens x 2 x non-embedding parameters at the measured fp32 matmul peak
            floor = r["tokens"] * 2 * r["non_embedding_params"] / (peak * 1e9)
            floor_cells = f"{floor:.1f} | {r['seconds']:.1f} | {floor / r['seconds']:.0%} "
        lines.append(
            f"| {name} | {r['precision']} | {r['products_per_second']:.2f} | {r['products_per_second'] / reference:.1f}x "
            f"| {r[key]:.0f} | {r['tokens']:,} | {floor_cells}|"
        )
    lines += ["", f"| training (one epoch slice) | non-padding tokens/s | vs (a) | padding efficiency | {memory} |",
              "|---|---:|---:|---:|---:|"]
    tnames = {"a": "(a) pad to 512 (reference)", "b": "(b) dynamic padding + length grouping", "c": "(c) packing (512)"}
    training = {mode: in_subprocess("training", mode, args.train_steps) for mode in "abc"}
    for mode, r in training.items():
        lines.append(
            f"| {tnames[mode]} | {r['tokens_per_second']:.0f} | {r['tokens_per_second'] / training['a']['tokens_per_second']:.1f}x "
            f"| {r['padding_efficiency']:.0%} | {r[key]:.0f} |"
        )
    shared, separate = in_subprocess("memory", "shared", 0), in_subprocess("memory", "separate", 0)
    space = in_subprocess("space", "tag", args.requests)
    lines += [
        "",
        "| the Space | value |",
        "|---|---:|",
        f"| /tag latency on a warm app, median ({args.requests} requests) | {space['median_s'] * 1000:.0f} ms |",
        f"| /tag latency, 95th percentile | {space['p95_s'] * 1000:.0f} ms |",
        f"| {memory}, one base + three adapters | {shared[key]:.0f} |",
        f"| {memory}, three separately loaded models | {separate[key]:.0f} |",
        f"| ratio | {shared[key] / separate[key]:.0%} |",
    ]
    if not cuda:
        runtime = shared["runtime_rss_mb"]
        lines.append(
            f"| the same without the {runtime:.0f} MB of Python, torch and transformers (model memory only) "
            f"| {shared[key] - runtime:.0f} / {separate[key] - separate['runtime_rss_mb']:.0f} MB = "
            f"{(shared[key] - runtime) / (separate[key] - separate['runtime_rss_mb']):.0%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=12)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--output", default=str(REPO / "bench/results/speed.md"))
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kind, mode, arg, quantization = args.measure
        if kind == "inference":
            result = measure_inference(mode, int(arg), quantization)
        elif kind == "training":
            result = measure_training(mode, int(arg))
        elif kind == "memory":
            result = measure_memory(mode)
        else:
            result = measure_space(int(arg))
        print(json.dumps(result))
        return
    table = report(args)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(table)
    print(table)
    print(f"Written to {args.output}")


if __name__ == "__main__":
    main()
