"""Instacart Online Grocery 2017: product name → ``[department, aisle]``.

Two layouts of the products file:

- the cleaned one with ``aisle`` and ``department`` name columns, read as CSV;
- the raw ``products.csv`` (``product_id,product_name,aisle_id,department_id``), whose quoting
  is broken: a name holding an inch mark (``8"``) is written without doubling the quote, so a
  CSV parser runs on across lines. :func:`parse_raw_products` reads it line by line instead:
  the id is before the first comma, aisle and department ids are the last two fields, and the
  name is what lies between, outer quotes stripped. Its ids are joined to names from
  ``aisles.csv`` and ``departments.csv``, given as inputs or found beside the products file.

Products in the ``missing`` aisle / department have no category and are dropped (``missing_category``).
"""

from __future__ import annotations

from pathlib import Path

from catalog_lora.records.dataset_files import Report
from datasets_prep.clean import finalize
from datasets_prep.readers import DataError, read_table, read_text

SOURCE = "instacart"
RAW_HEADER = ("product_id", "product_name", "aisle_id", "department_id")
MISSING = "missing"


def parse_raw_products(text: str, report: Report, name: str = "products.csv") -> list[dict]:
    """Rows of a raw products file, parsed line by line; bad lines are counted as ``malformed_row``."""
    rows = []
    lines = text.splitlines()
    header = [cell.strip().strip('"') for cell in lines[0].split(",")] if lines else []
    if tuple(header) != RAW_HEADER:
        raise DataError(
            f"{name}: expected the header {','.join(RAW_HEADER)}, found {lines[0][:100] if lines else ''!r}"
        )
    read = 0
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        read += 1
        product_id, _, rest = line.partition(",")
        parts = rest.rsplit(",", 2)
        if len(parts) != 3 or not all(part.strip().isdigit() for part in (product_id, parts[1], parts[2])):
            report.drop("malformed_row")  # e.g. the last line of the shared copy, cut off mid-name
            report.note(f"{name}: line {number} is not id,name,aisle_id,department_id: {line[:60]!r}")
            continue
        product_name = parts[0].strip()
        if len(product_name) >= 2 and product_name[0] == product_name[-1] == '"':
            product_name = product_name[1:-1].replace('""', '"')
        rows.append(
            {
                "product_id": product_id.strip(),
                "product_name": product_name,
                "aisle_id": parts[1].strip(),
                "department_id": parts[2].strip(),
            }
        )
    report.read(name, read)
    return rows


def _lookup(path: Path, report: Report, id_column: str, name_column: str) -> dict[str, str]:
    # a lookup table is no source of examples: its rows are read on a throwaway report
    table = read_table(path, Report(), required=(id_column, name_column))
    report.note(f"{name_column} names from {path.name} ({len(table.rows)} rows)")
    return {row[id_column].strip(): row[name_column] for row in table.rows}


def _kind(path: Path) -> str:
    text = read_text(path)
    first = text.split("\n", 1)[0].replace('"', "").strip().lower()
    columns = [c.strip() for c in first.split(",")]
    if columns == ["aisle_id", "aisle"]:
        return "aisles"
    if columns == ["department_id", "department"]:
        return "departments"
    if "aisle" in columns and "department" in columns:
        return "clean"
    return "raw"


def convert(paths: list[str | Path], report: Report | None = None) -> list[dict]:
    report = report if report is not None else Report(name=SOURCE)
    paths = [Path(p) for p in paths]
    kinds = {path: _kind(path) for path in paths}
    aisles = next((p for p in paths if kinds[p] == "aisles"), None)
    departments = next((p for p in paths if kinds[p] == "departments"), None)
    products = [p for p in paths if kinds[p] in ("clean", "raw")]
    if not products:
        raise DataError(f"no products file among {', '.join(map(str, paths))}; expected products.csv or its clean copy")

    records, seen = [], set()
    for path in products:
        if kinds[path] == "clean":
            table = read_table(path, report, required=("product_id", "product_name", "aisle", "department"))
            rows = [(r["product_id"], r["product_name"], r["department"], r["aisle"]) for r in table.rows]
        else:
            aisles_path = aisles or path.with_name("aisles.csv")
            departments_path = departments or path.with_name("departments.csv")
            for needed, what in ((aisles_path, "aisles.csv"), (departments_path, "departments.csv")):
                if not needed.is_file():
                    raise DataError(
                        f"{path} is a raw products file with aisle and department ids only; pass {what} as an input "
                        f"too (not found beside it at {needed})"
                    )
            aisle_names = _lookup(aisles_path, report, "aisle_id", "aisle")
            department_names = _lookup(departments_path, report, "department_id", "department")
            rows = []
            for r in parse_raw_products(read_text(path), report, name=str(path)):
                aisle, department = aisle_names.get(r["aisle_id"]), department_names.get(r["department_id"])
                if aisle is None or department is None:
                    report.drop("unknown_aisle_or_department")
                    continue
                rows.append((r["product_id"], r["product_name"], department, aisle))
        for product_id, name, department, aisle in rows:
            product_id = product_id.strip()
            if product_id in seen:
                report.drop("duplicate_id")
                continue
            seen.add(product_id)
            if MISSING in (department.strip().lower(), aisle.strip().lower()):
                report.drop("missing_category")
                continue
            records.append(
                {"id": f"{SOURCE}-{product_id}", "text": name, "path": [department, aisle], "source": SOURCE}
            )
    return finalize(records, "category", report)
