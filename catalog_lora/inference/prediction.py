"""What the engine works with: an adapter as it uses it (:class:`AdapterSpec`) and one product's
answer (:class:`Prediction`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from catalog_lora.records.labels import Taxonomy
from catalog_lora.records.prompts import Example, PromptTemplate, select_attributes
from catalog_lora.retrieval.examples import index_word_search, nearest_examples, pooled_examples
from catalog_lora.runs.folder import LEXICAL_FILES, SEARCH_FILES, RunInfo, fetch_file

if TYPE_CHECKING:
    from catalog_lora.retrieval.tfidf import LexicalSearch


@dataclass
class Prediction:
    """One product's answer. ``labels`` for tags and categories, ``text`` the raw answer.

    ``confidence`` holds each chosen label's probability (see :mod:`catalog_lora.inference.confidence`),
    ``scores`` the alternatives (every tag of a head adapter, the top categories with ``top_k``),
    ``low_confidence`` the chosen labels below the adapter's review threshold, ``references`` the
    nearest training examples (``Engine.predict(references=k)``)."""

    text: str = ""
    labels: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    truncated: bool = False
    error: str | None = None
    confidence: dict[str, float] = field(default_factory=dict)
    low_confidence: list[str] = field(default_factory=list)
    references: list = field(default_factory=list)  # nearest training examples (Reference), when asked for

    @property
    def needs_review(self) -> bool:
        """A chosen label is below the review threshold."""
        return bool(self.low_confidence)


@dataclass
class AdapterSpec:
    """An adapter as the engine uses it: how to prompt, which labels, where it came from."""

    name: str
    source: str
    info: RunInfo
    taxonomy: Taxonomy | None
    peft_name: str
    _neighbours: object = None
    _lexical: object = None
    _word_search: tuple | None = None

    @property
    def neighbours(self):
        """The references index: the labels mixed into a head's scores, the examples shown in a prompt (opened on first use)."""
        if self._neighbours is None:
            from catalog_lora.retrieval.references import ReferenceIndex, locate_index

            self._neighbours = ReferenceIndex.open(locate_index(self.source))
        return self._neighbours

    @property
    def lexical(self):
        """The classical model mixed into a head's answers (catalog_lora.inference.lexical; read on first use)."""
        if self._lexical is None:
            from catalog_lora.inference.lexical import LexicalModel

            self._lexical = LexicalModel.load(*(fetch_file(self.source, name) for name in LEXICAL_FILES))
        return self._lexical

    def read_attributes(self, attributes: dict | None) -> dict | None:
        """What the adapter reads of a product's attributes: a tag or category adapter its own
        (``RunInfo.attributes``, in their order; none for one trained on the text alone), a description adapter all."""
        if self.info.task == "description":
            return attributes
        return select_attributes(attributes, self.info.attributes)

    @property
    def word_search(self) -> tuple[LexicalSearch, list[Example]]:
        """A description head's TF-IDF search over its training products (``SEARCH_FILES``) and those products, in
        the references index's order (read on first use)."""
        if self._word_search is None:
            files = [fetch_file(self.source, name) for name in SEARCH_FILES]
            self._word_search = index_word_search(self.neighbours, files, self.info.choice_attributes)
        return self._word_search

    def examples(self, texts: list[str], attributes: list[dict | None] | None = None) -> list[list[Example]]:
        """The nearest training examples shown in each text's prompt, or a description head's candidates
        (none unless the run uses some); ``attributes`` are searched with the texts where the index is keyed on them.
        A description head with ``choice_search: pooled`` pools the TF-IDF search's nearest with the index's."""
        k = self.info.prompt_examples
        if not k:
            return [[] for _ in texts]
        if self.info.choice_search != "pooled":
            return nearest_examples(self.neighbours, texts, k, attributes=attributes)
        search, rows = self.word_search
        return pooled_examples(self.neighbours, search, rows, texts, k, self.info.choice_attributes, attributes)

    @property
    def template(self) -> PromptTemplate:
        labels = tuple(self.taxonomy.labels) if self.info.prompt_labels and self.taxonomy else ()
        return PromptTemplate(self.info.task, self.info.prompt_template, labels)

