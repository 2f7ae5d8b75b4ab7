"""The handlers of the single-product tabs (Tag, Describe, Classify, Compare): plain functions of the
adapter pool and the request, returning what the UI shows. Empty or letterless text never reaches the model.
"""

from __future__ import annotations

import logging
import re

import pandas as pd

from catalog_lora.catalogs.batch import has_letters
from catalog_space.models import AdapterUnavailable, Models, run_predict, run_stream
from catalog_space.settings import ANSWER_NAMES

logger = logging.getLogger("catalog_lora.space")

MAX_INPUT_CHARS = 5000  # longer input is cut here (and the model cuts again to its token window)
REFERENCES_K = 5
REVIEW_MARK = "Low confidence — review"


def note(text: str) -> str:
    return f"**Note:** {text}"


def clean_text(text) -> tuple[str | None, list[str]]:
    """``(text, notices)``; ``None`` for empty input, which never reaches the model."""
    text = "" if text is None else str(text)
    if not text.strip():
        return None, [note("Type a product first: the text is empty, so nothing was sent to the model.")]
    text = text.strip()
    if not has_letters(text):
        return None, [
            note(
                "The text has no letters, so it does not describe a product: no answer, and nothing was sent to the model."
            )
        ]
    if len(text) > MAX_INPUT_CHARS:
        return text[:MAX_INPUT_CHARS], [
            note(f"The text is {len(text):,} characters; only the first {MAX_INPUT_CHARS:,} were used.")
        ]
    return text, []


def truncation_notice(models: Models, name: str) -> str:
    info = models.slots[name].info
    window = f"{info.max_length}-token" if info is not None else "token"
    return note(
        f"The text is longer than the model's {window} window, so it was truncated: only its beginning was used."
    )


def prediction_notices(models: Models, name: str, prediction) -> list[str]:
    notices = []
    if prediction.truncated:
        notices.append(truncation_notice(models, name))
    if prediction.error:
        notices.append(note(f"The model reported an error: {prediction.error}"))
    if prediction.unknown:
        notices.append(
            note(f"The model also wrote labels outside the taxonomy, left out: {', '.join(prediction.unknown)}")
        )
    if prediction.low_confidence:
        notices.insert(0, review_notice(models, name, prediction))
    return notices


def missing_attributes_notice(models: Models, name: str, given: dict[str, str]) -> str | None:
    """For an adapter trained with attributes beside the text (BigBasket's brand) given none of them: it answers
    from the text alone, worse than it can (measured in its ``metrics.json``: ``without_attributes``)."""
    reads = models.slots[name].attributes
    if not reads or any(given.get(key) for key in reads):
        return None
    return note(
        f"This adapter was trained with each product's {', '.join(reads)} beside its name and answered from the name "
        f"alone, which it does less well (the About tab's `adapter` and `without_attributes` columns). Add "
        f"{' and '.join(f'`{key}: …`' for key in reads)} under Attributes for its best answer."
    )


def review_notice(models: Models, name: str, prediction) -> str:
    """The review mark of an answer with a label below the adapter's threshold."""
    threshold = models.slots[name].info.review_threshold
    shown = ", ".join(
        f"**{label}** ({prediction.confidence.get(label, 0.0):.0%})" for label in prediction.low_confidence
    )
    return (
        f"⚠️ **{REVIEW_MARK}:** {shown}. This adapter marks answers below {threshold:.0%} "
        "(a threshold chosen on its validation split): check them before use."
    )


def prompt_truncated(models: Models, name: str, text: str, attributes: dict | None) -> bool:
    """Whether the prompt for ``text`` is cut to the model's window (the stream does not say so itself)."""
    engine = models.engine(name)
    return engine.prompt_for(engine.spec(name), text, attributes)[1]


def parse_attributes(text: str | None) -> dict[str, str]:
    """``"brand: Dermaleaf; category: Personal Care"`` (or one per line) → a dict."""
    attributes = {}
    for piece in re.split(r"[;\n]", text or ""):
        key, sep, value = piece.partition(":")
        if sep and key.strip() and value.strip():
            attributes[key.strip()] = value.strip()
    return attributes


def reference_frame(task: str, rows: list | None = None) -> pd.DataFrame:
    columns = ["similarity", "training product", ANSWER_NAMES[task]]
    return pd.DataFrame(rows or [], columns=columns)


def shown_references(task: str, found: list) -> tuple[pd.DataFrame, str]:
    """The references column: training products (:class:`~catalog_lora.retrieval.references.Reference`) and a
    line saying where they come from."""
    rows = [[round(ref.score, 3), ref.text, ref.answer] for ref in found]
    return reference_frame(task, rows), f"The {len(rows)} most similar training examples (cosine similarity)."


def no_references(models: Models, name: str, task: str) -> tuple[pd.DataFrame, str] | None:
    """The references column when ``name`` has no usable reference index (why, in its line); None when it has one."""
    if name not in models.slots:
        return reference_frame(task), ""
    index, problem = models.references(name)
    if index is None:
        return reference_frame(task), note(f"No training references for this adapter: {problem}")
    return None


def find_references(models: Models, name: str, task: str, text: str | None) -> tuple[pd.DataFrame, str]:
    """The training products nearest to ``text``, searched on their own (the Describe tab: Tag's come with
    the answer, from the engine's own search), and a line saying where they come from."""
    if text is None:
        return reference_frame(task), ""
    missing = no_references(models, name, task)
    if missing is not None:
        return missing
    try:
        return shown_references(task, models.references(name)[0].query([text], k=REFERENCES_K)[0])
    except Exception as error:  # a corrupt index must not take the answer down with it
        logger.exception("reference query failed")
        return reference_frame(task), note(f"The reference index could not be searched: {error}")


def label_value(prediction, task: str):
    """What a ``gr.Label`` shows: each chosen label with its probability (categories: with the top
    alternatives), else a line saying there is no answer."""
    values = dict(prediction.scores) if task == "category" else {}
    for label in prediction.labels:
        values.setdefault(label, prediction.confidence.get(label, 0.0))
    if values:
        return dict(sorted(values.items(), key=lambda kv: -kv[1]))
    return f"(no {ANSWER_NAMES[task]})"


def answer_text(prediction, task: str) -> str:
    if task == "description" or not prediction.labels:
        return prediction.text
    return ", ".join(prediction.labels)


def failure(name: str, error: Exception) -> str:
    """The notice of a failed request: one log line for what a user can fix, a traceback for real faults."""
    if isinstance(error, AdapterUnavailable):
        logger.warning("%s: %s", name, error)
        return f"**{error}**"
    logger.exception("%s failed", name, exc_info=error)
    return f"**Something went wrong:** {type(error).__name__}: {error}"


def tag(models: Models, text: str, adapter: str | None = None):
    """Tags of a product text by ``adapter`` (default: the Space's tagger). Returns ``(tags, notice, references note, references)``.

    The similar training products come with the answer: the engine searches the references index once per
    batch of concurrent requests, and a head's neighbour vote uses the same search."""
    adapter = adapter or "tag"
    text, notices = clean_text(text)
    if text is None:
        return None, "\n\n".join(notices), "", reference_frame("tagging")
    missing = no_references(models, adapter, "tagging")
    references, references_note = missing or (reference_frame("tagging"), "")
    try:
        prediction = models.predict_one(adapter, text, references=0 if missing else REFERENCES_K)
    except Exception as error:
        return None, failure(adapter, error), references_note, references
    if not missing:
        references, references_note = shown_references("tagging", prediction.references)
    notices += prediction_notices(models, adapter, prediction)
    if not prediction.labels:
        notices.append(note("No tag: the adapter found none of its tags in this text."))
    return label_value(prediction, "tagging"), "\n\n".join(notices), references_note, references


def describe(models: Models, title: str, attributes: str = "", adapter: str | None = None):
    """A product description, streamed. Yields ``(description, notice, references note, references)``."""
    adapter = adapter or "describe"
    title, notices = clean_text(title)
    references, references_note = find_references(models, adapter, "description", title)
    if title is None:
        yield "", "\n\n".join(notices), references_note, references
        return
    attrs = parse_attributes(attributes) or None
    try:
        if prompt_truncated(models, adapter, title, attrs):
            notices.append(truncation_notice(models, adapter))
        answer = ""
        yield answer, "\n\n".join(notices), references_note, references
        for answer in run_stream(models, adapter, title, attrs):
            yield answer, "\n\n".join(notices), references_note, references
        if not answer.strip():
            notices.append(note("The model returned an empty description."))
        yield answer, "\n\n".join(notices), references_note, references
    except Exception as error:
        yield "", failure(adapter, error), references_note, references


def classify(models: Models, text: str, adapter: str | None = None, attributes: str = ""):
    """The category path of a product with its top alternatives. Returns ``(category, notice)``.

    ``attributes`` (``"brand: Parachute"``): read beside the text by an adapter trained with them (RunInfo.attributes)."""
    adapter = adapter or "category"
    text, notices = clean_text(text)
    if text is None:
        return None, "\n\n".join(notices)
    try:
        given = parse_attributes(attributes)
        prediction = models.predict_one(adapter, text, given or None, top_k=5)
    except Exception as error:
        return None, failure(adapter, error)
    notices += prediction_notices(models, adapter, prediction)
    notices += filter(None, [missing_attributes_notice(models, adapter, given)])
    if prediction.scores and prediction.labels:
        ranked_first = max(prediction.scores, key=prediction.scores.get)
        if ranked_first != prediction.labels[0]:
            notices.append(
                f"Greedy decoding answered **{prediction.labels[0]}**; the constrained beam search behind the bars "
                f"ranks **{ranked_first}** first."
            )
    return label_value(prediction, "category"), "\n\n".join(notices)


def compare(models: Models, name: str, text: str):
    """The same input through the bare base model and through the adapter.

    Returns ``(base labels, adapter labels, base answer, adapter answer, notice)``; the labels
    (with their probabilities) are ``None`` for descriptions."""
    if name not in models.slots:
        return None, None, "", "", f"**Unknown adapter {name!r}**; choose one of {', '.join(models.slots)}."
    text, notices = clean_text(text)
    if text is None:
        return None, None, "", "", "\n\n".join(notices)
    task = models.slots[name].task
    try:
        base = run_predict(models, name, [text], use_adapter=False)[0]
        tuned = run_predict(models, name, [text], use_adapter=True)[0]
    except Exception as error:
        return None, None, "", "", failure(name, error)
    notices += prediction_notices(models, name, tuned)
    labels = (None, None) if task == "description" else (label_value(base, task), label_value(tuned, task))
    return *labels, answer_text(base, task), answer_text(tuned, task), "\n\n".join(notices)
