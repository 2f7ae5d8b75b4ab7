"""datasets_prep on small files written here: readers, cleaning, splits, formats, pipeline, CLI.

Every row below is made up for these tests.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from huggingface_hub import DatasetCard

from catalog_lora.records.canonical import REQUIRED_FIELDS
from catalog_lora.records.dataset_files import Report, load_split, load_taxonomy, to_dataset_dict
from catalog_lora.records.labels import Taxonomy
from datasets_prep import amazon_reviews23, flipkart, generic, instacart, promptcloud
from datasets_prep.clean import clean_text, finalize, title_key
from datasets_prep.generic import ColumnMapping
from datasets_prep.prepare import (
    SAMPLE_DIR,
    main,
    prepare,
    prepare_sample,
    resolve_format,
)
from datasets_prep.readers import DataError, read_table
from datasets_prep.split import check_no_leakage, split_records


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- readers


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        read_table(write(tmp_path / "empty.csv", ""))
    with pytest.raises(DataError, match="is empty"):
        read_table(write(tmp_path / "blank.jsonl", "\n \n"))


def test_non_utf8_file_names_encoding_and_offset(tmp_path):
    path = tmp_path / "latin1.csv"
    data = "title,category\nCaf\u00e9 Mug,Kitchen\n".encode("latin-1")
    path.write_bytes(data)
    with pytest.raises(DataError) as error:
        read_table(path)
    message = str(error.value)
    assert "UTF-8" in message or "utf-8" in message
    offset = data.index(b"\xe9")
    assert f"byte offset {offset}" in message
    assert "line 2" in message and "0xe9" in message


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftitle,category\nTea Tin,Kitchen\n")
    table = read_table(path)
    assert table.columns == ["title", "category"]
    assert table.rows == [{"title": "Tea Tin", "category": "Kitchen"}]


def test_missing_column_names_it_and_lists_found(tmp_path):
    path = write(tmp_path / "c.csv", "name,category\nTea Tin,Kitchen\n")
    with pytest.raises(DataError) as error:
        read_table(path, required=("title", "category"))
    message = str(error.value)
    assert "'title'" in message and "'name'" in message and "'category'" in message
    # the same through a format converter
    with pytest.raises(DataError, match=r"missing column 'title'.*columns found: 'name', 'category'"):
        generic.convert([path], ColumnMapping(text="title", path=["category"]))


def test_malformed_csv_rows_are_skipped_and_counted(tmp_path):
    path = write(
        tmp_path / "bad.csv",
        'title,category\nGood One,Kitchen\nToo,Many,Fields\n,\nGood Two,Garden\n"Open quote,Kitchen\nLost,Row\n',
    )
    report = Report()
    table = read_table(path, report)
    assert [row["title"] for row in table.rows] == ["Good One", "Good Two"]
    assert report.dropped["malformed_row"] == 2  # 3 fields; an unclosed quote that swallows the rest
    assert report.dropped["empty_row"] == 1
    assert report.rows_read == 5
    assert any("line 3" in note and "3 fields, expected 2" in note for note in report.notes)


def test_jsonl_json_array_and_json_lines_in_a_json_file(tmp_path):
    report = Report()
    lines = write(tmp_path / "a.jsonl", '{"title": "A"}\nnot json\n[1, 2]\n{"title": "B", "x": 1}\n')
    table = read_table(lines, report)
    assert [r["title"] for r in table.rows] == ["A", "B"]
    assert table.columns == ["title", "x"]
    assert report.dropped["malformed_row"] == 2 and report.rows_read == 4

    array = write(tmp_path / "b.json", json.dumps([{"title": "A"}, "oops", {"title": "C"}]))
    assert [r["title"] for r in read_table(array).rows] == ["A", "C"]

    as_lines = write(tmp_path / "trn.json", '{"uid": "1", "title": "A"}\n{"uid": "2", "title": "B"}\n')
    assert len(read_table(as_lines).rows) == 2

    with pytest.raises(DataError, match="not valid JSON"):
        read_table(write(tmp_path / "broken.json", '[{"title": "A"},'))


def test_xlsx_reading_and_errors(tmp_path):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Products"
    sheet.append(["title", "price"])
    sheet.append(["Tea Tin", 3.0])
    sheet.append([None, None])
    sheet.append(["Mug", 4.5])
    workbook.create_sheet("Other").append(["x"])
    path = tmp_path / "catalog.xlsx"
    workbook.save(path)

    table = read_table(path)
    assert table.rows == [{"title": "Tea Tin", "price": "3"}, {"title": "Mug", "price": "4.5"}]
    assert read_table(path, sheet="Other").columns == ["x"]
    with pytest.raises(DataError, match=r"no sheet named 'Missing'; sheets: 'Products', 'Other'"):
        read_table(path, sheet="Missing")
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError, match="cannot be read as an .xlsx workbook"):
        read_table(broken)


def test_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="unknown file type '.parquet'"):
        read_table(write(tmp_path / "x.parquet", "x"))


# ---------------------------------------------------------------- cleaning


def test_clean_text_and_title_key():
    assert clean_text("  Kerr&#8217;s   best&amp;#8211;seller \n\t ") == "Kerr\u2019s best\u2013seller"
    assert clean_text("a\u00a0b\u200bc") == "a bc"
    assert clean_text("line one  \r\n\r\n\r\n line two", keep_newlines=True) == "line one\n\nline two"
    assert title_key("Tea-Bags (25 pcs.)") == "tea bags 25 pcs"
    assert title_key("TEA bags, 25 PCS") == title_key("tea-bags 25 pcs")
    assert title_key("!!!") == "!!!"  # no empty key for punctuation-only text


def test_finalize_dedups_merges_and_accounts_for_every_row():
    report = Report(rows_read=7)
    records = [
        {"id": "a", "text": "Blue Mug", "path": ["Kitchen", "Mugs"]},
        {"id": "b", "text": "Blue Mug", "path": ["Kitchen", "Mugs"]},  # exact duplicate
        {"id": "c", "text": "blue  mug!", "path": ["Kitchen", "Mugs"]},  # same title key, same path
        {"id": "d", "text": "BLUE MUG", "path": ["Garden", "Pots"]},  # same key, another path
        {"id": "e", "text": "  ", "path": ["Kitchen"]},
        {"id": "f", "text": "Red Pot", "path": []},
        {"id": "g", "text": "Red Pot &amp; Lid", "path": ["Garden", "", "Pots"]},
    ]
    out = finalize(records, "category", report)
    assert [r["id"] for r in out] == ["a", "g"]
    assert out[1]["text"] == "Red Pot & Lid" and out[1]["path"] == ["Garden", "Pots"]
    assert report.dropped == Counter(
        exact_duplicate=1, normalized_duplicate=1, conflicting_path=1, empty_text=1, no_category=1
    )
    assert report.unaccounted == 0 and report.kept == 2
    assert list(out[0]) == ["id", "text", "path", "source"]


def test_finalize_tagging_merges_labels_of_one_text():
    report = Report(rows_read=3)
    records = [
        {"id": "1", "text": "Smells great", "labels": ["Fragrance"]},
        {"id": "2", "text": "smells GREAT.", "labels": ["Fragrance", "Price"], "labels_l2": ["Value"]},
        {"id": "3", "text": "Smells great!", "labels": ["fragrance"]},
    ]
    out = finalize(records, "tagging", report)
    assert out == [
        {"id": "1", "text": "Smells great", "labels": ["Fragrance", "Price"], "labels_l2": ["Value"], "source": ""}
    ]
    assert report.merged["same_normalized_text"] == 1 and report.dropped["normalized_duplicate"] == 1
    assert report.unaccounted == 0


def test_finalize_keeps_different_descriptions_of_one_title_and_unique_ids():
    report = Report(rows_read=3)
    records = [
        {"id": "x", "text": "Oat Bar", "description": "Crunchy oats."},
        {"id": "x", "text": "Oat bar", "description": "A chewy bar."},
        {"id": "y", "text": "Oat Bar", "description": "crunchy OATS"},
    ]
    out = finalize(records, "description", report)
    assert [r["description"] for r in out] == ["Crunchy oats.", "A chewy bar."]
    assert [r["id"] for r in out] == ["x", "x-2"]
    assert report.dropped["normalized_duplicate"] == 1


# ---------------------------------------------------------------- splits


def _category_records(n: int = 1000) -> list[dict]:
    paths = [["Food", "Tea"], ["Food", "Coffee"], ["Home", "Mugs"], ["Home", "Pots"], ["Toys", "Kites"]]
    records = []
    for i in range(n):
        # every tenth product repeats an earlier title with another pack size: it must split with it
        title = f"Product {i // 2 if i % 10 == 0 else i}" + (" (pack)" if i % 10 == 0 and i else "")
        records.append({"id": str(i), "text": title, "path": paths[(i * 7) % 5 if i % 50 else 4], "source": "t"})
    records.append({"id": "rare", "text": "Only One Of Its Kind", "path": ["Rare", "Thing"], "source": "t"})
    return records


def test_split_is_grouped_deterministic_and_stratified():
    records = _category_records()
    a = split_records(records, "category", seed=7)
    b = split_records(records, "category", seed=7)
    c = split_records(records, "category", seed=8)
    assert a == b
    assert a != c
    check_no_leakage(a)
    total = len(records)
    assert abs(len(a["validation"]) / total - 0.1) < 0.02 and abs(len(a["test"]) / total - 0.1) < 0.02
    overall = Counter(r["path"][1] for r in records)
    for split in ("train", "validation", "test"):
        counts = Counter(r["path"][1] for r in a[split])
        for label in ("Tea", "Coffee", "Mugs", "Pots"):
            assert abs(counts[label] / len(a[split]) - overall[label] / total) < 0.03, (split, label)
    assert any(r["id"] == "rare" for r in a["train"])  # a label seen once is trained on, not only scored
    keys = {split: {title_key(r["text"]) for r in rows} for split, rows in a.items()}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]


def test_split_fractions_are_configurable_and_checked():
    records = _category_records()
    splits = split_records(records, "category", val_frac=0.2, test_frac=0.05)
    assert abs(len(splits["validation"]) / len(records) - 0.2) < 0.03
    assert abs(len(splits["test"]) / len(records) - 0.05) < 0.02
    with pytest.raises(ValueError, match="val_frac=1.5"):
        split_records(records, "category", val_frac=1.5)
    with pytest.raises(ValueError, match="leaves nothing to train on"):
        split_records(records, "category", val_frac=0.5, test_frac=0.5)


def test_tagging_split_stratifies_on_the_rarest_label_and_fills_small_splits():
    records = [
        {"id": str(i), "text": f"review {i}", "labels": ["Common"] + (["Rare"] if i % 5 == 0 else []), "source": "t"}
        for i in range(12)
    ]
    report = Report()
    splits = split_records(records, "tagging", seed=1, report=report)
    assert all(splits[name] for name in ("train", "validation", "test"))
    assert any("Rare" in r["labels"] for r in splits["train"])
    assert sum(report.splits.values()) == 12


def test_leakage_is_detected():
    leak = {
        "train": [{"id": "1", "text": "Blue Mug"}],
        "validation": [],
        "test": [{"id": "2", "text": "blue mug."}],
    }
    with pytest.raises(DataError, match="1 normalized texts occur in more than one split.*'blue mug'"):
        check_no_leakage(leak)


# ---------------------------------------------------------------- formats on made-up lines


RAW_PRODUCTS = (
    "product_id,product_name,aisle_id,department_id\n"
    '1,"Maple Oat Crunch Bars",3,7\n'
    '2,"Bamboo Plant Stakes 12"",5,2\n'  # an inch mark left unescaped: breaks a CSV parser
    "3,Plain Name Without Quotes,3,7\n"
    '4,"Trail Mix, Salted",5,2\n'
    '5,"The ""Sunny"" Lemonade",9,9\n'
    '6,"Fizzy Water\n'  # cut off
)


def test_instacart_raw_products_parse_line_by_line(tmp_path):
    report = Report()
    rows = instacart.parse_raw_products(RAW_PRODUCTS, report)
    assert [r["product_name"] for r in rows] == [
        "Maple Oat Crunch Bars",
        'Bamboo Plant Stakes 12"',
        "Plain Name Without Quotes",
        "Trail Mix, Salted",
        'The "Sunny" Lemonade',
    ]
    assert rows[1]["aisle_id"] == "5" and rows[1]["department_id"] == "2"
    assert report.dropped["malformed_row"] == 1 and report.rows_read == 6

    products = write(tmp_path / "products.csv", RAW_PRODUCTS)
    write(tmp_path / "aisles.csv", 'aisle_id,aisle\n3,"granola"\n5,"garden"\n9,"missing"\n')
    write(tmp_path / "departments.csv", '"department_id","department"\n7,"breakfast"\n2,"outdoor"\n9,"missing"\n')
    report = Report()
    records = instacart.convert([products], report)  # lookups found beside the products file
    assert [r["path"] for r in records] == [
        ["breakfast", "granola"],
        ["outdoor", "garden"],
        ["breakfast", "granola"],
        ["outdoor", "garden"],
    ]
    assert report.dropped["missing_category"] == 1 and report.unaccounted == 0


def test_instacart_raw_without_lookups_says_what_to_pass(tmp_path):
    products = write(tmp_path / "products.csv", RAW_PRODUCTS)
    with pytest.raises(DataError, match="pass aisles.csv as an input"):
        instacart.convert([products])


def test_flipkart_tree_keeps_category_levels_only():
    tree = '["Home >> Lighting >> Lamps >> Glowco Lamps >> Glowco Brass Table Lamp"]'
    assert flipkart.category_path(tree, "Glowco Brass Table Lamp") == ["Home", "Lighting", "Lamps"]
    shelf = '["Watches >> Wrist Watches >> Tickr Wrist Watches >> Tickr 12 Analog Watch"]'
    assert flipkart.category_path(shelf, "Tickr 12 Analog Watch - For Men") == ["Watches", "Wrist Watches"]
    cut = '["Garden >> Pots >> Terracotta Planter Set With Sauc..."]'
    assert flipkart.category_path(cut, "Terracotta Planter Set With Saucers") == ["Garden", "Pots"]
    only_name = '["Sunny Kids Raincoat"]'
    assert flipkart.category_path(only_name, "Sunny Kids Raincoat") == []
    deep = '["A >> B >> C >> D >> Some Product"]'
    assert flipkart.category_path(deep, "Some Product") == ["A", "B", "C"]
    assert flipkart.category_path('["Kids\' Wear >> Girls Wear >> Dresses"]', "Frilly Dress") == [
        "Kids' Wear",
        "Girls Wear",
        "Dresses",
    ]


def test_flipkart_headerless_file(tmp_path):
    path = write(
        tmp_path / "fk.csv",
        'u1,Glowco Lamp,"[""Home >> Lighting >> Glowco Lamp""]"\n'
        'u2,Tickr Watch,"[""Watches >> Wrist Watches >> Tickr Watch""]"\n'
        ",,\n",
    )
    report = Report()
    records = flipkart.convert_categories([path], report)
    assert [r["path"] for r in records] == [["Home", "Lighting"], ["Watches", "Wrist Watches"]]
    assert report.dropped["empty_row"] == 1 and report.unaccounted == 0
    with pytest.raises(DataError, match="description"):
        flipkart.convert_descriptions([path])


def test_amazon_reviews23_rejoins_comma_names():
    paths = amazon_reviews23.split_paths(
        [
            "Arts, Crafts & Sewing, Knitting, Yarn",
            "Arts_Crafts_and_Sewing",
            "Office, Pens, Inks & Refills, Gel Pens",
            "Office, Pens, Inks & Refills, Ballpoint Pens",
            "Garage, Tools, Jacks & Stands",
            "Garage, Tools, Paint & Primer",
            "Garage, Ropes, Knots & Ties, Nylon",
            "Craft, Buttons, & Snaps",
        ]
    )
    assert paths[0] == ["Arts, Crafts & Sewing", "Knitting", "Yarn"]
    assert paths[1] == ["Arts, Crafts & Sewing"]
    assert paths[2] == ["Office", "Pens, Inks & Refills", "Gel Pens"]  # always followed by one name, twice
    assert paths[4] == ["Garage", "Tools", "Jacks & Stands"]  # a real parent: two different children
    assert paths[6] == ["Garage", "Ropes", "Knots & Ties", "Nylon"]  # seen once: no evidence, left split
    assert paths[7] == ["Craft", "Buttons, & Snaps"]


def test_amazon_reviews23_groups_reviews_by_product(tmp_path):
    path = write(
        tmp_path / "r.csv",
        "title,text,rating,timestamp,name,category\n"
        'Nice,"Works well",5,1,Glow Pen Set,"Office, Pens, Gel Pens"\n'
        'Meh,"Ink ran out",2,2,Glow Pen Set,"Office, Pens, Gel Pens"\n'
        'Good,Fine,4,3,Kite Kit,"Toys, Outdoor"\n',
    )
    report = Report()
    records = amazon_reviews23.convert([path], report)
    assert [(r["text"], r["path"]) for r in records] == [
        ("Glow Pen Set", ["Office", "Pens", "Gel Pens"]),
        ("Kite Kit", ["Toys", "Outdoor"]),
    ]
    assert report.merged["same_product"] == 1 and report.unaccounted == 0


def test_promptcloud_about_product_boilerplate_removed():
    about = "Make sure this fits by entering your model number. | Soft cotton shell | Machine washable"
    assert promptcloud.about_to_description(about) == "Soft cotton shell\nMachine washable"
    assert promptcloud.about_to_description("Make sure this fits by entering your model number.") == ""


def test_generic_tagging_category_description(tmp_path):
    tags = write(
        tmp_path / "tags.csv",
        "text,tags\nLovely scent,Fragrance|Price\nLovely scent,Lather\nToo pricey,Price\nNo tags here,\n",
    )
    report = Report()
    records = generic.convert([tags], ColumnMapping(text="text", labels=["tags"], label_separator="|"), report)
    assert [r["labels"] for r in records] == [["Fragrance", "Price", "Lather"], ["Price"]]
    assert report.dropped["no_labels"] == 1 and report.merged["same_normalized_text"] == 1
    assert report.unaccounted == 0

    cats = write(tmp_path / "cats.jsonl", '{"t": "Mug", "c": "Home > Kitchen"}\n{"t": "Kite", "c": "Toys"}\n')
    records = generic.convert([cats], ColumnMapping(text="t", path=["c"], path_separator=">"))
    assert [r["path"] for r in records] == [["Home", "Kitchen"], ["Toys"]]

    levels = write(tmp_path / "levels.csv", "t,a,b,c\nMug,Home,,Cups\nPot,Home,Garden,Pots\n")
    records = generic.convert([levels], ColumnMapping(text="t", path=["a", "b", "c"]))
    assert [r["path"] for r in records] == [["Home"], ["Home", "Garden", "Pots"]]

    desc = write(tmp_path / "d.csv", "title,brand,about\nMug,Cupco,A sturdy mug.\n")
    mapping = ColumnMapping(text="title", description="about", attributes=["brand"])
    records = generic.convert([desc], mapping)
    assert records[0]["attributes"] == {"brand": "Cupco"} and records[0]["description"] == "A sturdy mug."

    with pytest.raises(ValueError, match="cannot tell the task"):
        ColumnMapping(text="t", labels=["x"], path=["y"]).infer_task()
    with pytest.raises(ValueError, match="needs a path column"):
        generic.convert([desc], mapping, task="category")


def test_resolve_format_by_task():
    assert resolve_format("bigbasket", "description").name == "bigbasket-descriptions"
    assert resolve_format("flipkart-descriptions", "category").name == "flipkart"
    with pytest.raises(ValueError, match="not a known format; expected one of"):
        resolve_format("amazon")
    with pytest.raises(ValueError, match="gives the category task"):
        resolve_format("instacart", "description")


# ---------------------------------------------------------------- pipeline, card, CLI


def _catalog(tmp_path):
    rows = ["title,category,sub_category,brand"]
    for i in range(60):
        category, sub = [("Home", "Mugs"), ("Home", "Pots"), ("Toys", "Kites")][i % 3]
        rows.append(f"Made Up Item {i},{category},{sub},Brand{i % 4}")
    rows.append("Made Up Item 1,Home,Pots,Brand1")  # a duplicate
    rows.append("broken,row")
    return write(tmp_path / "catalog.csv", "\n".join(rows) + "\n")


def test_prepare_writes_a_complete_folder(tmp_path):
    out = tmp_path / "out"
    report = prepare(
        "generic",
        [_catalog(tmp_path)],
        out,
        columns=ColumnMapping(text="title", path=["category", "sub_category"]),
        seed=3,
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "README.md",
        "report.json",
        "taxonomy.json",
        "taxonomy_level1.json",
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]
    assert report.kept == 60 and report.dropped["exact_duplicate"] == 1 and report.dropped["malformed_row"] == 1
    assert report.unaccounted == 0
    splits = {s: load_split(out, s) for s in ("train", "validation", "test")}
    assert sum(map(len, splits.values())) == 60 == sum(report.splits.values())
    for rows in splits.values():
        for record in rows:
            assert set(REQUIRED_FIELDS["category"]) <= set(record)
    check_no_leakage(splits)
    taxonomy = load_taxonomy(out)
    assert isinstance(taxonomy, Taxonomy) and not taxonomy.multi_label
    assert sum(taxonomy.counts.values()) == len(splits["train"])
    assert set(load_taxonomy(out, "taxonomy_level1.json").labels) == {"Home", "Toys"}
    assert json.loads((out / "report.json").read_text())["settings"]["seed"] == 3

    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "other" and card.data.license_name == "unknown"
    assert card.data.task_categories == ["text-classification"]
    assert card.data.size_categories == ["n<1K"]
    assert "More Information Needed" not in card.text and "TODO" not in card.text
    assert "Licence: unknown" in card.text and "| validation |" in card.text

    with pytest.raises(FileNotFoundError, match="train.jsonl does not exist"):
        load_split(tmp_path, "train")
    with pytest.raises(ValueError, match="split='dev'"):
        load_split(out, "dev")


def test_prepare_is_deterministic_and_seed_dependent(tmp_path):
    mapping = ColumnMapping(text="title", path=["category", "sub_category"])
    catalog = _catalog(tmp_path)
    prepare("generic", [catalog], tmp_path / "a", columns=mapping, seed=1)
    prepare("generic", [catalog], tmp_path / "b", columns=mapping, seed=1)
    prepare("generic", [catalog], tmp_path / "c", columns=mapping, seed=2)
    for name in ("train.jsonl", "test.jsonl", "taxonomy.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "test.jsonl").read_bytes() != (tmp_path / "c" / "test.jsonl").read_bytes()


def test_prepare_refuses_a_dataset_with_no_examples(tmp_path):
    path = write(tmp_path / "x.csv", "text,tags\nsomething,\n")
    with pytest.raises(DataError, match="no usable examples"):
        prepare("generic", [path], tmp_path / "out", columns=ColumnMapping(text="text", labels=["tags"]))


def test_description_folder_has_no_taxonomy_and_an_arrow_form(tmp_path):
    rows = ["title,brand,description"] + [f"Item {i},Brand{i % 3},A fine made-up item number {i}." for i in range(30)]
    path = write(tmp_path / "d.csv", "\n".join(rows) + "\n")
    out = tmp_path / "out"
    prepare(
        "generic", [path], out, columns=ColumnMapping(text="title", description="description", attributes=["brand"])
    )
    assert not list(out.glob("taxonomy*.json"))
    with pytest.raises(FileNotFoundError, match="descriptions have no taxonomy"):
        load_taxonomy(out)
    data = to_dataset_dict(out)
    assert set(data) == {"train", "validation", "test"}
    assert data["train"].features["attributes"]["brand"].dtype == "string"
    card = DatasetCard.load(out / "README.md")
    assert card.data.task_categories == ["text-generation"]


def test_cli_generic_and_errors(tmp_path, capsys):
    catalog = _catalog(tmp_path)
    out = tmp_path / "cli"
    code = main(
        [
            "--format", "generic", "--input", str(catalog), "--output", str(out),
            "--text-column", "title", "--path-column", "category", "--path-column", "sub_category",
            "--seed", "5", "--val-frac", "0.2", "--test-frac", "0.2",
        ]
    )  # fmt: skip
    assert code == 0
    assert "60 examples kept" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["settings"]["val_frac"] == 0.2

    code = main(["--format", "generic", "--input", str(catalog), "--output", str(out), "--text-column", "name",
                 "--path-column", "category"])  # fmt: skip
    assert code == 2
    assert "missing column 'name'" in capsys.readouterr().err

    code = main(["--format", "bodywash", "--input", str(tmp_path / "nope.csv"), "--output", str(out)])
    assert code == 2 and "no such file" in capsys.readouterr().err


def test_sample_catalog_prepares_all_three_tasks(tmp_path):
    if not all((SAMPLE_DIR / f).is_file() for f in ("tagging.csv", "categories.csv", "descriptions.csv")):
        pytest.skip(f"the sample catalog is not in {SAMPLE_DIR} yet")
    reports = prepare_sample(tmp_path)
    assert set(reports) == {"tagging", "category", "description"}
    for task, report in reports.items():
        folder = tmp_path / task
        splits = {s: load_split(folder, s) for s in ("train", "validation", "test")}
        assert all(splits.values()), task
        check_no_leakage(splits)
        assert report.unaccounted == 0 and report.kept > 50
        assert {r["source"] for rows in splits.values() for r in rows} == {"sample"}
        assert DatasetCard.load(folder / "README.md").data.license == "apache-2.0"
    assert load_taxonomy(tmp_path / "tagging").multi_label
    assert 2 <= len(load_taxonomy(tmp_path / "category", "taxonomy_level1.json")) <= 20


def test_bodywash_xlsx_rows_per_tag_become_one_example(tmp_path):
    from openpyxl import Workbook

    from datasets_prep import bodywash

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Core Item", "Level 1 (PARENT)", "Level 2 (CHILD)"])
    sheet.append(["Smells like a pine forest, worth it", "Fragrance", "Scent Type"])
    sheet.append(["Smells like a pine forest, worth it", "Price", "Value Justification"])
    sheet.append(["smells like a pine forest - worth it ", "Fragrance", "Long Lasting"])
    sheet.append(["Bottle cap broke on day one", "Packaging", None])
    sheet.append(["Nothing to tag here", None, None])
    path = tmp_path / "bw.xlsx"
    workbook.save(path)

    report = Report()
    records = bodywash.convert([path], report)
    assert [(r["labels"], r["labels_l2"]) for r in records] == [
        (["Fragrance", "Price"], ["Scent Type", "Value Justification", "Long Lasting"]),
        (["Packaging"], []),
    ]
    assert report.merged == Counter(same_text=1, same_normalized_text=1)
    assert report.dropped["no_labels"] == 1 and report.unaccounted == 0

    only_text = write(tmp_path / "t.csv", "Core Item,Notes\nnice,\n")
    with pytest.raises(DataError, match=r"'Level 1 \(PARENT\)' or 'Level 1 Factors' or 'Level 1'"):
        bodywash.convert([only_text])
