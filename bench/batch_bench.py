"""Batch prediction at catalog scale: peak memory at 10k and 100k rows, rows/s, kill-and-resume.

    .venv/bin/python bench/batch_bench.py [--adapter runs/sample-category] [--threads 1]
                                          [--quantization auto] [--merge]

- **Peak memory**: ``training.predict`` streams real BigBasket titles (``../shared``) repeated to
  10,000 and 100,000 rows. Memory behaviour does not depend on the model's speed, so these runs use
  a tiny random-weight model of the base's architecture (Llama, 2 layers, hidden size 64, the same
  tokenizer) with a LoRA adapter and a score head over ``--adapter``'s labels (one forward pass a batch).
- **Kill-and-resume**: the 10k run again, SIGKILLed after a few chunks, rerun with the same command,
  and compared byte for byte with the uninterrupted output.
- **Rows/s**: the embedded model with ``--adapter`` on ``--speed-rows`` titles, at ``--quantization``
  (and ``--merge``), as ``training.predict`` takes them, with each run's peak memory.
- **Reading the input**: what every process of a multi-process run does with the whole file besides its share
  (check and hash it, read it chunk by chunk), timed in this process on the 10k and 100k files.

Every run is a separate ``python -m training.predict`` process with ``OMP_NUM_THREADS=--threads``;
peak memory is its maximum resident set size. Writes ``bench/results/batch.md`` and ``.json``, then rewrites the
README's batch figures from the JSON (``bench/speed_docs.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.speed_docs import projection  # noqa: E402
from bench.speed_docs import write as write_docs  # noqa: E402
from catalog_lora.catalogs.batch_job import MANIFEST, PARTS_SUFFIX  # noqa: E402
from catalog_lora.catalogs.tables import iter_chunks, scan  # noqa: E402
from catalog_lora.model.base_model import resolve_base_model  # noqa: E402
from catalog_lora.runs.folder import COMPLETE_MARKER, INFO_FILE, TAXONOMY_FILE, RunInfo, read_run_info  # noqa: E402

TITLES = REPO.parent / "shared" / "data" / "raw" / "bigbasket" / "bigbasket_products_27k_no_description.csv"
RESULTS = REPO / "bench" / "results" / "batch.md"  # and batch.json beside it
CATALOG = 10_000_000  # the catalog size the rates are projected to
PROCESSES = (1, 16, 64)
ROWS, SPEED_ROWS, CHUNK_ROWS = [10_000, 100_000], 500, 500  # the defaults of --rows, --speed-rows, --chunk-rows
KILL_AFTER_CHUNKS = 3  # of the kill-and-resume run (fewer where its input has fewer)


def titles(n: int) -> pd.DataFrame:
    """``n`` rows of real BigBasket product titles, the distinct titles repeated in file order."""
    if not TITLES.is_file():
        sys.exit(f"the benchmark reads real titles from {TITLES}, which is not present")
    distinct = pd.read_csv(TITLES, usecols=["product"], dtype=str)["product"].dropna().drop_duplicates()
    repeated = distinct.tolist() * (n // len(distinct) + 1)
    return pd.DataFrame({"title": repeated[:n]})


def tiny_run(adapter: Path, folder: Path) -> Path:
    """A run folder for a tiny random Llama (the base's tokenizer) with a score head over ``adapter``'s labels.

    The head path (one forward pass per batch) keeps 100k rows within minutes on one thread.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, LlamaForCausalLM

    info = read_run_info(str(adapter))
    base = resolve_base_model(info.base_model)
    config = AutoConfig.from_pretrained(base)
    config.update({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 4, "head_dim": 16})
    torch.manual_seed(0)
    model_dir, run_dir = folder / "tiny-model", folder / "tiny-run"
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.save_pretrained(model_dir)
    classifier = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(info.labels))
    classifier.config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    lora = LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"])
    get_peft_model(classifier, lora).save_pretrained(run_dir)
    # The tiny model's run has no references index and no TF-IDF model: it mixes in no votes and shows no examples.
    tiny = {
        **info.__dict__,
        "method": "head",
        "base_model": str(model_dir),
        "base_model_hub_id": "",
        "num_layers": None,
        "knn_k": 0,
        "knn_weight": 0.0,
        "lexical_weight": 0.0,
        "prompt_examples": 0,
    }
    RunInfo(**tiny).save(run_dir)
    shutil.copy2(adapter / TAXONOMY_FILE, run_dir / TAXONOMY_FILE)
    return run_dir


def predict_cmd(adapter: Path, source: Path, output: Path, chunk_rows: int, *options: str) -> list[str]:
    return [sys.executable, "-m", "training.predict", "--adapter", f"category={adapter}", "--input", str(source),
            "--text-column", "title", "--output", str(output), "--chunk-rows", str(chunk_rows), "--batch-size", "32",
            *options]


def env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}


def measured(cmd: list[str], threads: int, kill_after_chunks: int = 0) -> dict:
    """Run one process; its wall time, peak RSS, last line, and whether it was SIGKILLed (once the output holds
    ``kill_after_chunks`` chunks; a process that finishes first is not)."""
    log = tempfile.TemporaryFile(mode="w+")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(threads), stdout=log, stderr=subprocess.STDOUT)
    output = Path(cmd[cmd.index("--output") + 1])
    manifest = output.with_name(output.name + PARTS_SUFFIX) / MANIFEST
    # os.wait4 alone reaps the process (Popen.poll would reap it first and leave wait4 no child), and gives its usage
    while not (waited := os.wait4(proc.pid, os.WNOHANG if kill_after_chunks else 0))[0]:
        if manifest.is_file() and json.loads(manifest.read_text())["chunks_written"] >= kill_after_chunks:
            proc.send_signal(signal.SIGKILL)
            kill_after_chunks = 0  # the next wait blocks until the process is gone
        else:
            time.sleep(0.05)
    _, status, usage = waited
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    log.seek(0)
    lines = log.read().strip().splitlines()
    killed = proc.returncode == -signal.SIGKILL
    if not killed and proc.returncode != 0:
        sys.exit("training.predict failed:\n" + "\n".join(lines[-20:]))
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "last": lines[-1] if lines else "", "killed": killed}


def kill_and_resume(run: Path, source: Path, uninterrupted: Path, output: Path, chunk_rows: int, threads: int) -> dict:
    """Predict ``source`` into ``output``, SIGKILL the process once a few chunks are written, rerun the same command,
    and compare what it leaves byte for byte with ``uninterrupted`` (the same command's output, run without a break)."""
    chunks = -(-scan(source).rows // chunk_rows)
    if chunks < 2:
        sys.exit(f"kill-and-resume needs a run of at least two chunks to stop between them; {source.name} is "
                 f"{chunks} chunk(s) of {chunk_rows} rows: give --rows a first size larger than --chunk-rows")
    command = predict_cmd(run, source, output, chunk_rows)
    killed = measured(command, threads, kill_after_chunks=min(KILL_AFTER_CHUNKS, chunks - 1))
    if not killed["killed"]:
        sys.exit(f"the run to be killed finished its {chunks} chunks first ({killed['seconds']:.1f} s): give --rows a "
                 "first size of more chunks")
    rows_at_kill = sum(1 for _ in output.open()) - 1
    resumed = measured(command, threads)
    return {"rows_at_kill": rows_at_kill, "killed_after_s": killed["seconds"], "seconds": resumed["seconds"],
            "identical": output.read_bytes() == uninterrupted.read_bytes()}


def read_seconds(path: Path, chunk_rows: int) -> float:
    """What every process of a run does with the whole input besides its share: check and hash it
    (``training.predict.check_input``), then read it chunk by chunk to find its own chunks."""
    started = time.monotonic()
    scan(path)
    for _ in iter_chunks(path, chunk_rows):
        pass
    return time.monotonic() - started


def rows_per_second(line: str) -> float:
    """The rate ``training.predict`` reports in its summary line."""
    return float(line.rsplit(";", 1)[1].split("rows/s")[0])


def share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default=str(REPO / "runs" / "sample-category"), help="a category run folder")
    parser.add_argument("--rows", type=int, nargs="+", default=ROWS)
    parser.add_argument("--speed-rows", type=int, default=SPEED_ROWS)
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quantization", default="auto", help="of the rows/s run, as training.predict takes it")
    parser.add_argument("--merge", action="store_true", help="the rows/s run folds the adapter into the base")
    args = parser.parse_args()
    adapter = Path(args.adapter)
    if not (adapter / INFO_FILE).is_file():
        sys.exit(f"{adapter} is not a run folder; run `bash run.sh` first or pass --adapter runs/<a category run>")
    # the work folder goes whatever happens, a run stopped on an unanswered row included
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as work:
        benchmark(args, adapter, Path(work))


def benchmark(args: argparse.Namespace, adapter: Path, work: Path) -> None:
    """Measure in ``work``; write batch.md and batch.json, and the README's batch blocks from them."""
    tiny = tiny_run(adapter, work)
    memory = []
    for n in args.rows:
        source = work / f"titles-{n}.csv"
        titles(n).to_csv(source, index=False)
        result = measured(predict_cmd(tiny, source, work / f"out-{n}.csv", args.chunk_rows), args.threads)
        # every title answered (a long one with a notice beside its answer): rows of errors alone would measure
        # the error path, not prediction
        unanswered = pd.read_csv(work / f"out-{n}.csv", dtype=str, keep_default_na=False)["category"].eq("")
        if unanswered.any():
            sys.exit(f"the tiny model's run left {unanswered.sum():,} of {n:,} rows without an answer; {result['last']}")
        result["read_seconds"] = read_seconds(source, args.chunk_rows)
        memory.append((n, result))
        print(f"{n:,} rows: peak {result['peak_mb']:.0f} MB, {result['seconds']:.0f} s (reading the file alone "
              f"{result['read_seconds']:.1f} s); {result['last']}", flush=True)

    n = args.rows[0]
    resume = kill_and_resume(tiny, work / f"titles-{n}.csv", work / f"out-{n}.csv", work / f"resumed-{n}.csv",
                             args.chunk_rows, args.threads)
    print(f"kill-and-resume: killed after {resume['killed_after_s']:.0f} s with {resume['rows_at_kill']:,} rows "
          f"written; resumed in {resume['seconds']:.0f} s; output identical: {resume['identical']}", flush=True)

    speed_source = work / "speed.csv"
    titles(args.speed_rows).to_csv(speed_source, index=False)
    info = read_run_info(str(adapter))
    default = "auto (4-bit on CUDA)" if torch.cuda.is_available() else "fp32"
    asked = {"auto": default, "none": "fp32"}.get(args.quantization, args.quantization)
    # The default precision first; the asked one beside it, with how often its answers are the same.
    runs = [(default, [])]
    if asked != default or args.merge:
        runs.append((asked + (", adapter merged" if args.merge else ""),
                     ["--quantization", args.quantization, *(["--merge"] if args.merge else [])]))
    speeds, answers = [], []
    for index, (precision, options) in enumerate(runs):
        output = work / f"speed-out-{index}.csv"
        result = measured(predict_cmd(adapter, speed_source, output, args.chunk_rows, *options), args.threads)
        answers.append(pd.read_csv(output, dtype=str, keep_default_na=False)["category"])
        agreement = (answers[-1] == answers[0]).mean() if index else None
        speeds.append({"precision": precision, "rows_per_s": rows_per_second(result["last"]),
                       "seconds": result["seconds"], "peak_mb": result["peak_mb"], "same": agreement})
        print(f"embedded model, {precision}: {speeds[-1]['rows_per_s']:.2f} rows/s per process; {result['last']}", flush=True)
    if info.method == "head":
        method = (f"{info.task} head, one forward pass a batch" + (f", {info.knn_k} neighbours" if info.knn_k else "")
                  + (", its TF-IDF vote" if info.lexical_weight else ""))
    else:
        method = f"{info.task}, constrained, max_new_tokens {info.max_new_tokens}"
    complete = adapter / COMPLETE_MARKER
    record = {
        "machine": {"date": str(datetime.date.today()), "machine": platform.machine(), "cpu_cores": os.cpu_count(),
                    "torch": torch.__version__, "threads_per_process": args.threads},
        "chunk_rows": args.chunk_rows,
        "memory": [{"rows": n, "peak_mb": r["peak_mb"], "seconds": r["seconds"], "read_seconds": r["read_seconds"]}
                   for n, r in memory],
        "resume": {"rows": n, "rows_at_kill": resume["rows_at_kill"], "seconds": resume["seconds"],
                   "identical": resume["identical"]},
        "speed": {
            "adapter": adapter.name,
            "trained": str(datetime.date.fromtimestamp(complete.stat().st_mtime)) if complete.is_file() else None,
            "method": method,
            "rows": args.speed_rows,
            "runs": speeds,
        },
        "catalog": CATALOG,
        "processes": list(PROCESSES),
    }
    RESULTS.write_text(markdown(record, command_line(args)))
    RESULTS.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"Wrote {RESULTS} and {RESULTS.with_suffix('.json').name}")
    if changed := write_docs():  # the README quotes batch.json: keep it with it
        print(f"rewrote the speed figures of {', '.join(changed)}")


def command_line(args: argparse.Namespace) -> str:
    """The command that made a record: the options that shape every figure, and the sizes where they are not the
    defaults."""
    sizes = {"--rows": " ".join(map(str, args.rows)) if args.rows != ROWS else None,
             "--speed-rows": args.speed_rows if args.speed_rows != SPEED_ROWS else None,
             "--chunk-rows": args.chunk_rows if args.chunk_rows != CHUNK_ROWS else None}
    return " ".join([f"python bench/batch_bench.py --adapter {args.adapter} --threads {args.threads} --quantization "
                     f"{args.quantization}", *(["--merge"] if args.merge else []),
                     *(f"{option} {value}" for option, value in sizes.items() if value is not None)])


def markdown(record: dict, command: str) -> str:
    """batch.md: the record of batch.json as tables, with the command that made it."""
    machine, resume, speed = record["machine"], record["resume"], record["speed"]
    threads, default = machine["threads_per_process"], speed["runs"][0]["precision"]
    lines = [
        "# Batch prediction at catalog scale",
        "",
        f"Command: `{command}`. "
        f"Machine: {machine['machine']}, {machine['cpu_cores']} CPU cores, torch {machine['torch']}, "
        f"**{threads} thread(s) per process** (OMP_NUM_THREADS). Date: {machine['date']}. "
        f"Chunks of {record['chunk_rows']} rows. Titles: BigBasket product titles (../shared), repeated.",
        "",
        "| input rows | model | peak RSS MB | wall s | reading the file alone, s |",
        "|---:|---|---:|---:|---:|",
        *[f"| {r['rows']:,} | tiny random Llama (2 layers, hidden 64) + score head, LoRA r=4 | {r['peak_mb']:.0f} | "
          f"{r['seconds']:.0f} | {r['read_seconds']:.2f} |" for r in record["memory"]],
        "",
        f"Kill-and-resume ({resume['rows']:,} rows, tiny model): SIGKILL after {resume['rows_at_kill']:,} rows were in "
        f"the output, the same command rerun ({resume['seconds']:.0f} s): output byte-identical to the uninterrupted "
        f"run: **{'yes' if resume['identical'] else 'NO'}**.",
        "",
        f"Rows/s: the embedded SmolLM2-135M-Instruct with {speed['adapter']} ({speed['method']}), {speed['rows']:,} titles.",
        "",
        f"| rows/s per process | precision | wall s (with model load) | peak RSS MB | same answer as {default} |",
        "|---:|---|---:|---:|---:|",
        *[f"| {r['rows_per_s']:.2f} | {r['precision']} | {r['seconds']:.0f} | {r['peak_mb']:.0f} | {share(r['same'])} |"
          for r in speed["runs"]],
        "",
        f"A {record['catalog']:,}-product catalog at these rates, one {threads}-thread process per core, assuming linear "
        "scaling (the processes share nothing but the input file) and titles like these:",
        "",
        *[f"- {r['precision']}: {projection(r['rows_per_s'], record['catalog'], record['processes'])}"
          for r in speed["runs"]],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
