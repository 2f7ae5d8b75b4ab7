"""The embedded base models: converted once to a plain checkpoint, load in fp32 and 4-bit NF4; the second one,
Gemma 3 270M, with the chat template its GGUF lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from catalog_lora.model.base_model import (
    EMBEDDED_BASES,
    choose_precision,
    ensure_embedded_checkpoint,
    load_base_model,
    public_model_id,
)
from catalog_lora.records.prompts import PromptTemplate

CONVERT = "from catalog_lora.model.base_model import ensure_embedded_checkpoint; print(ensure_embedded_checkpoint())"


def generate(model, tokenizer, text: str, tokens: int = 8) -> str:
    prompt = PromptTemplate("description", "chat").prompt(text, tokenizer)
    batch = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    output = model.generate(**batch, max_new_tokens=tokens, do_sample=False)
    return tokenizer.decode(output[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def test_converted_checkpoint_is_plain():
    folder = ensure_embedded_checkpoint()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config, "a gguf quantization_config would break bitsandbytes loads"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


def test_two_processes_starting_at_once_share_one_conversion(tmp_path):
    """On a fresh machine the two processes of a ``torchrun`` training start together: one converts the base
    model, the other waits for it and reads the same folder (they had written one folder together)."""
    env = {**os.environ, "CATALOG_LORA_CACHE": str(tmp_path), "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen([sys.executable, "-c", CONVERT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    printed = [out for out, _ in outputs]
    assert sum("Converting the embedded base model" in out for out in printed) == 1, printed
    folder = tmp_path / "base" / EMBEDDED_BASES["embedded"].folder_name
    assert [out.splitlines()[-1] for out in printed] == [str(folder)] * 2
    model, _, _ = load_base_model(str(folder), "none")
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6


def test_fp32_generates_text():
    model, tokenizer, precision = load_base_model("embedded", "none")
    assert precision.dtype == torch.float32
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert len(generate(model, tokenizer, "Sunny Farms Rolled Oats 1 kg").split()) >= 2


def test_gemma_converts_with_its_chat_template_and_carries_a_head():
    """``embedded-gemma-3-270m``: the GGUF assembled from its chunk packages converts into a plain checkpoint (the
    assembled copy removed), with Gemma 3's chat template, and a head on its first layers answers the ``chat``
    prompt."""
    name = "embedded-gemma-3-270m"
    folder = ensure_embedded_checkpoint(name)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and "quantization_config" not in config
    assert not (folder.parent.parent / "gguf" / EMBEDDED_BASES[name].gguf).exists()
    assert public_model_id(name) == "google/gemma-3-270m"

    model, tokenizer, _ = load_base_model(name, "none", "cpu", num_labels=3, num_layers=2)
    prompt = PromptTemplate("category", "chat").prompt("Sunny Farms Rolled Oats 1 kg", tokenizer)
    assert prompt.startswith("<bos><start_of_turn>user\nYou are a retail catalog assistant.")
    assert prompt.endswith("Product: Sunny Farms Rolled Oats 1 kg<end_of_turn>\n<start_of_turn>model\n")
    assert len(model.model.layers) == 2
    with torch.no_grad():
        logits = model(**tokenizer([prompt, "Oats"], return_tensors="pt", padding=True, add_special_tokens=False)).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_4bit_nf4_loads_and_generates_on_cpu():
    pytest.importorskip("bitsandbytes")
    model, tokenizer, precision = load_base_model("embedded", "4bit")
    assert precision.quantization == "4bit"
    assert any("4bit" in type(m).__name__ for m in model.modules()), "Linear4bit layers expected"
    assert generate(model, tokenizer, "Sunny Farms Rolled Oats 1 kg", tokens=4).strip()


def test_precision_choice_is_explained():
    assert "fp32" in choose_precision("auto", "cpu").reason
    assert choose_precision("auto", "cuda").quantization == "4bit"
    with pytest.raises(ValueError, match="quantization='3bit' is not one of auto, 4bit, 8bit, none, int8, bf16"):
        choose_precision("3bit")


def test_bf16_is_refused_where_the_cpu_would_emulate_it(monkeypatch):
    """On a CPU without AVX512-BF16 or AMX, torch emulates bf16, slower than fp32: refused, with the way out."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with pytest.raises(ValueError, match=r"needs a CPU with native bf16 .* use quantization='none' \(or 'int8' where"):
        choose_precision("bf16", "cpu")


def test_int8_warns_where_the_cpu_has_no_fast_int8_kernel(monkeypatch):
    """Without AVX512-VNNI or AMX torch's int8 matmul runs on a generic kernel (bench/int8_matmul.py): int8 is
    still given (its answers are right), with a warning that says so and what to use instead."""
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with pytest.warns(UserWarning, match="no fast kernel here .* use quantization='none' for speed"):
        assert choose_precision("int8", "cpu").quantization == "int8"


def test_prompt_templates_are_exact():
    template = PromptTemplate("tagging", "alpaca")
    assert template.prompt("Nice foam") == (
        "### Instruction:\nTag the product with the factors it mentions, as a comma-separated list.\n\n"
        "### Input:\nProduct: Nice foam\n\n### Response:\nTags:"
    )
    describe = PromptTemplate("description", "alpaca").prompt("Oats 1 kg", attributes={"brand": "Sunny"})
    assert "What is the description of product Oats 1 kg?" in describe and "Attributes: brand: Sunny" in describe
