"""Exports of the suite's tiny adapters (``tiny_runs``' tagging adapter to GGUF, a tagging head on the first 2
decoder layers to ONNX), read back by readers that share no code with the engine, and published to the
Hub-compatible test server.

The GGUF export fetches llama.cpp's converter once (the llama-cpp-python sdist, not built) into the
catalog-lora cache, where later runs find it.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, hub_client_env, running_hub, train_tiny
from huggingface_hub import HfApi, hf_hub_download
from transformers import AutoTokenizer

from catalog_lora.inference.engine import Engine
from catalog_lora.records.dataset_files import load_split
from catalog_lora.records.labels import Taxonomy
from catalog_lora.records.prompts import PromptTemplate
from catalog_lora.runs.folder import read_run_info
from model_cards.export import (
    EXPORT_FILE,
    GRAMMAR_FILE,
    HEAD_FILE,
    MIN_AGREEMENT,
    MODELFILE,
    ONNX_FILE,
    export,
    jinja_chat_template,
    main,
    prompt_parts,
)
from model_cards.publish import PublishError, publish_adapter

TOKEN = "hf_export_test_user_token_0001"


@pytest.fixture(scope="module")
def gguf_run(tiny_runs, tmp_path_factory) -> Path:
    """A copy of the tiny tagging adapter with its Q8_0 GGUF export in ``export/gguf``."""
    run = Path(shutil.copytree(tiny_runs["tagging"], tmp_path_factory.mktemp("gguf") / "sample-tagging"))
    export(str(run), "gguf", outtype="q8_0")
    return run


@pytest.fixture(scope="module")
def onnx_run(sample_data, tmp_path_factory) -> Path:
    """A tiny tagging head on the first 2 decoder layers (``model.num_layers``) with its ONNX export in
    ``export/onnx``: torch's exporter traces every layer, about 1.5 s each here, so the whole 30-layer
    ``tagging_head`` would take most of a minute to prove the same."""
    run = train_tiny(
        "sample_tagging_head.yaml", sample_data / "tagging", tmp_path_factory.mktemp("onnx") / "tagging-head",
        "model.num_layers=2", "eval.base=false",
    )
    export(str(run), "onnx")
    return run


def test_bad_input_is_refused_naming_the_value(tiny_runs, tagging_head, tmp_path, capsys):
    generate, head = str(tiny_runs["tagging"]), str(tagging_head)
    assert main([generate, "--format", "onnx"]) == 2
    assert "is a generate adapter" in capsys.readouterr().err
    assert main([head, "--format", "gguf"]) == 2
    assert "use --format onnx" in capsys.readouterr().err
    assert main([head, "--format", "onnx", "--outtype", "f16"]) == 2
    assert "--outtype f16 is for --format gguf" in capsys.readouterr().err
    assert main([generate, "--format", "gguf", "--sample", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([generate, "--format", "gguf", "--outtype", "q4_k"])
    assert "invalid choice: 'q4_k'" in capsys.readouterr().err
    assert main([generate, "--format", "gguf", "--output", str(REPO / "tests")]) == 2  # a folder not made by an export
    assert "other files in it" in capsys.readouterr().err


def test_gguf_export_carries_the_adapters_prompt_and_answers(gguf_run, sample_data):
    from gguf import GGUFReader

    folder = gguf_run / "export" / "gguf"
    record = json.loads((folder / EXPORT_FILE).read_text())
    test_texts = [row["text"] for row in load_split(sample_data / "tagging", "test")]
    assert set(record["files"]) == {p.name for p in folder.iterdir()}
    assert record["n"] == len(test_texts) and record["same"] + record["different"] == record["n"]
    assert record["agreement"] == record["same"] / record["n"] >= MIN_AGREEMENT and not record["flagged"]
    assert len(record["differing"]) == record["different"]
    # transformers' GGUF loader rendered every prompt from the file's chat template exactly as the engine prompts
    assert record["chat_template_prompts_equal"] == record["n"]

    info = read_run_info(str(gguf_run))
    template = PromptTemplate(info.task, info.prompt_template)  # the tiny run lists no labels in its prompt
    parts = prompt_parts(template, AutoTokenizer.from_pretrained(gguf_run))
    fields = GGUFReader(folder / record["file"]).fields
    text = lambda key: bytes(fields[key].parts[fields[key].data[0]]).decode()  # noqa: E731
    assert text("general.architecture") == "llama"
    assert text("tokenizer.chat_template") == jinja_chat_template(parts)
    ollama = re.search(r'TEMPLATE """(.*)"""', (folder / MODELFILE).read_text(), re.S).group(1)
    assert ollama.replace("{{ .Prompt }}", test_texts[0]) == template.prompt(test_texts[0])
    grammar = (folder / GRAMMAR_FILE).read_text()
    alternatives = re.search(r"^label ::= (.*)$", grammar, re.M).group(1).split(" | ")
    taxonomy = Taxonomy.load(gguf_run / "taxonomy.json")
    assert [ast.literal_eval(alternative) for alternative in alternatives] == taxonomy.labels


def test_onnx_export_gives_the_engines_answers(onnx_run, sample_data):
    import onnxruntime

    folder = onnx_run / "export" / "onnx"
    record = json.loads((folder / EXPORT_FILE).read_text())
    info = read_run_info(str(onnx_run))
    head = json.loads((folder / HEAD_FILE).read_text())
    assert record["n"] == len(load_split(sample_data / "tagging", "test"))
    assert record["same"] == record["n"] and not record["flagged"]  # fp32 both ways
    assert record["max_probability_difference"] < 1e-4
    assert head["labels"] == info.labels and head["thresholds"] == info.thresholds
    session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    assert all(isinstance(dim, str) for i in session.get_inputs() for dim in i.shape)  # batch and length dynamic


def test_onnx_export_of_a_head_reading_the_brand(category_head_with_brand, branded_category_data, tmp_path):
    """head.json says how the input and the votes show the brand; read so, the export gives the engine's answers."""
    from model_cards.export import onnx_answers

    run = Path(shutil.copytree(category_head_with_brand, tmp_path / "run"))
    record = export(str(run), "onnx")
    folder = run / "export" / "onnx"
    head = json.loads((folder / HEAD_FILE).read_text())
    assert head["attributes"]["names"] == ["brand"] and record["attributes"] == head["attributes"]
    assert record["same"] == record["n"] == len(load_split(branded_category_data, "test")) and not record["flagged"]
    assert record["max_probability_difference"] < 1e-4
    test = load_split(branded_category_data, "test")
    texts, attributes = [r["text"] for r in test], [r.get("attributes") for r in test]
    _, with_brand = onnx_answers(folder, texts, attributes)
    _, without = onnx_answers(folder, texts)
    assert abs(with_brand - without).max() > 1e-3, "the brand should move the export's answers"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    yield from running_hub(tmp_path_factory.mktemp("hub"), {TOKEN: "user"})


@pytest.mark.usefixtures("hub_online")
def test_publish_pushes_each_export_to_its_sibling_repo_and_the_card_runs_it(hub, gguf_run, onnx_run, tmp_path):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    publish_adapter(gguf_run, "user/tags", exports=["gguf"], token=TOKEN, endpoint=hub.url)
    record = json.loads((gguf_run / "export" / "gguf" / EXPORT_FILE).read_text())
    assert set(api.list_repo_files("user/tags-GGUF")) == {*record["files"], "README.md", ".gitattributes"}
    card = Path(hf_hub_download("user/tags", "README.md", endpoint=hub.url, cache_dir=tmp_path)).read_text()
    assert "## Use it in llama.cpp / Ollama" in card and record["summary"] in card
    sibling = Path(hf_hub_download("user/tags-GGUF", "README.md", endpoint=hub.url, cache_dir=tmp_path)).read_text()
    assert "library_name: gguf" in sibling and "base_model: user/tags" in sibling

    publish_adapter(onnx_run, "user/tags-head", exports=["onnx"], token=TOKEN, endpoint=hub.url)
    card = Path(hf_hub_download("user/tags-head", "README.md", endpoint=hub.url, cache_dir=tmp_path)).read_text()
    section = card[card.index("## Use it with ONNX Runtime") :]
    code = section[section.index("```python\n") + 10 : section.index("\n```", section.index("```python\n"))]
    env = hub_client_env(hub, tmp_path / "home", TOKEN)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    engine = Engine.load({"adapter": str(onnx_run)}, quantization="none")
    example = ast.literal_eval(re.search(r"^texts = \[(.*)\]$", code, re.M).group(1))
    assert ast.literal_eval(run.stdout.strip()) == engine.predict("adapter", [example])[0].labels


def test_publish_refuses_a_missing_export(hub, tiny_runs):
    with pytest.raises(PublishError, match="run `python -m model_cards.export"):
        publish_adapter(tiny_runs["category"], "user/cats", exports=["gguf"], token=TOKEN, endpoint=hub.url)
