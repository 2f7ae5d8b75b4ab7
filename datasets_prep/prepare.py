"""Source files → a prepared dataset folder: the pipeline, its Python API and its command line.

A prepared folder holds ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (records as in
:mod:`catalog_lora.records.canonical`), ``taxonomy.json`` (labels with train counts; for tagging with
Level 2 tags also ``taxonomy_l2.json``; for category paths deeper than one level also
``taxonomy_level<k>.json`` with the paths cut to ``k`` = 1–3 levels), ``report.json`` (what happened to
every source row) and ``README.md`` (the dataset card). Descriptions have no labels and so no taxonomy.

Usage::

    python -m datasets_prep.prepare --format bodywash \\
        --input ../shared/data/raw/bodywash/bodywash-train_L1_L2.DERIVED.csv --output data/bodywash
    python -m datasets_prep.prepare --format generic --input my_catalog.xlsx --output data/mine \\
        --text-column title --path-column category --path-column sub_category
    python -m datasets_prep.prepare --format sample --output data/sample
    python -m datasets_prep.prepare --format generic ... --output data/mine --push-to-hub you/my-catalog

``--push-to-hub`` then publishes the folder as a Hub dataset by running the publishing command,
``python -m model_cards.publish dataset <output> --repo-id you/my-catalog``, as its own process
(data preparation does not import publishing; see ARCHITECTURE.md). The token comes from
``HF_TOKEN`` or the stored login, ``HF_ENDPOINT`` picks another Hub.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from catalog_lora.records.canonical import SPLITS, check_task, path_label
from catalog_lora.records.dataset_files import (
    CARD_FILE,
    REPORT_FILE,
    TAXONOMY_FILE,
    TAXONOMY_L2_FILE,
    Report,
    split_path,
)
from catalog_lora.records.labels import Taxonomy
from catalog_lora.runs.folder import check_repo_id
from datasets_prep import (
    amazon_reviews23,
    amazontitles,
    bigbasket,
    bodywash,
    flipkart,
    generic,
    instacart,
    promptcloud,
)
from datasets_prep.card import build_card
from datasets_prep.generic import ColumnMapping
from datasets_prep.readers import DataError
from datasets_prep.split import check_fractions, split_records

# cut-path taxonomies are written for levels 1..3: deeper cuts of long Amazon paths are rarely trained on
MAX_CUT_LEVEL = 3
SAMPLE_DIR = Path(__file__).parent / "sample"


@dataclass(frozen=True)
class Format:
    name: str
    task: str
    convert: Callable[..., list[dict]]
    help: str


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("bodywash", "tagging", bodywash.convert, "body-wash review sheets (Level 1 / Level 2 tags)"),
        Format("bigbasket", "category", bigbasket.convert_categories, "BigBasket v1 catalogue: title → 3 levels"),
        Format(
            "bigbasket-descriptions",
            "description",
            bigbasket.convert_descriptions,
            "BigBasket v1 files with a description column",
        ),
        Format("bigbasket-v2", "category", bigbasket.convert_v2, "BigBasket 8k scrape: title → 2 levels"),
        Format("flipkart", "category", flipkart.convert_categories, "Flipkart products: category tree → 3 levels"),
        Format("flipkart-descriptions", "description", flipkart.convert_descriptions, "Flipkart full-schema files"),
        Format("instacart", "category", instacart.convert, "Instacart products → department > aisle"),
        Format("amazon-reviews23", "category", amazon_reviews23.convert, "Amazon Reviews '23: product → path"),
        Format("amazontitles", "description", amazontitles.convert, "AmazonTitles-1.3MM: title → content"),
        Format("promptcloud", "category", promptcloud.convert_categories, "Amazon PromptCloud 2020: title → path"),
        Format(
            "promptcloud-descriptions",
            "description",
            promptcloud.convert_descriptions,
            "Amazon PromptCloud 2020: title → About Product",
        ),
        Format("generic", "", generic.convert, "your own CSV / JSON lines / JSON / xlsx with a column mapping"),
    )
}
SAMPLE_FORMAT = "sample"
# the bundled sample catalog: file, task, how its columns map
SAMPLE_FILES = {
    "tagging": ("tagging.csv", ColumnMapping(text="text", labels=["tags"], label_separator="|")),
    "category": ("categories.csv", ColumnMapping(text="title", path=["category", "sub_category"])),
    "description": (
        "descriptions.csv",
        ColumnMapping(text="title", description="description", attributes=["brand", "category"]),
    ),
}


def resolve_format(format_name: str, task: str | None = None) -> Format:
    """The format by name; ``task`` may pick a sibling (``bigbasket`` + ``description`` → ``bigbasket-descriptions``)."""
    if format_name not in FORMATS:
        known = ", ".join([*FORMATS, SAMPLE_FORMAT])
        raise ValueError(f"format={format_name!r} is not a known format; expected one of {known}")
    fmt = FORMATS[format_name]
    if task is None or fmt.name == "generic" or check_task(task) == fmt.task:
        return fmt
    sibling = FORMATS.get(f"{format_name}-descriptions") if task == "description" else None
    if sibling is None:
        sibling = next((f for f in FORMATS.values() if f.task == task and format_name.startswith(f.name)), None)
    if sibling is None:
        raise ValueError(f"format={format_name!r} gives the {fmt.task} task, not task={task!r}")
    return sibling


def convert(
    format_name: str,
    inputs: list[str | Path],
    *,
    task: str | None = None,
    columns: ColumnMapping | None = None,
    sheet: str | int | None = None,
    report: Report | None = None,
    source: str | None = None,
) -> tuple[list[dict], Report]:
    """Canonical records of the inputs (not yet split) and the report of the conversion."""
    fmt = resolve_format(format_name, task)
    report = report if report is not None else Report(name=source or fmt.name)
    if not inputs:
        raise ValueError(f"format={fmt.name!r} needs at least one input file")
    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
    if fmt.name == "generic":
        if columns is None:
            raise ValueError("the generic format needs a column mapping (at least the text column and one target)")
        records = generic.convert(paths, columns, report, task=task, sheet=sheet, source=source or generic.SOURCE)
    elif fmt.name == "bodywash":
        records = bodywash.convert(paths, report, sheet=sheet)
    else:
        records = fmt.convert(paths, report)
    return records, report


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_taxonomies(folder: Path, task: str, train: list[dict]) -> list[str]:
    """The taxonomy files of a folder, from the train split; returns the names written."""
    written = []
    if task == "tagging":
        Taxonomy.from_examples([r["labels"] for r in train], multi_label=True).save(folder / TAXONOMY_FILE)
        written.append(TAXONOMY_FILE)
        if any(r.get("labels_l2") for r in train):
            l2 = Taxonomy.from_examples([r["labels_l2"] for r in train], multi_label=True)
            l2.save(folder / TAXONOMY_L2_FILE)
            written.append(TAXONOMY_L2_FILE)
    elif task == "category":
        Taxonomy.from_examples([[path_label(r["path"])] for r in train], multi_label=False).save(folder / TAXONOMY_FILE)
        written.append(TAXONOMY_FILE)
        depth = max((len(r["path"]) for r in train), default=0)
        for level in range(1, min(depth, MAX_CUT_LEVEL + 1)):
            name = f"taxonomy_level{level}.json"
            cut = Taxonomy.from_examples([[path_label(r["path"], level)] for r in train], multi_label=False)
            cut.save(folder / name)
            written.append(name)
    return written


def _clear(folder: Path) -> None:
    """Remove the files of an earlier preparation, so none of them outlives this one."""
    for name in [*(split_path(folder, s).name for s in SPLITS), REPORT_FILE, CARD_FILE, "taxonomy*.json"]:
        for path in folder.glob(name):
            path.unlink()


def prepare(
    format_name: str,
    inputs: list[str | Path],
    output_dir: str | Path,
    *,
    task: str | None = None,
    columns: ColumnMapping | None = None,
    sheet: str | int | None = None,
    seed: int = 42,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    name: str | None = None,
    source: str | None = None,
) -> Report:
    """Convert, split and write a dataset folder.

    ``source`` names the data in the ``source`` field of generic records (default ``generic``).
    """
    check_fractions(val_frac, test_frac)
    fmt = resolve_format(format_name, task)
    records, report = convert(fmt.name, inputs, task=task, columns=columns, sheet=sheet, source=source)
    task = report.task
    if not records:
        raise DataError(f"no usable examples in {', '.join(map(str, inputs))}:\n{report.summary()}")
    if report.unaccounted:
        raise AssertionError(
            f"{report.unaccounted} source rows are neither kept, merged nor dropped:\n{report.summary()}"
        )
    report.settings = {
        "format": source if source and fmt.name == "generic" else fmt.name,
        "name": name or Path(output_dir).name or fmt.name,
        "task": task,
        "seed": seed,
        "val_frac": val_frac,
        "test_frac": test_frac,
    }
    if columns is not None:
        report.settings["columns"] = {k: v for k, v in vars(columns).items() if v}
    splits = split_records(records, task, seed=seed, val_frac=val_frac, test_frac=test_frac, report=report)

    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    _clear(folder)
    for split, rows in splits.items():
        _write_jsonl(split_path(folder, split), rows)
    write_taxonomies(folder, task, splits["train"])
    report.save(folder / REPORT_FILE)
    build_card(folder).save(folder / CARD_FILE)
    return report


def prepare_sample(output_root: str | Path, *, sample_dir: str | Path = SAMPLE_DIR, seed: int = 42, **kwargs):
    """Prepare the bundled sample catalog into ``output_root/tagging``, ``/category`` and ``/description``."""
    sample_dir, output_root = Path(sample_dir), Path(output_root)
    missing = [file for file, _ in SAMPLE_FILES.values() if not (sample_dir / file).is_file()]
    if missing:
        raise DataError(f"{sample_dir}: the sample catalog lacks {', '.join(missing)}")
    reports = {}
    for task, (file, mapping) in SAMPLE_FILES.items():
        reports[task] = prepare(
            "generic",
            [sample_dir / file],
            output_root / task,
            task=task,
            columns=mapping,
            seed=seed,
            name=f"catalog-lora sample {task}",
            source=SAMPLE_FORMAT,
            **kwargs,
        )
    return reports


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False) -> int:
    """Publish a prepared folder with the publishing command, run as its own process; its exit status."""
    command = [sys.executable, "-m", "model_cards.publish", "dataset", str(folder), "--repo-id", repo_id]
    return subprocess.run([*command, *(["--private"] if private else [])], check=False).returncode


def _parser() -> argparse.ArgumentParser:
    formats = "\n".join(f"  {f.name:26} {f.help}" for f in FORMATS.values())
    parser = argparse.ArgumentParser(
        prog="python -m datasets_prep.prepare",
        description="Convert catalog files into train/validation/test JSON lines, a taxonomy, a report and a card.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"formats:\n{formats}\n  {SAMPLE_FORMAT:26} the bundled sample catalog (all three tasks)",
    )
    parser.add_argument("--format", required=True, choices=[*FORMATS, SAMPLE_FORMAT], metavar="NAME")
    parser.add_argument("--input", action="append", default=[], help="a source file; repeat for several")
    parser.add_argument("--output", required=True, help="the folder to write (for sample: the parent of three)")
    parser.add_argument("--task", choices=["tagging", "category", "description"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--val-frac", type=float, default=0.1)
    parser.add_argument("--test-frac", type=float, default=0.1)
    parser.add_argument("--name", help="the dataset's name on its card (default: the output folder's name)")
    parser.add_argument("--sheet", help="the xlsx sheet, by name or number (default: the first)")
    parser.add_argument("--push-to-hub", metavar="USER/NAME", help="also publish the folder as a Hub dataset "
                        "(parquet splits, card, taxonomy, report; token from HF_TOKEN or `hf auth login`)")
    parser.add_argument("--private", action="store_true", help="make the Hub dataset private")
    mapping = parser.add_argument_group("generic format: column mapping")
    mapping.add_argument("--text-column")
    mapping.add_argument("--label-column", action="append", default=[], help="tags (repeat for several columns)")
    mapping.add_argument("--label-separator", help="splits several tags in one cell, e.g. '|'")
    mapping.add_argument("--l2-label-column", action="append", default=[], help="second-level tags")
    mapping.add_argument("--path-column", action="append", default=[], help="category levels, most general first")
    mapping.add_argument("--path-separator", help="splits one path column, e.g. '>'")
    mapping.add_argument("--description-column")
    mapping.add_argument("--attribute-column", action="append", default=[], help="brand, price… (repeatable)")
    mapping.add_argument("--id-column")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    options = dict(seed=args.seed, val_frac=args.val_frac, test_frac=args.test_frac)
    if args.push_to_hub:
        if args.format == SAMPLE_FORMAT:
            parser.error("--push-to-hub publishes one folder: prepare the sample, then publish a task folder with "
                         "`python -m model_cards.publish dataset <output>/<task> --repo-id USER/NAME`")
        try:
            check_repo_id(args.push_to_hub)  # a bad id fails before the work, not after
        except ValueError as error:
            parser.error(str(error))
    try:
        if args.format == SAMPLE_FORMAT:
            sample_dir = args.input[0] if args.input else SAMPLE_DIR
            for task, report in prepare_sample(args.output, sample_dir=sample_dir, **options).items():
                report.print_summary()
                print(f"  -> {Path(args.output) / task}")
            return 0
        columns = None
        if args.format == "generic":
            if not args.text_column:
                parser.error("--format generic needs --text-column and a target column")
            columns = ColumnMapping(
                text=args.text_column,
                labels=args.label_column,
                label_separator=args.label_separator,
                labels_l2=args.l2_label_column,
                path=args.path_column,
                path_separator=args.path_separator,
                description=args.description_column,
                attributes=args.attribute_column,
                id=args.id_column,
            )
        if not args.input:
            parser.error(f"--format {args.format} needs at least one --input file")
        report = prepare(
            args.format,
            args.input,
            args.output,
            task=args.task,
            columns=columns,
            sheet=args.sheet,
            name=args.name,
            **options,
        )
    except (DataError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report.print_summary()
    print(f"  -> {args.output}")
    if args.push_to_hub:  # the folder is prepared; publishing it may still fail (status 1, the reason on stderr)
        return push_to_hub(args.output, args.push_to_hub, private=args.private)
    return 0


if __name__ == "__main__":
    sys.exit(main())
