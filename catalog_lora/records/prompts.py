"""The one definition of every prompt: training, evaluation, prediction, the Space and the card use it.

Two formats:

- ``alpaca``, the reference projects' format::

      ### Instruction:
      Tag the product with the factors it mentions.

      ### Input:
      Product: {text}

      ### Response:
      Tags: fragrance, price

- ``chat``, the base model's own chat template (system + user turn, answer as the assistant turn).

A prompt may also show the nearest training examples with their answers (``examples``: the run's
``prompt_examples``, looked up in the references index) before the product, so the model can copy
what fits and change what does not::

      Similar product: Oats 500 g
      Its description: Rolled oats for porridge…

      Product: Oats 1 kg

A prompt ends exactly where the answer starts, so the loss can be put on the answer
tokens alone and generation continues from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from catalog_lora.records.canonical import check_task

TEMPLATES = ("alpaca", "chat")

INSTRUCTIONS = {
    "tagging": "Tag the product with the factors it mentions, as a comma-separated list.",
    "category": "Classify the product into its category path.",
    "description": "What is the description of product {title}?",
}
RESPONSE_PREFIX = {"tagging": "Tags:", "category": "Category:", "description": "Description:"}
SYSTEM_PROMPT = "You are a retail catalog assistant. Answer with the requested field only."
EXAMPLE_ANSWER = {"tagging": "Its tags", "category": "Its category", "description": "Its description"}
CUT_MARK = "…"  # ends an example's answer that was cut to fit the prompt


class Example(NamedTuple):
    """A training example shown in the prompt: its product text, its gold answer as text and its attributes."""

    text: str
    answer: str
    attributes: dict | None = None


WITH_ATTRIBUTES = "{text} [{values}]"
ATTRIBUTE_SEPARATOR = " / "
# A prompt's attributes: a line after the product, ``key: value`` pairs joined by "; ".
ATTRIBUTES_LINE, ATTRIBUTE_PAIR, ATTRIBUTE_PAIRS_SEPARATOR = "\nAttributes: {attributes}", "{key}: {value}", "; "


def with_attribute_values(text: str, attributes: dict | None, keys: Sequence[str] = ()) -> str:
    """``text`` followed by the values of the ``keys`` attributes (all when empty), e.g. ``Oats 1 kg [Saffola]``;
    on one line. A description head's input shows products so, and its references index searches by it."""
    values = [" ".join(str(value).split()) for key, value in (attributes or {}).items() if not keys or key in keys]
    shown = ATTRIBUTE_SEPARATOR.join(value for value in values if value)
    text = " ".join(text.split())
    return WITH_ATTRIBUTES.format(text=text, values=shown) if shown else text


def vote_text(text: str, attributes: dict | None) -> str:
    """What a tag or category adapter's votes (its neighbours' search, its classical model) read of a product:
    ``text [values]`` of the ``attributes`` it reads (:func:`select_attributes`), the text as given without any."""
    return with_attribute_values(text, attributes) if attributes else text


def select_attributes(attributes: dict | None, keys: Sequence[str]) -> dict | None:
    """A product's ``keys`` attributes in ``keys``' order, values as one-line strings, empty ones left out
    (None when none is left): what a tag or category adapter reads beside the text (``RunInfo.attributes``),
    the same whatever order or extra keys its caller's dict has."""
    chosen = {key: " ".join(str((attributes or {}).get(key) or "").split()) for key in keys}
    return {key: value for key, value in chosen.items() if value} or None


def format_attributes(attributes: dict | None) -> str:
    if not attributes:
        return ""
    pairs = (ATTRIBUTE_PAIR.format(key=key, value=value) for key, value in attributes.items() if str(value).strip())
    return ATTRIBUTE_PAIRS_SEPARATOR.join(pairs)


def format_answer(task: str, target) -> str:
    """Gold answer text: tags joined by ``, ``; a category path as given; a description as is."""
    if task == "tagging":
        return ", ".join(target)
    return str(target)


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt format bound to a task; ``labels`` lists the allowed answers in the instruction."""

    task: str
    name: str = "alpaca"
    labels: tuple[str, ...] = ()

    def __post_init__(self):
        check_task(self.task)
        if self.name not in TEMPLATES:
            raise ValueError(f"prompt template {self.name!r} is not one of {', '.join(TEMPLATES)}")

    def instruction(self, text: str) -> str:
        instruction = INSTRUCTIONS[self.task].format(title=text)
        if self.labels:
            instruction += " Choose from: " + ", ".join(self.labels) + "."
        return instruction

    def user_input(self, text: str, attributes: dict | None = None, examples: Sequence[Example] = ()) -> str:
        extra = format_attributes(attributes)
        shown = "".join(f"Similar product: {e.text}\n{EXAMPLE_ANSWER[self.task]}: {e.answer}\n\n" for e in examples)
        return f"{shown}Product: {text}" + (ATTRIBUTES_LINE.format(attributes=extra) if extra else "")

    def prompt(
        self, text: str, tokenizer=None, attributes: dict | None = None, examples: Sequence[Example] = ()
    ) -> str:
        """Everything the model sees before its answer."""
        user_input = self.user_input(text, attributes, examples)
        if self.name == "alpaca":
            return (
                f"### Instruction:\n{self.instruction(text)}\n\n"
                f"### Input:\n{user_input}\n\n"
                f"### Response:\n{RESPONSE_PREFIX[self.task]}"
            )
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("the chat template needs a tokenizer with a chat_template; use template 'alpaca'")
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"{self.instruction(text)}\n\n{user_input}"},
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def fit(
        self,
        text: str,
        tokenizer,
        max_tokens: int,
        attributes: dict | None = None,
        examples: Sequence[Example] = (),
    ) -> tuple[str, bool]:
        """The prompt, cut so it holds at most ``max_tokens`` tokens.

        Returns ``(prompt, truncated)``: the examples' answers give way first (the longest is cut),
        then the product text, which alone counts as truncated. The template is never cut, so the
        model always sees where its answer starts.
        """
        count = lambda prompt: len(tokenizer.encode(prompt, add_special_tokens=False))  # noqa: E731
        answers = [tokenizer.encode(e.answer, add_special_tokens=False) for e in examples]
        kept = [len(ids) for ids in answers]  # tokens of each example's answer still shown
        shown = list(examples)
        prompt = self.prompt(text, tokenizer, attributes, shown)
        excess = count(prompt) - max_tokens
        while excess > 0 and any(kept):
            longest = max(range(len(kept)), key=kept.__getitem__)
            kept[longest] = max(0, kept[longest] - excess - 1)
            cut = tokenizer.decode(answers[longest][: kept[longest]]).rstrip()
            shown[longest] = shown[longest]._replace(answer=cut + CUT_MARK if cut else "")
            prompt = self.prompt(text, tokenizer, attributes, shown)
            excess = count(prompt) - max_tokens
        if excess <= 0:
            return prompt, False
        text_ids = tokenizer.encode(text, add_special_tokens=False)
        # The description instruction repeats the title, so its excess counts twice.
        keep = max(1, len(text_ids) - excess * (2 if "{title}" in INSTRUCTIONS[self.task] else 1) - 1)
        return self.prompt(tokenizer.decode(text_ids[:keep]), tokenizer, attributes, shown), True

    def answer(self, target, tokenizer) -> str:
        """The training completion after :meth:`prompt`, closed by the end-of-answer token."""
        text = format_answer(self.task, target)
        if self.name == "alpaca":
            return f" {text}{tokenizer.eos_token}"
        return f"{text}{tokenizer.eos_token}"

    @property
    def single_line(self) -> bool:
        """Tags and categories end at the first newline; descriptions may span lines."""
        return self.task != "description"
