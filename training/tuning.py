"""What is chosen on the validation split once training is done, with the best adapter on the engine:
the classical model a head's lexical vote is made of (fitted on train, its settings chosen on validation), a
description head's TF-IDF search (fitted on train),
the shares of the votes mixed into a head (the neighbours', the classical model's; for a description head,
the nearest candidate's share of its choice), the per-label thresholds of a tagging head, the review threshold.

Each is chosen on validation only; the test split is never looked at here.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from catalog_lora.inference.choice import with_nearest_share
from catalog_lora.inference.confidence import choose_threshold
from catalog_lora.inference.engine import Engine
from catalog_lora.inference.votes import WEIGHT_GRID, best_thresholds, tune_shares
from catalog_lora.records.labels import Taxonomy
from catalog_lora.records.prompts import with_attribute_values
from catalog_lora.retrieval.neighbours import neighbour_votes
from training.baseline import TfidfBaseline
from training.config import TrainConfig
from training.data import vote_texts
from training.evaluate import fit_baseline

NAME = "adapter"  # the name the trained adapter is registered under on the engine


def validation_scores(engine: Engine, validation: list[dict], config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The adapter's score for every label on every validation row, and the gold labels.

    Gold is a 0/1 matrix for tags and a label-index vector for categories (-1: a label training never saw).
    """
    labels = engine.spec(NAME).taxonomy.labels
    predictions = engine.predict(
        NAME, [r["text"] for r in validation], [r.get("attributes") for r in validation],
        batch_size=config.eval.batch_size, batch_tokens=config.eval.batch_tokens, top_k=len(labels),
    )
    scores = np.array([[p.scores.get(label, 0.0) for label in labels] for p in predictions])
    return scores, gold_labels(validation, config, labels, engine.spec(NAME).taxonomy.multi_label)


def gold_labels(rows: list[dict], config: TrainConfig, labels: list[str], multi_label: bool) -> np.ndarray:
    """The rows' labels against ``labels``: a 0/1 matrix for tags, a label-index vector for categories (-1: a
    label not among them)."""
    gold = [config.spec.labels(r) for r in rows]
    if multi_label:
        return np.array([[label in labels_ for label in labels] for labels_ in gold])
    index = {label: j for j, label in enumerate(labels)}
    return np.array([index.get(g[0], -1) for g in gold])


def fit_lexical(
    train: list[dict], validation: list[dict], config: TrainConfig, taxonomy: Taxonomy, attributes: list[str], folder: Path, log
) -> TfidfBaseline:
    """The classical baseline (``C`` and class weights chosen on validation) fitted on ``train`` (each text with
    the values of the ``attributes`` the adapter reads) and saved into ``folder`` as the head's lexical vote
    (catalog_lora.inference.lexical); returned for the evaluation to reuse."""
    started = time.time()
    baseline = fit_baseline(train, config.spec, taxonomy.labels, config.train.seed, validation, attributes)
    files = baseline.save_plain(folder, taxonomy.labels)
    baseline.fit_seconds = round(time.time() - started, 1)  # in train_stats.json: part of what the run cost
    size = sum(f.stat().st_size for f in files) / 1e6
    log(f"Lexical vote: TF-IDF + logistic regression ({baseline.settings}) fitted in {baseline.fit_seconds:.0f} s, {size:.1f} MB")
    return baseline


def fit_search(train: list[dict], config: TrainConfig, folder: Path, log) -> list[Path]:
    """A description head's TF-IDF search (``model.choice_search: pooled``): the baseline's vectorizer fitted on the
    training products' lines (title and ``model.choice_attributes`` values, as the references index reads them) and
    saved into ``folder`` (catalog_lora.retrieval.tfidf.LexicalSearch)."""
    started = time.time()
    keys = [with_attribute_values(r["text"], r.get("attributes"), config.model.choice_attributes) for r in train]
    files = TfidfBaseline("description").fit(keys, [r["description"] for r in train]).save_search(folder)
    size = sum(f.stat().st_size for f in files) / 1e6
    log(f"TF-IDF search for the pooled candidates: fitted in {time.time() - started:.0f} s, {size:.1f} MB")
    return files


def head_and_votes(
    engine: Engine, rows: list[dict], config: TrainConfig, taxonomy: Taxonomy
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """The head alone's scores on ``rows`` (the adapter's shares and thresholds set to nothing first), each vote
    the config mixes in, keyed by its share's name (``knn_weight``, ``lexical_weight``), and the gold labels
    (:func:`validation_scores`)."""
    spec = engine.spec(NAME)
    spec.info.knn_weight, spec.info.lexical_weight, spec.info.thresholds = 0.0, 0.0, []
    head, gold = validation_scores(engine, rows, config)
    texts = [r["text"] for r in rows]
    attributes = [spec.read_attributes(r.get("attributes")) for r in rows]
    votes = {}
    if config.neighbours.k:
        hits = spec.neighbours.query(texts, config.neighbours.k, attributes)
        votes["knn_weight"] = neighbour_votes(hits, taxonomy, config.spec.levels, config.neighbours.temperature)
    if config.lexical.vote:
        votes["lexical_weight"] = spec.lexical.probabilities(vote_texts(rows, spec.info.attributes)).numpy()
    return head, votes, gold


def tune_vote_shares(engine: Engine, validation: list[dict], config: TrainConfig, taxonomy: Taxonomy) -> tuple[dict, dict]:
    """The shares of the votes mixed into the head (``knn_weight``, ``lexical_weight``) that score best on
    validation together (catalog_lora.inference.votes.tune_shares), and the score of every combination tried."""
    head, votes, gold = head_and_votes(engine, validation, config, taxonomy)
    return tune_shares(head, votes, gold, taxonomy.multi_label, config.eval.threshold_scope)


def tune_thresholds(engine: Engine, validation: list[dict], config: TrainConfig) -> list[float]:
    """The tags' decision thresholds chosen on validation, of ``eval.threshold_scope``
    (catalog_lora.inference.votes.best_thresholds): each label's own, or one for all."""
    engine.spec(NAME).info.thresholds = []
    scores, gold = validation_scores(engine, validation, config)
    return best_thresholds(scores, gold, config.eval.threshold_scope).tolist()


def review_threshold(engine: Engine, name: str, validation: list[dict], config: TrainConfig) -> float:
    """Predict the validation split and choose the confidence below which an answer is sent to review.

    Every label the adapter chose is one answer: right when it is in the record's gold labels
    (tags) or equals the gold path (categories); see :func:`catalog_lora.inference.confidence.choose_threshold`."""
    predictions = engine.predict(
        name, [r["text"] for r in validation], [r.get("attributes") for r in validation],
        batch_size=config.eval.batch_size, batch_tokens=config.eval.batch_tokens, constrained=config.eval.constrained,
    )
    answers = []
    for prediction, record in zip(predictions, validation, strict=True):
        gold = config.spec.answer(record)
        gold = set(gold) if isinstance(gold, list) else {gold}
        answers += [(prediction.confidence.get(label, 0.0), label in gold) for label in prediction.labels]
    return choose_threshold(answers)


def tune_nearest_share(engine: Engine, validation: list[dict], config: TrainConfig) -> tuple[float, dict[float, float]]:
    """A description head: the nearest candidate's share of the choice (catalog_lora.inference.choice.choose) with
    the best validation chrF, and the chrF of every share tried; ties go to the smaller share (the head)."""
    spec = engine.spec(NAME)
    spec.info.knn_weight = 0.0
    texts, attributes = [r["text"] for r in validation], [r.get("attributes") for r in validation]
    candidates = spec.examples(texts, attributes)  # searched once: the predictions choose among these
    predictions = engine.predict(NAME, texts, attributes, batch_size=config.eval.batch_size, batch_tokens=config.eval.batch_tokens, examples=candidates)
    return best_nearest_share(predictions, candidates, [r["description"] for r in validation])


def chosen_descriptions(predictions: list, candidates: list[list], share: float) -> list[str]:
    """Each product's answer when the nearest candidate has ``share`` of the choice: ``predictions`` are the
    head's alone (``knn_weight`` 0), made with ``examples=candidates``."""
    answers = []
    for prediction, shown in zip(predictions, candidates, strict=True):
        probs = with_nearest_share(list(prediction.scores.values()), share)  # the head's, in candidate order
        answers.append(shown[int(np.argmax(probs))].answer if probs else "")
    return answers


def best_nearest_share(predictions: list, candidates: list[list], references: list[str]) -> tuple[float, dict[float, float]]:
    """The share of :data:`WEIGHT_GRID` whose :func:`chosen_descriptions` have the best corpus chrF against
    ``references``, and every share's chrF; ties go to the smaller share (the head)."""
    import sacrebleu

    scores = {
        share: float(sacrebleu.corpus_chrf(chosen_descriptions(predictions, candidates, share), [references]).score)
        for share in WEIGHT_GRID
    }
    best = max(WEIGHT_GRID, key=lambda share: (scores[share], -share))
    return best, scores


def tune_on_validation(engine: Engine, validation: list[dict], config: TrainConfig, taxonomy: Taxonomy | None, log) -> None:
    """Choose everything above for the adapter on ``engine``, in order, into its ``RunInfo`` (a lexical vote's
    model is already fitted and saved beside the adapter: :func:`fit_lexical`)."""
    info = engine.spec(NAME).info
    if config.method == "head" and config.task == "description":
        info.knn_weight, scores = tune_nearest_share(engine, validation, config)
        log(f"The nearest candidate's share: {info.knn_weight} chosen on validation (chrF {scores[info.knn_weight]:.2f}; "
            f"the head alone {scores[0.0]:.2f}, the nearest alone {scores[1.0]:.2f})")
    if config.neighbours.k or config.lexical.vote:
        shares, scores = tune_vote_shares(engine, validation, config, taxonomy)
        for name, share in shares.items():
            setattr(info, name, share)
        alone = {name: scores[tuple(1.0 if other == name else 0.0 for other in shares)] for name in shares}
        log("Votes' shares chosen on validation: " + ", ".join(f"{name} {share}" for name, share in shares.items())
            + f" ({scores[tuple(shares.values())]:.4f}; the head alone {scores[(0.0,) * len(shares)]:.4f}, "
            + ", ".join(f"{name} alone {value:.4f}" for name, value in alone.items()) + ")")
    if config.method == "head" and config.task == "tagging" and config.eval.tune_thresholds:
        info.thresholds = tune_thresholds(engine, validation, config)
    if taxonomy:
        info.review_threshold = review_threshold(engine, NAME, validation, config)
