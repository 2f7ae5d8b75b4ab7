"""Source files → a prepared dataset folder: the pipeline, its Python API and its command line.

A prepared folder holds ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (records as in
:mod:`catalog_lora.records`), ``taxonomy.json`` (labels with train counts; for tagging with
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

``--push-to-hub`` (or :func:`publish` on a prepared folder) publishes it as a Hub dataset; the token
comes from ``HF_TOKEN`` or the stored login, ``HF_ENDPOINT`` picks another Hub.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from catalog_lora.labels import Taxonomy
from catalog_lora.records import SPLITS, check_task, path_label
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
from datasets_prep.card import build_card, features
from datasets_prep.generic import ColumnMapping
from datasets_prep.readers import DataError
from datasets_prep.report import REPORT_FILE, Report
from datasets_prep.split import check_fractions, split_records

if TYPE_CHECKING:
    from model_cards.publish import Published

TAXONOMY_FILE = "taxonomy.json"
TAXONOMY_L2_FILE = "taxonomy_l2.json"
CARD_FILE = "README.md"
# cut-path taxonomies are written for levels 1..3: deeper cuts of long Amazon paths are rarely trained on
MAX_CUT_LEVEL = 3
SAMPLE_DIR = Path(__file__).parent / "sample"
# The files of a prepared folder that publish reads (checked for a pasted token before any upload).
PUBLISHED_FILES = ["*.jsonl", "taxonomy*.json", REPORT_FILE]


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
    for name in [*(f"{s}.jsonl" for s in SPLITS), REPORT_FILE, CARD_FILE, "taxonomy*.json"]:
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
    push_to_hub: str | None = None,
    private: bool | None = None,
    token: str | None = None,
) -> Report:
    """Convert, split and write a dataset folder (and publish it if ``push_to_hub`` names a repo).

    ``source`` names the data in the ``source`` field of generic records (default ``generic``).
    """
    check_fractions(val_frac, test_frac)
    if push_to_hub:
        from model_cards.card import check_repo_id

        check_repo_id(push_to_hub)  # a bad id fails before the work, not after
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
        _write_jsonl(folder / f"{split}.jsonl", rows)
    write_taxonomies(folder, task, splits["train"])
    report.save(folder / REPORT_FILE)
    build_card(folder).save(folder / CARD_FILE)
    if push_to_hub:
        published = publish(folder, push_to_hub, private=private, token=token)
        report.note(f"published to {published.url}")
        report.save(folder / REPORT_FILE)
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


def load_split(folder: str | Path, split: str) -> list[dict]:
    """The records of one split of a prepared folder."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {', '.join(SPLITS)}")
    path = Path(folder) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; is {folder} a folder made by datasets_prep.prepare?")
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def load_taxonomy(folder: str | Path, name: str = TAXONOMY_FILE) -> Taxonomy:
    """The taxonomy of a prepared folder (``name="taxonomy_l2.json"`` for Level 2 tags)."""
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; descriptions have no taxonomy, labels have {TAXONOMY_FILE}")
    return Taxonomy.load(path)


def to_dataset_dict(folder: str | Path):
    """The splits of a prepared folder as a ``datasets.DatasetDict`` with explicit features.

    Explicit features keep empty tag lists typed as strings; ``attributes`` becomes a struct of
    every attribute name in the folder (missing values are null). A split with no examples is
    left out: there is no parquet file to hold it.
    """
    from datasets import Dataset, DatasetDict

    folder = Path(folder)
    task = Report.load(folder).task
    splits = {split: load_split(folder, split) for split in SPLITS}
    keys = list(dict.fromkeys(k for rows in splits.values() for r in rows for k in r.get("attributes") or {}))
    feats = features(task, keys)

    def arrow_row(record: dict) -> dict:
        row = {name: record.get(name) for name in feats if name != "attributes"}
        if "attributes" in feats:
            row["attributes"] = {k: (record.get("attributes") or {}).get(k) for k in keys}
        return row

    return DatasetDict(
        {
            split: Dataset.from_list([arrow_row(r) for r in rows], features=feats)
            for split, rows in splits.items()
            if rows
        }
    )


@contextmanager
def _datasets_endpoint(endpoint: str) -> Iterator[None]:
    """Point ``datasets`` at ``endpoint`` for a while (it reads ``HF_ENDPOINT`` once, at import)."""
    from datasets import config

    saved, config.HF_ENDPOINT = config.HF_ENDPOINT, endpoint
    try:
        yield
    finally:
        config.HF_ENDPOINT = saved


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> Published:
    """Publish a prepared folder as Hub dataset ``repo_id``: the project's one dataset publisher.

    The splits go up as parquet through ``datasets`` (``DatasetDict.push_to_hub``, so
    ``load_dataset(repo_id)`` reads them with their features); then one commit adds the card
    (``README.md``, keeping the ``configs`` and ``dataset_info`` the push wrote), the taxonomies and
    ``report.json``, and deletes what an earlier publish left that the folder no longer has (a
    taxonomy, jsonl splits of the old layout). ``revision`` is a branch, created from main when missing.

    Like the adapter publisher (``model_cards.publish``): a bad repo id raises ``ValueError``, and a
    missing token, a file holding the token, or a failed upload raise ``PublishError`` saying what
    state the repository is in; the token is never printed.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi

    from model_cards.card import check_repo_id
    from model_cards.publish import (
        Published,
        PublishError,
        check_no_token_inside,
        open_repo,
        publish_error,
        resolve_token,
    )

    check_repo_id(repo_id)
    folder = Path(folder)
    missing = [name for name in (REPORT_FILE, "train.jsonl") if not (folder / name).is_file()]
    if missing:
        raise PublishError(
            f"{folder} is not a prepared dataset folder: missing {', '.join(missing)} (prepare it with "
            "`python -m datasets_prep.prepare`, which writes the splits, taxonomy and report); nothing was uploaded"
        )
    token = resolve_token(token)
    check_no_token_inside(folder, PUBLISHED_FILES, token)
    splits = to_dataset_dict(folder)
    name = Report.load(folder).settings.get("name") or folder.name
    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or "main"
    before = None
    try:
        url, before = open_repo(api, repo_id, "dataset", private=private, branch=branch)
        with _datasets_endpoint(api.endpoint):
            splits.push_to_hub(repo_id, token=token, revision=branch, commit_message=f"Publish {name}: splits")
        card = build_card(folder, repo_id=repo_id)
        with tempfile.TemporaryDirectory(prefix="dataset-card-") as cache:
            readme = api.hf_hub_download(repo_id, CARD_FILE, repo_type="dataset", revision=branch, cache_dir=cache)
            pushed = DatasetCard.load(readme)
        for key in ("configs", "dataset_info"):  # the parquet files, their features and sizes
            if pushed.data.get(key):
                card.data[key] = pushed.data[key]
        files = [path.name for path in [*sorted(folder.glob("taxonomy*.json")), folder / REPORT_FILE]]
        operations = [CommitOperationAdd(CARD_FILE, str(card).encode("utf-8"))]
        operations += [CommitOperationAdd(file, folder / file) for file in files]
        for file in api.list_repo_files(repo_id, repo_type="dataset", revision=branch):
            if "/" not in file and file not in files and (file.startswith("taxonomy") or file.endswith(".jsonl")):
                operations.append(CommitOperationDelete(file))
        info = api.create_commit(
            repo_id, operations, repo_type="dataset", revision=branch,
            commit_message=f"Publish {name}: card, taxonomy and report",
        )
    except Exception as error:
        raise publish_error(api, repo_id, "dataset", branch, before, error, token) from None
    return Published(repo_id, "dataset", url, info.oid, branch)


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
    publish_errors: tuple[type[Exception], ...] = ()
    if args.push_to_hub:
        if args.format == SAMPLE_FORMAT:
            parser.error("--push-to-hub publishes one folder: prepare the sample, then publish a task folder with "
                         "`python -m model_cards.publish dataset <output>/<task> --repo-id USER/NAME`")
        from model_cards.publish import PublishError  # imports torch: only when publishing

        publish_errors = (PublishError,)
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
            push_to_hub=args.push_to_hub,
            private=args.private or None,
            **options,
        )
    except (DataError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except publish_errors as error:  # the folder is prepared; publishing it failed
        print(f"error: {error}", file=sys.stderr)
        return 1
    report.print_summary()
    print(f"  -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
