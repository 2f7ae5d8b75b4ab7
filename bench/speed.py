"""Speed benchmark: this project's engine against the reference approach and llama.cpp, on the same
model, adapter and machine.

    .venv/bin/python bench/speed.py [--products 256] [--parts inference,llama,memory,space,training]
                                    [--note "what else ran on the machine"]

Writes ``bench/results/speed.md`` and ``bench/results/speed.json`` (``--output``). Run it as you
want it measured: ``OMP_NUM_THREADS=1 taskset -c 1 ...`` measures one thread on one core; the
machine line records the CPU, the threads torch used, the cores the process could run on, the
load average and the date.

Inference (products/s, peak memory, share of the fp32 compute floor, agreement): (a) the
reference, one product at a time, sampling at temperature 0.3 with max_new_tokens=50 (and the same
forced to generate all 50 tokens); (b) batched greedy; (c) batched greedy with constrained
decoding; the same with the adapter merged into the base, and merged in dynamic int8; (d) the
classification head; llama.cpp (``bench/llama_cpp_peer.py``) at F16 and Q8_0, greedy and with a
GBNF grammar over the taxonomy. Agreement: the share of products whose tag set equals the fp32
engine's (greedy rows against (b), constrained rows against (c)); quality: micro-F1 of the tags
against the held-out gold labels. The products are the held-out body-wash reviews of
``data/bodywash`` (test, then validation) when prepared, else the raw body-wash CSV of
``../shared``, else the bundled sample.

Training (non-padding tokens/s): (a) padding to 512 as the reference; (b) dynamic padding with length
grouping; (c) packing. Memory: one base with three adapters against three separately loaded models,
whole-process RSS. The Space: /tag under 1, 5 and 20 concurrent users (``bench/load_bench.py``).

Each measurement runs in its own process, so its peak memory is its own. The tagging adapter is
``runs/bodywash-l1`` (``training/configs/bodywash_l1.yaml``) when trained, else the sample one of
``bash run.sh`` (trained here first when missing).
"""

from __future__ import annotations

import argparse
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
PARTS = ("inference", "llama", "memory", "space", "training")
WORK = REPO / "bench/.work"


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
        from catalog_lora.dataset_files import load_split

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
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
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

    from catalog_lora.engine import Engine

    texts, _, _ = products(n)
    adapter = run_for("tagging-head" if mode == "d" else "tagging")
    engine = Engine.load({"tagging": str(adapter)}, **options)
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
        "precision": engine.precision.describe().split(":")[0] + (", merged adapter" if engine.merged else ""),
        "adapter": adapter.name,
        "labels": answers,
        **peak_memory(),
    }


def measure_llama(outtype: str, n: int, constrained: bool) -> dict:
    import llama_cpp_peer
    import torch

    from catalog_lora.engine import Engine
    from catalog_lora.labels import parse_answer

    texts, _, _ = products(n)
    adapter = run_for("tagging")
    engine = Engine.load({"tagging": str(adapter)}, quantization="none")
    spec = engine.spec("tagging")
    prompts = [engine.prompt_for(spec, text)[0] for text in texts]
    grammar = (
        llama_cpp_peer.taxonomy_grammar(spec.taxonomy.labels, spec.info.prompt_template == "alpaca")
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
    from catalog_lora.engine import Engine

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
        [sys.executable, __file__, "--measure", kind, mode, str(arg), json.dumps(options or {})],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    if result.returncode:
        raise RuntimeError(f"{kind} {mode} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# The report --------------------------------------------------------------------------------------


def agreement(labels: list[list[str]], reference: list[list[str]]) -> float:
    return sum(set(a) == set(b) for a, b in zip(labels, reference, strict=True)) / len(reference)


def micro_f1(labels: list[list[str]], gold: list[list[str]]) -> float:
    hits = sum(len(set(a) & set(g)) for a, g in zip(labels, gold, strict=True))
    predicted, true = sum(len(set(a)) for a in labels), sum(len(set(g)) for g in gold)
    return 2 * hits / (predicted + true) if predicted + true else 0.0


def fp32_non_embedding_params() -> int:
    """The compute floor's parameter count: the fp32 decoder without its embeddings (the output
    layer, tied to them, is not counted)."""
    from catalog_lora.base_model import load_base_model
    from catalog_lora.run_files import read_run_info

    model, _, _ = load_base_model(read_run_info(str(run_for("tagging"))).base_model, "none", "cpu")
    embeddings = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" in n or "lm_head" in n)
    return sum(p.numel() for p in model.parameters()) - embeddings


def against_row(key: str) -> str | None:
    """The fp32 engine row a row's answers are compared with: (b) greedy, (c) constrained; none for (a) and (d)."""
    if key in ("a", "a50", "d"):
        return None
    return "c" if key == "c" or key.startswith("c-") or key.endswith("-c") else "b"


def inference_rows(args, parts) -> list[tuple[str, str, str, int, dict]]:
    """``(key, name, kind, products, options)`` of every inference row to measure."""
    import torch

    n = args.products
    # One product at a time costs the same per product however many there are, and on one thread
    # it takes seconds a product: the reference rates are measured on the first few.
    few = min(args.reference_products, n)
    rows = []
    if "inference" in parts:
        rows += [
            ("a", f"(a) reference: one at a time, sampled, max_new_tokens=50 (first {few} products)", "a", few, {}),
            (
                "a50",
                f"(a) forced to all 50 new tokens (an adapter that never emits EOS; first {few // 2} products)",
                "a50",
                few // 2,
                {},
            ),
            ("b", "(b) batched greedy", "b", n, {}),
            ("c", "(c) batched greedy + constrained", "c", n, {}),
            ("c-merged", "(c) merged adapter", "c", n, {"merge": True}),
        ]
        if not torch.cuda.is_available():
            rows += [
                ("b-int8", "(b) merged adapter, int8", "b", n, {"merge": True, "quantization": "int8"}),
                ("c-int8", "(c) merged adapter, int8", "c", n, {"merge": True, "quantization": "int8"}),
                (
                    "c-int8-lora",
                    "(c) int8 base, adapter not merged (several adapters)",
                    "c",
                    n,
                    {"quantization": "int8"},
                ),
            ]
        if (run_for("tagging-head") / "COMPLETE").is_file():
            rows.append(("d", "(d) classification head", "d", n, {}))
        if torch.cuda.is_available():  # the default on CUDA is 4-bit NF4; the same engine unquantized in bf16 beside it
            rows += [
                (
                    f"{m}-bf16",
                    f"({m}) batched{' + constrained' if m == 'c' else ''}, bf16",
                    m,
                    n,
                    {"quantization": "none"},
                )
                for m in "bc"
            ]
    if "llama" in parts:  # Q8_0 greedy and constrained; F16 (the engine's fp32 weights rounded) constrained
        for outtype, constrained in (("q8_0", False), ("q8_0", True), ("f16", True)):
            grammar = " + GBNF grammar" if constrained else ""
            key = f"llama-{outtype}-{'c' if constrained else 'b'}"
            name = f"llama.cpp {outtype.upper()} greedy{grammar}, one at a time"
            rows.append((key, name, "llama", n, {"outtype": outtype, "constrained": constrained}))
    return rows


def report(args) -> tuple[str, dict]:
    import torch

    parts = set(args.parts.split(","))
    if unknown := parts - set(PARTS):
        raise SystemExit(f"--parts: {', '.join(sorted(unknown))} not among {', '.join(PARTS)}")
    ensure_tagging_run()
    peak = matmul_peak_gflops()
    host = machine()
    texts, gold, source = products(args.products)
    cuda = torch.cuda.is_available()
    memory, key = ("peak GPU MB", "peak_gpu_mb") if cuda else ("peak RSS MB", "peak_rss_mb")
    params = fp32_non_embedding_params()
    lines = [
        f"Machine: {host['cpu']} ({host['arch']}), {host['cpu_cores']} cores, this run allowed on core(s) "
        f"{host['cores_allowed']} with {host['torch_threads']} torch thread(s) (OMP_NUM_THREADS={host['omp_num_threads']}), "
        f"load average {host['load_average_at_start'][0]:.2f} at start; torch {host['torch']} ({host['device']}); "
        f"measured fp32 matmul peak {peak:.1f} GFLOP/s on those threads. {args.note} "
        f"Products: {args.products} {source}. Tagging adapter: runs/{run_for('tagging').name}. Date: {host['date']}.",
        "",
        f"| inference | precision | products/s | vs (a) | {memory} | tokens processed | compute floor s | time s | of floor "
        "| agreement with fp32 | micro-F1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    measured = {}
    for row_key, name, kind, n, options in inference_rows(args, parts):
        if kind == "llama":
            try:
                measured[row_key] = (
                    name,
                    in_subprocess("llama", options["outtype"], n, {"constrained": options["constrained"]}),
                )
            except RuntimeError as error:  # published as such: the README says why
                print(f"{name}: not measured: {error}", file=sys.stderr)
                measured[row_key] = (name, {"error": str(error).strip().splitlines()[-1][:200]})
        else:
            measured[row_key] = (name, in_subprocess("inference", kind, n, options))
    reference = measured["a"][1]["products_per_second"] if "a" in measured else None
    rows_json = []
    for row_key, (name, r) in measured.items():
        if "error" in r:
            lines.append(f"| {name} | not measured: {r['error']} |" + " |" * 9)
            rows_json.append({"name": name, "key": row_key, "error": r["error"]})
            continue
        floor = r["tokens"] * 2 * params / (peak * 1e9)
        against = against_row(row_key)
        agree = quality = None
        if r["labels"] and against in measured and row_key != against:
            agree = agreement(r["labels"], measured[against][1]["labels"])
        if r["labels"] and gold:
            quality = micro_f1(r["labels"], gold)
        vs = r["products_per_second"] / reference if reference else None
        lines.append(
            f"| {name} | {r['precision']} | {r['products_per_second']:.2f} | {f'{vs:.1f}x' if vs else '—'} "
            f"| {r[key]:.0f} | {r['tokens']:,} | {floor:.1f} | {r['seconds']:.1f} | {floor / r['seconds']:.0%} "
            f"| {f'{agree:.1%}' if agree is not None else '—'} | {f'{quality:.3f}' if quality is not None else '—'} |"
        )
        rows_json.append(
            {
                "name": name,
                "key": row_key,
                "precision": r["precision"],
                "products_per_s": r["products_per_second"],
                "vs_reference": vs,
                "of_floor": floor / r["seconds"],
                "agreement": agree,
                "agreement_against": f"({against}) fp32" if agree is not None else None,
                "micro_f1": quality,
                "tokens": r["tokens"],
                "seconds": r["seconds"],
                "peak_mb": r[key],
            }
        )
    result = {
        "machine": {**host, "matmul_peak_gflops": peak, "note": args.note},
        "products": args.products,
        "source": source,
        "adapter": run_for("tagging").name,
        "non_embedding_params": params,
        "rows": rows_json,
    }
    if "training" in parts:
        lines += [
            "",
            f"| training (one epoch slice) | non-padding tokens/s | vs (a) | padding efficiency | {memory} |",
            "|---|---:|---:|---:|---:|",
        ]
        tnames = {
            "a": "(a) pad to 512 (reference)",
            "b": "(b) dynamic padding + length grouping",
            "c": "(c) packing (512)",
        }
        training = {mode: in_subprocess("training", mode, args.train_steps) for mode in "abc"}
        for mode, r in training.items():
            lines.append(
                f"| {tnames[mode]} | {r['tokens_per_second']:.0f} | {r['tokens_per_second'] / training['a']['tokens_per_second']:.1f}x "
                f"| {r['padding_efficiency']:.0%} | {r[key]:.0f} |"
            )
        result["training"] = training
    if "memory" in parts:
        shared, separate = in_subprocess("memory", "shared", 0), in_subprocess("memory", "separate", 0)
        adapters = ", ".join(run_for(kind).name for kind in ("tagging", "category", "description"))
        lines += [
            "",
            f"| memory (three adapters: {adapters}) | one base + three adapters | three models | ratio |",
            "|---|---:|---:|---:|",
            f"| whole-process peak RSS MB | {shared['peak_rss_mb']:.0f} | {separate['peak_rss_mb']:.0f} "
            f"| {shared['peak_rss_mb'] / separate['peak_rss_mb']:.0%} |",
            f"| whole-process RSS MB after loading and one answer each | {shared['rss_mb']:.0f} | {separate['rss_mb']:.0f} "
            f"| {shared['rss_mb'] / separate['rss_mb']:.0%} |",
            f"| the same without the {shared['runtime_rss_mb']:.0f} MB of Python, torch and transformers "
            f"| {shared['rss_mb'] - shared['runtime_rss_mb']:.0f} | {separate['rss_mb'] - separate['runtime_rss_mb']:.0f} "
            f"| {(shared['rss_mb'] - shared['runtime_rss_mb']) / (separate['rss_mb'] - separate['runtime_rss_mb']):.0%} |",
        ]
        result["memory_ratio"] = shared["rss_mb"] / separate["rss_mb"]
        result["memory_peak_ratio"] = shared["peak_rss_mb"] / separate["peak_rss_mb"]
        result["memory"] = {"shared": shared, "separate": separate}
    if "space" in parts:
        # The Space under load: bench/load_bench.py (the real app, 1-5-20 concurrent users) writes
        # bench/results/load.md and .json; its batched figures are the Space's row here.
        subprocess.run(
            [sys.executable, str(REPO / "bench/load_bench.py"), "--note", args.note, "--speed-json", ""],
            cwd=REPO,
            check=True,
        )
        load = json.loads((REPO / "bench/results/load.json").read_text())
        result["space"] = load["space"]
        lines += ["", "The Space (bench/results/load.md):", "", *(REPO / "bench/results/load.md").read_text().splitlines()[2:]]
    return "\n".join(lines) + "\n", result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=256)
    parser.add_argument("--reference-products", type=int, default=32, help="products for the one-at-a-time rows")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--train-steps", type=int, default=12)
    parser.add_argument("--note", default="", help="conditions the script cannot see, e.g. other work on the machine")
    parser.add_argument("--output", default=str(REPO / "bench/results/speed.md"))
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kind, mode, arg, options = args.measure
        options = json.loads(options)
        if kind == "inference":
            result = measure_inference(mode, int(arg), options)
        elif kind == "llama":
            result = measure_llama(mode, int(arg), options["constrained"])
        elif kind == "training":
            result = measure_training(mode, int(arg))
        else:
            result = measure_memory(mode)
        print(json.dumps(result))
        return
    table, result = report(args)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table)
    output.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(table)
    print(f"Written to {output} and {output.with_suffix('.json')}")


if __name__ == "__main__":
    main()
