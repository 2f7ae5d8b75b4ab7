"""bf16 serving per head adapter: the agreement with fp32 measured at the end of training (or by
``training.precision``), stored in ``catalog_lora.json``, and what the Space serves in because of it."""

from __future__ import annotations

import json
import shutil

import pytest

from catalog_lora.inference.bf16_check import BF16_MIN_AGREEMENT, serving_quantization
from catalog_lora.runs.folder import STATS_FILE, RunInfo, read_run_info


def test_serving_quantization_weighs_the_recorded_agreement():
    head = RunInfo(task="tagging", method="head", bf16_agreement=0.99, bf16_agreement_texts=234)
    quantization, why = serving_quantization("auto", head, "cpu", cpu_bf16=True)
    assert quantization == "bf16" and "99.0% of 234 validation texts" in why and "natively" in why
    quantization, why = serving_quantization("auto", head, "cpu", cpu_bf16=False)
    assert quantization == "none" and "this CPU has no native bf16" in why
    low = RunInfo(task="tagging", method="head", bf16_agreement=0.95, bf16_agreement_texts=100)
    quantization, why = serving_quantization("auto", low, "cpu", cpu_bf16=True)
    assert quantization == "none" and f"95.0% of 100 validation texts, under the {BF16_MIN_AGREEMENT:.0%}" in why
    unmeasured = RunInfo(task="tagging", method="head")
    assert serving_quantization("auto", unmeasured, "cpu", cpu_bf16=True)[0] == "none"
    assert "training.precision" in serving_quantization("auto", unmeasured, "cpu", cpu_bf16=True)[1]
    # what is asked for explicitly, a generating adapter and CUDA are not this choice's business
    assert serving_quantization("int8", head, "cpu", cpu_bf16=True) == ("int8", "")
    assert serving_quantization("auto", RunInfo(task="tagging", bf16_agreement=1.0), "cpu", cpu_bf16=True) == ("auto", "")
    assert serving_quantization("auto", head, "cuda", cpu_bf16=True) == ("auto", "")


def test_training_records_the_agreement_and_training_precision_measures_it_again(tagging_head_with_neighbours, tmp_path):
    """The tiny head's training measured it on its validation texts (emulated here: this CPU has no native
    bf16), and ``python -m training.precision`` measures a finished run again on as many texts as asked."""
    from model_cards.card import render_adapter_card
    from training.precision import main as precision_main

    info = read_run_info(str(tagging_head_with_neighbours))
    assert info.bf16_agreement is not None and 0.0 <= info.bf16_agreement <= 1.0
    assert info.bf16_agreement_texts == 6, "TINY keeps 6 validation texts, fewer than eval.bf16_check's 128"
    stats = json.loads((tagging_head_with_neighbours / STATS_FILE).read_text())
    assert stats["bf16_check_seconds"] > 0
    run = tmp_path / "run"
    shutil.copytree(tagging_head_with_neighbours, run)
    agreement = precision_main([str(run), "--texts", "2"])
    again = read_run_info(str(run))
    assert again.bf16_agreement == agreement and again.bf16_agreement_texts == 2
    assert again.lexical_weight == info.lexical_weight and again.thresholds == info.thresholds, "the rest is kept"
    card = str(render_adapter_card(str(run), "someone/tiny-head"))
    assert f"- **bf16 inference:** its answers in bf16 (weights and activations) equal those in fp32 on {100 * agreement:.1f}% of 2 validation texts" in card
    with pytest.raises(SystemExit, match="--texts=0 must be at least 1"):
        precision_main([str(run), "--texts", "0"])

