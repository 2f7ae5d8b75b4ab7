"""The figures that README.md and docs/speed.md quote, written from the result files instead of typed.

    .venv/bin/python bench/speed_docs.py           # rewrite the marked blocks from bench/results/
    .venv/bin/python bench/speed_docs.py --check   # exit 1, naming the documents out of date

A document marks each block ``<!-- speed_docs:NAME -->`` … ``<!-- /speed_docs:NAME -->``; everything between
the two markers is this script's. The sources: ``bench/results/speed.json`` (``bench/speed.py``: inference,
training, memory), ``load_head.json`` (the Space serving the shipped head) and ``load.json`` (the Space serving the
generate adapter), both from ``bench/load_bench.py``, and ``batch.json`` (``bench/batch_bench.py``: batch prediction
at catalog scale), and ``real_data.json`` (``training.report`` over the shipped configs' runs across splits:
the README's results table). ``bench/speed.py``, ``bench/load_bench.py`` and ``bench/batch_bench.py`` call ``write()`` after
writing their results, so a rerun brings the documents with it; the prose around the blocks says why the figures
are what they are, and names no figure a rerun would change.

The targets are issue 14's (the engine) and #26's (the Space); each verdict is computed here from the unrounded
figure, so a row at 9.97x reads "9.97x", not met, rather than a rounded "10.0x".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "spaces"))  # the Space's own modules sit beside its app.py
from catalog_lora.runs.markdown import markdown_table  # noqa: E402  (the project's one table renderer)
from training.verdicts import exceeds_spread  # noqa: E402  (the project's one reading of a gain against its spread)

RESULTS = REPO / "bench/results"
DOCUMENTS = ("README.md", "docs/speed.md")

# The rows of speed.json the documents show, with the names they show them under.
SELECTION = {
    "a": "(a) reference: one at a time, sampled, max_new_tokens=50",
    "b": "(b) batched greedy",
    "c": "(c) batched greedy + constrained (the engine's default for a generate adapter)",
    "c-merged": "(c) merged adapter",
    "c-bf16": "(c) merged adapter, bf16",
    "c-int8": "(c) merged adapter, int8",
    "d": "(d) classification head (the shipped tagging method)",
    "d-merged": "(d) merged adapter",
    "d-bf16": "(d) merged adapter, bf16",
    "d-int8": "(d) merged adapter, int8",
    "llama-q8_0-b": "llama.cpp Q8_0 greedy, one at a time",
    "llama-q8_0-c": "llama.cpp Q8_0 greedy + GBNF grammar, one at a time",
    "llama-f16-c": "llama.cpp F16 greedy + GBNF grammar, one at a time",
}
FP32_ENGINE_ROWS = ("b", "c", "c-merged", "d", "d-merged")
QUANTIZED_ROWS = ("c-bf16", "c-int8", "d-bf16", "d-int8")
TAGGING_ROWS = ("c", "c-merged", "c-bf16", "c-int8", "d", "d-merged", "d-bf16", "d-int8")
LLAMA_Q8_ROWS = ("llama-q8_0-b", "llama-q8_0-c")
CATALOG = 5000  # reviews in "a catalog takes … minutes"

# The targets, as the issues set them.
OF_FLOOR = 0.80  # issue 14: every engine row at ≥ 80% of its fp32 compute floor
AGREEMENT = 0.98  # issue 14: quantized answers equal fp32's on ≥ 98% of products …
F1_DROP_POINTS = 0.5  # … and held-out micro-F1 within half a point
SPEEDUP = 10.0  # issue 14: constrained tagging ≥ 10x the reference, and ≥ llama.cpp Q8_0's products/s
SPACE_P50_ALONE_MS, SPACE_P50_20_MS, SPACE_GAIN_20 = 200, 1000, 4.0  # issue #26
MEMORY_RATIO = 0.45  # one base + three adapters against three models


@dataclass(frozen=True)
class Results:
    speed: dict
    load_head: dict | None
    load_generate: dict | None
    max_rows: int
    batch: dict | None = None
    real_data: list[dict] | None = None

    @classmethod
    def read(cls, results: Path = RESULTS, repo: Path = REPO) -> Results:
        from catalog_space.settings import read_settings

        def optional(name: str) -> dict | None:
            path = results / name
            return json.loads(path.read_text()) if path.is_file() else None

        speed = results / "speed.json"
        if not speed.is_file():
            raise FileNotFoundError(f"{speed}: no speed results to write the documents from; run bench/speed.py first")
        # the cap as the Space reads it from its file (the environment's overrides are a deployment's, not the docs')
        max_rows = read_settings(repo / "spaces/adapters.yaml", environ={}).max_rows
        return cls(
            json.loads(speed.read_text()), optional("load_head.json"), optional("load.json"), max_rows,
            optional("batch.json"), optional("real_data.json"),
        )

    def row(self, key: str) -> dict | None:
        return next((r for r in self.speed["rows"] if r["key"] == key and "error" not in r), None)


def _machine(machine: dict) -> str:
    """'2026-12-07, a 2-core AMD EPYC [native bf16, …], 2 torch threads' from a result file's machine line."""
    return (
        f"{machine['date'].split()[0]}, a {machine['cpu_cores']}-core {machine['cpu']}, "
        f"{machine['torch_threads']} torch thread{'s' if machine['torch_threads'] != 1 else ''}"
    )


def _pct(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}%}"


def _precision(label: str) -> str:
    """'bf16' from an engine's precision label ('bf16 weights and activations, bfloat16 on cpu')."""
    if label.startswith(("bf16", "int8")):
        return label[:4]
    return "fp32" if "float32" in label else label


def _verdict(met: bool) -> str:
    return "**met**" if met else "not met"


def _minutes(rate: float) -> str:
    return f"{CATALOG / rate / 60:.0f}"


def inference(results: Results) -> str:
    """docs/speed.md: the selection of speed.md's inference rows, and what they mean for a catalog."""
    machine = results.speed["machine"]
    rows = []
    for key, name in SELECTION.items():
        if (r := results.row(key)) is None:
            continue
        vs = f"{r['vs_reference']:.1f}x" if r.get("vs_reference") else "—"
        f1 = "—" if r.get("micro_f1") is None else f"{r['micro_f1']:.3f}"
        rows.append([name, f"{r['products_per_s']:.2f}", vs, _pct(r["of_floor"]), _pct(r["agreement"], 1), f1])
    header = [
        "inference, fp32 unless named",
        "products/s",
        "vs (a)",
        "of the fp32 floor",
        "same tags as fp32",
        "micro-F1",
    ]
    heading = (
        f"`bench/results/speed.md` of {_machine(machine)}, fp32 matrix product peak "
        f"{machine['matmul_peak_gflops']:.0f} GFLOP/s. {machine.get('note', '')}".strip()
    )
    rates = [
        (key, text)
        for key, text in (
            ("a", "one review at a time as in (a)"),
            ("c", "with the engine's fp32 default (c)"),
            ("d", "with the fp32 head adapter (d)"),
            ("d-bf16", "with the head merged in bf16"),
        )
        if results.row(key)
    ]
    parts = [f"{_minutes(results.row(key)['products_per_s'])} minutes {text}" for key, text in rates]
    catalog = (
        f"At these rates a {CATALOG:,}-review catalog takes {', '.join(parts[:-1])} and {parts[-1]}, "
        f"on this {results.speed['machine']['cpu_cores']}-core machine."
        if len(parts) > 1
        else ""
    )
    return (
        heading
        + "\n\n"
        + markdown_table(header, rows)
        + "\n\n"
        + (
            "(A selection of the file's rows and columns; it also has the unmerged bf16 and int8 rows, peak memory, tokens "
            "and seconds.) " + catalog
        ).strip()
    )


def _space_rows(results: Results) -> list[tuple[str, str, dict]]:
    """The Space's runs the documents show: ``(name, file, load)``, each measured at 1 and at 20 clients (the
    targets' levels; a run with other ``--clients`` is left out)."""
    return [
        (name, file, load)
        for name, file, load in (
            ("the shipped head", "load_head.md", results.load_head),
            ("the generate adapter", "load.md", results.load_generate),
        )
        if load and load["space"]["clients"][0] == 1 and load["space"]["clients"][-1] == 20
    ]


def space(results: Results) -> str:
    """docs/speed.md: the Space under 1 and 20 clients, batched, per adapter."""
    rows = []
    for name, file, load in _space_rows(results):
        s = load["space"]
        twenty = next(m for m in load["modes"]["batched"] if m["clients"] == 20)
        rows.append(
            [
                f"{name} `{s['adapter']}`, {_precision(s['precision'])}",
                f"[`{file}`](../bench/results/{file})",
                _machine(load["machine"]),
                f"{s['p50_ms']:,.0f}",
                f"{s['p50_ms_20']:,.0f}",
                f"{s['p95_ms_20']:,.0f}",
                f"{twenty['requests_per_s']:.2f}",
                f"{s['throughput_gain_20']:.1f}x",
            ]
        )
    header = [
        "adapter, as the Space loads it",
        "file",
        "machine",
        "p50 ms, 1 client",
        "p50 ms, 20 clients",
        "p95 ms, 20 clients",
        "requests/s, 20 clients",
        "vs 1 client",
    ]
    return markdown_table(header, rows)


def stages(results: Results) -> str:
    """docs/speed.md: where a /tag request's time goes, the head batched, alone and among 20 clients."""
    if not results.load_head:
        return "(No `bench/results/load_head.json` yet: run `bench/load_bench.py --adapter runs/bodywash-l1-head`.)"
    columns = (
        ("round trip", "round_trip_ms"),
        ("web server and Gradio", "web_and_gradio_ms"),
        ("waiting for a batch", "waiting_for_batch_ms"),
        ("sentence-model embedding", "embedding_ms"),
        ("index search", "search_ms"),
        ("model", "model_ms"),
        ("the machine's work per request", "batch_work_per_request_ms"),
    )
    rows = [
        [
            f"{mode['clients']} client{'s' if mode['clients'] > 1 else ''}",
            *(f"{mode['stages'][key]:,.0f}" for _, key in columns),
        ]
        for mode in results.load_head["modes"]["batched"]
        if mode["clients"] in (1, 20)
    ]
    return markdown_table(["the head, batched (`load_head.json`), mean ms per request", *(n for n, _ in columns)], rows)


def targets(results: Results) -> str:
    """docs/speed.md: each target of issue 14 and #26 against the latest runs, verdicts computed."""
    rows = []
    for key in FP32_ENGINE_ROWS:
        if r := results.row(key):
            rows.append(
                [
                    f"engine rows ≥ {OF_FLOOR:.0%} of the fp32 floor",
                    SELECTION[key],
                    f"{r['of_floor']:.0%}",
                    _verdict(r["of_floor"] >= OF_FLOOR),
                ]
            )
    for key in QUANTIZED_ROWS:
        if (r := results.row(key)) and (fp32 := results.row(key.split("-")[0])) and r["agreement"] is not None:
            if r["micro_f1"] is None or fp32["micro_f1"] is None:  # products without gold tags: agreement alone
                quality, drop = "no gold tags", 0.0
            else:
                quality = f"micro-F1 {r['micro_f1']:.3f} against {fp32['micro_f1']:.3f}"
                drop = (fp32["micro_f1"] - r["micro_f1"]) * 100
            rows.append(
                [
                    f"quantized: ≥ {AGREEMENT:.0%} same tags as fp32, micro-F1 within {F1_DROP_POINTS} point",
                    SELECTION[key],
                    f"{r['agreement']:.1%}; {quality}",
                    _verdict(r["agreement"] >= AGREEMENT and drop <= F1_DROP_POINTS),
                ]
            )
    llama = [r["products_per_s"] for key in LLAMA_Q8_ROWS if (r := results.row(key))]
    for key in TAGGING_ROWS:
        if (r := results.row(key)) and r["vs_reference"] is not None:  # None: no reference row (a) in this run
            beats = f"; llama.cpp Q8_0's best {max(llama):.2f}/s" if llama else "; llama.cpp not measured"
            rows.append(
                [
                    f"tagging ≥ {SPEEDUP:.0f}x the reference and ≥ llama.cpp Q8_0",
                    SELECTION[key],
                    f"{r['vs_reference']:.2f}x, {r['products_per_s']:.2f}/s{beats}",
                    _verdict(r["vs_reference"] >= SPEEDUP and bool(llama) and r["products_per_s"] >= max(llama)),
                ]
            )
    for name, _, load in _space_rows(results):
        s = load["space"]
        rows += [
            [
                f"the Space: /tag p50 < {SPACE_P50_ALONE_MS} ms alone",
                name,
                f"{s['p50_ms']:,.0f} ms",
                _verdict(s["p50_ms"] < SPACE_P50_ALONE_MS),
            ],
            [
                f"the Space: /tag p50 < {SPACE_P50_20_MS:,} ms at 20 clients",
                name,
                f"{s['p50_ms_20']:,.0f} ms",
                _verdict(s["p50_ms_20"] < SPACE_P50_20_MS),
            ],
            [
                f"the Space: ≥ {SPACE_GAIN_20:.0f}x one client's requests/s at 20",
                name,
                f"{s['throughput_gain_20']:.1f}x",
                _verdict(s["throughput_gain_20"] >= SPACE_GAIN_20),
            ],
        ]
    if "memory_ratio" in results.speed:
        shared, separate = results.speed["memory"]["shared"], results.speed["memory"]["separate"]
        ratio = results.speed["memory_ratio"]
        rows.append(
            [
                f"one base + three adapters ≤ {MEMORY_RATIO:.0%} of three models' memory",
                "whole-process RSS",
                f"{ratio:.0%} ({shared['rss_mb']:,.0f} against {separate['rss_mb']:,.0f} MB)",
                _verdict(ratio <= MEMORY_RATIO),
            ]
        )
    return markdown_table(["target", "row", "measured", "verdict"], rows)


def memory(results: Results) -> str:
    """docs/speed.md: one base with three adapters against three separately loaded models."""
    if "memory" not in results.speed:
        return "(No memory rows in `speed.json`: run `bench/speed.py --parts memory`.)"
    shared, separate = results.speed["memory"]["shared"], results.speed["memory"]["separate"]
    runtime = shared["runtime_rss_mb"]
    rows = (
        ("whole-process peak RSS MB", shared["peak_rss_mb"], separate["peak_rss_mb"]),
        ("whole-process RSS MB after loading and one answer each", shared["rss_mb"], separate["rss_mb"]),
        (
            f"the same without the {runtime:,.0f} MB of Python, torch and transformers",
            shared["rss_mb"] - runtime,
            separate["rss_mb"] - separate["runtime_rss_mb"],
        ),
    )
    header = [f"memory ({_machine(results.speed['machine'])})", "one base + three adapters", "three models", "ratio"]
    return markdown_table(
        header, [[name, f"{one:,.0f}", f"{three:,.0f}", f"{one / three:.0%}"] for name, one, three in rows]
    )


def training(results: Results) -> str:
    """docs/speed.md: the training rows (non-padding tokens/s)."""
    rows = results.speed.get("training")
    if not rows:
        return "(No training rows in `speed.json`: run `bench/speed.py --parts training`.)"
    names = {
        "a": "(a) every row padded to 512 tokens (the reference)",
        "b": "(b) dynamic padding + length grouping (the default)",
        "c": "(c) packing rows into 512-token sequences",
    }
    header = [
        f"training ({_machine(results.speed['machine'])})",
        "non-padding tokens/s",
        "vs (a)",
        "padding efficiency",
        "peak RSS MB",
    ]
    reference = rows["a"]["tokens_per_second"]
    return markdown_table(
        header,
        [
            [
                names[mode],
                f"{r['tokens_per_second']:.0f}",
                f"{r['tokens_per_second'] / reference:.1f}x",
                f"{r['padding_efficiency']:.0%}",
                f"{r['peak_rss_mb']:,.0f}",
            ]
            for mode, r in rows.items()
        ],
    )


def summary(results: Results) -> str:
    """README.md: the Speed section's paragraph."""
    speed = results.speed
    r = {key: results.row(key) for key in ("a", "c", "d", "d-bf16", "llama-q8_0-c")}
    sentences = [
        f"The latest run (`bench/results/speed.md`, {_machine(speed['machine'])}; {speed['products']} {speed['source']}):"
    ]
    if r["a"] and r["c"]:
        sentences.append(
            f"the one-at-a-time reference tags {r['a']['products_per_s']:.2f} reviews/s; the engine's fp32 default, "
            f"batched and constrained, {r['c']['products_per_s']:.2f} ({r['c']['vs_reference']:.1f}x)"
        )
    if r["d"]:
        head = f"the shipped head adapter {r['d']['products_per_s']:.2f} in fp32"
        if r["d-bf16"]:
            head += (
                f" and {r['d-bf16']['products_per_s']:.2f} merged in bf16 ({r['d-bf16']['vs_reference']:.1f}x, the same "
                f"tags as fp32 on {r['d-bf16']['agreement']:.1%} of the reviews)"
            )
        sentences.append(head)
    if r["llama-q8_0-c"]:
        sentences.append(
            f"llama.cpp Q8_0 with a grammar over the taxonomy, one at a time, {r['llama-q8_0-c']['products_per_s']:.2f}"
        )
    text = sentences[0] + " " + "; ".join(sentences[1:]) + "."
    if head := next((load for name, _, load in _space_rows(results) if name == "the shipped head"), None):
        s = head["space"]
        text += (
            f" The Space answers one user's /tag in {s['p50_ms']:,.0f} ms (p50, the head as it loads it there: "
            f"{_precision(s['precision'])}) and twenty users at once in {s['p50_ms_20'] / 1000:.1f} s each, "
            f"{s['throughput_gain_20']:.1f}x one user's requests/s (`bench/results/load_head.md`, "
            f"{head['machine']['date'].split()[0]})."
        )
    return text


def batch_cap(results: Results) -> str:
    """README.md: how long the Space's largest batch job takes at the engine's constrained rate."""
    c = results.row("c")
    if not c:
        return f"The cap is {results.max_rows:,} rows (`max_rows` in `spaces/adapters.yaml`)."
    return (
        f"The cap is {results.max_rows:,} rows (`max_rows` in `spaces/adapters.yaml`): at the constrained-generation "
        f"speed measured by `bench/speed.py` on a {results.speed['machine']['cpu_cores']}-core CPU "
        f"({c['products_per_s']:.2f} products/s, [docs/speed.md](docs/speed.md)) that is about "
        f"{results.max_rows / c['products_per_s'] / 60:.0f} minutes for one label job."
    )


def duration(seconds: float) -> str:
    """Days past two days, hours past two hours, minutes otherwise."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / 3600:.1f} hours" if seconds >= 2 * 3600 else f"{seconds / 60:.0f} minutes"


def projection(rows_per_s: float, catalog: int, processes) -> str:
    """How long ``catalog`` rows take at ``rows_per_s`` a process, on each count of ``processes`` (linear scaling)."""
    return ", ".join(f"{duration(catalog / rows_per_s / p)} on {p}" for p in processes)


def batch(results: Results) -> str:
    """README.md: the batch benchmark's latest run: peak memory at scale, kill-and-resume, rows/s per precision."""
    b = results.batch
    if not b:
        return "No batch results yet: `bench/batch_bench.py` writes them (`bench/results/batch.json`)."
    machine, speed, resume = b["machine"], b["speed"], b["resume"]
    threads = machine["threads_per_process"]
    first = speed["runs"][0]["precision"]
    rows = [[f"peak RSS, {r['rows']:,} rows (tiny model)", f"{r['peak_mb']:,.0f} MB"] for r in b["memory"]]
    rows.append([
        f"kill-and-resume, {resume['rows']:,} rows: SIGKILL after {resume['rows_at_kill']:,} rows, same command rerun",
        "output byte-identical" if resume["identical"] else "**output differs**",
    ])
    for r in speed["runs"]:
        same = f" (same category as {first}: {r['same']:.1%})" if r["same"] is not None else ""
        rows.append([f"rows/s per process, {r['precision']}, {threads} thread(s), {speed['rows']:,} titles{same}",
                     f"{r['rows_per_s']:.2f}"])
    rows += [[f"peak RSS of that process, {r['precision']} (the embedded model, the adapter, its votes)",
              f"{r['peak_mb']:,.0f} MB"] for r in speed["runs"] if "peak_mb" in r]
    small, large = b["memory"][0], b["memory"][-1]
    trained = f" as trained on {speed['trained']}" if speed.get("trained") else ""
    return (
        f"Latest run: {machine['date']}, {machine['machine']}, {machine['cpu_cores']} CPU cores, torch "
        f"{machine['torch']}, **{threads} thread(s) per process**, chunks of {b['chunk_rows']:,} rows; rows/s with "
        f"`runs/{speed['adapter']}`{trained} ({speed['method']}):\n\n"
        + markdown_table(["", "value"], rows)
        + f"\n\n{large['rows'] / small['rows']:g} times the rows cost {large['peak_mb'] - small['peak_mb']:,.0f} MB more "
        f"({small['peak_mb']:,.0f} against {large['peak_mb']:,.0f} MB): the chunk being predicted and Python's "
        "allocator, not the input's size."
    )


def batch_projection(results: Results) -> str:
    """README.md: how long a catalog of ``catalog`` products takes at the batch benchmark's rates."""
    b = results.batch
    if not b:
        return "(no batch results yet)"
    runs = "; ".join(
        f"{r['precision']}: {projection(r['rows_per_s'], b['catalog'], b['processes'])}"
        for r in reversed(b["speed"]["runs"])  # the faster, asked precision first
    )
    text = f"**A {b['catalog']:,}-product catalog** at these rates, one process per core: {runs}"
    largest, fp32 = b["memory"][-1], b["speed"]["runs"][0]
    if "read_seconds" not in largest:
        return text
    start = fp32["seconds"] - b["speed"]["rows"] / fp32["rows_per_s"]  # the run's wall time less its rows at its rate
    return text + (
        f". Assumed: one core per process and linear scaling (the processes share nothing but the input file; each "
        f"reads the whole file, {largest['read_seconds']:.1f} s for {largest['rows']:,} rows here, and starts once, "
        f"about {start:.0f} s for the {fp32['precision']} run: imports, the model, its votes); titles as short as "
        "BigBasket's"
    )


# What each dataset's records are, as the results table names its input.
TEXT = {"bodywash": "review", "instacart": "product name"}  # every other dataset: a product title
METRIC_NAMES = {"macro_f1": "macro-F1", "chrf": "chrF", "micro_f1": "micro-F1", "rougeL": "ROUGE-L"}


def _input(record: dict) -> str:
    """'title + brand': the record's text and what it read beside it (``reads``: the adapter's and its baseline's;
    records made before it was kept name only a tag or category adapter's ``attributes``)."""
    reads = record.get("reads") if record.get("reads") is not None else record.get("attributes") or []
    return " + ".join([TEXT.get(record["dataset"], "title"), *reads])


def _score(value: float) -> str:
    """Scores in [0, 1] to three places, chrF (0-100) to one."""
    return f"{value:.3f}" if value <= 1 else f"{value:.1f}"


def _spread(value: float, sd: float | None) -> str:
    return f"{value:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")


def _points(r: dict) -> float:
    """The gain over the baseline in points: the mean of the splits' gains, or the one run's."""
    return 100 * (r["gain"] if r.get("gain") is not None else r["adapter"] - r["baseline"])


def results(results: Results) -> str:
    """README.md: each record of ``real_data.json``, the mix against the TF-IDF baseline across splits."""
    if not results.real_data:
        return "No results yet: `scripts/real_results.sh` writes them (`bench/results/real_data.json`)."
    rows = []
    for r in results.real_data:
        second = r["second_metric"]
        rows.append([
            r["name"] + (" (shipped)" if r["shipped"] else ""), _input(r), str(r.get("splits", 1)),
            METRIC_NAMES.get(r["metric"], r["metric"]),
            _spread(r["adapter"], r.get("adapter_std")), _spread(r["baseline"], r.get("baseline_std")),
            f"{_points(r):+.1f}", f"{100 * r['gain_std']:.1f}" if r.get("gain_std") is not None else "—",
            f"{METRIC_NAMES.get(second['name'], second['name'])} {_score(second['adapter'])} vs {_score(second['baseline'])}",
            f"{r['train_seconds'] / 60:.1f} ({r['threads']}" + (", cut)" if r["cut_by_time"] else ")"),
        ])
    header = ["run", "input", "splits", "metric", "the mix (mean ± sd)", "TF-IDF baseline (same input)", "gain (points)",
              "gain's sd across splits", "second metric: mix vs baseline", "training min (threads)"]
    return markdown_table(header, rows)


TARGET_POINTS = 3.0  # issue #25: every shipped task ≥ 3 points over the baseline on the mean of its splits


def verdicts(results: Results) -> str:
    """README.md: the results table read out for the shipped records, verdicts computed from the unrounded means."""
    shipped = [r for r in results.real_data or [] if r["shipped"] and None not in (r["adapter"], r["baseline"])]
    if not shipped:
        return "No shipped records yet."

    def names(records: list[dict]) -> str:
        ranked = sorted(records, key=_points, reverse=True)
        return ", ".join(f"{r['name']} ({_points(r):+.1f})" for r in ranked) or "none"

    def second_won(r: dict) -> bool:
        adapter, baseline = r["second_metric"].get("adapter"), r["second_metric"].get("baseline")
        return None not in (adapter, baseline) and adapter > baseline

    beats = [r for r in shipped if r["adapter"] > r["baseline"] and second_won(r)]
    not_beats = [r for r in shipped if r not in beats]
    above_spread = [r for r in shipped if exceeds_spread(r)]
    within = [r for r in shipped if r not in above_spread]
    target = [r for r in shipped if _points(r) >= TARGET_POINTS]
    short = [r for r in shipped if r not in target]
    return "\n".join([
        f"- **Above the tuned TF-IDF baseline on the mean of their splits, on the headline metric and the second "
        f"one**: {'every shipped config' if not not_beats else names(beats)}"
        + (f"; **not**: {names(not_beats)}" if not_beats else "")
        + f". The mean gain exceeds its spread across splits for {names(above_spread)}"
        + (f"; not for {names(within)}" if within else "") + ".",
        f"- **At least +{TARGET_POINTS:g} points, the gain that would make the choice obvious** (issue #25): "
        f"{names(target)}; **short of it**: {names(short)}.",
    ])


def brand(results: Results) -> str:
    """README.md: the brand's lever on the BigBasket top level, from its records with and without the brand."""
    records = {r["name"]: r for r in results.real_data or []}
    top, title = records.get("bigbasket-top-head"), records.get("bigbasket-top-head-title")
    if not top or not title or top.get("without_attributes") is None:
        return "the records of the top level with and without the brand are not in real_data.json"
    return (
        f"it is the largest lever measured (the top level's mix {title['adapter']:.3f} → {top['adapter']:.3f}), and an "
        f"adapter trained with it is worse given the title alone ({top['without_attributes']:.3f}) than one trained "
        f"without ({title['adapter']:.3f})"
    )


# name → (renderer, whether the block sits inside a paragraph)
BLOCKS = {
    "inference": (inference, False),
    "space": (space, False),
    "stages": (stages, False),
    "targets": (targets, False),
    "memory": (memory, False),
    "training": (training, False),
    "summary": (summary, False),
    "batch-cap": (batch_cap, True),
    "batch": (batch, False),
    "batch-projection": (batch_projection, True),
    "results": (results, False),
    "results-verdicts": (verdicts, False),
    "results-brand": (brand, True),
}
MARKER = re.compile(r"<!-- speed_docs:(?P<name>[\w-]+) -->(?P<body>.*?)<!-- /speed_docs:(?P=name) -->", re.DOTALL)


def render(text: str, results: Results, document: str = "document") -> str:
    """``text`` with every marked block rewritten from ``results``."""

    def block(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise ValueError(f"{document}: unknown block <!-- speed_docs:{name} -->; known: {', '.join(BLOCKS)}")
        renderer, inline = BLOCKS[name]
        # blank lines around a block: a table ends before the closing marker
        body = renderer(results) if inline else f"\n\n{renderer(results)}\n\n"
        return f"<!-- speed_docs:{name} -->{body}<!-- /speed_docs:{name} -->"

    opened = re.findall(r"<!-- speed_docs:([\w-]+) -->", text)
    closed = re.findall(r"<!-- /speed_docs:([\w-]+) -->", text)
    if opened != closed:
        raise ValueError(f"{document}: speed_docs markers do not pair up: opened {opened}, closed {closed}")
    return MARKER.sub(block, text)


def _rewritten(repo: Path) -> dict[str, str]:
    """The documents whose marked blocks differ from what the result files give: name → the rewritten text."""
    results = Results.read(repo / "bench/results", repo)
    texts = {name: (repo / name).read_text() for name in DOCUMENTS}
    rendered = {name: render(text, results, name) for name, text in texts.items()}
    return {name: new for name, new in rendered.items() if new != texts[name]}


def stale(repo: Path = REPO) -> list[str]:
    """The documents out of date with the result files."""
    return list(_rewritten(repo))


def write(repo: Path = REPO) -> list[str]:
    """Rewrite the marked blocks of the documents from the result files: the documents changed."""
    changed = _rewritten(repo)
    for name, text in changed.items():
        (repo / name).write_text(text)
    return list(changed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say whether the documents are up to date")
    args = parser.parse_args()
    if args.check:
        if out_of_date := stale():
            sys.exit(f"out of date with bench/results/: {', '.join(out_of_date)} (run bench/speed_docs.py)")
        print("the documents' speed figures match bench/results/")
        return
    changed = write()
    print(f"rewrote the speed figures of {', '.join(changed)}" if changed else "the documents were up to date")


if __name__ == "__main__":
    main()
