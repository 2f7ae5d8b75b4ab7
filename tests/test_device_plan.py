"""How a run uses its device (training.plan, catalog_lora.model.base_model.choose_precision,
catalog_lora.model.batching): the decisions a GPU run makes, checked on CPU with the memory figures a GPU would report."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoConfig

from catalog_lora.model.base_model import (
    DeviceFit,
    Precision,
    choose_precision,
    ensure_embedded_checkpoint,
    parameter_count,
)
from catalog_lora.model.batching import cut_batches
from training.config import ConfigError, load_config
from training.data import length_grouped_batches
from training.plan import ModelShape, activation_bytes, choose_checkpointing, choose_optimizer, mixed_precision

GiB = 2**30


def test_auto_precision_on_cuda_weighs_the_model_against_free_memory():
    small = choose_precision("auto", "cuda", DeviceFit(weight_bytes=270 * 2**20, free_bytes=139 * GiB))
    assert small.quantization == "none" and "0.2% of the GPU's 139.0 GiB free" in small.reason
    large = choose_precision("auto", "cuda", DeviceFit(weight_bytes=14 * GiB, free_bytes=22 * GiB))
    assert large.quantization == "4bit" and "over 25%" in large.reason
    assert choose_precision("auto", "cuda").quantization == "4bit", "a model of unknown size gets the QLoRA default"
    assert choose_precision("4bit", "cuda", DeviceFit(1, 10 * GiB)).quantization == "4bit", "asked for is kept"
    cpu = choose_precision("auto", "cpu", DeviceFit(1, 10 * GiB))
    assert cpu.quantization == "none" and cpu.dtype == torch.float32, "the CPU path keeps fp32"


def test_parameter_count_reads_only_the_config():
    path = str(ensure_embedded_checkpoint())
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    assert parameter_count(path) == sum(p.numel() for p in model.parameters())


def test_checkpointing_is_on_only_when_activations_do_not_fit():
    shape = ModelShape.of(AutoConfig.from_pretrained(str(ensure_embedded_checkpoint())))
    titles = activation_bytes(shape, rows=32, width=48, layers=shape.layers, bytes_per_value=2, logits=False)
    reviews = activation_bytes(shape, rows=64, width=2048, layers=shape.layers, bytes_per_value=2, logits=True)
    assert titles < 2 * GiB < reviews, (titles, reviews)
    on, why = choose_checkpointing("auto", "cuda", reviews, free_bytes=20 * GiB)
    assert on and "exceed 10.00 GiB of cuda memory" in why
    off, why = choose_checkpointing("auto", "cuda", titles, free_bytes=139 * GiB)
    assert not off and "fit in 69.50 GiB" in why
    assert choose_checkpointing("auto", "cpu", reviews, free_bytes=None)[0] is False, "the CPU path is unchanged"
    assert choose_checkpointing("on", "cpu", titles, None) == (True, "model.gradient_checkpointing=on asked for")
    with pytest.raises(ValueError, match="'sometimes' is not one of auto, on, off"):
        choose_checkpointing("sometimes", "cpu", titles, None)


def test_optimizer_and_mixed_precision_follow_the_precision():
    bf16 = Precision("none", torch.bfloat16, "cuda", "")
    assert choose_optimizer("auto", bf16) == ("adamw", True)
    assert choose_optimizer("auto", Precision("4bit", torch.bfloat16, "cuda", "")) == ("adamw_8bit", False)
    assert choose_optimizer("adamw_8bit", bf16) == ("adamw_8bit", False), "asked for is kept"
    assert choose_optimizer("auto", Precision("none", torch.float32, "cpu", "")) == ("adamw", False)
    assert mixed_precision("cpu") == "no"


@pytest.mark.parametrize(
    "overrides, key, expected",
    [
        (["model.gradient_checkpointing=true"], "model.gradient_checkpointing", "on"),
        (["model.gradient_checkpointing=false"], "model.gradient_checkpointing", "off"),
        ([], "model.gradient_checkpointing", "auto"),
        (["train.compile=true"], "train.compile", "on"),
        (["train.compile=graphs"], "train.compile", "graphs"),
        ([], "train.compile", "off"),
    ],
)
def test_switch_settings_read_booleans(sample_data, overrides, key, expected):
    config = load_config(None, [f"data.path={sample_data / 'tagging'}", *overrides])
    section, name = key.split(".")
    assert getattr(getattr(config, section), name) == expected


def test_lora_under_autocast_casts_no_inputs():
    """Under autocast (bf16 here on CPU, as on CUDA) with fp32 LoRA weights, peft would cast each LoRA input to
    fp32 and autocast cast it back: upcast_trainable turns that off, and the answer stays the same."""
    from peft import LoraConfig, get_peft_model
    from torch.profiler import profile
    from transformers import AutoModelForCausalLM

    from training.plan import upcast_trainable

    model = AutoModelForCausalLM.from_pretrained(ensure_embedded_checkpoint(), dtype=torch.bfloat16, num_hidden_layers=2)
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0, init_lora_weights=False))
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])

    def casts_and_logits():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), profile() as prof:
            logits = model(input_ids=ids).logits.float()
        return sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy"), logits

    peft_casts, before = casts_and_logits()
    upcast_trainable(model)
    casts, after = casts_and_logits()
    modules = 2 * 7  # two layers of q, k, v, o, gate, up, down
    assert peft_casts - casts >= 2 * modules, "neither the input's cast to fp32 nor autocast's back to bf16"
    assert torch.allclose(before, after, atol=0.05), "the same answer"


def test_graph_compilation_buckets_the_lengths():
    from training.data import Collator, Encoded

    rows = [Encoded(input_ids=[5] * n, labels=[0], truncated=False) for n in (3, 17)]
    assert Collator(0, classification=True)(rows)["input_ids"].shape == (2, 17)
    bucketed = Collator(0, classification=True, multiple=16)(rows)
    assert bucketed["input_ids"].shape == (2, 32) and bucketed["attention_mask"].sum() == 20
    assert Collator(0, 48, classification=True, multiple=16)(rows)["input_ids"].shape == (2, 48), "max_length padding wins"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.gradient_checkpointing=maybe"], "model.gradient_checkpointing='maybe' is not allowed; choose one of: auto, on, off"),
        (["train.compile=fast"], "train.compile='fast' is not allowed; choose one of: off, on, graphs"),
        (["train.batch_tokens=-5"], r"train.batch_tokens=-5 must be 0 \(off\) or positive"),
        (["eval.batch_tokens=-1"], r"eval.batch_tokens=-1 must be 0 \(off\) or positive"),
        (["train.batch_tokens=512", "train.packing=true"], "both size the rows of a batch"),
    ],
)
def test_device_settings_are_checked(sample_data, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"data.path={sample_data / 'tagging'}", *overrides])


def test_token_batches_hold_every_row_once_within_the_budget():
    rng = random.Random(0)
    lengths = [rng.randint(3, 120) for _ in range(2000)] + [700]  # one row longer than the budget
    batches = length_grouped_batches(lengths, batch_size=256, seed=1, group=True, batch_tokens=512)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) <= 256 and (len(batch) * width <= 512 or len(batch) == 1)
    assert [2000] in batches, "a row over the budget is a batch alone"
    short = [b for b in batches if max(lengths[i] for i in b) <= 10]
    assert short and max(len(b) for b in short) > 40, "short rows fill large batches"


def test_row_batches_are_unchanged_without_a_token_budget():
    """The CPU path's batches (batch_tokens=0) are the plain cut of the shuffled, length-grouped order."""
    lengths = [random.Random(2).randint(1, 50) for _ in range(333)]
    order = list(range(333))
    assert cut_batches(order, lengths, 16) == [order[s : s + 16] for s in range(0, 333, 16)]
    with pytest.raises(ValueError, match="max_rows=0 must be at least 1"):
        cut_batches(order, lengths, 0)
