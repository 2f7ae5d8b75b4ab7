"""A head adapter loaded the generic PEFT way (issue 30): what happens, as its card says up top.

A tiny tagging head is really trained and published to the local Hub-compatible server with the base
model; a fresh client process then loads it the way most PEFT snippets do, and with peft's two
``AutoPeftModel`` classes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import hub_client_env, running_hub, upload_embedded_base

from catalog_lora.runs.folder import read_run_info
from model_cards.card import CODE_PACKAGES
from model_cards.publish import publish_adapter

pytestmark = pytest.mark.usefixtures("hub_online")

TOKEN = "hf_generic_route_user_0001"
BASE_TOKEN = "hf_generic_route_base_0002"
REPO_ID = "user/generic-route-head"

GENERIC = r"""
import json, sys, warnings
from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification, PeftConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

repo = sys.argv[1]
config = PeftConfig.from_pretrained(repo)
base = AutoModelForCausalLM.from_pretrained(config.base_model_name_or_path)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = PeftModel.from_pretrained(base, repo)
tokenizer = AutoTokenizer.from_pretrained(repo)
logits = model(**tokenizer(["Smells amazing"], return_tensors="pt")).logits
found = {
    "class": type(model).__name__,
    "logits": logits.shape[-1],
    "vocab": base.config.vocab_size,
    "score_modules": [name for name, _ in model.named_modules() if name.endswith("score")],
    "warnings": [str(w.message) for w in caught],
}
print("GENERIC ROUTE DONE", file=sys.stderr, flush=True)
for name, cls in (("causal_lm", AutoPeftModelForCausalLM), ("sequence_classification", AutoPeftModelForSequenceClassification)):
    try:
        cls.from_pretrained(repo)
        found[name] = "loaded"
    except Exception as error:
        found[name] = f"{type(error).__name__}: {error}"
print("FOUND " + json.dumps(found))
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    yield from running_hub(tmp_path_factory.mktemp("hub"), {TOKEN: "user", BASE_TOKEN: "HuggingFaceTB"})


def test_the_generic_peft_route_loses_the_head_and_the_card_says_so_first(hub, tagging_head, tmp_path):
    run = Path(shutil.copytree(tagging_head, tmp_path / "head"))  # publishing writes the card into the folder
    labels = read_run_info(str(run)).labels
    upload_embedded_base(hub, BASE_TOKEN)
    publish_adapter(run, REPO_ID, token=TOKEN, endpoint=hub.url)

    card = (run / "README.md").read_text(encoding="utf-8")
    top = card.split("## Model details")[0]
    assert "PeftModelForSequenceClassification" in top and "without the trained `score` layer" in top
    assert "(49,152 tokens)" in top and f"`score` ({len(labels)} outputs)" in top
    assert "AutoPeftModelForCausalLM.from_pretrained(repo)` refuses" in top
    pins = " ".join(f"{name}=={version(name).split('+')[0]}" for name in CODE_PACKAGES)
    assert f"pip install {pins}" in card, "the install line pins the versions the card's code was tested with"
    assert "HF_HUB_OFFLINE=1" in card and "HF_ENDPOINT=" in card and "--base-model" in card

    env = hub_client_env(hub, tmp_path / "hf-home", TOKEN)
    env["HF_HUB_DISABLE_XET"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", GENERIC, REPO_ID], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("FOUND "))[6:])
    # what the card's warning documents: the wrong model, silently
    assert found["class"] == "PeftModelForSequenceClassification"
    assert found["logits"] == found["vocab"] == 49152 != len(labels), "logits over the vocabulary, not the labels"
    assert found["score_modules"] == [], "the trained score layer is not in the model"
    # peft says nothing about the head (the one warning is transformers' deprecation that peft's own code triggers)
    assert [w for w in found["warnings"] if "is_gradient_checkpointing" not in w] == []
    assert "score" not in proc.stderr.split("GENERIC ROUTE DONE")[0], "nor does transformers"
    # peft's own Auto classes refuse it loudly
    assert found["causal_lm"].startswith("ValueError: Expected target PEFT class: PeftModelForSequenceClassification")
    assert found["sequence_classification"].startswith("RuntimeError") and "size mismatch" in found["sequence_classification"]
