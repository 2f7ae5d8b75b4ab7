"""The Jinja environment of the card's templates (``templates/``): its prose, its sections and its code.

The templates hold the words; the code passes values. ``py`` writes a str or a list of str as Python
source, ``num`` a number or setting as the card's tables show it.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from catalog_lora.runs.markdown import format_value

TEMPLATES = Path(__file__).parent / "templates"


def python_literal(value) -> str:
    """A str or list of str as Python source (JSON's string syntax is Python's)."""
    return json.dumps(value, ensure_ascii=False)


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
    undefined=jinja2.StrictUndefined,
)
_env.filters["py"] = python_literal
_env.filters["num"] = format_value


def render(name: str, **values) -> str:
    """``templates/<name>`` rendered with ``values`` (a missing value is an error, never an empty string)."""
    return _env.get_template(name).render(**values)
