"""The Space's /tag under load: concurrent gradio_client users against one engine, with and without
the micro-batcher (``catalog_lora/micro_batch.py``).

    .venv/bin/python bench/load_bench.py [--adapter runs/bodywash-l1] [--clients 1,5,20] [--requests 40]

A stand-in app serves /tag the way the Space does (one product in, its tags out) on 127.0.0.1:
``lock`` calls ``Engine.predict`` per request, one at a time (the Space today); ``batched`` sends
every request to a ``MicroBatcher``, so requests that overlap run as one batch. For each mode and
number of clients it sends a bounded number of requests (each client its share, one after the
other) and reports p50/p95 latency and requests/s. Writes ``bench/results/load.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MODES = ("lock", "batched")


def serve(engine, mode: str):
    """A Gradio app with the Space's /tag endpoint on a free port of 127.0.0.1; returns (app, url,
    a function counting the engine calls made so far)."""
    import gradio as gr

    from catalog_lora.micro_batch import MicroBatcher

    if mode == "batched":
        batcher = MicroBatcher(engine)

        def tag(text: str) -> str:
            return ", ".join(batcher.predict("tag", text).labels)

        limit = None  # every request reaches the batcher at once
        calls = lambda: batcher.batches  # noqa: E731
    else:
        served = []

        def tag(text: str) -> str:
            served.append(text)
            return ", ".join(engine.predict("tag", [text])[0].labels)

        limit = 1
        calls = lambda: len(served)  # noqa: E731
    with gr.Blocks() as app:
        text, tags = gr.Textbox(), gr.Textbox()
        gr.Button().click(tag, text, tags, api_name="tag", concurrency_limit=limit)
    app.queue(default_concurrency_limit=limit)
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    return app, url, calls


def load(url: str, clients: int, requests: int, texts: list[str]) -> dict:
    """``requests`` /tag calls from ``clients`` concurrent users (each waits for its answer before
    sending the next): latencies and requests/s."""
    from gradio_client import Client

    users = [Client(url, verbose=False) for _ in range(clients)]
    latencies: list[float] = []
    lock = threading.Lock()

    def user(i: int) -> None:
        for j in range(i, requests, clients):
            start = time.perf_counter()
            users[i].predict(texts[j % len(texts)], api_name="/tag")
            with lock:
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(user, range(clients)))
    seconds = time.perf_counter() - start
    latencies.sort()
    return {
        "clients": clients,
        "requests": requests,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[math.ceil(0.95 * len(latencies)) - 1] * 1000,
        "requests_per_s": requests / seconds,
    }


def main() -> None:
    import torch

    from bench.speed import machine, products, run_for
    from catalog_lora.engine import Engine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default=None, help="a generate tagging run (default: the one bench/speed.py uses)")
    parser.add_argument("--clients", default="1,5,20")
    parser.add_argument("--requests", type=int, default=40, help="requests per mode and number of clients")
    parser.add_argument("--note", default="", help="conditions the script cannot see")
    parser.add_argument("--output", default=str(REPO / "bench/results/load.md"))
    args = parser.parse_args()
    adapter = Path(args.adapter) if args.adapter else run_for("tagging")
    engine = Engine.load({"tag": str(adapter)})
    texts, _, source = products(max(args.requests, 8))
    host = machine()
    levels = [int(c) for c in args.clients.split(",")]
    results = {}
    for mode in MODES:
        app, url, calls = serve(engine, mode)
        try:
            load(url, 1, 3, texts)  # warm-up
            results[mode] = []
            for clients in levels:
                before = calls()
                results[mode].append({**load(url, clients, args.requests, texts), "engine_calls": calls() - before})
        finally:
            app.close()
    lines = [
        f"Machine: {host['cpu']}, {host['torch_threads']} torch thread(s) on core(s) {host['cores_allowed']}, "
        f"load average {host['load_average_at_start'][0]:.2f} at start; torch {torch.__version__}. {args.note} "
        f"Adapter: {adapter.name} (fp32 LoRA, as the Space loads it). Products: {source}. Date: {host['date']}.",
        "",
        "| mode | clients | requests | engine calls | p50 ms | p95 ms | requests/s | vs 1 client |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, rows in results.items():
        for r in rows:
            lines.append(
                f"| {mode} | {r['clients']} | {r['requests']} | {r['engine_calls']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
                f"| {r['requests_per_s']:.2f} | {r['requests_per_s'] / rows[0]['requests_per_s']:.1f}x |"
            )
    batched = results["batched"]
    summary = {
        "p50_ms": batched[0]["p50_ms"],
        "p95_ms": batched[0]["p95_ms"],
        "throughput_gain_20": batched[-1]["requests_per_s"] / batched[0]["requests_per_s"],
    }
    output = Path(args.output)
    output.write_text("\n".join(lines) + "\n")
    output.with_suffix(".json").write_text(
        json.dumps({"machine": host, "modes": results, "space": summary}, indent=1) + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
