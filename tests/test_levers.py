"""The CPU levers of the head method, on the embedded model and the bundled sample:
the neighbours' and the classical model's votes mixed into the head, the first-N-layers cut, class-weighted losses and the time budget."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
from conftest import REPO, train_tiny_printed

from catalog_lora.inference.engine import Engine
from catalog_lora.inference.lexical import LexicalModel
from catalog_lora.inference.votes import best_thresholds, mix, tune_shares, validation_score
from catalog_lora.model.base_model import cpu_computes_bf16
from catalog_lora.records.labels import Taxonomy
from catalog_lora.retrieval.neighbours import neighbour_votes
from catalog_lora.retrieval.references import Reference
from catalog_lora.runs.folder import COMPLETE_MARKER, LEXICAL_FILES, METRICS_FILE, STATS_FILE, read_run_info
from training.config import ConfigError, load_config
from training.data import IGNORE_INDEX, Encoded, class_weights


def test_neighbour_votes_weigh_the_nearest_most():
    taxonomy = Taxonomy.from_examples([["Food > Oil"], ["Food > Tea"], ["Home > Soap"]], multi_label=False)
    hits = [[Reference("a", "coconut oil", "Food > Oil > Coconut", 0.9), Reference("b", "tea", "Food > Tea > Green", 0.5)], []]
    votes = neighbour_votes(hits, taxonomy, levels=2, temperature=0.05)
    oil, tea = taxonomy.index("Food > Oil"), taxonomy.index("Food > Tea")
    assert votes[0].sum() == pytest.approx(1.0) and votes[0, oil] > 0.99 > votes[0, tea] > 0
    assert votes[1].sum() == 0, "a query with no neighbours votes for nothing"
    assert mix(np.eye(3)[:1], [(0.5, votes[:1])]).sum() == pytest.approx(1.0)


def test_tune_shares_keeps_the_parts_that_are_right():
    gold = np.array([0, 1, 2, 0])
    right, wrong = np.eye(3)[gold], np.eye(3)[(gold + 1) % 3]
    assert tune_shares(right, {"vote": wrong}, gold, multi_label=False)[0] == {"vote": 0.0}
    shares, scores = tune_shares(wrong, {"vote": right}, gold, multi_label=False)
    assert shares == {"vote": 0.55} and scores[(0.55,)] == 1.0, "the smallest share of the vote that gets every row right"
    tags = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    assert tune_shares(tags.astype(float), {"vote": 1.0 - tags}, tags, multi_label=True)[0] == {"vote": 0.0}
    # two votes: every pair of shares summing to at most 1 is tried; the right vote takes the answer
    shares, scores = tune_shares(wrong, {"noise": wrong, "vote": right}, gold, multi_label=False)
    assert shares == {"noise": 0.0, "vote": 0.55} and len(scores) == 21 * 22 // 2
    assert all(a + b <= 1.0 + 1e-9 for a, b in scores)


def test_thresholds_per_label_or_one_shared():
    # label 0: positives score 0.8 and above, a negative 0.6; label 1 (rare): its one positive scores 0.18
    scores = np.array([[0.9, 0.1], [0.8, 0.18], [0.6, 0.1], [0.2, 0.05], [0.85, 0.05]])
    gold = np.array([[1, 0], [1, 1], [0, 0], [0, 0], [1, 0]], dtype=bool)
    per_label = best_thresholds(scores, gold)
    assert 0.6 < per_label[0] <= 0.8 and 0.1 < per_label[1] <= 0.18, "each label separates its own rows"
    shared = best_thresholds(scores, gold, "shared")
    assert len(set(shared.tolist())) == 1 and 0.6 < shared[0] <= 0.8, "one cut for all: the rare label's row is given up"
    assert validation_score(scores, gold, True) == 1.0 > validation_score(scores, gold, True, "shared") == pytest.approx(6 / 7)
    with pytest.raises(ConfigError, match="eval.threshold_scope='label'.*per_label, shared"):
        load_config(REPO / "training" / "configs" / "sample_tagging_head.yaml", ["eval.threshold_scope=label"])


def test_class_weights_count_rare_labels_up():
    tags = [Encoded([1], row, False) for row in ([1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0])]
    assert class_weights(tags, 2, True, "balanced").tolist() == pytest.approx([1 / 3, 3.0]), "negatives / positives"
    assert class_weights(tags, 2, True, "sqrt").tolist() == pytest.approx([(1 / 3) ** 0.5, 3**0.5])
    assert class_weights(tags, 2, True, "none") is None
    classes = [Encoded([1], label, False) for label in (0, 0, 0, 1, IGNORE_INDEX)]
    # rows / (classes * rows of the class); a class never seen in training keeps weight 1.
    assert class_weights(classes, 3, False, "balanced").tolist() == pytest.approx([4 / 9, 4 / 3, 1.0])


@pytest.mark.parametrize("task", ["category", "tagging"])
def test_head_with_neighbours_and_a_layer_cut(sample_data, tmp_path, task, request):
    if task == "tagging":  # the suite's run of these settings (conftest), shared with tests/test_card_code.py
        run, printed = request.getfixturevalue("tagging_head_with_neighbours_trained")
    else:
        run, printed = train_tiny_printed(
            f"sample_{task}_head.yaml", sample_data / task, tmp_path / "run",
            "references=true", "neighbours.k=5", "lexical.vote=true", "model.num_layers=6", "eval.base=false",
            "train.class_weight=sqrt", "train.head_lr=5e-3",
        )
    assert "UNEXPECTED" not in printed and "newly initialized" not in printed, "no load report about the cut or the new head"
    info = read_run_info(str(run))
    assert info.num_layers == 6 and info.knn_k == 5 and 0.0 <= info.knn_weight + info.lexical_weight <= 1.0
    assert all((run / name).is_file() for name in LEXICAL_FILES), "the lexical vote's model is saved beside the adapter"
    metrics = json.loads((run / METRICS_FILE).read_text())["test"]
    assert ("neighbours_alone" in metrics) == bool(info.knn_weight) and ("lexical_alone" in metrics) == bool(info.lexical_weight)
    if info.knn_weight or info.lexical_weight:
        assert {"head_alone", "adapter", "baseline"} <= set(metrics)
    assert json.loads((run / STATS_FILE).read_text())["lexical_fit_seconds"] > 0
    # A fresh engine loads the same cut and the same index, and answers as the evaluation did.
    engine = Engine.load({"head": str(run)})
    assert engine.model.config.num_hidden_layers == 6
    test = [json.loads(line) for line in (sample_data / task / "test.jsonl").read_text().splitlines()]
    predictions = engine.predict("head", [r["text"] for r in test])
    assert len(predictions) == len(test) and all(p.labels or task == "tagging" for p in predictions)
    if task == "category":
        gold = [" > ".join(r["path"][:2]) for r in test]
        accuracy = np.mean([p.labels[0] == g for p, g in zip(predictions, gold, strict=True)])
        assert accuracy == pytest.approx(metrics["adapter"]["accuracy"])
    check_fast_paths(run, [r["text"] for r in test], predictions)
    check_token_batches_and_neighbours_alone(engine, [r["text"] for r in test], predictions)
    check_lexical_alone(engine, run, [r["text"] for r in test])
    check_report(run, metrics, tmp_path)


def check_token_batches_and_neighbours_alone(engine, texts: list[str], expected: list) -> None:
    """Batches cut by tokens give the row batches' answers; at a neighbours' share of 1 the answer is the
    k-NN vote itself and the model is not run at all (the evaluation's "neighbours alone" row)."""
    by_tokens = engine.predict("head", texts, batch_size=64, batch_tokens=40)
    assert [p.labels for p in by_tokens] == [p.labels for p in expected]
    spec = engine.spec("head")
    # the nearest training examples come with the answer, from the one search the vote uses, whether the
    # caller asks for more of them than the vote takes (7 > k = 5) or fewer (2)
    for k in (7, 2):
        answered = engine.predict("head", texts, references=k)
        assert [p.labels for p in answered] == [p.labels for p in expected]
        searched = spec.neighbours.query(texts, k)
        assert [[r.id for r in p.references] for p in answered] == [[r.id for r in row] for row in searched]
    assert all(p.references == [] for p in expected), "none unless asked for"
    with engine.reusing_passes():  # the evaluation's and the tuning's scorings of one split: one head pass
        engine.predict("head", texts)
        used = engine.tokens_processed
        with vote_shares(spec, knn=0.0, lexical=spec.info.lexical_weight):
            alone = engine.predict("head", texts)
        assert engine.tokens_processed == used and len(alone) == len(texts)
    with vote_shares(spec, knn=1.0, lexical=0.0):
        before = engine.tokens_processed
        alone = engine.predict("head", texts)
        assert engine.tokens_processed == before, "no model pass for the neighbours alone"
    hits = spec.neighbours.query(texts, spec.info.knn_k)
    votes = neighbour_votes(hits, spec.taxonomy, spec.info.label_levels, spec.info.knn_temperature)
    for prediction, row in zip(alone, votes, strict=True):
        assert prediction.scores == pytest.approx({label: float(row[spec.taxonomy.index(label)]) for label in prediction.scores}, abs=1e-5)


@contextmanager
def vote_shares(spec, knn: float, lexical: float):
    """The head's answers with these shares of the neighbours' and the TF-IDF model's votes, inside; the
    tuned shares back after."""
    tuned = spec.info.knn_weight, spec.info.lexical_weight
    spec.info.knn_weight, spec.info.lexical_weight = knn, lexical
    try:
        yield
    finally:
        spec.info.knn_weight, spec.info.lexical_weight = tuned


def check_lexical_alone(engine, run, texts: list[str]) -> None:
    """At a lexical share of 1 the answer is the saved classical model's, without a model pass; shares that sum
    past 1 are refused by name."""
    spec = engine.spec("head")
    with vote_shares(spec, knn=0.0, lexical=1.0):
        before = engine.tokens_processed
        alone = engine.predict("head", texts)
        assert engine.tokens_processed == before, "no model pass for the lexical vote alone"
    with vote_shares(spec, knn=0.5, lexical=1.0), pytest.raises(ValueError, match="knn_weight=0.5 and lexical_weight=1.0"):
        engine.predict("head", texts)
    probs = LexicalModel.load(*(run / name for name in LEXICAL_FILES)).probabilities(texts)
    for prediction, row in zip(alone, probs, strict=True):
        assert prediction.scores == pytest.approx({label: float(row[spec.taxonomy.index(label)]) for label in prediction.scores}, abs=1e-6)


def check_fast_paths(run, texts: list[str], fp32: list) -> None:
    """The CPU speed-ups on a head adapter: merged, it gives the fp32 LoRA engine's answers; in int8 and
    in bf16 (where the CPU computes it natively), merged, every probability stays within 0.02 of fp32's
    (how often the labels stay the same on a real adapter is the benchmark's agreement figure)."""
    paths = [({"merge": True}, 1e-5), ({"merge": True, "quantization": "int8"}, 0.02)]
    if cpu_computes_bf16():
        paths.append(({"merge": True, "quantization": "bf16"}, 0.02))
    for options, tolerance in paths:
        engine = Engine.load({"head": str(run)}, **options)
        assert engine.merged == "head" and engine.model.config.num_hidden_layers == 6
        answers = engine.predict("head", texts)
        pairs = list(zip(answers, fp32, strict=True))
        drift = [abs(a.scores[k] - b.scores[k]) for a, b in pairs for k in set(a.scores) & set(b.scores)]
        assert drift and max(drift) < tolerance, (options, max(drift))
        if "quantization" not in options:
            assert [a.labels for a, _ in pairs] == [b.labels for _, b in pairs]


def check_report(run, metrics: dict, tmp_path) -> None:
    """training.report: the JSON the README's table comes from, with the verdict and the ablation."""
    from training.report import main as report_main

    text = report_main([str(run), "--output", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json"),
                        "--ablation", str(tmp_path / "a.md"), "--shipped", run.name])
    [record] = json.loads((tmp_path / "r.json").read_text())
    keys = {"name", "dataset", "task", "method", "metric", "base", "adapter", "baseline", "train_seconds", "threads", "shipped"}
    assert keys <= set(record) and record["shipped"] is True and record["threads"] >= 1
    headline = record["metric"]
    assert record["adapter"] == metrics["adapter"][headline] and record["baseline"] == metrics["baseline"][headline]
    word = "beats" if record["adapter"] > record["baseline"] else "does not beat"
    assert f"the adapter {word} the baseline on {headline}" in text
    assert run.name in (tmp_path / "a.md").read_text()


def test_time_budget_cuts_the_run_and_says_so(head_cut_by_time):
    run = head_cut_by_time  # conftest: max_steps=200, max_minutes=0.0001, batch_tokens=64
    stats = json.loads((run / STATS_FILE).read_text())
    # how the run used its device (training.plan), recorded with the run: on CPU the fp32 path, nothing recomputed
    assert stats["batch_tokens"] == 64 and stats["mixed_precision"] == "no" and stats["optimizer"] == "adamw"
    assert stats["gradient_checkpointing"] is False and "not weighed on cpu" in stats["gradient_checkpointing_reason"]
    assert stats["cut_by_time"] is True and stats["max_minutes"] == 0.0001
    assert stats["optimizer_steps"] < 200
    assert any("eval_loss" in entry for entry in stats["log_history"]), "the cut run is validated once"
    assert (run / COMPLETE_MARKER).is_file()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method=generate", "model.num_layers=6"], "only applies to method='head'"),
        (["neighbours.k=5", "references=false"], "needs method='head' and references: true"),
        (["model.num_layers=-1"], r"must be 0 \(off\) or positive"),
        (["method=generate", "train.head_lr=0.01"], "train.head_lr=0.01 only applies to method='head'"),
        (["method=generate", "train.class_weight=sqrt"], "train.class_weight='sqrt' only applies to method='head'"),
        (["train.class_weight=inverse"], "train.class_weight='inverse' is not allowed; choose one of: none, sqrt, balanced"),
    ],
)
def test_lever_settings_are_checked(sample_data, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"data.path={sample_data / 'category'}", "task=category", "method=head", *overrides])
