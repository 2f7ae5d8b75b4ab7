"""The dataset card (README.md with YAML metadata) of a prepared dataset folder.

Everything in it is computed from the prepared data (counts, labels, what was dropped and why)
or from the known origin of the format, so the card never holds a placeholder.
"""

from __future__ import annotations

from pathlib import Path

from datasets import List
from huggingface_hub import DatasetCard, DatasetCardData

from catalog_lora.records.canonical import SPLITS
from catalog_lora.records.dataset_files import (
    TAXONOMY_FILE,
    TAXONOMY_L2_FILE,
    Report,
    attribute_keys,
    features,
    load_split,
    split_path,
)
from catalog_lora.records.labels import Taxonomy

# where each format's data comes from (see ../shared/data/raw/SOURCES.md); generic and sample are the user's own
FORMAT_SOURCES: dict[str, list[str]] = {
    "bodywash": [
        "Body-wash consumer-review tagging data (MavenMagnet assignment), copies in "
        "https://github.com/Sak-1107/Body-Wash-Review-Tagging---Using-GenAI and "
        "https://github.com/Adarsh-Mishra15/MavenMagnet_round_1",
    ],
    "bigbasket": [
        'Kaggle "BigBasket Entire Product List (~28K datapoints)", copies in https://github.com/andytj11/dataSet, '
        "https://github.com/kksaki/Cyber_shop and https://github.com/sandeep-git555/Query_engine",
    ],
    "bigbasket-v2": ["BigBasket product scrape with quantities, copy in https://github.com/ShaQSB/Grocery-Rec"],
    "flipkart": [
        'Kaggle "Flipkart Products" (PromptCloud crawl, 2016), copies in https://github.com/SolBarker/ll-Tarea-Programada, '
        "https://github.com/jzpatrao/nlp-analysis and https://github.com/swapnil-pisal/Major_Assessment_1",
    ],
    "instacart": [
        "Instacart Online Grocery Shopping Dataset 2017, copies in https://github.com/Santoshmandati/Market-Analysis "
        "and https://github.com/billyrohh/instacart_dataset",
    ],
    "amazon-reviews23": [
        "Amazon Reviews '23 (McAuley Lab, UCSD), subsets in https://github.com/arthurdrake1/amazon-titles",
    ],
    "amazontitles": [
        "AmazonTitles-1.3MM, The Extreme Classification Repository, subset in "
        "https://github.com/araguacypereira/fiap-tech-challenge-03",
    ],
    "sample": [
        "The sample catalog bundled with catalog-lora (`datasets_prep/sample/`): written by hand for the project; "
        "no real products, brands or customers",
    ],
    "promptcloud": [
        "PromptCloud Amazon.com product sample (January 2020), copy in "
        "https://github.com/WSU-CPTS-223/pa3-inventory-management-NinjaO9",
    ],
}
LICENSE_NOTE = (
    "The upstream licence of this data could not be verified: the repositories that hold copies license their code, "
    "not the data, and the original Kaggle / PromptCloud / vendor terms were not checked (some, like Instacart's, "
    "were non-commercial). Treat the licence as unknown and check it before any commercial use or before publishing "
    "models trained on it."
)
# formats whose licence is known: the bundled sample is the project's own
FORMAT_LICENSES = {"sample": "apache-2.0"}
SAMPLE_LICENSE_NOTE = "The sample catalog is made up for catalog-lora and licensed like it, under Apache-2.0."
USER_LICENSE_NOTE = (
    "This dataset was prepared from a catalog supplied by its owner; its licence is theirs to state. Until they do, "
    "treat it as unknown."
)
TASK_METADATA = {
    "tagging": (["text-classification"], ["multi-label-classification"]),
    "category": (["text-classification"], ["multi-class-classification"]),
    "description": (["text-generation"], []),
}
FIELD_DOCS = {
    "id": "stable id of the example (from the source id where there is one, else a hash of the text)",
    "text": "the product title or review text, HTML-unescaped and whitespace-normalized",
    "labels": "the tags of the text (Level 1), a list",
    "labels_l2": "the second-level tags (Level 2), a list, may be empty",
    "path": "the category path, most general level first",
    "description": "the target product description",
    "attributes": "product facts shown beside the text (brand, category, price…), may be empty",
    "source": "the format the example was converted from",
}


def size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return name
    return "1M<n<10M"


def _counts_table(counter: dict, header: str) -> list[str]:
    if not counter:
        return []
    lines = [f"| {header} | rows |", "|---|---:|"]
    lines += [f"| `{reason}` | {count:,} |" for reason, count in sorted(counter.items(), key=lambda kv: -kv[1])]
    return lines + [""]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")  # a | would end the markdown table cell


def _label_lines(title: str, taxonomy: Taxonomy, top: int = 15) -> list[str]:
    """The most frequent labels and, when there are many, the three rarest after an ellipsis."""
    lines = [f"**{title}**: {len(taxonomy):,} labels (counts are train examples).", ""]
    lines += ["| label | train count |", "|---|---:|"]
    labels = taxonomy.labels
    shown = labels if len(labels) <= top + 3 else [*labels[:top], None, *labels[-3:]]
    for label in shown:
        lines.append("| … | |" if label is None else f"| {_cell(label)} | {taxonomy.counts.get(label, 0):,} |")
    return lines + [""]


def _taxonomy(folder: Path, name: str) -> Taxonomy | None:
    return Taxonomy.load(folder / name) if (folder / name).is_file() else None


def _attribute_keys(folder: Path) -> list[str]:
    return attribute_keys({split: load_split(folder, split) for split in SPLITS if split_path(folder, split).is_file()})


def build_card(folder: str | Path) -> DatasetCard:
    """The card of a prepared folder, from its ``report.json``, taxonomies and splits.

    Its last section, ``## Use``, loads the local files; the dataset publisher
    (``model_cards.dataset_repo``) replaces it with loading the published repo.
    """
    folder = Path(folder)
    report = Report.load(folder)
    settings = report.settings
    task, format_name = report.task, settings.get("format", report.name)
    name = settings.get("name") or format_name
    split_counts = {split: report.splits.get(split, 0) for split in SPLITS}
    total = sum(split_counts.values())
    attribute_keys = _attribute_keys(folder)
    taxonomy = _taxonomy(folder, TAXONOMY_FILE)
    taxonomy_l2 = _taxonomy(folder, TAXONOMY_L2_FILE)
    levels = sorted(int(p.stem.removeprefix("taxonomy_level")) for p in folder.glob("taxonomy_level*.json"))
    source_key = format_name.removesuffix("-descriptions")
    sources = FORMAT_SOURCES.get(source_key, [])

    task_categories, task_ids = TASK_METADATA[task]
    feats = features(task, attribute_keys)
    data_files = [{"split": split, "path": f"{split}.jsonl"} for split in SPLITS if split_counts[split]]
    metadata = {
        "language": ["en"],
        "license": FORMAT_LICENSES.get(format_name, "other"),
        "pretty_name": name,
        "size_categories": [size_category(total)],
        "task_categories": task_categories,
        "tags": ["catalog-lora", "product-catalog", format_name, task],
        "configs": [{"config_name": "default", "data_files": data_files}],
        # features only: split sizes in dataset_info need arrow byte counts, which the push adds on the Hub
        "dataset_info": {"features": feats._to_yaml_list()},
    }
    if format_name not in FORMAT_LICENSES:
        metadata["license_name"] = "unknown"
    if task_ids:
        metadata["task_ids"] = task_ids
    card_data = DatasetCardData(**metadata)

    body = [
        f"# {name}",
        "",
        f"A **{task}** dataset of {total:,} examples, converted from the `{format_name}` format by "
        "catalog-lora's `datasets_prep` into its canonical records and grouped, stratified splits.",
        "",
        "## Source and licence",
        "",
    ]
    body += [f"- {source}" for source in sources] or ["- A catalog supplied by its owner (the `generic` format)."]
    if report.inputs:
        inputs = ", ".join(f"`{Path(name).name}` ({rows:,} rows)" for name, rows in report.inputs.items())
        body += ["", f"Converted files: {inputs}."]
    if format_name in FORMAT_LICENSES:
        body += ["", f"**Licence: {FORMAT_LICENSES[format_name]}.** {SAMPLE_LICENSE_NOTE}", ""]
    else:
        body += ["", f"**Licence: unknown.** {LICENSE_NOTE if sources else USER_LICENSE_NOTE}", ""]

    body += ["## How it was prepared", ""]
    body += [
        f"{report.rows_read:,} source rows were read; {report.kept:,} became examples, "
        f"{report.merged_total:,} were folded into another example and {report.dropped_total:,} were dropped. "
        "Text was HTML-unescaped and whitespace-normalized; duplicates were found on a normalized title "
        "(lowercase, punctuation and spaces collapsed).",
        "",
    ]
    body += _counts_table(dict(report.merged), "merged into another example")
    body += _counts_table(dict(report.dropped), "dropped, by reason")
    body += [f"- {note}" for note in report.notes] + ([""] if report.notes else [])

    body += ["## Fields", "", "| field | type | meaning |", "|---|---|---|"]
    for field_name, feature in feats.items():
        kind = (
            "list of strings"
            if isinstance(feature, List)
            else "dict of strings"
            if isinstance(feature, dict)
            else "string"
        )
        body.append(f"| `{field_name}` | {kind} | {FIELD_DOCS[field_name]} |")
    body.append("")

    seed, val_frac, test_frac = settings.get("seed"), settings.get("val_frac", 0.1), settings.get("test_frac", 0.1)
    body += ["## Splits", "", "| split | examples |", "|---|---:|"]
    body += [f"| {split} | {count:,} |" for split, count in split_counts.items()]
    stratified_by = {
        "tagging": "the rarest tag of each example",
        "category": "category path",
        "description": "the category attribute where there is one",
    }[task]
    body += [
        "",
        f"Split {1 - val_frac - test_frac:.0%} / {val_frac:.0%} / {test_frac:.0%} (train / validation / test) with "
        f"seed {seed}, grouped so that one normalized text never appears in two splits, and stratified by "
        f"{stratified_by}.",
        "",
    ]

    if taxonomy is not None:
        body += ["## Labels", ""]
        kind = "multi-label (one or more tags per text)" if taxonomy.multi_label else "one category path per text"
        body += [f"The task is {kind}; `taxonomy.json` lists every label with its train count.", ""]
        body += _label_lines("Labels" if task == "tagging" else "Full category paths", taxonomy)
        for level in levels:
            cut = Taxonomy.load(folder / f"taxonomy_level{level}.json")
            body += [f"Paths cut to level {level}: {len(cut):,} labels (`taxonomy_level{level}.json`).", ""]
        if taxonomy_l2 is not None:
            body += _label_lines("Level 2 labels (`taxonomy_l2.json`)", taxonomy_l2, top=10)

    files = ", ".join(f'"{split}": "{split}.jsonl"' for split in SPLITS if split_counts[split])
    body += ["## Use", "", "```python", "from datasets import load_dataset", ""]
    body += [f'ds = load_dataset("json", data_files={{{files}}})', "```", ""]
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(body).rstrip() + "\n"
    return DatasetCard(content)
