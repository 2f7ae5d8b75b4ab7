"""The model card's first code block, which needs only transformers, peft, torch and huggingface_hub.

It loads base + adapter by id and reproduces ``training.predict``: the prompt from
:func:`prompt_format`, greedy decoding constrained like :class:`catalog_lora.constrained.LabelConstraint`
and the parsing of :mod:`catalog_lora.labels`; or the head's scores with its thresholds, mixed with
the labels of the nearest training examples as :mod:`catalog_lora.neighbours` does. Every setting is
read from the repo's files; the code is in ``templates/usage_*.py.jinja``.
"""

from __future__ import annotations

import re

from catalog_lora.constrained import SEPARATOR
from catalog_lora.embeddings import MODEL_NAME
from catalog_lora.labels import PATH_SEPARATORS, PIECE_PUNCTUATION, TAG_SEPARATORS
from catalog_lora.prompts import PromptTemplate
from catalog_lora.records import PATH_SEPARATOR
from catalog_lora.run_files import NEIGHBOURS_FILE
from model_cards.card_run import Run
from model_cards.templating import python_literal, render

EXAMPLE_TEXT = {
    "tagging": "Smells amazing and lathers well, but the bottle is tiny for the price.",
    "category": "Organic Cold-Pressed Virgin Coconut Oil, 500 ml Glass Jar",
    "description": "Lavender & Chamomile Calming Body Wash, 400 ml",
}
# The batch the card's code runs after its example, in one call.
MORE_TEXTS = {
    "tagging": [
        "Gentle on my sensitive skin and the scent lasts all day.",
        "The pump broke after a week and it leaves my skin dry.",
    ],
    "category": ["Basmati Rice, Premium Long Grain, 5 kg", "Dark Chocolate Bar 70% Cocoa, 100 g"],
    "description": ["Aloe Vera Soothing Shower Gel, 250 ml", "Stainless Steel Insulated Water Bottle, 1 L"],
}
TEXT_SLOT = "\x00text\x00"  # stands in for the product text while a prompt is rendered as a format string


def prompt_format(run: Run) -> str:
    """The exact model input as a ``str.format`` template with one field, ``{text}``.

    Rendered by the project's :class:`PromptTemplate` (the head reads ``user_input`` alone, as the
    engine feeds it), so the card's code cannot drift from what training and evaluation used.
    """
    if run.info.method == "head":
        rendered = PromptTemplate(run.info.task, "alpaca").user_input(TEXT_SLOT)
    else:
        rendered = run.template().prompt(TEXT_SLOT, run.tokenizer() if run.info.prompt_template == "chat" else None)
    return rendered.replace("{", "{{").replace("}", "}}").replace(TEXT_SLOT, "{text}")


def usage_code(run: Run, repo_id: str) -> str:
    """The card's first code block for ``run`` published as ``repo_id``."""
    task = run.info.task
    values = dict(
        repo_id=repo_id,
        base_model=run.base_model,
        example=EXAMPLE_TEXT[task],
        batch=MORE_TEXTS[task],
        multi_label=run.info.multi_label,
    )
    if run.info.method == "head":
        return render(
            "usage_head.py.jinja",
            input_format=prompt_format(run),
            problem_type=run.info.problem_type,
            num_layers=run.info.num_layers,
            knn=bool(run.knn_k),
            embedder=MODEL_NAME,
            neighbours_file=NEIGHBOURS_FILE,
            **values,
        )
    return render(
        "usage_generate.py.jinja",
        prompt_lines=[python_literal(line) for line in prompt_format(run).splitlines(keepends=True)],
        labels=run.has_labels,
        first_prefix=" " if run.info.prompt_template == "alpaca" else "",
        separator=SEPARATOR,
        separators=(TAG_SEPARATORS if run.info.multi_label else PATH_SEPARATORS).pattern,
        punctuation=PIECE_PUNCTUATION,
        path_separator=PATH_SEPARATOR,
        **values,
    ).rstrip()


def extract_code_blocks(markdown: str, language: str = "python") -> list[str]:
    """The fenced code blocks of a card in ``language``, in order."""
    return re.findall(rf"```{language}\n(.*?)\n```", markdown, flags=re.S)
