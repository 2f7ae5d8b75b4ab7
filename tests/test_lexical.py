"""The lexical vote's plain files give scikit-learn's answers: the n-grams of its analyzers, and the fitted
baseline's probabilities for tags and categories (on the bundled sample catalog and on edge cases);
``training.tune`` adds the vote to a head trained without it, and takes it away."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from catalog_lora.inference.engine import Engine
from catalog_lora.inference.lexical import LexicalModel
from catalog_lora.inference.votes import WEIGHT_GRID
from catalog_lora.records.prompts import Example, with_attribute_values
from catalog_lora.records.task_spec import TaskSpec
from catalog_lora.retrieval import tfidf
from catalog_lora.retrieval.examples import pool
from catalog_lora.retrieval.tfidf import LexicalSearch, analyze
from catalog_lora.runs.folder import (
    COMPLETE_MARKER,
    CONFIG_FILE,
    LEXICAL_FILES,
    METRICS_FILE,
    SEARCH_FILES,
    STATS_FILE,
    read_run_info,
)
from training.baseline import TfidfBaseline
from training.config import load_config
from training.evaluate import score
from training.tune import main as tune_main

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


def test_tune_adds_the_lexical_vote_to_a_finished_head_and_takes_it_away(tagging_head, tiny_runs, sample_data, tmp_path):
    run = Path(shutil.copytree(tagging_head, tmp_path / "run"))
    before = read_run_info(str(run))
    assert before.lexical_weight == 0.0 and not any((run / name).exists() for name in LEXICAL_FILES)
    adapter_weights = (run / "adapter_model.safetensors").read_bytes()

    results = tune_main([str(run), "--lexical-vote", "true", "eval.base=false", "eval.threshold_scope=shared"])
    info = read_run_info(str(run))
    assert info.lexical_weight in WEIGHT_GRID and all((run / name).is_file() for name in LEXICAL_FILES)
    assert load_config(run / CONFIG_FILE).lexical.vote and (run / COMPLETE_MARKER).is_file()
    assert len(info.thresholds) == len(before.thresholds) > 1 and len(set(info.thresholds)) == 1, "one threshold for every tag"
    assert load_config(run / CONFIG_FILE).eval.threshold_scope == "shared"
    assert ("lexical_alone" in results) == bool(info.lexical_weight)
    assert json.loads((run / METRICS_FILE).read_text())["test"] == json.loads(json.dumps(results))
    stats = json.loads((run / STATS_FILE).read_text())
    assert stats["lexical_fit_seconds"] > 0 and stats["bf16_check_seconds"] > 0, "the mix changed: bf16 measured again"
    assert info.bf16_agreement is not None and info.bf16_agreement_texts == 6
    assert (run / "adapter_model.safetensors").read_bytes() == adapter_weights, "the adapter itself is not trained again"
    # a fresh engine answers as the evaluation scored
    test = _split(sample_data, "tagging", "test")[: load_config(run / CONFIG_FILE).data.max_eval_examples]  # as evaluated
    engine = Engine.load({"tags": str(run)}, quantization="none")
    predictions = engine.predict("tags", [r["text"] for r in test])
    scored = score(info.spec, test, predictions, engine.spec("tags").taxonomy.labels)
    assert scored["micro_f1"] == pytest.approx(results["adapter"]["micro_f1"])

    tune_main([str(run), "--lexical-vote", "false", "eval.base=false"])
    assert read_run_info(str(run)).lexical_weight == 0.0 and not any((run / name).exists() for name in LEXICAL_FILES)
    assert "lexical_alone" not in json.loads((run / METRICS_FILE).read_text())["test"]

    with pytest.raises(SystemExit, match="generate tagging run; training.tune re-tunes heads"):
        tune_main([str(tiny_runs["tagging"])])


def test_the_word_search_finds_the_description_baselines_nearest(sample_data, tmp_path, monkeypatch):
    """A description head's TF-IDF search (plain files, no scikit-learn) ranks the training products as the
    fitted baseline's similarities do, ties in training order, so its first is the baseline's answer."""
    train, test = _split(sample_data, "description", "train"), _split(sample_data, "description", "test")
    keys = [with_attribute_values(r["text"], r.get("attributes"), ["brand"]) for r in train]
    keys += keys[:2]  # two products twice: exact ties, which must keep the training order
    descriptions = [r["description"] for r in train] + ["a twin", "another twin"]
    baseline = TfidfBaseline("description").fit(keys, descriptions)
    files = baseline.save_search(tmp_path)
    assert [f.name for f in files] == list(SEARCH_FILES)
    search = LexicalSearch.load(*files, keys)
    queries = [with_attribute_values(r["text"], r.get("attributes"), ["brand"]) for r in test] + TRICKY + keys[:2]
    found = search.nearest(queries, 4)
    assert [descriptions[rows[0]] for rows in found] == baseline.predict(queries)
    similarity = (baseline.features.transform(queries) @ baseline.train_x.T).toarray()
    for rows, scores in zip(found, similarity, strict=True):
        expected = np.argsort(-scores, kind="stable")[:4]
        assert scores[rows] == pytest.approx(scores[expected], abs=1e-6)  # the same ranking, up to float32's ties
    assert found[-2][0] == 0 and found[-1][0] == 1, "a tie keeps the earlier training product first"
    monkeypatch.setattr(tfidf, "QUERY_CHUNK", 3)
    assert search.nearest(queries, 4) == found, "searched a few texts at a time, the same answers"
    assert search.nearest([], 3) == [] and LexicalSearch.load(*files, []).nearest(["tea"], 3) == [[]]
    with pytest.raises(ValueError, match="save_plain saves it"):
        TfidfBaseline("category").fit(["green tea", "olive oil", "black tea"], ["Tea", "Oil", "Tea"]).save_search(tmp_path)


def test_pooled_candidates_take_half_of_each_search_and_each_description_once():
    words = [Example(f"w{i}", answer) for i, answer in enumerate("ABCD")]
    meaning = [Example(f"m{i}", answer) for i, answer in enumerate("CEFG")]
    pooled = pool(words, meaning, 5)  # the first 3 of each
    assert [(e.text, e.answer) for e in pooled] == [("w0", "A"), ("w1", "B"), ("w2", "C"), ("m1", "E"), ("m2", "F")]
    assert [e.text for e in pool(words, meaning, 2)] == ["w0", "m0"]
    assert pool([], meaning, 4) == meaning[:2]
