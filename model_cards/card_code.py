"""The model card's first code block, which needs only transformers, peft, torch and huggingface_hub.

It loads base + adapter by id and reproduces ``training.predict``: the prompt from
:func:`prompt_format` (with the nearest training examples of :mod:`catalog_lora.retrieval.examples` in the
slot :func:`example_format` fills, cut as ``PromptTemplate.fit`` cuts them), greedy decoding
constrained like :class:`catalog_lora.inference.constrained.LabelConstraint` and the parsing of
:mod:`catalog_lora.records.labels`; or the head's scores with its thresholds, mixed with the labels of the
nearest training examples as :mod:`catalog_lora.retrieval.neighbours` does; or a description head's choice
among the nearest training descriptions (:mod:`catalog_lora.inference.choice`). Every setting is read from the
repo's files; the code is in ``templates/usage_*.py.jinja`` (the nearest-example search, shared by
all three, in ``templates/nearest.py.jinja``).
"""

from __future__ import annotations

import re
import string

from catalog_lora.inference import choice
from catalog_lora.inference.constrained import SEPARATOR
from catalog_lora.records.canonical import PATH_SEPARATOR
from catalog_lora.records.labels import PATH_SEPARATORS, PIECE_PUNCTUATION, TAG_SEPARATORS
from catalog_lora.records.prompts import (
    ATTRIBUTE_PAIR,
    ATTRIBUTE_PAIRS_SEPARATOR,
    ATTRIBUTE_SEPARATOR,
    ATTRIBUTES_LINE,
    CUT_MARK,
    WITH_ATTRIBUTES,
    Example,
    PromptTemplate,
    vote_text,
)
from catalog_lora.retrieval.embeddings import MODEL_NAME
from catalog_lora.runs.folder import EXAMPLES_FILE, LEXICAL_FILES, NEIGHBOURS_FILE, SEARCH_FILES
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
# The example's attributes, for an adapter that reads them (the ones it reads of these).
EXAMPLE_ATTRIBUTES = {"brand": "Parachute"}
# Stand in for the product text, the examples and an example's text and answer while a prompt is
# rendered as a format string.
TEXT_SLOT, EXAMPLES_SLOT = "\x00text\x00", "\x00examples\x00"
SLOT_EXAMPLE = Example("\x00example text\x00", "\x00example answer\x00")


def _as_format(rendered: str, slots: dict[str, str]) -> str:
    """``rendered`` as a ``str.format`` template: braces escaped, each slot (value) replaced by its field (key)."""
    rendered = rendered.replace("{", "{{").replace("}", "}}")
    for field, slot in slots.items():
        rendered = rendered.replace(slot, "{" + field + "}")
    return rendered


def _example_block(run: Run) -> str:
    """What the prompt shows for :data:`SLOT_EXAMPLE` (everything ``user_input`` puts before the product)."""
    template = run.template()
    return template.user_input(TEXT_SLOT, examples=[SLOT_EXAMPLE]).removesuffix(template.user_input(TEXT_SLOT))


def prompt_format(run: Run) -> str:
    """The exact model input as a ``str.format`` template: ``{text}``, and ``{examples}`` when the run
    shows training examples (the blocks of :func:`example_format`, joined).

    Rendered by the project's :class:`PromptTemplate` (the head reads ``user_input`` alone, as the
    engine feeds it), so the card's code cannot drift from what training and evaluation used.
    """
    if run.info.method == "head":
        return _as_format(PromptTemplate(run.info.task, "alpaca").user_input(TEXT_SLOT), {"text": TEXT_SLOT})
    tokenizer = run.tokenizer() if run.info.prompt_template == "chat" else None
    if not run.info.prompt_examples:
        return _as_format(run.template().prompt(TEXT_SLOT, tokenizer), {"text": TEXT_SLOT})
    rendered = run.template().prompt(TEXT_SLOT, tokenizer, examples=[SLOT_EXAMPLE])
    block = _example_block(run)
    if rendered.count(block) != 1:
        raise ValueError(f"the {run.info.prompt_template} prompt does not show its example as one block")
    return _as_format(rendered.replace(block, EXAMPLES_SLOT), {"text": TEXT_SLOT, "examples": EXAMPLES_SLOT})


def example_format(run: Run) -> str:
    """One training example as the prompt shows it, a ``str.format`` template with ``{text}`` and ``{answer}``."""
    return _as_format(_example_block(run), {"text": SLOT_EXAMPLE.text, "answer": SLOT_EXAMPLE.answer})


def example_attributes(names: list[str]) -> dict:
    """The example product's attributes among ``names`` (those an adapter reads), from :data:`EXAMPLE_ATTRIBUTES`."""
    return {key: EXAMPLE_ATTRIBUTES[key] for key in names if key in EXAMPLE_ATTRIBUTES}


def usage_code(run: Run, repo_id: str) -> str:
    """The card's first code block for ``run`` published as ``repo_id``."""
    task = run.info.task
    values = dict(
        repo_id=repo_id,
        embedder=MODEL_NAME,
        neighbours_file=NEIGHBOURS_FILE,
        base_model=run.base_model,
        example=EXAMPLE_TEXT[task],
        batch=MORE_TEXTS[task],
        multi_label=run.info.multi_label,
    )
    if run.info.method == "head" and task == "description":
        return render(
            "usage_choice.py.jinja",
            product_line=choice.PRODUCT_LINE,
            candidate_line=choice.CANDIDATE_LINE,
            with_attributes=WITH_ATTRIBUTES,
            attribute_separator=ATTRIBUTE_SEPARATOR,
            candidate_tokens=choice.CANDIDATE_TOKENS,
            cut_mark=CUT_MARK,
            examples_file=EXAMPLES_FILE,
            num_layers=run.info.num_layers,
            pooled=run.info.choice_search == "pooled",
            search_files=SEARCH_FILES,
            **values,
        ).rstrip()
    if run.info.method == "head":
        shown = example_attributes(run.info.attributes)
        return render(
            "usage_head.py.jinja",
            input_format=prompt_format(run),
            attributes=run.info.attributes,
            attributes_line=ATTRIBUTES_LINE,
            attribute_pair=ATTRIBUTE_PAIR,
            attribute_pairs_separator=ATTRIBUTE_PAIRS_SEPARATOR,
            with_attributes=WITH_ATTRIBUTES,
            attribute_separator=ATTRIBUTE_SEPARATOR,
            example_attributes=shown,
            attribute_example=vote_text(EXAMPLE_TEXT[task], shown),
            problem_type=run.info.problem_type,
            num_layers=run.info.num_layers,
            knn=bool(run.knn_k),
            lexical=bool(run.info.lexical_weight),
            lexical_files=LEXICAL_FILES,
            **values,
        )
    prompt = prompt_format(run)
    examples = run.info.prompt_examples
    return render(
        "usage_generate.py.jinja",
        prompt_lines=[python_literal(line) for line in prompt.splitlines(keepends=True)],
        examples=examples,
        example_lines=[python_literal(line) for line in example_format(run).splitlines(keepends=True)]
        if examples
        else [],
        examples_file=EXAMPLES_FILE,
        cut_mark=CUT_MARK,
        # the product text's places in the prompt: a cut of the text shortens the prompt this many times
        text_repeats=sum(field == "text" for _, field, _, _ in string.Formatter().parse(prompt)),
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
