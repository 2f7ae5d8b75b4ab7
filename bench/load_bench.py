"""The Space's /tag under load: concurrent gradio_client users against the real app, with and without
the micro-batcher (``catalog_lora/inference/micro_batch.py``).

    .venv/bin/python bench/load_bench.py [--adapter runs/bodywash-l1] [--quantization auto] [--clients 1,5,20]
                                         [--requests 40]

The Space's own page (``build_demo`` of ``spaces/catalog_space/ui.py``, launched as ``app.py`` does)
serves the tagging adapter on 127.0.0.1 twice, on one engine: ``lock`` without batching (each request
its own model call, one at a time behind the engine's lock: the Space before the micro-batcher) and
``batched`` (the Space's default off ZeroGPU: concurrent Tag requests answered in one model call).
/tag is the whole request a user makes: the tags and the training references beside them. For each
number of clients, alternately in each mode, it sends a bounded number of requests (each client its
share, one after the other) and reports p50/p95 latency, requests/s and the model calls made.

Writes ``bench/results/load.md`` and ``.json``, and the Space's figures (``p50_ms``, ``p95_ms`` with one
client, ``throughput_gain_<N>``: requests/s at the most clients, N, over one client, batched) into the
``space`` object of ``bench/results/speed.json`` when that file exists; then rewrites the speed figures of README.md
and docs/speed.md from the result files (``bench/speed_docs.py``: ``load.json`` is the generate adapter's row there,
``load_head.json``, made with ``--adapter runs/bodywash-l1-head --output bench/results/load_head.md``, the head's).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "spaces"))  # the Space's own modules sit beside its app.py
from bench.speed_docs import write as write_docs  # noqa: E402

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
MODES = ("lock", "batched")


class CountedEngine:
    """The engine, counting its ``predict`` calls (the model calls the app made)."""

    def __init__(self, engine):
        self.engine = engine
        self.calls = 0

    def __getattr__(self, attribute):
        return getattr(self.engine, attribute)

    def predict(self, *args, **kwargs):
        self.calls += 1
        return self.engine.predict(*args, **kwargs)


class Stages:
    """Where a /tag request's time goes, measured by timing the real functions on its path.

    Per request: the handler (``handlers.tag``) and, inside it, the wait for its answer
    (``Models.predict_one``: in the queue for a batch, then the batch). Per model call (``Engine.predict``,
    one per batch): the sentence-model embedding, the index search around it, the model's forward passes
    and the engine's rest (prompts, tokenizing, labels). The client's round trip minus the handler is the
    web server's and Gradio's share (HTTP, Gradio's queue, the event stream, serialization)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.batches: list[dict] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def reset(self) -> None:
        with self._lock:
            self.requests, self.batches = [], []

    def time(self, owner, attribute: str, stage: str) -> None:
        """Time ``owner.attribute`` as ``stage``: ``handler`` and ``answer`` per request, ``batch``
        (``Engine.predict``) per model call, anything else as a part of the batch running in this thread."""
        function = getattr(owner, attribute)

        @functools.wraps(function)
        def timed(*args, **kwargs):
            if stage == "batch":
                self._local.batch = {"size": len(args[2])}  # Engine.predict(self, name, texts, ...)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._done(stage, time.perf_counter() - start)

        setattr(owner, attribute, timed)

    def _done(self, stage: str, seconds: float) -> None:
        local = self._local
        if stage == "answer":
            local.answer = seconds
        elif stage == "handler":
            with self._lock:
                self.requests.append({"handler": seconds, "answer": getattr(local, "answer", 0.0)})
            local.answer = 0.0
        elif stage == "batch":
            batch, local.batch = local.batch, None
            with self._lock:
                self.batches.append({**batch, "batch": seconds})
        elif getattr(local, "batch", None) is not None:
            local.batch[stage] = local.batch.get(stage, 0.0) + seconds

    def summary(self, round_trip_ms: float) -> dict:
        """Milliseconds of the mean request, stage by stage (they add up to ``round_trip_ms``), and the
        model-call work per request (each batch's time shared among its requests)."""
        requests, batches = self.requests, self.batches
        n = max(len(requests), 1)
        sized = max(sum(b["size"] for b in batches), 1)

        def in_batch(stage):  # what the mean request waits for while its batch runs
            return 1000 * sum(b["size"] * part(b, stage) for b in batches) / sized

        def part(batch, stage):
            embedding, search, model = (batch.get(key, 0.0) for key in ("embedding", "search", "model"))
            return {
                "embedding": embedding,
                "search": search - embedding,
                "model": model,
                "engine_rest": batch["batch"] - search - model,
                "batch": batch["batch"],
            }[stage]

        handler = 1000 * sum(r["handler"] for r in requests) / n
        answer = 1000 * sum(r["answer"] for r in requests) / n
        return {
            "round_trip_ms": round_trip_ms,
            "web_and_gradio_ms": round_trip_ms - handler,
            "handler_own_ms": handler - answer,
            "waiting_for_batch_ms": answer - in_batch("batch"),
            **{f"{stage}_ms": in_batch(stage) for stage in ("embedding", "search", "model", "engine_rest")},
            "batch_work_per_request_ms": 1000 * sum(b["batch"] for b in batches) / n,
        }


def serve(engine, batching: bool) -> tuple[object, str]:
    """The Space's page serving ``engine``'s "tag" adapter on a free port of 127.0.0.1: ``(app, url)``."""
    from catalog_space.models import Models
    from catalog_space.settings import Settings
    from catalog_space.ui import build_demo, launch

    models = Models(Settings(adapters={}, train_tab=False), batching=batching)
    models.use("tag", engine)
    demo = build_demo(models)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(demo, models, port=port, host="127.0.0.1", prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def load(url: str, clients: int, requests: int, texts: list[str]) -> dict:
    """:func:`drive` in a process of its own, as a Space's users are not in its process: the clients'
    work shares the machine's cores with the server, not its Python interpreter."""
    child = subprocess.run(
        [sys.executable, __file__, "--drive", url, "--clients", str(clients), "--requests", str(requests)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"the clients' process failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.splitlines()[-1])


def drive(url: str, clients: int, requests: int, texts: list[str]) -> dict:
    """``requests`` /tag calls from ``clients`` concurrent users (each waits for its answer before
    sending the next): latencies and requests/s."""
    from gradio_client import Client

    users = [Client(url, verbose=False, analytics_enabled=False) for _ in range(clients)]
    latencies: list[float] = []
    lock = threading.Lock()

    def user(i: int) -> None:
        for j in range(i, requests, clients):
            start = time.perf_counter()
            users[i].predict(texts[j % len(texts)], api_name="/tag")
            with lock:
                latencies.append(time.perf_counter() - start)

    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(user, range(clients)))
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    latencies.sort()
    return {
        "clients": clients,
        "requests": requests,
        "mean_ms": statistics.mean(latencies) * 1000,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[math.ceil(0.95 * len(latencies)) - 1] * 1000,
        "requests_per_s": requests / seconds,
        "clients_cpu_share": cpu / seconds,  # of one core: what the clients took from the server's machine
    }


def main() -> None:
    import torch

    from bench.speed_measure import machine, products, run_for
    from catalog_lora.inference.bf16_check import serving_quantization
    from catalog_lora.inference.engine import Engine
    from catalog_lora.runs.folder import read_run_info

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default=None, help="a tagging run (default: the generate one bench/speed.py uses)")
    parser.add_argument(
        "--quantization", default="auto", help="as the Space's CATALOG_LORA_QUANTIZATION: auto (a head: bf16 on a native-bf16 CPU when its bf16_agreement allows, else fp32), bf16, int8"
    )
    parser.add_argument("--clients", default="1,5,20")
    parser.add_argument("--requests", type=int, default=40, help="requests per mode and number of clients")
    parser.add_argument("--note", default="", help="conditions the script cannot see")
    parser.add_argument("--output", default=str(REPO / "bench/results/load.md"))
    parser.add_argument("--speed-json", default=str(REPO / "bench/results/speed.json"))
    parser.add_argument("--drive", metavar="URL", help=argparse.SUPPRESS)  # the clients' process (load)
    args = parser.parse_args()
    if args.drive:
        print(json.dumps(drive(args.drive, int(args.clients), args.requests, json.loads(sys.stdin.read()))))
        return
    from catalog_lora.retrieval import references
    from catalog_space import handlers
    from catalog_space.models import Models

    stages = Stages()  # installed before the app is built, so that the page's handlers are the timed ones
    for owner, attribute, stage in (
        (handlers, "tag", "handler"),
        (Models, "predict_one", "answer"),
        (Engine, "predict", "batch"),
        (references, "embed", "embedding"),
        (references.ReferenceIndex, "query", "search"),
        (Engine, "_head_logits", "model"),
        (Engine, "_generate", "model"),
    ):
        stages.time(owner, attribute, stage)
    adapter = Path(args.adapter) if args.adapter else run_for("tagging")
    # the precision the Space picks for this adapter (a head: bf16 where native and its agreement allows)
    quantization, _ = serving_quantization(args.quantization, read_run_info(str(adapter)), "cuda" if torch.cuda.is_available() else "cpu")
    engine = CountedEngine(Engine.load({"tag": str(adapter)}, quantization=quantization))
    precision = engine.precision.label
    texts, _, source = products(max(args.requests, 8))
    host = machine()
    levels = [int(c) for c in args.clients.split(",")]
    apps = {mode: serve(engine, mode == "batched") for mode in MODES}
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    try:
        for _, url in apps.values():
            load(url, 1, 3, texts)  # warm-up: the model, the reference index, the page's API
        for clients in levels:  # the modes alternate, so both meet the same conditions on the machine
            for mode, (_, url) in apps.items():
                before = engine.calls
                stages.reset()
                measured = load(url, clients, args.requests, texts)
                stages_ms = stages.summary(measured["mean_ms"])
                results[mode].append({**measured, "engine_calls": engine.calls - before, "stages": stages_ms})
    finally:
        for app, _ in apps.values():
            app.close()
    lines = [
        f"Machine: {host['cpu']}, {host['torch_threads']} torch thread(s) on core(s) {host['cores_allowed']}, "
        f"load average {host['load_average_at_start'][0]:.2f} at start; torch {torch.__version__}. {args.note} "
        f"App: the Space's page (build_demo), /tag = tags + training references. "
        f"Adapter: {adapter.name} ({precision}, quantization={args.quantization} as the Space "
        f"loads it). Products: {source}. Date: {host['date']}.",
        "",
        "| mode | clients | requests | model calls | p50 ms | p95 ms | requests/s | vs 1 client | clients' CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, rows in results.items():
        for r in rows:
            lines.append(
                f"| {mode} | {r['clients']} | {r['requests']} | {r['engine_calls']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
                f"| {r['requests_per_s']:.2f} | {r['requests_per_s'] / rows[0]['requests_per_s']:.1f}x "
                f"| {r['clients_cpu_share']:.0%} of a core |"
            )
    lines += [
        "",
        "Where the mean request's time goes, in ms (`bench/load_bench.py`'s `Stages`): the round trip a client "
        "waits = the web server and Gradio + the handler's own work + the wait for a batch to start + the batch "
        "its request is in (embedding, index search, model, the engine's rest). The last column is the model "
        "calls' work shared among the requests: the machine's cost of one request.",
        "",
        "| mode | clients | round trip | web server + Gradio | handler | waiting for a batch | embedding | search "
        "| model | engine's rest | work per request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, rows in results.items():
        for r in rows:
            t = r["stages"]
            lines.append(
                f"| {mode} | {r['clients']} | {t['round_trip_ms']:.0f} | {t['web_and_gradio_ms']:.0f} "
                f"| {t['handler_own_ms']:.0f} | {t['waiting_for_batch_ms']:.0f} | {t['embedding_ms']:.0f} "
                f"| {t['search_ms']:.0f} | {t['model_ms']:.0f} | {t['engine_rest_ms']:.0f} "
                f"| {t['batch_work_per_request_ms']:.0f} |"
            )
    batched = results["batched"]
    summary = {
        "p50_ms": batched[0]["p50_ms"],
        "p95_ms": batched[0]["p95_ms"],
        f"p50_ms_{batched[-1]['clients']}": batched[-1]["p50_ms"],
        f"p95_ms_{batched[-1]['clients']}": batched[-1]["p95_ms"],
        f"throughput_gain_{batched[-1]['clients']}": batched[-1]["requests_per_s"] / batched[0]["requests_per_s"],
        "clients": levels,
        "adapter": adapter.name,
        "precision": precision,
        "from": "bench/load_bench.py (batched)",
    }
    output = Path(args.output)
    output.write_text("\n".join(lines) + "\n")
    output.with_suffix(".json").write_text(
        json.dumps({"machine": {**host, "note": args.note}, "modes": results, "space": summary}, indent=1) + "\n"
    )
    speed = Path(args.speed_json)
    if args.speed_json and speed.is_file():
        speed.write_text(json.dumps({**json.loads(speed.read_text()), "space": summary}, indent=1) + "\n")
    print("\n".join(lines))
    if changed := write_docs():  # the documents quote load.json and load_head.json: keep them with them
        print(f"rewrote the speed figures of {', '.join(changed)}")


if __name__ == "__main__":
    main()
