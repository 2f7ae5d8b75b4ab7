"""datasets_prep on the real files in ../shared/data/raw (skipped when they are absent).

About 10-20% of each file's rows are withheld for independent evaluation, so counts are
checked as ranges around the original numbers in SOURCES.md, never exactly.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

import pytest
from conftest import shared_file

from catalog_lora.records.canonical import path_label
from catalog_lora.records.dataset_files import load_split, load_taxonomy
from datasets_prep.clean import title_key
from datasets_prep.prepare import convert, prepare
from datasets_prep.split import check_no_leakage

L1_L2 = "bodywash/bodywash-train_L1_L2.DERIVED.csv"
L1_ONLY = "bodywash/bodywash-train_L1only.DERIVED.csv"
BB_27K = "bigbasket/bigbasket_products_27k_no_description.csv"
BB_6K = "bigbasket/bigbasket_products_first6k_with_description.DERIVED_clean.csv"
BB_315 = "bigbasket/bigbasket_products_first315_with_description.csv"
BB_V2 = "bigbasket/bigbasket_v2_8k_products_with_quantity.csv"
FK_20K = "flipkart/flipkart_20k_id_name_category_tree_NOHEADER.csv"
FK_1050 = "flipkart/flipkart_com-ecommerce_sample_1050.csv"
FK_1000 = "flipkart/flipkart_com-ecommerce_first1000_full_schema.csv"
IC_CLEAN = "instacart/products_19k.DERIVED_clean_with_names.csv"
IC_RAW = "instacart/products_19k.csv"
AR23 = ("amazon_reviews23_titles/valid_combined.csv", "amazon_reviews23_titles/Arts_Crafts_and_Sewing_EVAL.csv")
AT = "amazontitles_1.3mm/trn_first500_nonempty_title_content.json"
PC = "amazon_promptcloud_2020/amazon_com_ecommerce_2020_first2k.csv"
EVERY_FORMAT = [
    ("bodywash", (L1_L2,)),
    ("bigbasket", (BB_27K,)),
    ("bigbasket-descriptions", (BB_6K, BB_315)),
    ("bigbasket-v2", (BB_V2,)),
    ("flipkart", (FK_20K,)),
    ("flipkart-descriptions", (FK_1050, FK_1000)),
    ("instacart", (IC_CLEAN,)),
    ("amazon-reviews23", AR23),
    ("amazontitles", (AT,)),
    ("promptcloud", (PC,)),
    ("promptcloud-descriptions", (PC,)),
]


@cache
def converted(format_name: str, *files: str):
    return convert(format_name, [shared_file(f) for f in files])


def between(value: int, original: int, low: float = 0.7, high: float = 0.95) -> bool:
    """``value`` is what is left of ``original`` after withholding 10-20% and dropping a few."""
    return original * low <= value <= original * high


def labels(records):
    return Counter(label for r in records for label in r["labels"])


def test_every_real_conversion_accounts_for_every_row():
    for format_name, files in EVERY_FORMAT:
        records, report = converted(format_name, *files)
        assert report.unaccounted == 0, (format_name, report.summary())
        assert report.kept == len(records) > 0, format_name
        assert len({r["id"] for r in records}) == len(records), f"{format_name}: ids are not unique"


def test_bodywash_l1_l2():
    records, report = converted("bodywash", L1_L2)
    assert between(report.rows_read, 7_396)
    assert between(len(records), 2_790)  # unique texts
    tags = labels(records)
    assert len(tags) <= 25 and "Fragrance" in tags
    assert tags.most_common(1)[0][0] == "Fragrance"
    assert report.merged["same_text"] > len(records)  # one row per (text, tag)
    multi = sum(len(r["labels"]) >= 2 for r in records) / len(records)
    assert 0.6 < multi < 0.8  # 1,951 of 2,790 in the original
    assert sum(bool(r["labels_l2"]) for r in records) / len(records) > 0.99
    assert len({x for r in records for x in r["labels_l2"]}) <= 109


def test_bodywash_l1_only():
    records, report = converted("bodywash", L1_ONLY)
    assert between(len(records), 3_559)
    tags = labels(records)
    assert len(tags) <= 16 and "Fragrance" in tags
    assert all(r["labels_l2"] == [] for r in records)
    assert all(r["text"] == r["text"].strip() for r in records)  # the file's texts start with a space


def test_bigbasket_categories():
    records, report = converted("bigbasket", BB_27K)
    assert between(report.rows_read, 27_561)
    assert report.dropped["duplicate_index"] == 6
    assert report.dropped["conflicting_path"] > 0  # titles repeat across categories
    assert all(len(r["path"]) == 3 for r in records)
    assert len({r["path"][0] for r in records}) == 11
    assert len({r["path"][1] for r in records}) <= 90
    assert len({title_key(r["text"]) for r in records}) == len(records)
    # the brand rides along as an attribute (a category model reads it beside the title); a few cells are empty
    branded = [r for r in records if r.get("attributes")]
    assert len(branded) > 0.99 * len(records) and all(set(r["attributes"]) == {"brand"} for r in branded)
    assert all(r["attributes"]["brand"].strip() == r["attributes"]["brand"] != "" for r in branded)


def test_bigbasket_descriptions_drop_damaged_rows_and_prefer_pristine():
    records, report = converted("bigbasket-descriptions", BB_6K, BB_315)
    assert report.dropped["encoding_artifact"] > 1_000
    assert between(len(records), 4_580, 0.75, 0.95)
    assert not [r for r in records if "_" in re.sub(r"(?:https?://|www\.)\S+", "", r["description"])]
    assert set(records[0]["attributes"]) == {"brand", "category", "sub_category", "type"}
    alone, _ = converted("bigbasket-descriptions", BB_6K)
    assert len(records) > len(alone)  # the pristine file restores rows the damaged copy lost


def test_bigbasket_v2():
    records, report = converted("bigbasket-v2", BB_V2)
    assert between(report.rows_read, 8_208)
    assert all(len(r["path"]) == 2 for r in records)
    assert len({r["path"][0] for r in records}) == 11


def test_flipkart_categories():
    records, report = converted("flipkart", FK_20K)
    assert between(report.rows_read, 20_000)
    assert report.dropped["no_category"] > 0  # trees that are only the product name
    assert all(1 <= len(r["path"]) <= 3 for r in records)
    assert not [r for r in records for node in r["path"] if node.endswith("...")]
    assert not [r for r in records if title_key(r["path"][-1]) == title_key(r["text"])]
    top = Counter(r["path"][0] for r in records)
    assert 20 <= len(top) <= 35 and top.most_common(1)[0][0] == "Clothing"
    assert not [r for r in records if r.get("attributes")]  # the 20k file has no brand column


def test_flipkart_categories_of_the_full_schema_carry_the_brand():
    records, _ = converted("flipkart", FK_1050, FK_1000)
    branded = [r for r in records if r.get("attributes")]
    assert len(branded) > 0.5 * len(records) and all(set(r["attributes"]) == {"brand"} for r in branded)


def test_flipkart_descriptions():
    records, report = converted("flipkart-descriptions", FK_1050, FK_1000)
    assert report.dropped["empty_row"] > 3_000  # the first-1000 file's empty lines, counted
    assert report.dropped["duplicate_id"] > 20  # 52 products are in both files
    assert between(len(records), 1_050 + 999 - 52, 0.7, 0.95)
    assert all(r["description"] for r in records)


def test_instacart_clean_and_raw_agree():
    clean, report = converted("instacart", IC_CLEAN)
    assert between(len(clean), 49_688 * 19_428 / 49_688, 0.75, 0.95)
    assert report.dropped["missing_category"] > 0
    assert len({r["path"][0] for r in clean}) <= 21 and len({r["path"][1] for r in clean}) <= 134
    assert not [r for r in clean if "missing" in r["path"]]
    raw_file = shared_file(IC_RAW)
    raw, raw_report = convert("instacart", [raw_file, raw_file.with_name("aisles.csv")])
    assert raw_report.dropped["malformed_row"] >= 1  # its last line is cut off
    assert raw == clean


def test_amazon_reviews23():
    records, report = converted("amazon-reviews23", *AR23)
    assert report.merged["same_product"] > 0
    top = Counter(r["path"][0] for r in records)
    assert "Arts, Crafts & Sewing" in top and "Arts" not in top and "Office_Products" not in top
    assert len({title_key(r["text"]) for r in records}) == len(records)


def test_amazontitles_unescaped():
    records, report = converted("amazontitles", AT)
    assert between(len(records), 500)
    assert not [r for r in records if re.search(r"&(#\d+|#x[0-9a-f]+|amp|quot|lt|gt);", r["text"] + r["description"])]


def test_promptcloud():
    categories, _ = converted("promptcloud", PC)
    assert Counter(r["path"][0] for r in categories).most_common(1)[0][0] == "Toys & Games"
    descriptions, _ = converted("promptcloud-descriptions", PC)
    assert between(len(descriptions), 1_999)
    assert not [r for r in descriptions if "Make sure this fits" in r["description"]]


def test_bodywash_prepared_folder_has_no_leakage_and_is_deterministic(tmp_path):
    source = shared_file(L1_L2)
    prepare("bodywash", [source], tmp_path / "a", seed=42)
    prepare("bodywash", [source], tmp_path / "b", seed=42)
    splits = {s: load_split(tmp_path / "a", s) for s in ("train", "validation", "test")}
    check_no_leakage(splits)
    total = sum(map(len, splits.values()))
    assert 0.07 < len(splits["test"]) / total < 0.13 and 0.07 < len(splits["validation"]) / total < 0.13
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "taxonomy.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    taxonomy = load_taxonomy(tmp_path / "a")
    assert taxonomy.multi_label and len(taxonomy) <= 25 and taxonomy.labels[0] == "Fragrance"
    assert len(load_taxonomy(tmp_path / "a", "taxonomy_l2.json")) > 50
    # rare tags are spread: Fragrance's share is about the same in every split
    shares = [labels(rows)["Fragrance"] / len(rows) for rows in splits.values()]
    assert max(shares) - min(shares) < 0.06


def test_bigbasket_category_split_keeps_titles_together(tmp_path):
    prepare("bigbasket", [shared_file(BB_27K)], tmp_path, seed=1)
    splits = {s: load_split(tmp_path, s) for s in ("train", "validation", "test")}
    check_no_leakage(splits)
    train_labels = {path_label(r["path"]) for r in splits["train"]}
    assert all(path_label(r["path"]) in train_labels for r in splits["test"])


@pytest.mark.slow
def test_every_format_prepares_a_folder(tmp_path):
    # BigBasket categories are prepared in a test of their own; body wash here from its Level 1 only file.
    formats = [(name, files) for name, files in EVERY_FORMAT if name not in ("bigbasket", "bodywash")]
    for format_name, files in [*formats, ("bodywash", (L1_ONLY,))]:
        out = tmp_path / format_name
        report = prepare(format_name, [shared_file(f) for f in files], out)
        splits = {s: load_split(out, s) for s in ("train", "validation", "test")}
        assert all(splits.values()), format_name
        check_no_leakage(splits)
        assert sum(report.splits.values()) == report.kept
        assert (out / "README.md").is_file() and (out / "report.json").is_file()
