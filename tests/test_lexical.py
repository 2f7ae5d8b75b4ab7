"""The lexical vote's plain files give scikit-learn's answers: the n-grams of its analyzers, and the fitted
baseline's probabilities for tags and categories (on the bundled sample catalog and on edge cases)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from catalog_lora.inference.lexical import LexicalModel, analyze
from catalog_lora.records.task_spec import TaskSpec
from catalog_lora.runs.folder import LEXICAL_FILES
from training.baseline import TfidfBaseline

TRICKY = [
    "Coconut Oil 500ml - Cold Pressed",
    "  tabs\tand\n\nnewlines   and  double  spaces ",
    "a b c",  # words shorter than every n
    "Ünïcödé Crème brûlée, 2x",
    "",
    "x",
    "anti-dandruff shampoo (200 ml) anti-dandruff",
    "数字 123 ab",
]


@pytest.mark.parametrize("analyzer,ngram_range", [("word", (1, 2)), ("char_wb", (2, 5)), ("word", (1, 1)), ("char_wb", (1, 3))])
def test_analyze_is_scikit_learns_analyzer(analyzer, ngram_range):
    reference = TfidfVectorizer(analyzer=analyzer, ngram_range=ngram_range).build_analyzer()
    for text in TRICKY:
        assert sorted(analyze(text, analyzer, ngram_range)) == sorted(reference(text)), text


def _split(sample_data, task: str, name: str) -> list[dict]:
    return [json.loads(line) for line in (sample_data / task / f"{name}.jsonl").read_text().splitlines()]


def _probabilities(baseline: TfidfBaseline, texts: list[str], labels: list[str]) -> np.ndarray:
    """scikit-learn's own probabilities of every label, in ``labels``' order."""
    x = baseline.features.transform(texts)
    probs = np.zeros((len(texts), len(labels)))
    if baseline.task == "tagging":
        probs[:, baseline.learnable] = baseline.model.predict_proba(x)
        for column, value in baseline.constant.items():
            probs[:, column] = value
    else:
        for row, label in enumerate(baseline.model.classes_):
            probs[:, labels.index(label)] = baseline.model.predict_proba(x)[:, row]
    return probs


@pytest.mark.parametrize("task", ["tagging", "category"])
def test_saved_model_gives_the_fitted_probabilities(sample_data, tmp_path, task):
    spec = TaskSpec(task, 2 if task == "category" else None)
    train, test = _split(sample_data, task, "train"), _split(sample_data, task, "test")
    labels = sorted({label for r in train for label in spec.labels(r)} | {"Never Seen"})
    if task == "tagging":  # a tag on every training row: the model cannot learn it, so it is always given
        train = [{**r, "labels": [*r["labels"], "Always"]} for r in train]
        labels.append("Always")
    baseline = TfidfBaseline(task, labels if task == "tagging" else None, C=3.0).fit(
        [r["text"] for r in train], [spec.answer(r) for r in train]
    )
    files = baseline.save_plain(tmp_path, labels)
    assert [f.name for f in files] == list(LEXICAL_FILES)
    model = LexicalModel.load(*files)
    texts = [r["text"] for r in test] + TRICKY
    ours = model.probabilities(texts).numpy()
    assert ours == pytest.approx(_probabilities(baseline, texts, labels), abs=1e-5)
    assert (ours[:, labels.index("Never Seen")] == 0).all(), "a label training never showed is never the answer"
    if task == "tagging":
        assert (ours[:, labels.index("Always")] == 1).all()
    else:
        assert ours.sum(axis=1) == pytest.approx(1.0, abs=1e-5)
        predicted = [labels[j] for j in ours.argmax(axis=1)]
        assert predicted == baseline.predict(texts), "the saved model answers as the fitted one"


def test_two_categories_are_one_sigmoid_as_a_softmax(tmp_path):
    texts = ["green tea bags", "black tea leaves", "olive oil", "coconut oil", "herbal tea", "sunflower oil"]
    answers = ["Tea", "Tea", "Oil", "Oil", "Tea", "Oil"]
    baseline = TfidfBaseline("category").fit(texts, answers)
    model = LexicalModel.load(*baseline.save_plain(tmp_path, ["Oil", "Tea"]))
    queries = ["mustard oil", "masala tea", "tea oil"]
    assert model.probabilities(queries).numpy() == pytest.approx(_probabilities(baseline, queries, ["Oil", "Tea"]), abs=1e-6)


def test_description_baseline_has_no_label_probabilities(tmp_path):
    baseline = TfidfBaseline("description").fit(["a title", "another title"], ["a description", "another one"])
    with pytest.raises(ValueError, match="nearest-neighbour search"):
        baseline.save_plain(tmp_path, [])
