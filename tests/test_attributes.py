"""A tag or category adapter reads the attributes its training records carry (BigBasket's brand) beside the
text: in its prompt, in its neighbours' search and in its classical model's input, ``title [brand]``; the TF-IDF
baseline it is compared with reads the same. ``data.attributes: false`` is the text alone; an adapter trained on
the text alone ignores attributes it is given."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from catalog_lora.inference.engine import Engine
from catalog_lora.records.dataset_files import load_split
from catalog_lora.records.labels import Taxonomy
from catalog_lora.records.prompts import select_attributes, vote_text
from catalog_lora.runs.folder import METRICS_FILE, TAXONOMY_FILE, read_run_info
from model_cards.card import render_adapter_card
from training.config import ConfigError, load_config
from training.data import drop_attributes, read_config_splits, run_attributes, vote_texts
from training.evaluate import evaluate_baseline, score
from training.evaluate import main as evaluate
from training.report import run_record

CONFIG = "training/configs/sample_category_head.yaml"


def test_select_attributes_keeps_the_adapters_own_in_its_order():
    given = {"color": "red", "brand": "  Acme\nFoods ", "size": ""}
    assert select_attributes(given, ["size", "brand"]) == {"brand": "Acme Foods"}
    assert select_attributes(given, []) is None and select_attributes(None, ["brand"]) is None
    assert vote_text("Oats  1 kg", {"brand": "Saffola"}) == "Oats 1 kg [Saffola]"
    assert vote_text("Oats  1 kg", None) == "Oats  1 kg"  # the text as given: the title-only votes unchanged


@pytest.mark.parametrize("keep", [True, False])
def test_a_run_reads_the_attributes_of_its_training_split_unless_switched_off(branded_category_data, keep):
    from conftest import REPO

    config = load_config(REPO / CONFIG, [f"data.path={branded_category_data}", f"data.attributes={str(keep).lower()}"])
    splits = read_config_splits(config)
    train = splits["train"]
    assert run_attributes(train, "category") == (["brand"] if keep else [])
    carried = [r["attributes"] for r in train if r.get("attributes")]
    if keep:
        assert carried and all(list(a) == ["brand"] for a in carried)
        assert vote_texts(train, ["brand"])[: len(train)] == [vote_text(r["text"], r.get("attributes")) for r in train]
    else:
        assert carried == [] and vote_texts(train, []) == [r["text"] for r in train]


def test_attribute_dropout_leaves_the_attributes_out_of_a_seeded_share_of_the_training_examples(branded_category_data):
    from conftest import REPO

    config = load_config(REPO / CONFIG, [f"data.path={branded_category_data}", "data.attribute_dropout=0.5"])
    train = read_config_splits(config)["train"]
    before = [dict(r) for r in train]
    dropped = drop_attributes(train, config.data.attribute_dropout, config.train.seed)
    assert train == before, "the records themselves are left as they are (the votes and the index read them)"
    assert dropped == drop_attributes(train, 0.5, config.train.seed) != drop_attributes(train, 0.5, config.train.seed + 1)
    assert [(r["id"], r["text"], r["path"]) for r in dropped] == [(r["id"], r["text"], r["path"]) for r in train]
    left_out = sum(1 for old, new in zip(train, dropped, strict=True) if old.get("attributes") and "attributes" not in new)
    branded = sum(1 for r in train if r.get("attributes"))
    assert 0.3 * branded < left_out < 0.7 * branded
    assert drop_attributes(train, 0.0, config.train.seed) is train


def test_an_adapter_trained_with_attribute_dropout_says_so(branded_category_data, tmp_path):
    """Trained with the brand left out of 30% of its examples, the head still reads it when given (the scores
    move), and its card and its row in training.report say how it was trained."""
    from conftest import train_tiny

    run = train_tiny(
        "sample_category_head.yaml", branded_category_data, tmp_path / "run", "model.num_layers=2", "eval.base=false",
        "data.attribute_dropout=0.3",
    )
    assert load_config(run / "config.yaml").data.attribute_dropout == 0.3
    assert read_run_info(str(run)).attributes == ["brand"]
    engine = Engine.load({"category": str(run)}, quantization="none")
    test = [r for r in load_split(branded_category_data, "test") if r.get("attributes")]
    texts = [r["text"] for r in test]
    with_brand = engine.predict("category", texts, [r["attributes"] for r in test], top_k=3)
    assert [p.scores for p in with_brand] != [p.scores for p in engine.predict("category", texts, top_k=3)]
    card = render_adapter_card(run, "catalog-lora/category-head-dropout").text
    assert "trained with it left out of 30% of its training examples (`data.attribute_dropout`)" in card
    record = run_record(run, False)
    assert record["attribute_dropout"] == 0.3 and record["method"] == "head reading brand (30% of training without)"
    assert record["attributes"] == record["reads"] == ["brand"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.attribute_dropout=0.3", "data.attributes=false"], "needs data.attributes: true"),
        (["data.attribute_dropout=1"], "data.attribute_dropout=1.0 is out of range"),
        (["data.attribute_dropout=-0.1"], "data.attribute_dropout=-0.1 is out of range"),
    ],
)
def test_attribute_dropout_refuses_what_it_cannot_do(branded_category_data, overrides, message):
    from conftest import REPO

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(REPO / CONFIG, [f"data.path={branded_category_data}", *overrides])


def test_a_category_head_reads_the_brand_in_its_prompt_and_its_votes(category_head_with_brand, branded_category_data):
    run = category_head_with_brand
    info = read_run_info(str(run))
    assert info.attributes == ["brand"]
    engine = Engine.load({"category": str(run)}, quantization="none")
    spec = engine.spec("category")
    text = "Cheddarworth Feta Cubes in Brine, 200 g"
    prompt, _ = engine.prompt_for(spec, text, {"color": "white", "brand": "Cheddarworth"})
    assert prompt.endswith("\nAttributes: brand: Cheddarworth") and "color" not in prompt
    assert "Attributes" not in engine.prompt_for(spec, text, None)[0]
    assert spec.neighbours.key_attributes == ["brand"]  # searched by `title [brand]`

    test = load_split(branded_category_data, "test")
    texts, attributes = [r["text"] for r in test], [r.get("attributes") for r in test]
    with_brand = engine.predict("category", texts, attributes, top_k=3)
    without = engine.predict("category", texts, top_k=3)
    assert [p.scores for p in with_brand] != [p.scores for p in without], "the brand should move the scores"

    # the baseline in metrics.json read `title [brand]` too: refitted so, it scores the same
    train, validation = load_split(branded_category_data, "train"), load_split(branded_category_data, "validation")
    labels = Taxonomy.load(run / TAXONOMY_FILE).labels
    reported = json.loads((run / METRICS_FILE).read_text())["test"]["baseline"]
    config = load_config(run / "config.yaml")
    test = test[: config.data.max_eval_examples] if config.data.max_eval_examples else test
    validation = validation[: config.data.max_eval_examples] if config.data.max_eval_examples else validation
    refitted = evaluate_baseline(train, test, info.spec, labels, config.train.seed, validation, attributes=["brand"])
    assert refitted["accuracy"] == reported["accuracy"] and refitted["settings"] == reported["settings"]

    # the evaluation also scored the adapter given the titles alone: what a user who passes no brand gets
    alone = json.loads((run / METRICS_FILE).read_text())["test"]["without_attributes"]
    titles_only = engine.predict("category", [r["text"] for r in test], batch_size=config.eval.batch_size)
    assert alone["n"] == len(test) and alone["accuracy"] == score(info.spec, test, titles_only, labels)["accuracy"]
    card = render_adapter_card(run, "catalog-lora/category-head-brand").text
    assert "| this adapter given the text alone |" in card and "what a user who leaves it out gets" in card
    assert "`data.attribute_dropout`" not in card and run_record(run, False)["attribute_dropout"] == 0.0


def test_evaluating_a_finished_run_again_gives_its_rows_and_keeps_those_skipped(category_head_with_brand, tmp_path):
    """``training.evaluate`` on a finished run reads its splits as its training did (capped, with the brand) and
    scores the same rows again; a row it is told to skip keeps its earlier value."""
    run = tmp_path / "run"
    shutil.copytree(category_head_with_brand, run)
    before = json.loads((run / METRICS_FILE).read_text())["test"]
    evaluate(["--adapter", str(run), "--no-baseline"])
    after = json.loads((run / METRICS_FILE).read_text())["test"]
    assert after["baseline"] == before["baseline"]
    assert {"adapter", "head_alone", "without_attributes"} <= set(before)
    for system in set(before) - {"baseline"}:  # the parts the mix has (a share of 0 chosen on validation: none)
        assert after[system]["n"] == before[system]["n"] and after[system]["accuracy"] == before[system]["accuracy"], system


def test_an_adapter_trained_on_the_text_alone_ignores_attributes(head_cut_by_time):
    engine = Engine.load({"category": str(head_cut_by_time)}, quantization="none")
    spec = engine.spec("category")
    assert spec.info.attributes == []
    text = "Cheddarworth Feta Cubes in Brine, 200 g"
    assert engine.prompt_for(spec, text, {"brand": "Cheddarworth"}) == engine.prompt_for(spec, text)
    scores = [p.scores for p in engine.predict("category", [text, text], [{"brand": "Cheddarworth"}, None], top_k=3)]
    assert scores[0] == scores[1]
    assert "without_attributes" not in json.loads((head_cut_by_time / METRICS_FILE).read_text())["test"]
