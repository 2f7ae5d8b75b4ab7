"""Batch prediction for a catalog file: every input row comes out, with predictions or an error.

    python -m training.predict --adapter runs/sample-tagging --input products.csv --text-column text --output out.csv

Several adapters run in one pass (``--adapter tags=runs/a --adapter category=runs/b``),
each adding its column. Under ``accelerate launch`` or ``torchrun`` the rows are sharded
across processes and the main process writes one output in the input order.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch
from accelerate import PartialState
from accelerate.utils import gather_object

from catalog_lora.batch import BatchInputError, blank_lines_note, predict_table, read_table, write_table
from catalog_lora.engine import Engine

REFERENCES_COLUMN = "nearest_training_ids"


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


def add_references(frame: pd.DataFrame, adapters: dict[str, str], text_column: str, k: int) -> pd.DataFrame:
    """The ids of the ``k`` most similar training examples, from the first adapter that ships an index."""
    from catalog_lora.references import ReferenceIndex, ReferenceIndexError, locate_index

    for source in adapters.values():
        try:
            index = ReferenceIndex.open(locate_index(source))
        except ReferenceIndexError as error:
            print(f"No references from {source}: {error}", file=sys.stderr)
            continue
        texts = [t if t.strip() else " " for t in frame[text_column].astype(str)]
        found = index.query(texts, k=k)
        frame[REFERENCES_COLUMN] = [" ".join(r.id for r in refs) for refs in found]
        return frame
    frame[REFERENCES_COLUMN] = ""
    return frame


def run(args) -> pd.DataFrame | None:
    state = PartialState(cpu=not torch.cuda.is_available())  # see training.train: torchrun on CPU
    adapters = parse_adapters(args.adapter)
    frame = read_table(args.input)
    engine = Engine.load(adapters, base_model=args.base_model, quantization=args.quantization)
    if state.is_main_process:
        print(f"Model: {engine.precision.describe()}; {len(frame)} rows{blank_lines_note(frame)}; adapters: {', '.join(adapters)}")
    positions = list(range(len(frame)))
    with state.split_between_processes(positions) as shard:
        part = predict_table(
            engine,
            frame.iloc[shard],
            args.text_column,
            list(adapters),
            attribute_columns=args.attribute_column,
            batch_size=args.batch_size,
            show_progress=state.is_main_process,
        )
    parts = gather_object([part]) if state.num_processes > 1 else [part]
    if not state.is_main_process:
        return None
    result = pd.concat(parts).loc[frame.index] if state.num_processes > 1 else parts[0]
    if args.references:
        result = add_references(result, adapters, args.text_column, args.references)
    write_table(result, args.output)
    failed = int((result["error"] != "").sum())
    print(f"Wrote {len(result)} rows to {args.output} ({failed} with an error; see the 'error' column)")
    return result


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", action="append", required=True, help="run folder or Hub id, optionally NAME=…; repeatable")
    parser.add_argument("--input", required=True, help="CSV, TSV, xlsx or JSON(L) catalog")
    parser.add_argument("--text-column", required=True, help="column with the product text or title")
    parser.add_argument("--attribute-column", action="append", default=[], help="extra column shown to the model; repeatable")
    parser.add_argument("--output", required=True, help="output CSV (formula-safe)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--base-model", help="override the base model the adapter names")
    parser.add_argument("--quantization", default="auto", help="auto, 4bit, 8bit or none")
    parser.add_argument("--references", type=int, default=0, metavar="K", help="add the ids of the K nearest training examples")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (BatchInputError, ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
