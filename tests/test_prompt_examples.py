"""The nearest training example shown in the prompt (``model.prompt_examples``) and LoRA on the top
layers only (``lora.layers``): prompts, the lookup, and a description adapter really trained with both."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from catalog_lora.inference.engine import Engine
from catalog_lora.model.base_model import load_tokenizer
from catalog_lora.records.prompts import Example, PromptTemplate
from catalog_lora.retrieval.examples import nearest_examples
from catalog_lora.retrieval.references import build_index
from catalog_lora.runs.folder import read_run_info
from training.config import ConfigError, load_config

LONG = "Rolled oats for a warm breakfast porridge, rich in fibre and slow to digest. " * 12


def test_prompt_shows_the_example_before_the_product():
    template = PromptTemplate("description", "alpaca")
    prompt = template.prompt("Oats 1 kg", examples=[Example("Oats 500 g", "Rolled oats.")])
    assert "### Input:\nSimilar product: Oats 500 g\nIts description: Rolled oats.\n\nProduct: Oats 1 kg\n\n" in prompt
    assert template.prompt("Oats 1 kg", examples=[]) == template.prompt("Oats 1 kg"), "no examples: the plain prompt"
    tags = PromptTemplate("tagging", "alpaca").user_input("Nice foam", examples=[Example("Good lather", "Foam")])
    assert tags == "Similar product: Good lather\nIts tags: Foam\n\nProduct: Nice foam"


def test_fit_cuts_the_example_before_the_product():
    tokenizer = load_tokenizer("embedded")
    template = PromptTemplate("description", "chat")
    example = [Example("Oats 500 g", LONG)]
    whole = template.prompt("Oats 1 kg", tokenizer, examples=example)
    size = len(tokenizer.encode(whole, add_special_tokens=False))
    prompt, truncated = template.fit("Oats 1 kg", tokenizer, size - 40, examples=example)
    assert not truncated, "cutting the example's answer does not count as cutting the product"
    assert len(tokenizer.encode(prompt, add_special_tokens=False)) <= size - 40
    assert "Product: Oats 1 kg" in prompt and "Similar product: Oats 500 g" in prompt and "…" in prompt
    # With no room for the example's answer at all, the product text is cut too, the template never.
    plain = len(tokenizer.encode(template.prompt("Oats 1 kg", tokenizer), add_special_tokens=False))
    prompt, truncated = template.fit("Oats 1 kg " + LONG, tokenizer, plain + 20, examples=example)
    assert truncated and prompt.endswith(template.prompt("x", tokenizer).rsplit("x", 1)[-1])
    assert len(tokenizer.encode(prompt, add_special_tokens=False)) <= plain + 20


def test_training_rows_never_see_themselves(sample_data, tmp_path):
    train = [json.loads(line) for line in (sample_data / "description" / "train.jsonl").read_text().splitlines()]
    twin = dict(train[1], id="twin-of-1")  # another product with the same title
    with build_index([*train, twin], tmp_path / "index", "description", progress=False) as index:
        texts = [r["text"] for r in train[:6]]
        plain = nearest_examples(index, texts, 2)
        assert [shown[0].text for shown in plain] == texts, "a training text's nearest entry is itself"
        skipped = nearest_examples(index, texts, 2, skip_ids=[r["id"] for r in train[:6]])
        assert all(len(shown) == 2 for shown in skipped)
        assert all(e.text != text for shown, text in zip(skipped, texts, strict=True) for e in shown)
        by_text = {r["text"]: r["description"] for r in train}
        assert all(e.answer == by_text[e.text] for shown in skipped for e in shown), "each example keeps its own answer"
        with pytest.raises(ValueError, match="k=0"):
            nearest_examples(index, texts, 0)


def test_config_refuses_prompt_examples_it_cannot_serve(sample_data):
    base = [f"data.path={sample_data / 'description'}"]
    with pytest.raises(ConfigError, match="references: true"):
        load_config(None, [*base, "task=description", "model.prompt_examples=1"])
    with pytest.raises(ConfigError, match="method='generate'"):
        load_config(None, [*base, "task=category", "method=head", "references=true", "model.prompt_examples=1"])
    with pytest.raises(ConfigError, match="lora.layers"):
        load_config(None, [*base, "lora.layers=-1"])


def test_description_adapter_with_an_example_in_its_prompt(sample_data, description_examples):
    run = description_examples  # trained once for the suite (conftest): one example shown, LoRA on the top 4 layers
    info = read_run_info(str(run))
    assert info.prompt_examples == 1
    with safe_open(run / "adapter_model.safetensors", "pt") as adapter:
        layers = {int(key.split(".layers.")[1].split(".")[0]) for key in adapter.keys()}
    assert layers == {26, 27, 28, 29}, "LoRA on the top 4 of the 30 decoder layers only"
    train = {json.loads(line)["text"] for line in (sample_data / "description" / "train.jsonl").read_text().splitlines()}
    test = [json.loads(line) for line in (sample_data / "description" / "test.jsonl").read_text().splitlines()]
    engine = Engine.load({"describe": str(run)})
    spec = engine.spec("describe")
    shown = spec.examples([r["text"] for r in test])
    assert all(len(examples) == 1 and examples[0].text in train for examples in shown)
    prompt, _ = engine.prompt_for(spec, test[0]["text"], test[0].get("attributes"))
    assert f"Similar product: {shown[0][0].text}\n" in prompt, "the engine looks the example up by itself"
    predictions = engine.predict("describe", [r["text"] for r in test], [r.get("attributes") for r in test])
    assert len(predictions) == len(test) and all(p.error is None for p in predictions)
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert {"adapter", "baseline"} <= set(metrics) and metrics["adapter"]["n"] == 6
