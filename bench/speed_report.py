"""The report of ``bench/speed.py``: the rows to measure, the table (``speed.md``) and the JSON
(``speed.json``) built from the measurements of ``bench/speed_measure.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.speed_measure import (
    REPO,
    ensure_tagging_run,
    in_subprocess,
    machine,
    matmul_peak_gflops,
    products,
    run_for,
)
from catalog_lora.model.base_model import cpu_computes_bf16

PARTS = ("inference", "llama", "memory", "space", "training")


def agreement(labels: list[list[str]], reference: list[list[str]]) -> float:
    return sum(set(a) == set(b) for a, b in zip(labels, reference, strict=True)) / len(reference)


def micro_f1(labels: list[list[str]], gold: list[list[str]]) -> float:
    hits = sum(len(set(a) & set(g)) for a, g in zip(labels, gold, strict=True))
    predicted, true = sum(len(set(a)) for a in labels), sum(len(set(g)) for g in gold)
    return 2 * hits / (predicted + true) if predicted + true else 0.0


def fp32_non_embedding_params() -> int:
    """The compute floor's parameter count: the fp32 decoder without its embeddings (the output
    layer, tied to them, is not counted)."""
    from catalog_lora.model.base_model import load_base_model
    from catalog_lora.runs.folder import read_run_info

    model, _, _ = load_base_model(read_run_info(str(run_for("tagging"))).base_model, "none", "cpu")
    embeddings = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" in n or "lm_head" in n)
    return sum(p.numel() for p in model.parameters()) - embeddings


def against_row(key: str) -> str | None:
    """The fp32 engine row a row's answers are compared with: (b) greedy, (c) constrained, (d) the
    head; none for (a)."""
    if key in ("a", "a50"):
        return None
    if key == "d" or key.startswith("d-"):
        return "d"
    return "c" if key == "c" or key.startswith("c-") or key.endswith("-c") else "b"


def inference_rows(args, parts) -> list[tuple[str, str, str, int, dict]]:
    """``(key, name, kind, products, options)`` of every inference row to measure."""
    import torch

    n = args.products
    cpu = not torch.cuda.is_available()
    cpu_bf16 = cpu and cpu_computes_bf16()  # bf16 rows only where the CPU computes it natively
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
        if cpu_bf16:
            rows += [
                ("b-bf16", "(b) merged adapter, bf16", "b", n, {"merge": True, "quantization": "bf16"}),
                ("c-bf16", "(c) merged adapter, bf16", "c", n, {"merge": True, "quantization": "bf16"}),
                ("c-bf16-lora", "(c) bf16, adapter not merged (several adapters)", "c", n, {"quantization": "bf16"}),
            ]
        if cpu:
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
        if (run_for("tagging-head") / "COMPLETE").is_file():  # the tagging method that ships: one forward pass
            rows += [("d", "(d) classification head", "d", n, {}), ("d-merged", "(d) merged adapter", "d", n, {"merge": True})]
            if cpu_bf16:
                rows.append(("d-bf16", "(d) merged adapter, bf16", "d", n, {"merge": True, "quantization": "bf16"}))
            if cpu:
                rows.append(("d-int8", "(d) merged adapter, int8", "d", n, {"merge": True, "quantization": "int8"}))
        if not cpu:  # the default on CUDA is 4-bit NF4; the same engine unquantized in bf16 beside it
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
    rows = inference_rows(args, parts)
    lines = [
        f"Machine: {host['cpu']} ({host['arch']}), {host['cpu_cores']} cores, this run allowed on core(s) "
        f"{host['cores_allowed']} with {host['torch_threads']} torch thread(s) (OMP_NUM_THREADS={host['omp_num_threads']}), "
        f"load average {host['load_average_at_start'][0]:.2f} at start; torch {host['torch']} ({host['device']}); "
        f"measured fp32 matmul peak {peak:.1f} GFLOP/s on those threads. {args.note} "
        f"Products: {args.products} {source}. Tagging adapter: runs/{run_for('tagging').name}"
        + (f", head adapter (d): runs/{run_for('tagging-head').name}" if any(k[0] == "d" for k, *_ in rows) else "")
        + f". Date: {host['date']}.",
        "",
        f"| inference | precision | products/s | vs (a) | {memory} | tokens processed | compute floor s | time s | of floor "
        "| agreement with fp32 | micro-F1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    measured = {}
    for row_key, name, kind, n, options in rows:
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
