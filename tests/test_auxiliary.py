"""A head that learns labels beside its own, as extra outputs in the loss only, dropped before the adapter is
scored and saved: a tag head a second tag field (``data.auxiliary_field``; the real body-wash reviews, Level 1
tags answered, the finer Level 2 factors beside), a category head the path at another depth
(``data.auxiliary_levels``; the real Instacart products, departments answered, aisles beside)."""

from __future__ import annotations

import re

import pytest
from conftest import shared_file, train_tiny_printed
from safetensors.torch import load_file

from catalog_lora.inference.engine import Engine
from catalog_lora.model.base_model import load_tokenizer
from catalog_lora.records.dataset_files import load_split
from catalog_lora.records.task_spec import TaskSpec
from catalog_lora.runs.folder import read_run_info
from model_cards.card import render_adapter_card
from training.config import ConfigError, load_config
from training.data import encode_head
from training.report import run_record

CONFIG = "training/configs/bodywash_l1_head.yaml"


@pytest.fixture(scope="module")
def bodywash(tmp_path_factory):
    """The real body-wash reviews with Level 1 and Level 2 tags, prepared as the shipped config's data."""
    from datasets_prep.prepare import main as prepare

    out = tmp_path_factory.mktemp("bodywash") / "bodywash"
    prepare(["--format", "bodywash", "--input", str(shared_file("bodywash/bodywash-train_L1_L2.DERIVED.csv")), "--output", str(out)])
    return out


def saved_head_answers(run, labels: list[str], data) -> list:
    """The saved head has one output per label it answers (the card's plain transformers + peft code loads it as
    is), and the engine answers six test rows with it."""
    head = {k: v.shape for k, v in load_file(run / "adapter_model.safetensors").items() if ".score." in k}
    assert head and all(shape[0] == len(labels) for shape in head.values()), head
    engine = Engine.load({"head": str(run)}, quantization="none")
    texts = [r["text"] for r in load_split(data, "test")[:6]]
    answers = engine.predict("head", texts)
    assert len(answers) == len(texts)
    return answers


def test_the_auxiliary_tags_follow_the_heads_own_in_its_target(bodywash):
    train = load_split(bodywash, "train")
    level1, level2 = TaskSpec("tagging"), TaskSpec("tagging", label_field="labels_l2")
    own, extra = level1.taxonomy(train), level2.taxonomy(train)
    record = next(r for r in train if r["labels"] and r["labels_l2"])
    encoded = encode_head(record, own, load_tokenizer("embedded"), level1, 128, (level2, extra))
    assert len(encoded.labels) == len(own) + len(extra)
    assert [own.labels[i] for i, v in enumerate(encoded.labels[: len(own)]) if v] == [t for t in own.labels if t in record["labels"]]
    assert {extra.labels[i] for i, v in enumerate(encoded.labels[len(own) :]) if v} == set(record["labels_l2"])


def test_a_head_trained_with_auxiliary_tags_saves_and_answers_its_own(bodywash, tmp_path):
    run, printed = train_tiny_printed(
        "bodywash_l1_head.yaml", bodywash, tmp_path / "run", "data.auxiliary_field=labels_l2", "data.max_train_examples=48",
        "model.num_layers=2", "eval.base=false", "neighbours.k=5", "train.max_minutes=0",
    )
    info = read_run_info(str(run))
    level2 = TaskSpec("tagging", label_field="labels_l2").taxonomy(load_split(bodywash, "train")[:48])
    assert f"Auxiliary outputs: {len(level2)} labels_l2 tags beside the head's {len(info.labels)}, for the loss only." in printed
    answers = saved_head_answers(run, info.labels, bodywash)
    assert all(set(p.scores) == set(info.labels) for p in answers)
    card = render_adapter_card(run, "catalog-lora/bodywash-aux").text
    assert "trained with the `labels_l2` tags of the same examples as extra outputs beside its own" in card
    record = run_record(run, False)
    assert "(`data.auxiliary_field`, their loss weighed 0.3 against the head's own)" in card
    assert record["auxiliary_field"] == "labels_l2" and record["auxiliary_weight"] == 0.3
    assert "(learning labels_l2 beside at weight 0.3)" in record["method"]


def test_the_auxiliary_loss_is_added_at_its_weight(bodywash):
    """The head's own BCE plus ``train.auxiliary_weight`` times the auxiliary outputs' own mean BCE, so ~105 Level 2
    factors do not outweigh 25 Level 1 tags; weight 0 leaves the head's own loss. Validations see the head's own."""
    import torch

    from catalog_lora.model.base_model import load_base_model
    from training.data import Collator, HeadLoss, head_loss
    from training.fit import own_outputs

    train = load_split(bodywash, "train")[:8]
    level1, level2 = TaskSpec("tagging"), TaskSpec("tagging", label_field="labels_l2")
    own, extra = level1.taxonomy(train), level2.taxonomy(train)
    model, tokenizer, _ = load_base_model("embedded", "none", "cpu", len(own) + len(extra), "multi_label_classification", 2)
    batch = Collator(tokenizer.pad_token_id, classification=True, multi_label=True)(
        [encode_head(r, own, tokenizer, level1, 64, (level2, extra)) for r in train]
    )
    with torch.no_grad():
        losses = {w: float(head_loss(model, batch, HeadLoss(None, len(own), w))) for w in (0.0, 0.3, 1.0)}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    own_loss = float(bce(logits[:, : len(own)], batch["labels"][:, : len(own)]))
    extra_loss = float(bce(logits[:, len(own) :], batch["labels"][:, len(own) :]))
    assert losses[0.0] == pytest.approx(own_loss, rel=1e-5)
    assert losses[0.3] == pytest.approx(own_loss + 0.3 * extra_loss, rel=1e-5)
    assert losses[1.0] == pytest.approx(own_loss + extra_loss, rel=1e-5)
    # a validation during training scores the head's own outputs only, as the engine reads a saved head
    with torch.no_grad(), own_outputs(model, len(own)):
        narrowed = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert narrowed.shape[-1] == len(own) and torch.allclose(narrowed, logits[:, : len(own)])
    with torch.no_grad():
        assert model(input_ids=batch["input_ids"][:1], attention_mask=batch["attention_mask"][:1]).logits.shape[-1] == len(own) + len(extra)


@pytest.fixture(scope="module")
def instacart(tmp_path_factory):
    """The real Instacart products (department > aisle), prepared as the shipped department head's data."""
    from datasets_prep.prepare import main as prepare

    out = tmp_path_factory.mktemp("instacart") / "instacart"
    source = shared_file("instacart/products_19k.DERIVED_clean_with_names.csv")
    prepare(["--format", "instacart", "--input", str(source), "--output", str(out)])
    return out


def test_a_category_heads_target_pairs_its_category_with_the_deeper_path(instacart):
    train = load_split(instacart, "train")
    department, aisle = TaskSpec("category", 1), TaskSpec("category", 2)
    own, extra = department.taxonomy(train), aisle.taxonomy(train)
    record = train[0]
    encoded = encode_head(record, own, load_tokenizer("embedded"), department, 48, (aisle, extra))
    assert encoded.labels == [own.index(record["path"][0]), extra.index(" > ".join(record["path"][:2]))]


def test_a_category_head_trained_with_the_deeper_path_saves_and_answers_its_own(instacart, tmp_path):
    run, printed = train_tiny_printed(
        "instacart_department_head.yaml", instacart, tmp_path / "run", "data.auxiliary_levels=2",
        "data.max_train_examples=64", "data.max_eval_examples=48", "model.num_layers=2", "eval.base=false",
        "train.max_minutes=0", "train.class_weight=sqrt",
    )
    info = read_run_info(str(run))
    aisles = TaskSpec("category", 2).taxonomy(load_split(instacart, "train")[:64])
    assert f"Auxiliary outputs: {len(aisles)} categories at levels=2 beside the head's {len(info.labels)}, for the loss only." in printed
    answers = saved_head_answers(run, info.labels, instacart)
    assert all(p.labels[0] in info.labels for p in answers)
    card = render_adapter_card(run, "catalog-lora/instacart-aux").text
    assert "trained with the categories at 2 levels of the path of the same examples as extra outputs" in card
    assert "(`data.auxiliary_levels`, their loss weighed 0.3 against the head's own)" in card
    record = run_record(run, False)
    assert record["auxiliary_levels"] == 2 and record["auxiliary_field"] is None
    assert "(learning the path at levels=2 beside at weight 0.3)" in record["method"]


CONFIGS = {"bodywash": CONFIG, "instacart": "training/configs/instacart_department_head.yaml"}


@pytest.mark.parametrize(
    ("dataset", "overrides", "message"),
    [
        ("bodywash", ["data.auxiliary_field=labels_l2", "task=category", "data.label_levels=1"], "needs task 'tagging', method 'head'"),
        ("bodywash", ["data.auxiliary_field=labels"], "other than data.label_field='labels'"),
        ("bodywash", ["data.auxiliary_field=labels_l2", "method=generate"], "got task='tagging', method='generate'"),
        ("bodywash", ["data.auxiliary_field=tags"], "data.auxiliary_field='tags'"),
        ("instacart", ["data.auxiliary_levels=2", "data.label_levels=2"], "data.auxiliary_levels=2 adds the category path at another depth"),
        ("instacart", ["data.auxiliary_levels=2", "data.label_levels=0"], "data.label_levels=0"),
        ("instacart", ["data.auxiliary_levels=2", "method=generate"], "got task='category', method='generate'"),
        ("instacart", ["data.auxiliary_levels=-1"], "data.auxiliary_levels"),
    ],
)
def test_auxiliary_outputs_refuse_what_they_cannot_do(request, dataset, overrides, message):
    from conftest import REPO

    base = [f"data.path={request.getfixturevalue(dataset)}", "neighbours.k=0", "lexical.vote=false"]
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(REPO / CONFIGS[dataset], [*base, *overrides])


def test_the_auxiliary_categories_loss_is_added_at_its_weight(instacart):
    """The head's cross-entropy (with its class weights) plus ``train.auxiliary_weight`` times the aisles' own."""
    import torch

    from catalog_lora.model.base_model import load_base_model
    from training.data import Collator, HeadLoss, class_weights, head_loss

    train = load_split(instacart, "train")[:8]
    department, aisle = TaskSpec("category", 1), TaskSpec("category", 2)
    own, extra = department.taxonomy(train), aisle.taxonomy(train)
    model, tokenizer, _ = load_base_model("embedded", "none", "cpu", len(own) + len(extra), "single_label_classification", 2)
    encoded = [encode_head(r, own, tokenizer, department, 48, (aisle, extra)) for r in train]
    batch = Collator(tokenizer.pad_token_id, classification=True)(encoded)
    weights = class_weights(encoded, len(own), False, "balanced")
    assert batch["labels"].shape == (8, 2) and weights.shape == (len(own),)
    with torch.no_grad():
        losses = {w: float(head_loss(model, batch, HeadLoss(weights, len(own), w))) for w in (0.0, 0.3)}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ce = torch.nn.functional.cross_entropy
    own_loss = float(ce(logits[:, : len(own)], batch["labels"][:, 0], weight=weights))
    extra_loss = float(ce(logits[:, len(own) :], batch["labels"][:, 1]))
    assert losses[0.0] == pytest.approx(own_loss, rel=1e-5)
    assert losses[0.3] == pytest.approx(own_loss + 0.3 * extra_loss, rel=1e-5)
