"""Catalog files in and out (issue #30): the traps a new user walked into, each with the file it took.

Repeated header names, a stray quote before an id, a tab-separated ``.csv``, a cp1252 file, a
workbook of two sheets, formula-looking headers and ids, letterless texts. The reading is checked
on the tables alone; one real ``training.predict`` run (the tiny category adapter) checks the
output end to end: every row once, marked where it must be, joining back to the input on its id.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from catalog_lora.catalogs.batch import escape_formulas, has_letters
from catalog_lora.catalogs.batch_job import PARTS_SUFFIX
from catalog_lora.catalogs.tables import (
    ERROR_COLUMN,
    BatchInputError,
    ReadOptions,
    columns_of,
    iter_chunks,
    read_table,
    reading_note,
    scan,
)
from catalog_lora.inference.engine import Engine
from training.predict import main as predict_main

# Ten rows; row 4 opens a quote it never closes, and the next row starts with an id of the same shape.
STRAY_QUOTE_ROWS = [
    "a14-0,Good lather and a fresh smell",
    'a14-1,"Smells nice, lasts all day"',
    "a14-2,Leaves my skin dry",
    'a14-3,"Unbalanced quote, then text',
    'a14-4,"Lather is thin and watery."',
    "a14-5,Great value for the price",
    'a14-6,"Two lines,',
    'one quoted cell"',
    "a14-7,Pump broke after a week",
    "a14-8,Lovely scent",
    "a14-9,Would buy again",
]


def stray_quote_csv(path: Path) -> Path:
    path.write_text("id,text\n" + "\n".join(STRAY_QUOTE_ROWS) + "\n")
    return path


def no_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded for a file that must be refused first")

    monkeypatch.setattr(Engine, "load", refuse)


def predict(adapter: Path, source: Path, output: Path, *extra: str, column: str = "text"):
    return predict_main(["--adapter", f"category={adapter}", "--input", str(source), "--text-column", column,
                         "--output", str(output), *extra])


def test_repeated_header_names_are_refused_before_the_model_loads_or_any_output(tmp_path, monkeypatch):
    no_model(monkeypatch)
    source, output = tmp_path / "twice.csv", tmp_path / "out.csv"
    source.write_text("id,text,text\n1,Coconut oil,Oil\n2,Green tea,Tea\n")
    for _ in range(2):  # the rerun is refused the same way: no resume state was left behind
        with pytest.raises(SystemExit, match=r"header repeats a column name: 'text' \(columns 2, 3\)"):
            predict(Path("runs/never-loaded"), source, output)
        assert not output.exists() and not output.with_name(output.name + PARTS_SUFFIX).exists()


def test_a_stray_quote_before_an_id_swallows_no_row(tmp_path):
    path = stray_quote_csv(tmp_path / "reviews.csv")
    assert scan(path).rows == 11  # 11 physical lines; the quoted two-line cell of a14-6 is one row
    frame = read_table(path)
    assert frame["id"].tolist() == [f"a14-{i}" for i in range(10)], "every row once, in order"
    assert frame.loc[3, "text"] == "Unbalanced quote, then text"
    assert "unterminated quote (line 5)" in frame.loc[3, ERROR_COLUMN]
    assert frame.loc[4, "text"] == "Lather is thin and watery." and frame.loc[4, ERROR_COLUMN] == ""
    assert frame.loc[6, "text"] == "Two lines,\none quoted cell" and frame.loc[6, ERROR_COLUMN] == ""
    assert (frame[ERROR_COLUMN] != "").sum() == 1
    chunks = pd.concat(iter_chunks(path, 3)).reset_index(drop=True)
    assert chunks.to_dict("list") == frame.to_dict("list"), "chunked reading gives the same rows"


@pytest.mark.parametrize(("delimiter", "name"), [("\t", "tab"), (";", "semicolon"), ("|", "pipe")])
def test_the_delimiter_is_sniffed_and_said(tmp_path, delimiter, name):
    path = tmp_path / "catalog.csv"
    path.write_text(f"id{delimiter}text\n1{delimiter}Tea, green\n2{delimiter}\"Oats; rolled | 1 kg\"\n")
    assert columns_of(path) == ["id", "text"]
    assert read_table(path)["text"].tolist() == ["Tea, green", "Oats; rolled | 1 kg"]
    note = reading_note(path)
    assert f"read as {name}-separated" in note and "--delimiter" in note
    comma = tmp_path / "comma.csv"
    comma.write_text("id,text\n1,Oats; rolled\n")
    assert reading_note(comma) == "" and read_table(comma)["text"].tolist() == ["Oats; rolled"]
    assert columns_of(path, ReadOptions(delimiter=",")) == [f"id{delimiter}text"], "a named delimiter is used as named"


def test_a_cp1252_file_is_refused_with_the_flag_and_read_when_named(tmp_path, monkeypatch):
    path = tmp_path / "excel-export.csv"
    path.write_bytes("id,text\n1,Crème brûlée shower gel – 5 €\n".encode("cp1252"))
    with pytest.raises(BatchInputError, match=r"not UTF-8 \(bad byte 0xe8 at offset 12\).*--encoding cp1252"):
        scan(path)
    options = ReadOptions(encoding="cp1252")
    assert scan(path, options).rows == 1
    assert read_table(path, options)["text"].tolist() == ["Crème brûlée shower gel – 5 €"]
    with pytest.raises(BatchInputError, match="unknown encoding 'klingon'"):
        ReadOptions(encoding="klingon")
    no_model(monkeypatch)
    with pytest.raises(SystemExit, match="re-run with --encoding cp1252"):
        predict(Path("runs/never-loaded"), path, tmp_path / "out.csv")


def two_sheets(path: Path, second: pd.DataFrame) -> Path:
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"id": ["1", "2", "3"], "text": ["Oats", "Tea", "Rice"]}).to_excel(writer, sheet_name="Food", index=False)
        second.to_excel(writer, sheet_name="More", index=False)
    return path


def test_every_sheet_of_a_workbook_is_read_or_the_choice_is_asked(tmp_path, monkeypatch):
    more = pd.DataFrame({"id": [str(i) for i in range(4, 11)], "text": [f"Soap {i}" for i in range(4, 11)]})
    book = two_sheets(tmp_path / "book.xlsx", more)
    assert scan(book).rows == 10 and read_table(book)["id"].tolist() == [str(i) for i in range(1, 11)]
    assert reading_note(book) == (
        "read the 2 sheets of book.xlsx that have rows, in order, as one table: 'Food' (3 rows), 'More' (7 rows)"
    )
    only = ReadOptions(sheet="More")
    assert read_table(book, only)["id"].tolist() == [str(i) for i in range(4, 11)]
    assert "read sheet 'More' of book.xlsx only" in reading_note(book, only)
    with pytest.raises(BatchInputError, match="has no sheet 'Drinks'; its sheets: 'Food' \\(3 rows\\), 'More' \\(7 rows\\)"):
        read_table(book, ReadOptions(sheet="Drinks"))

    mixed = two_sheets(tmp_path / "mixed.xlsx", pd.DataFrame({"note": ["prices from May"]}))
    no_model(monkeypatch)
    with pytest.raises(SystemExit, match=r"2 sheets with rows and different columns .*--sheet NAME"):
        predict(Path("runs/never-loaded"), mixed, tmp_path / "out.csv")
    assert read_table(mixed, ReadOptions(sheet="Food"))["text"].tolist() == ["Oats", "Tea", "Rice"]


def test_escaping_covers_headers_and_keeps_numbers_and_phone_numbers():
    frame = pd.DataFrame({"id": ["-5", "+44 20 7946 0000", "=1+1", "-A12", "@sum"], "=HYPERLINK(1)": ["a"] * 5})
    escaped = escape_formulas(frame)
    assert list(escaped.columns) == ["id", "'=HYPERLINK(1)"]
    assert escaped["id"].tolist() == ["-5", "+44 20 7946 0000", "'=1+1", "'-A12", "'@sum"]
    assert [has_letters(t) for t in ["129.99", "4711 / 12", "=1+1", "Soap 100 ml", "Crème"]] == [
        False, False, False, True, True]


def test_predict_output_keeps_every_row_marks_letterless_ones_and_joins_back_on_the_id(tiny_runs, tmp_path, capsys):
    """One real run on a cp1252, tab-separated ``.csv`` with a formula-looking header, numeric ids, a
    stray quote and letterless texts: ten rows in, ten rows out, each where it belongs."""
    ids = ["-5", "+44 20 7946 0000", "0042", "a14-3", "a14-4", "1e3", "7", "8", "9", "10"]
    texts = ["Crème brûlée shower gel", "Coconut oil 500 ml", "129.99", '"Unbalanced quote, then text',
             '"Lather is thin and watery."', "Green tea", "4711", "Basmati rice", "Dark chocolate", "Oats 1 kg"]
    source = tmp_path / "catalog.csv"
    source.write_bytes(("id\ttitle\t=note\n" + "".join(f"{i}\t{t}\tx\n" for i, t in zip(ids, texts, strict=True)))
                       .encode("cp1252"))
    output = tmp_path / "out.csv"
    state = predict(tiny_runs["category"], source, output, "--encoding", "cp1252", column="title")
    assert "read as tab-separated" in capsys.readouterr().out
    out = pd.read_csv(output, dtype=str, keep_default_na=False)
    assert state.rows == len(out) == 10
    assert list(out.columns) == ["id", "title", "'=note", "category", "error"], "headers are escaped too"
    catalog = pd.read_csv(source, sep="\t", dtype=str, keep_default_na=False, encoding="cp1252", quoting=3)
    joined = catalog.merge(out, on="id", how="inner", validate="one_to_one")
    assert joined["id"].tolist() == ids, "every output row joins back to its input row on the id, as written"
    assert out.loc[0, "title"] == "Crème brûlée shower gel" and out.loc[0, "error"] == ""
    for row in (2, 6):  # "129.99", "4711": the Tag tab's refusal, row by row
        assert "no letters in title" in out.loc[row, "error"] and out.loc[row, "category"] == ""
    assert "unterminated quote (line 5)" in out.loc[3, "error"], "the stray quote is read to the end of its line"
    assert out.loc[3, "title"] == "Unbalanced quote, then text\tx" and "malformed row (line 5)" in out.loc[3, "error"]
    assert out.loc[4, "title"] == "Lather is thin and watery." and out.loc[4, "error"] == ""
    answered = [0, 1, 3, 4, 5, 7, 8, 9]
    assert all(" > " in c for c in out.loc[answered, "category"])
    assert (out["error"] != "").sum() == state.errors == 3
