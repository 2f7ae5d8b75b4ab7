"""The description head (catalog_lora.choice): its input, its training target, a really trained adapter
choosing among its nearest training descriptions in the engine, the Space's stream and the config's rules."""

from __future__ import annotations

import json

import pytest
import sacrebleu
from conftest import train_tiny

from catalog_lora.base_model import load_tokenizer
from catalog_lora.choice import CANDIDATE_TOKENS, choice_input, slot_labels
from catalog_lora.engine import Engine
from catalog_lora.prompts import CUT_MARK, Example
from catalog_lora.run_files import read_run_info
from training.config import ConfigError, load_config
from training.data import encode_choice

LONG = "Rolled oats for a warm breakfast porridge, rich in fibre and slow to digest. " * 4
OATS = {"brand": "Saffola", "category": "Foodgrains"}


def test_choice_input_shows_the_product_then_each_candidate_on_a_line():
    tokenizer = load_tokenizer("embedded")
    candidates = [Example("Oats 500 g", LONG, OATS), Example("Muesli 1 kg", "Crunchy flakes.", {"brand": "Kellogg's"})]
    text, cut = choice_input("Oats 1 kg", OATS, candidates, tokenizer, 256, ["brand"])
    lines = text.split("\n")
    assert not cut and len(lines) == 3
    assert lines[0] == "Product: Oats 1 kg [Saffola]", "only the attributes named are shown"
    assert lines[1].startswith("1. Oats 500 g [Saffola] Rolled oats") and lines[1].endswith(CUT_MARK)
    shown = lines[1].removeprefix("1. Oats 500 g [Saffola] ").removesuffix(CUT_MARK)
    assert len(tokenizer.encode(shown, add_special_tokens=False)) <= CANDIDATE_TOKENS + 1
    assert lines[2] == "2. Muesli 1 kg [Kellogg's] Crunchy flakes.", "a short description is shown whole, uncut"
    every, _ = choice_input("Oats 1 kg", OATS, candidates[:1], tokenizer, 256)
    assert every.startswith("Product: Oats 1 kg [Saffola / Foodgrains]\n"), "no keys named: every attribute"
    short, cut = choice_input("Oats 1 kg", None, candidates, tokenizer, 12)
    assert cut and short.startswith("Product: Oats 1 kg\n") and len(tokenizer.encode(short, add_special_tokens=False)) <= 12
    with pytest.raises(ValueError, match="k=1"):
        slot_labels(1)


def test_the_target_is_the_candidate_closest_to_the_true_description():
    tokenizer = load_tokenizer("embedded")
    record = {"id": "x", "text": "Oats 1 kg", "description": "Rolled oats for a warm breakfast porridge.", "attributes": OATS}
    candidates = [Example("Muesli", "Crunchy flakes with nuts."), Example("Oats 500 g", "Rolled oats for a warm porridge.")]
    encoded = encode_choice(record, candidates, tokenizer, 256)
    closeness = [sacrebleu.sentence_chrf(c.answer, [record["description"]]).score for c in candidates]
    assert encoded.labels == 1 and closeness[1] > closeness[0]
    assert tokenizer.decode(encoded.input_ids) == choice_input("Oats 1 kg", OATS, candidates, tokenizer, 256)[0]


def test_config_needs_candidates_for_a_description_head(sample_data):
    base = [f"data.path={sample_data / 'description'}", "task=description", "method=head"]
    with pytest.raises(ConfigError, match="prompt_examples.*at least 2, got 0"):
        load_config(None, [*base, "references=true"])
    with pytest.raises(ConfigError, match="references: true"):
        load_config(None, [*base, "model.prompt_examples=3"])
    with pytest.raises(ConfigError, match="choice_attributes"):
        load_config(None, [f"data.path={sample_data / 'category'}", "task=category", "method=head", "model.choice_attributes=[brand]"])
    config = load_config(None, [*base, "references=true", "model.prompt_examples=3", "model.choice_attributes=[brand]"])
    assert config.model.choice_attributes == ["brand"]


def test_a_description_head_answers_with_one_of_its_nearest_training_descriptions(sample_data, tmp_path):
    run = train_tiny(
        "bigbasket_description_head.yaml", sample_data / "description", tmp_path / "run",
        "model.prompt_examples=3", "model.num_layers=4", "train.max_minutes=0",
    )
    info = read_run_info(str(run))
    assert (info.method, info.task, info.labels, info.num_labels) == ("head", "description", ["1", "2", "3"], 3)
    assert info.choice_attributes == ["brand"] and info.review_threshold is None
    test = [json.loads(line) for line in (sample_data / "description" / "test.jsonl").read_text().splitlines()]
    engine = Engine.load({"describe": str(run)})
    spec = engine.spec("describe")
    shown = spec.examples([r["text"] for r in test])
    assert all(len(candidates) == 3 for candidates in shown)
    for record, candidates in zip(test, shown, strict=True):
        prompt, _ = engine.prompt_for(spec, record["text"], record["attributes"])
        assert prompt == choice_input(record["text"], record["attributes"], candidates, engine.tokenizer, info.max_length, ["brand"])[0]
    predictions = engine.predict("describe", [r["text"] for r in test], [r["attributes"] for r in test])
    for prediction, candidates in zip(predictions, shown, strict=True):
        assert prediction.error is None and prediction.text in [c.answer for c in candidates]
        assert len(prediction.scores) == 3 and sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-5)
        (chosen, probability), = prediction.confidence.items()
        assert probability == max(prediction.scores.values()) and candidates[int(chosen.split(".")[0]) - 1].answer == prediction.text
    # The Space's Describe tab streams: a head's description comes whole, the same as predict's.
    assert list(engine.stream("describe", test[0]["text"], test[0]["attributes"])) == [predictions[0].text]
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert {"base", "adapter", "baseline"} <= set(metrics) and metrics["adapter"]["n"] == 6  # TINY: max_eval_examples=6
