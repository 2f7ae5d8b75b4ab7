"""The description head (catalog_lora.inference.choice): its input, its training target, a references index searched
by title and brand, a really trained adapter choosing among its nearest training descriptions in the
engine, the Space's stream, the config's rules, and ``training.tune`` switching its candidates between the
references index's and those pooled with the TF-IDF search's."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import sacrebleu
import torch

from catalog_lora.inference.choice import (
    CANDIDATE_TOKENS,
    NO_POSITION,
    candidate_scores,
    choice_input,
    choice_lines,
    encode_lines,
    fit_lines,
)
from catalog_lora.inference.engine import Engine
from catalog_lora.inference.votes import WEIGHT_GRID
from catalog_lora.model.base_model import load_base_model, load_tokenizer
from catalog_lora.records.dataset_files import attribute_keys, load_split
from catalog_lora.records.prompts import CUT_MARK, Example, with_attribute_values
from catalog_lora.retrieval.references import build_index
from catalog_lora.runs.folder import COMPLETE_MARKER, CONFIG_FILE, METRICS_FILE, SEARCH_FILES, RunInfo, read_run_info
from model_cards.card import render_adapter_card
from training.baseline import TfidfBaseline
from training.config import ConfigError, load_config
from training.data import encode_choice
from training.evaluate import baseline_attributes, evaluate_baseline
from training.metrics import description_metrics
from training.report import run_record
from training.train import shown_examples
from training.tune import main as tune_main
from training.tuning import fit_search

LONG = "Rolled oats for a warm breakfast porridge, rich in fibre and slow to digest. " * 4
OATS = {"brand": "Saffola", "category": "Foodgrains"}
CANDIDATES = [
    Example("Oats 500 g", LONG, OATS),
    Example("Muesli 1 kg", "Crunchy\nflakes.", {"brand": "Kellogg's", "category": "Breakfast"}),
]


def test_the_input_shows_the_product_then_each_candidate_on_a_line():
    tokenizer = load_tokenizer("embedded")
    lines = choice_lines("Oats 1 kg", OATS, CANDIDATES, tokenizer, ["brand"])
    assert lines[0] == "Product: Oats 1 kg [Saffola]", "only the attributes named are shown"
    assert lines[1].startswith("1. Oats 500 g [Saffola] Rolled oats") and lines[1].endswith(CUT_MARK)
    shown = lines[1].removeprefix("1. Oats 500 g [Saffola] ").removesuffix(CUT_MARK)
    assert len(tokenizer.encode(shown, add_special_tokens=False)) <= CANDIDATE_TOKENS + 1
    assert lines[2] == "2. Muesli 1 kg [Kellogg's] Crunchy flakes.", "a short description whole, on one line"
    every = choice_lines("Oats 1 kg", OATS, CANDIDATES[:1], tokenizer)
    assert every[0] == "Product: Oats 1 kg [Saffola / Foodgrains]", "no keys named: every attribute"

    ids, positions = encode_lines(lines, tokenizer)
    newline = tokenizer.encode("\n", add_special_tokens=False)
    assert len(positions) == 2 and ids[positions[0] + 1 : positions[0] + 1 + len(newline)] == newline
    assert positions[-1] == len(ids) - 1, "the head reads each candidate at its line's last token"
    text, cut = choice_input("Oats 1 kg", OATS, CANDIDATES, tokenizer, 256, ["brand"])
    assert not cut and text.split("\n") == lines


def test_candidates_that_do_not_fit_are_left_out_whole():
    tokenizer = load_tokenizer("embedded")
    lines = choice_lines("Oats 1 kg", OATS, CANDIDATES, tokenizer, ["brand"])
    sizes = [len(tokenizer.encode(line, add_special_tokens=False)) for line in lines]
    newline = len(tokenizer.encode("\n", add_special_tokens=False))
    kept, ids, positions, cut = fit_lines(lines, tokenizer, sizes[0] + newline + sizes[1] + 2)
    assert cut and kept == lines[:2], "the second candidate does not fit, the first does"
    assert (ids, positions) == encode_lines(kept, tokenizer), "the ids of the lines kept, tokenized once"
    long_title, _, _, cut = fit_lines(["Product: " + "very " * 300, lines[1]], tokenizer, 64)
    assert cut and len(long_title) == 2, "a long title keeps half the window, a candidate the rest"
    assert len(tokenizer.encode(long_title[0], add_special_tokens=False)) <= 33


def test_the_target_shares_go_to_the_candidates_closest_to_the_true_description():
    tokenizer = load_tokenizer("embedded")
    record = {"id": "x", "text": "Oats 1 kg", "description": "Rolled oats for a warm breakfast porridge.", "attributes": OATS}
    candidates = [Example("Muesli", "Crunchy flakes with nuts."), Example("Oats 500 g", "Rolled oats for a warm porridge.")]
    encoded = encode_choice(record, candidates, tokenizer, 256)
    closeness = [sacrebleu.sentence_chrf(c.answer, [record["description"]]).score for c in candidates]
    assert closeness[1] - closeness[0] > 20 and encoded.labels[1] > 0.95, "a clearly closer candidate takes nearly all"
    assert sum(encoded.labels) == pytest.approx(1.0)
    twins = encode_choice(record, [candidates[1], candidates[1], candidates[0]], tokenizer, 256).labels
    assert twins[0] == pytest.approx(twins[1]) and twins[2] < 0.05, "two equal descriptions share alike"
    lines = choice_lines("Oats 1 kg", OATS, candidates, tokenizer)
    assert (encoded.input_ids, encoded.positions) == encode_lines(lines, tokenizer)


def test_each_candidate_is_scored_at_the_end_of_its_line_in_one_forward_pass():
    model, tokenizer, _ = load_base_model("embedded", "none", num_labels=1, problem_type="single_label_classification", num_layers=2)
    model.config.pad_token_id = tokenizer.pad_token_id
    lines = choice_lines("Oats 1 kg", OATS, CANDIDATES, tokenizer)
    ids, positions = encode_lines(lines, tokenizer)
    padded = torch.tensor([ids + [tokenizer.pad_token_id] * 3])
    mask = torch.tensor([[1] * len(ids) + [0] * 3])
    with torch.no_grad():
        scores = candidate_scores(model, padded, mask, torch.tensor([positions + [NO_POSITION]]))
        hidden = model(input_ids=padded, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        expected = model.score(hidden[0, positions]).squeeze(-1)
    assert scores.shape == (1, 3) and scores[0, 2] == float("-inf"), "a place without a candidate never wins"
    torch.testing.assert_close(scores[0, :2], expected)


def test_an_index_keyed_on_attributes_finds_the_same_brand(tmp_path):
    records = [
        {"id": "a", "text": "Green Tea 100 bags", "description": "A.", "attributes": {"brand": "Lipton"}},
        {"id": "b", "text": "Green Tea 100 bags", "description": "B.", "attributes": {"brand": "Tetley"}},
    ]
    with build_index(records, tmp_path / "keyed", "description", progress=False, key_attributes=["brand"]) as index:
        assert index.key_attributes == ["brand"]
        for brand, answer in (("Tetley", "B."), ("Lipton", "A.")):
            (best, _), = index.query(["Green Tea 25 bags"], 2, [{"brand": brand}])
            assert best.answer == answer and best.attributes == {"brand": brand}
    with build_index(records, tmp_path / "plain", "description", progress=False) as index:
        assert index.key_attributes is None
        hits = index.query(["Green Tea 25 bags"], 2, [{"brand": "Tetley"}])[0]
        assert hits[0].score == pytest.approx(hits[1].score, abs=1e-5), "an index on titles alone ignores attributes"


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


@pytest.fixture(scope="module")
def choice_run(description_choice) -> Path:
    """A description head really trained on the sample catalog (conftest): 3 candidates, the first 4 layers."""
    return description_choice


def test_a_description_head_answers_with_one_of_its_nearest_training_descriptions(choice_run, sample_data):
    run = choice_run
    info = read_run_info(str(run))
    assert (info.method, info.task, info.num_labels, info.prompt_examples) == ("head", "description", 1, 3)
    assert info.choice_attributes == ["brand"] and info.knn_weight in WEIGHT_GRID, "the nearest's share is tuned"
    assert info.choice_search == "pooled", "as shipped: the TF-IDF search's candidates pooled with the index's"
    test = [json.loads(line) for line in (sample_data / "description" / "test.jsonl").read_text().splitlines()]
    texts, attributes = [r["text"] for r in test], [r["attributes"] for r in test]
    engine = Engine.load({"describe": str(run)})
    spec = engine.spec("describe")
    shown = spec.examples(texts, attributes)
    assert all(2 <= len(candidates) <= 4 for candidates in shown), "the first 2 of each search, each description once"
    assert shown != spec.examples(texts), "the candidates are searched with the product's brand"
    for record, candidates in zip(test, shown, strict=True):
        prompt, _ = engine.prompt_for(spec, record["text"], record["attributes"])
        assert prompt == choice_input(record["text"], record["attributes"], candidates, engine.tokenizer, info.max_length, ["brand"])[0]
    predictions = engine.predict("describe", texts, attributes)
    for prediction, candidates in zip(predictions, shown, strict=True):
        assert prediction.error is None and prediction.text in [c.answer for c in candidates]
        assert len(prediction.scores) == len(candidates) and sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-5)
        (chosen, probability), = prediction.confidence.items()
        assert probability == max(prediction.scores.values()) and candidates[int(chosen.split(".")[0]) - 1].answer == prediction.text
    # The Space's Describe tab streams: a head's description comes whole, the same as predict's.
    assert list(engine.stream("describe", texts[0], attributes[0])) == [predictions[0].text]
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert {"base", "head_alone", "neighbours_alone", "adapter", "baseline"} <= set(metrics)
    assert metrics["adapter"]["n"] == 6  # TINY: max_eval_examples=6
    nearest = [candidates[0].answer for candidates in shown[:6]]
    assert metrics["neighbours_alone"]["chrf"] == pytest.approx(description_metrics([r["description"] for r in test[:6]], nearest)["chrf"])
    # its baseline reads the same input: the nearest training title by TF-IDF, each title with its brand
    folder = sample_data / "description"
    same_input = evaluate_baseline(
        load_split(folder, "train"), test[:6], info.spec, None, 42, load_split(folder, "validation")[:6], attributes=["brand"]
    )
    assert metrics["baseline"]["chrf"] == pytest.approx(same_input["chrf"])
    record = run_record(run, False)  # the report says what the two read, though the head has no data.attributes
    assert record["reads"] == ["brand"] and record["attributes"] == []
    nearest_first = {metric: metrics["neighbours_alone"][metric] for metric in ("rougeL", "chrf", "bleu")}
    assert nearest_first == {metric: metrics["baseline"][metric] for metric in ("rougeL", "chrf", "bleu")}, (
        "the pooled candidates start with the baseline's answer"
    )
    card = render_adapter_card(run, "catalog-lora/describe").text
    assert "The baseline is the description of the training product nearest by TF-IDF over its title and brand" in card
    assert "| TF-IDF nearest-neighbour baseline |" in card and "logistic regression" not in card
    # it writes nothing: its limitation is a borrowed description, not an invented one
    assert "**Borrowed descriptions.**" in card and "Hallucination" not in card


def test_the_baseline_reads_what_the_adapter_reads(sample_data):
    """The classical baseline sees the adapter's input: a description head's choice attributes (all when none
    are named), a generating description adapter's every attribute, a tag or category adapter's own."""
    train = load_split(sample_data / "description", "train")
    every = attribute_keys({"train": train})
    assert "brand" in every and len(every) > 1
    assert baseline_attributes(RunInfo(task="description", method="head", choice_attributes=["brand"]), train) == ["brand"]
    assert baseline_attributes(RunInfo(task="description", method="head"), train) == every
    assert baseline_attributes(RunInfo(task="description", method="generate"), train) == every
    assert baseline_attributes(RunInfo(task="category", method="head", attributes=["brand"]), train) == ["brand"]
    assert baseline_attributes(RunInfo(task="category", method="head"), train) == []


def test_the_spaces_describe_tab_serves_a_description_head(choice_run, sample_data):
    """The Space loads the head as it loads any adapter (a model of its own) and Describe answers with its choice."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spaces"))
    from catalog_space import handlers
    from catalog_space.models import Models
    from catalog_space.settings import Settings

    models = Models(Settings(adapters={"describe": str(choice_run)}, quantization="none"))
    models.load()
    record = json.loads((sample_data / "description" / "test.jsonl").read_text().splitlines()[0])
    steps = list(handlers.describe(models, record["text"], "brand: " + record["attributes"]["brand"]))
    engine = Engine.load({"describe": str(choice_run)})
    [expected] = engine.predict("describe", [record["text"]], [{"brand": record["attributes"]["brand"]}])
    assert steps[-1][0] == expected.text and expected.text, "the page shows the head's chosen description"
    assert not steps[-1][1], "no notice: nothing was cut or failed"


def test_tune_switches_a_description_heads_candidates_between_the_searches(choice_run, sample_data, tmp_path):
    """``training.tune <run> model.choice_search=...``: the adapter's weights stay; pooled candidates start with the
    TF-IDF baseline's own answer and hold each description once; the card says where they come from."""
    run = Path(shutil.copytree(choice_run, tmp_path / "run"))
    before = read_run_info(str(run))
    weights = (run / "adapter_model.safetensors").read_bytes()
    folder = sample_data / "description"
    train, test = load_split(folder, "train"), load_split(folder, "test")
    texts, attributes = [r["text"] for r in test], [r["attributes"] for r in test]
    keys = [with_attribute_values(r["text"], r["attributes"], ["brand"]) for r in train]
    baseline = TfidfBaseline("description").fit(keys, [r["description"] for r in train])
    for search in ("references", "pooled") if before.choice_search == "pooled" else ("pooled", "references"):
        results = tune_main([str(run), f"model.choice_search={search}", "eval.base=false"])
        info = read_run_info(str(run))
        assert info.choice_search == search and load_config(run / CONFIG_FILE).model.choice_search == search
        assert all((run / name).is_file() == (search == "pooled") for name in SEARCH_FILES)
        assert (run / COMPLETE_MARKER).is_file() and (run / "adapter_model.safetensors").read_bytes() == weights
        assert json.loads((run / METRICS_FILE).read_text())["test"] == json.loads(json.dumps(results))
        engine = Engine.load({"describe": str(run)}, quantization="none")
        shown = engine.spec("describe").examples(texts, attributes)
        firsts = [candidates[0].answer for candidates in shown]
        if search == "pooled":
            assert all(2 <= len(c) <= 4 and len({e.answer for e in c}) == len(c) for c in shown), "2 of each search, no repeat"
            assert firsts == baseline.predict([with_attribute_values(t, a, ["brand"]) for t, a in zip(texts, attributes, strict=True)])
        else:
            assert all(2 <= len(candidates) <= 4 for candidates in shown), "the first 2 of each search, each description once"
        predictions = engine.predict("describe", texts, attributes)
        assert all(p.text in [c.answer for c in candidates] for p, candidates in zip(predictions, shown, strict=True))
        card = render_adapter_card(run, "catalog-lora/describe").text
        assert ("pooled from two searches" in card) == (search == "pooled")


def test_config_checks_the_candidates_search(sample_data):
    base = [f"data.path={sample_data / 'description'}", "task=description", "method=head", "references=true", "model.prompt_examples=3"]
    assert load_config(None, [*base, "model.choice_search=pooled"]).model.choice_search == "pooled"
    with pytest.raises(ConfigError, match="model.choice_search='words' is not allowed; choose one of: references, pooled"):
        load_config(None, [*base, "model.choice_search=words"])
    with pytest.raises(ConfigError, match="model.choice_search='pooled' only applies to method='head' with task='description'"):
        load_config(None, [f"data.path={sample_data / 'category'}", "task=category", "method=head", "model.choice_search=pooled"])
    with pytest.raises(ConfigError, match="model.choice_training_search='pooled' only applies to method='head'"):
        load_config(None, [f"data.path={sample_data / 'category'}", "task=category", "method=head", "model.choice_training_search=pooled"])


def test_pooled_training_candidates_never_show_a_row_itself(sample_data, tmp_path):
    """``model.choice_training_search: pooled``: each training row is shown the TF-IDF search's nearest *other* rows
    pooled with the index's; a validation row's first candidate is the baseline's answer."""
    folder = sample_data / "description"
    config = load_config(None, [
        f"data.path={folder}", "task=description", "method=head", "references=true", "model.prompt_examples=3",
        "model.choice_attributes=[brand]", "model.choice_training_search=pooled", f"output_dir={tmp_path}",
    ])
    splits = {split: load_split(folder, split) for split in ("train", "validation")}
    build_index(splits["train"], tmp_path / "references", "description", progress=False, key_attributes=["brand"]).close()
    fit_search(splits["train"], config, tmp_path, log=lambda _: None)
    shown = shown_examples(config, splits, tmp_path)
    lines = {split: [with_attribute_values(r["text"], r["attributes"], ["brand"]) for r in rows] for split, rows in splits.items()}
    baseline = TfidfBaseline("description").fit(lines["train"], [r["description"] for r in splits["train"]])
    assert [c[0].answer for c in shown["validation"]] == baseline.predict(lines["validation"])
    for record, candidates in zip(splits["train"], shown["train"], strict=True):
        assert 2 <= len(candidates) <= 4 and len({c.answer for c in candidates}) == len(candidates)
        assert all(" ".join(c.text.split()).casefold() != " ".join(record["text"].split()).casefold() for c in candidates)
    # without the row itself, a training row's first candidate is the nearest other row by TF-IDF
    others = [[j for j in range(len(lines["train"])) if splits["train"][j]["text"] != r["text"]] for r in splits["train"]]
    similarity = (baseline.features.transform(lines["train"]) @ baseline.train_x.T).toarray()
    nearest_other = [max(rows, key=lambda j, i=i: (similarity[i, j], -j)) for i, rows in enumerate(others)]
    assert [c[0].answer for c in shown["train"]] == [splits["train"][j]["description"] for j in nearest_other]
