"""Batch prediction for a catalog file: every input row comes out once, with predictions or an error.

    python -m training.predict --adapter runs/sample-tagging --input products.csv --text-column text --output out.csv

CSV, TSV, JSONL and Parquet inputs are streamed in chunks of ``--chunk-rows``; each finished
chunk is appended to the output, so memory stays flat however long the file is. Rerunning the
same command after an interruption continues from the last finished chunk (a changed input,
adapter or setting is refused). Several adapters run in one pass (``--adapter tags=runs/a
--adapter category=runs/b``), each adding its column. Under ``accelerate launch`` or ``torchrun``
(one machine or several, by the launcher's flags) each process predicts its share of the chunks
and the main process writes one output in the input order.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from accelerate import PartialState

from catalog_lora.catalogs.batch import ERROR_COLUMN, BatchInputError, check_column, predict_table
from catalog_lora.catalogs.batch_job import ChunkedOutput, adapter_fingerprint
from catalog_lora.catalogs.tables import (
    DELIMITERS,
    ReadOptions,
    check_header,
    columns_of,
    iter_chunks,
    reading_note,
    scan,
)
from catalog_lora.inference.engine import Engine

REFERENCES_COLUMN = "nearest_training_ids"
# Settings that change the output; a run is resumed only when all of them are the same.
FINGERPRINT_SETTINGS = (
    "text_column", "attribute_column", "batch_size", "batch_tokens", "chunk_rows", "base_model", "quantization", "merge", "references",
    "encoding", "delimiter", "sheet",
)


def parse_adapters(values: list[str]) -> dict[str, str]:
    """``["runs/a", "category=runs/b"]`` → ``{"a": "runs/a", "category": "runs/b"}``."""
    adapters = {}
    for value in values:
        name, _, source = value.rpartition("=") if "=" in value else ("", "", value)
        name = name or source.rstrip("/").split("/")[-1]
        if name in adapters:
            raise ValueError(f"two adapters are named {name!r}; name them: --adapter NAME=PATH")
        adapters[name] = source
    return adapters


def open_references(adapters: dict[str, str]):
    """The index of training examples of the first adapter that ships one (``None`` when none does)."""
    from catalog_lora.retrieval.references import ReferenceIndex, ReferenceIndexError, locate_index

    for source in adapters.values():
        try:
            return ReferenceIndex.open(locate_index(source))
        except ReferenceIndexError as error:
            print(f"No references from {source}: {error}", file=sys.stderr)
    return None


def add_references(frame: pd.DataFrame, index, text_column: str, k: int) -> pd.DataFrame:
    """The ids of the ``k`` most similar training examples (``""`` without an index), before the error column."""
    ids = [""] * len(frame)
    if index is not None and len(frame):
        texts = [t if t.strip() else " " for t in frame[text_column].astype(str)]
        ids = [" ".join(r.id for r in refs) for refs in index.query(texts, k=k)]
    errors = frame.pop(ERROR_COLUMN)
    frame[REFERENCES_COLUMN] = ids
    frame[ERROR_COLUMN] = errors
    return frame


def output_columns(columns: list[str], jobs: list[str], references: bool) -> list[str]:
    return [c for c in columns if c != ERROR_COLUMN] + jobs + ([REFERENCES_COLUMN] if references else []) + [ERROR_COLUMN]


@dataclass
class Progress:
    """Rows done, rows/s and ETA in the terminal, from the rows of every process."""

    total: int
    start_rows: int
    started: float = field(default_factory=time.monotonic)

    def report(self, done: int) -> None:
        elapsed = time.monotonic() - self.started
        rate = (done - self.start_rows) / elapsed if elapsed > 0 else 0.0
        left = max(self.total - done, 0)
        eta = duration(left / rate) if rate > 0 else "unknown"
        share = f" ({done / self.total:.1%})" if self.total else ""
        print(f"rows {done:,}/~{self.total:,}{share} · {rate:.2f} rows/s · ETA {eta}", flush=True)


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def fingerprint(args, adapters: dict[str, str], input_sha256: str) -> dict:
    settings = {key: getattr(args, key) for key in FINGERPRINT_SETTINGS}
    return {
        "input": input_sha256,
        "adapters": {name: adapter_fingerprint(source) for name, source in adapters.items()},
        "settings": settings,
    }


def read_options(args) -> ReadOptions:
    delimiter = {name: char for char, name in DELIMITERS.items()}[args.delimiter] if args.delimiter else None
    return ReadOptions(encoding=args.encoding, delimiter=delimiter, sheet=args.sheet)


def check_input(args) -> tuple[list[str], int, str]:
    """Everything that can be refused before the model loads (and before any output is written):
    file, encoding, sheets, header, columns. Columns, rows, hash."""
    if args.chunk_rows < 1:
        raise BatchInputError(f"--chunk-rows must be at least 1 (got {args.chunk_rows})")
    options = read_options(args)
    scanned = scan(args.input, options)
    if scanned.rows == 0:
        raise BatchInputError(f"{args.input} has a header but no rows")
    columns = columns_of(args.input, options)
    check_header(columns)
    for column in [args.text_column, *args.attribute_column]:
        check_column(columns, column)
    return columns, scanned.rows, scanned.sha256


def predict_share(args, state, job: ChunkedOutput, engine: Engine, index, jobs: list[str], progress: Progress) -> int:
    """Predict this process's share of the chunks not done yet; the number of chunks in the file.

    The k-th chunk not done at the start goes to process k mod N, so a resumed run stays balanced.
    """
    done = set(job.state.done) | set(range(job.state.chunks_written))
    chunks = pending = 0
    for position, chunk in enumerate(iter_chunks(args.input, args.chunk_rows, read_options(args))):
        chunks += 1
        if position in done:
            continue
        pending += 1
        if (pending - 1) % state.num_processes != state.process_index:
            continue
        part = predict_table(engine, chunk, args.text_column, jobs, attribute_columns=args.attribute_column,
                             batch_size=args.batch_size, batch_tokens=args.batch_tokens)
        if args.references:
            part = add_references(part, index, args.text_column, args.references)
        job.save(position, part)
        if state.is_main_process:
            job.append_ready()
            progress.report(job.rows_done())
    return chunks


def run(args):
    state = PartialState(cpu=not torch.cuda.is_available())  # see training.train: torchrun on CPU
    adapters = parse_adapters(args.adapter)
    columns, rows, sha = check_input(args)
    if state.is_main_process and (note := reading_note(args.input, read_options(args))):
        print(f"Note: {note}", flush=True)  # how the file is read, before minutes of loading and predicting
    job = ChunkedOutput(Path(args.output), fingerprint(args, adapters, sha))
    resumed = job.load()  # every process refuses a mismatched job before any work
    engine = Engine.load(adapters, base_model=args.base_model, quantization=args.quantization, merge=args.merge)
    index = open_references(adapters) if args.references else None
    if state.is_main_process:
        job.start(output_columns(columns, list(adapters), bool(args.references)))
        where = f"resuming after {resumed.rows:,} rows" if resumed else "new output"
        print(f"Model: {engine.precision.describe()}; ~{rows:,} rows in {args.input}; adapters: {', '.join(adapters)}; "
              f"{state.num_processes} process(es); {where}", flush=True)
        for name in adapters:  # an attribute the adapter was trained with, left out: it reads the text alone
            if unread := [a for a in engine.spec(name).info.attributes if a not in args.attribute_column]:
                hint = " ".join(f"--attribute-column {a}" for a in unread if a in columns) or "a column with them"
                print(f"Note: adapter {name} was trained with the products' {', '.join(unread)} beside the text and reads "
                      f"it when given ({hint}); without it, it reads the text alone, which it was not trained on.", flush=True)
    state.wait_for_everyone()
    job.load()  # the job as the main process started or resumed it
    progress = Progress(rows, job.rows_done())
    chunks = predict_share(args, state, job, engine, index, list(adapters), progress)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    final = job.finish(chunks)
    took = time.monotonic() - progress.started
    print(f"Wrote {final.rows:,} rows to {args.output} ({final.errors:,} with an error; see the 'error' column) "
          f"in {duration(took)}; {(final.rows - progress.start_rows) / max(took, 1e-9):.2f} rows/s this run", flush=True)
    return final


# A small model's forward is launch-bound on a GPU: an H200 answered 3.8x more titles a second at batch 1024 than
# at 32 (bench/results/gpu.md). The token budget keeps a batch of long reviews as small as its memory needs.
DEFAULTS = {
    "cpu": {"batch_size": 16, "batch_tokens": 0, "chunk_rows": 500},
    "cuda": {"batch_size": 1024, "batch_tokens": 32768, "chunk_rows": 8192},
}


def device_defaults(args, cuda: bool) -> None:
    """``--batch-size``, ``--batch-tokens`` and ``--chunk-rows`` left unset take the device's defaults."""
    for key, value in DEFAULTS["cuda" if cuda else "cpu"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", action="append", required=True, help="run folder or Hub id, optionally NAME=…; repeatable")
    parser.add_argument("--input", required=True, help="CSV, TSV, JSONL or Parquet catalog (streamed); xlsx or JSON (read whole)")
    parser.add_argument("--text-column", required=True, help="column with the product text or title")
    parser.add_argument("--attribute-column", action="append", default=[], help="extra column shown to the model; repeatable")
    parser.add_argument("--encoding", default="utf-8", help="the input's text encoding, e.g. cp1252 (never guessed)")
    parser.add_argument("--delimiter", choices=list(DELIMITERS.values()),
                        help="the CSV/TSV delimiter (default: sniffed from the header line, and said when not the usual one)")
    parser.add_argument("--sheet", help="the xlsx sheet to read (default: every sheet with rows, when they share a header)")
    parser.add_argument("--output", required=True, help="output CSV (formula-safe; numbers and ids kept as they are)")
    parser.add_argument("--batch-size", type=int,
                        help=f"rows per model call (the most, with --batch-tokens; default {DEFAULTS['cpu']['batch_size']}, "
                             f"on a GPU {DEFAULTS['cuda']['batch_size']})")
    parser.add_argument("--batch-tokens", type=int,
                        help="model calls of as many length-sorted rows as fit in N padded tokens (0: off; default off, "
                             f"on a GPU {DEFAULTS['cuda']['batch_tokens']}): every call about the same size")
    parser.add_argument("--chunk-rows", type=int, help="rows per chunk: the unit of memory, output and resume "
                        f"(default {DEFAULTS['cpu']['chunk_rows']}, on a GPU {DEFAULTS['cuda']['chunk_rows']})")
    parser.add_argument("--base-model", help="override the base model the adapter names")
    parser.add_argument("--quantization", default="auto",
                        help="auto, 4bit, 8bit, none; on CPU also bf16 (native bf16 CPUs) or int8 (int8 linear layers)")
    parser.add_argument("--merge", action="store_true", help="fold the one adapter into the base weights (faster; one adapter)")
    parser.add_argument("--references", type=int, default=0, metavar="K", help="add the ids of the K nearest training examples")
    args = parser.parse_args(argv)
    device_defaults(args, torch.cuda.is_available())
    for flag, value, least in (("--batch-size", args.batch_size, 1), ("--chunk-rows", args.chunk_rows, 1), ("--batch-tokens", args.batch_tokens, 0)):
        if value < least:
            parser.error(f"{flag} {value} is out of range: it must be at least {least}")
    try:
        return run(args)
    except (BatchInputError, ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
