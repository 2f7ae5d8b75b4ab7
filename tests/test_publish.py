"""Publishing to a Hub-compatible server with the real huggingface_hub client, and loading back.

The adapter is a tiny one really trained on the sample catalog (``tiny_runs``). The round trip loads the published adapter in a fresh process with an empty Hugging Face
cache, on the base model loaded both from the local embedded checkpoint and from the server
(where it is uploaded as ``HuggingFaceTB/SmolLM2-135M-Instruct``), and runs the card's own code.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import huggingface_hub
import pytest
import yaml
from conftest import hub_client_env, running_hub, upload_embedded_base
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError

from catalog_lora.model.base_model import EMBEDDED_HUB_ID, ensure_embedded_checkpoint, load_base_model
from catalog_lora.records.dataset_files import Report
from catalog_lora.records.labels import Taxonomy
from catalog_lora.records.prompts import PromptTemplate
from catalog_lora.runs.folder import (
    COMPLETE_MARKER,
    LOSS_PLOT,
    METRICS_FILE,
    PER_LABEL_PLOT,
    REFERENCES_DIR,
    SYSTEMS_PLOT,
    RunInfo,
)
from catalog_lora.runs.markdown import COUNT_KEYS, scalars
from model_cards.card_code import EXAMPLE_TEXT, MORE_TEXTS
from model_cards.publish import PublishError, publish_adapter, publish_dataset, publish_space
from model_cards.publish import main as publish_main

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_publish_test_user_token_0001"
BASE_TOKEN = "hf_publish_test_base_owner_0002"
REPO_ID = "user/catalog-tagging"
ADAPTER_FILES = {
    ".gitattributes",
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "catalog_lora.json",
    "chat_template.jinja",
    "config.yaml",
    "loss_curve.png",
    "metrics.json",
    "taxonomy.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "train_stats.json",
}


pytestmark = pytest.mark.usefixtures("hub_online")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    yield from running_hub(tmp_path_factory.mktemp("hub"), {TOKEN: "user", BASE_TOKEN: "HuggingFaceTB"})


@pytest.fixture(scope="module")
def run(tiny_runs, tmp_path_factory) -> Path:
    """A copy of the tiny tagging run (publishing writes the card into the folder it publishes)."""
    return Path(shutil.copytree(tiny_runs["tagging"], tmp_path_factory.mktemp("runs") / "sample-tagging"))


def published_files(run: Path) -> set[str]:
    """What an adapter repo holds: ADAPTER_FILES, the run's per-tag and base/adapter/baseline plots and its references index."""
    references = {
        f"{REFERENCES_DIR}/{p.relative_to(run / REFERENCES_DIR).as_posix()}"
        for p in (run / REFERENCES_DIR).rglob("*")
        if p.is_file()
    }
    return ADAPTER_FILES | {PER_LABEL_PLOT, SYSTEMS_PLOT} | references


def reported_metrics(metrics: dict) -> dict:
    """The adapter's metrics as the model-index states them (scores only, 6 decimals)."""
    return {k: round(v, 6) for k, v in scalars(metrics).items() if k not in COUNT_KEYS}


@pytest.fixture
def run_copy(run, tmp_path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def client_env(hub, home: Path, token: str | None = TOKEN) -> dict:
    return hub_client_env(hub, home, token)


def cli(hub, tmp_path, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "model_cards.publish", *args],
        env=client_env(hub, tmp_path / "home", token),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert TOKEN not in proc.stdout + proc.stderr
    return proc


def stored_bytes(hub) -> list[bytes]:
    return [p.read_bytes() for p in hub.root.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def published(hub, run, tmp_path_factory) -> subprocess.CompletedProcess:
    """``python -m model_cards.publish <run dir> --repo-id user/catalog-tagging``, the adapter default."""
    return cli(hub, tmp_path_factory.mktemp("cli"), str(run), "--repo-id", REPO_ID)


@pytest.fixture(scope="module")
def base_on_hub(hub) -> str:
    return upload_embedded_base(hub, BASE_TOKEN)


def test_publish_adapter_cli(hub, run, published):
    assert published.returncode == 0, published.stderr
    assert f"Published model {REPO_ID} at commit" in published.stdout
    api = HfApi(endpoint=hub.url, token=TOKEN)
    assert set(api.list_repo_files(REPO_ID)) == published_files(run)  # no COMPLETE marker, no stray files
    remote = json.loads(
        Path(
            hf_hub_download(
                REPO_ID, "adapter_config.json", endpoint=hub.url, token=TOKEN, cache_dir=run.parent / "cache"
            )
        ).read_text()
    )
    assert remote["base_model_name_or_path"] == EMBEDDED_HUB_ID  # not the publisher's local folder
    readme = hf_hub_download(REPO_ID, "README.md", endpoint=hub.url, token=TOKEN, cache_dir=run.parent / "cache")
    assert Path(readme).read_text() == (run / "README.md").read_text()
    assert all(TOKEN.encode() not in data for data in stored_bytes(hub))
    assert api.model_info(REPO_ID).card_data.base_model == EMBEDDED_HUB_ID


def local_generation(run: Path) -> dict:
    """Greedy generation of the card's example prompt, with and without the local adapter folder."""
    from peft import PeftModel

    model, tokenizer, _ = load_base_model("embedded", quantization="none", device="cpu")
    info = RunInfo.from_dict(json.loads((run / "catalog_lora.json").read_text()))
    prompt = PromptTemplate(info.task, info.prompt_template).prompt(EXAMPLE_TEXT[info.task], tokenizer)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)

    def generate(m) -> list[int]:
        return m.generate(
            **inputs,
            max_new_tokens=info.max_new_tokens,
            do_sample=False,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.eos_token_id,
        )[0].tolist()

    base_ids = generate(model.eval())
    adapter_ids = generate(PeftModel.from_pretrained(model, run).eval())
    return {"prompt": prompt, "base": base_ids, "adapter": adapter_ids}


ROUND_TRIP = r"""
import contextlib, io, json, os, re, sys
import torch
from huggingface_hub import ModelCard
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

repo_id, local_base, prompt, max_new_tokens = sys.argv[1:5]
card = ModelCard.load(repo_id)
out = {"metrics": {r.metric_type: r.metric_value for r in card.data.eval_results if r.dataset_split == "test"},
       "base_model": card.data.base_model}
tokenizer = AutoTokenizer.from_pretrained(repo_id)
inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
for name, base_source in (("hub_base", card.data.base_model), ("local_base", local_base)):
    base = AutoModelForCausalLM.from_pretrained(base_source, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, repo_id).eval()
    out[name] = model.generate(**inputs, max_new_tokens=int(max_new_tokens), do_sample=False, top_p=None, top_k=None,
                               pad_token_id=tokenizer.eos_token_id)[0].tolist()
code = re.findall(r"```python\n(.*?)\n```", card.text, flags=re.S)[0]
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    exec(compile(code, "card-how-to-use", "exec"), {"__name__": "__card__"})
out["card_output"] = printed.getvalue().splitlines()
print(json.dumps(out))
"""


def test_round_trip_in_a_fresh_process(hub, run, published, base_on_hub, tmp_path):
    assert published.returncode == 0, published.stderr
    expected = local_generation(run)
    assert expected["adapter"] != expected["base"], "the test adapter must change the output to prove it loaded"
    home = tmp_path / "empty-hf-home"
    info = RunInfo.from_dict(json.loads((run / "catalog_lora.json").read_text()))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            ROUND_TRIP,
            REPO_ID,
            str(ensure_embedded_checkpoint()),
            expected["prompt"],
            str(info.max_new_tokens),
        ],
        env=client_env(hub, home),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["hub_base"] == expected["adapter"]
    assert out["local_base"] == expected["adapter"]
    example, batch = (ast.literal_eval(line) for line in out["card_output"])  # the card's two prints
    assert len(example) == 1 and len(batch) == len(MORE_TEXTS["tagging"])  # tests/test_card_code.py: exact labels
    assert all(set(labels) <= set(Taxonomy.load(run / "taxonomy.json").labels) for labels in example + batch)
    metrics = json.loads((run / METRICS_FILE).read_text())["test"]["adapter"]
    assert out["metrics"] == reported_metrics(metrics)
    assert out["base_model"] == EMBEDDED_HUB_ID
    cached = {p.name for p in (home / "hub").iterdir()}
    assert {"models--user--catalog-tagging", "models--HuggingFaceTB--SmolLM2-135M-Instruct"} <= cached


def test_republish_updates_in_place(hub, run_copy):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    first = publish_adapter(run_copy, "user/evolving", token=TOKEN, endpoint=hub.url)
    metrics = json.loads((run_copy / METRICS_FILE).read_text())
    metrics["test"]["adapter"]["micro_f1"] = 0.75
    (run_copy / METRICS_FILE).write_text(json.dumps(metrics))
    (run_copy / LOSS_PLOT).unlink()
    second = publish_adapter(run_copy, "user/evolving", token=TOKEN, endpoint=hub.url)
    assert second.commit != first.commit
    assert LOSS_PLOT not in api.list_repo_files("user/evolving")
    card = ModelCard(
        Path(
            hf_hub_download(
                "user/evolving", "README.md", endpoint=hub.url, token=TOKEN, cache_dir=run_copy.parent / "cache"
            )
        ).read_text()
    )
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["micro_f1"] == 0.75
    assert "loss_curve.png" not in card.text
    commits = hub.repo_dict("model", "user/evolving")["commits"]
    assert len(commits) == 3  # repo creation + two publishes
    assert publish_adapter(run_copy, "user/evolving", token=TOKEN, endpoint=hub.url).commit == second.commit


def test_no_token_is_refused_before_any_request(hub, run, tmp_path):
    requests = len(hub.log)
    proc = cli(hub, tmp_path, str(run), "--repo-id", "user/no-token", token=None)
    assert proc.returncode == 1
    assert (
        "no Hugging Face token" in proc.stderr and "HF_TOKEN" in proc.stderr and "nothing was uploaded" in proc.stderr
    )
    assert len(hub.log) == requests


@pytest.mark.parametrize("bad", ["no-namespace", "a/b/c", "-user/name", "user/na--me", "user/", "us er/name"])
def test_bad_repo_ids_are_rejected_with_the_rule(hub, run, bad):
    requests = len(hub.log)
    with pytest.raises(ValueError, match="namespace/name"):
        publish_adapter(run, bad, token=TOKEN, endpoint=hub.url)
    assert len(hub.log) == requests


def test_bad_repo_id_cli(capsys):
    assert publish_main(["adapter", "runs/any", "--repo-id", "just-a-name"]) == 1
    out = capsys.readouterr()
    assert "namespace/name" in out.err and "Published" not in out.out


def test_server_error_mid_push_is_reported(hub, run_copy, tmp_path):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    publish_adapter(run_copy, "user/fragile", token=TOKEN, endpoint=hub.url)
    head = api.model_info("user/fragile").sha
    metrics = json.loads((run_copy / METRICS_FILE).read_text())
    metrics["test"]["adapter"]["micro_f1"] = 0.8
    (run_copy / METRICS_FILE).write_text(json.dumps(metrics))

    hub.fail_commits = 6  # the commit fails, and any client retry of it (the Xet upload path retries 5 times)
    try:
        proc = cli(hub, tmp_path, str(run_copy), "--repo-id", "user/fragile")
    finally:
        hub.fail_commits = 0
    assert proc.returncode == 1
    assert "publishing to model user/fragile" in proc.stderr and "failed" in proc.stderr
    assert f"nothing was published: main is still at {head[:12]}" in proc.stderr
    assert "500" in proc.stderr and "Published" not in proc.stdout
    assert api.model_info("user/fragile").sha == head

    assert publish_adapter(run_copy, "user/fragile", token=TOKEN, endpoint=hub.url).commit != head  # once it is back


def test_a_failed_push_leaves_the_run_folder_byte_identical(hub, run_copy):
    """The repository is created, the commit fails: the run folder keeps no card of a repo that holds nothing."""
    api = HfApi(endpoint=hub.url, token=TOKEN)
    (run_copy / "README.md").write_text("my own notes\n")

    def snapshot() -> dict[str, bytes]:
        return {p.relative_to(run_copy).as_posix(): p.read_bytes() for p in sorted(run_copy.rglob("*")) if p.is_file()}

    before = snapshot()
    hub.fail_commits = 6  # the commit fails, and any client retry of it
    try:
        with pytest.raises(PublishError, match="publishing to model user/bodywash-midway"):
            publish_adapter(run_copy, "user/bodywash-midway", token=TOKEN, endpoint=hub.url)
    finally:
        hub.fail_commits = 0
    assert api.repo_exists("user/bodywash-midway"), "the failure came after the repository was created"
    assert snapshot() == before

    publish_adapter(run_copy, "user/bodywash-midway", token=TOKEN, endpoint=hub.url)
    assert "user/bodywash-midway" in (run_copy / "README.md").read_text(), "a successful push writes the card locally"


def test_private_repo_and_revision(hub, run_copy):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    result = publish_adapter(run_copy, "user/private-tagging", private=True, token=TOKEN, endpoint=hub.url)
    assert api.model_info("user/private-tagging").private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).model_info("user/private-tagging")

    on_branch = publish_adapter(run_copy, "user/branched", revision="experiment", token=TOKEN, endpoint=hub.url)
    refs = {b.name: b.target_commit for b in api.list_repo_refs("user/branched").branches}
    assert refs["experiment"] == on_branch.commit and on_branch.revision == "experiment"
    assert api.list_repo_files("user/branched") == [".gitattributes"]  # main keeps its initial commit
    assert "adapter_model.safetensors" in api.list_repo_files("user/branched", revision="experiment")
    assert result.url.endswith("user/private-tagging")


def test_unfinished_or_incomplete_runs_are_refused(hub, run_copy):
    requests = len(hub.log)
    (run_copy / COMPLETE_MARKER).unlink()
    with pytest.raises(PublishError, match="COMPLETE"):
        publish_adapter(run_copy, "user/unfinished", token=TOKEN, endpoint=hub.url)
    (run_copy / METRICS_FILE).unlink()
    with pytest.raises(PublishError, match="metrics.json"):
        publish_adapter(run_copy, "user/unfinished", token=TOKEN, endpoint=hub.url)
    assert len(hub.log) == requests


def write_catalog(path: Path) -> Path:
    """A small category catalog: 30 products in three department > aisle paths."""
    paths = {
        "Home,Kitchen": ["mug", "kettle", "ladle"],
        "Toys,Outdoor": ["kite", "frisbee", "ball"],
        "Bath,Soap": ["soap bar", "body wash", "bath salt"],
    }
    rows = ["title,category,sub_category"]
    for category, items in paths.items():
        rows += [f"{brand} {item},{category}" for item in items for brand in ("Acme", "Bolt", "Crest")]
        rows.append(f"Deluxe {items[0]} set,{category}")
    path.write_text("\n".join(rows) + "\n")
    return path


LOAD_DATASET = r"""
import json, sys
from datasets import load_dataset
from huggingface_hub import DatasetCard

repo_id = sys.argv[1]
data = load_dataset(repo_id)
card = DatasetCard.load(repo_id)
print(json.dumps({"ids": {split: sorted(rows["id"]) for split, rows in data.items()},
                  "row": data["train"][0], "license": card.data.license, "tags": card.data.tags,
                  "configs": card.data.configs, "features": [f["name"] for f in card.data.dataset_info["features"]],
                  "usage": f'load_dataset("{repo_id}")' in card.text}))
"""


def test_prepare_push_to_hub_round_trip(hub, tmp_path):
    """``python -m datasets_prep.prepare ... --push-to-hub`` (which runs the publishing command), then
    load_dataset in a fresh process, empty cache."""
    out = tmp_path / "catalog"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "datasets_prep.prepare",
            "--format",
            "generic",
            "--input",
            str(write_catalog(tmp_path / "catalog.csv")),
            "--output",
            str(out),
            "--text-column",
            "title",
            "--path-column",
            "category",
            "--path-column",
            "sub_category",
            "--push-to-hub",
            "user/catalog-categories",
        ],
        env=client_env(hub, tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert TOKEN not in proc.stdout + proc.stderr
    api = HfApi(endpoint=hub.url, token=TOKEN)
    info = api.dataset_info("user/catalog-categories", files_metadata=True)
    files = {s.rfilename: s for s in info.siblings}
    parquet = [f"data/{split}-00000-of-00001.parquet" for split in ("test", "train", "validation")]
    assert sorted(files) == [
        ".gitattributes",
        "README.md",
        *parquet,
        "report.json",
        "taxonomy.json",
        "taxonomy_level1.json",
    ]
    assert all(files[name].lfs is not None for name in parquet)  # through Git LFS, as on the Hub
    assert files["README.md"].lfs is None
    assert f"published to {hub.url}/datasets/user/catalog-categories" in (out / "report.json").read_text()

    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_DATASET, "user/catalog-categories"],
        env=client_env(hub, tmp_path / "fresh-home"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    result = json.loads(loaded.stdout.strip().splitlines()[-1])
    local = {
        split: [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        for split in ("train", "validation", "test")
    }
    assert result["ids"] == {split: sorted(r["id"] for r in rows) for split, rows in local.items()}
    assert result["row"] == next(r for r in local["train"] if r["id"] == result["row"]["id"])
    assert result["license"] == "other" and "catalog-lora" in result["tags"]
    assert result["configs"] == [
        {
            "config_name": "default",
            "data_files": [{"split": split, "path": f"data/{split}-*"} for split in ("train", "validation", "test")],
        }
    ]
    assert result["features"] == ["id", "text", "path", "source"] and result["usage"]


def test_publish_dataset_is_the_prepare_publisher(hub, sample_data, tmp_path, monkeypatch):
    """``model_cards.publish dataset`` publishes a prepared folder; re-publishing cleans up."""
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("user/catalog-tagging-data", repo_type="dataset")  # as the former jsonl publisher left it
    api.upload_file(
        path_or_fileobj=b"{}\n", path_in_repo="train.jsonl", repo_id="user/catalog-tagging-data", repo_type="dataset"
    )
    folder = Path(shutil.copytree(sample_data / "tagging", tmp_path / "tagging"))
    (folder / "taxonomy_l2.json").unlink(missing_ok=True)
    proc = cli(hub, tmp_path, "dataset", str(folder), "--repo-id", "user/catalog-tagging-data")
    assert proc.returncode == 0, proc.stderr
    assert "Published dataset user/catalog-tagging-data at commit" in proc.stdout
    files = api.list_repo_files("user/catalog-tagging-data", repo_type="dataset")
    assert "train.jsonl" not in files and "data/train-00000-of-00001.parquet" in files and "taxonomy.json" in files

    requests = len(hub.log)
    with monkeypatch.context() as patch:
        patch.setattr(huggingface_hub, "get_token", lambda: None)  # no HF_TOKEN, no stored login
        with pytest.raises(PublishError, match="no Hugging Face token"):
            publish_dataset(folder, "user/no-token", endpoint=hub.url)
    assert publish_main(["dataset", str(folder), "--repo-id", "just-a-name"]) == 1
    with pytest.raises(ValueError, match="namespace/name"):
        publish_dataset(folder, "user/na--me", token=TOKEN, endpoint=hub.url)
    (folder / "report.json").rename(folder / "report.json.bak")
    with pytest.raises(PublishError, match="report.json"):
        publish_dataset(folder, "user/catalog-tagging-data", token=TOKEN, endpoint=hub.url)
    (folder / "report.json.bak").rename(folder / "report.json")
    assert len(hub.log) == requests  # refused before any request

    head = api.dataset_info("user/catalog-tagging-data").sha
    report = Report.load(folder)
    report.note("prepared again")  # changes the card, not the splits: the push commits nothing, the card commit fails
    report.save(folder / "report.json")
    hub.fail_next_commit = True
    try:
        with pytest.raises(PublishError) as failed:
            publish_dataset(folder, "user/catalog-tagging-data", token=TOKEN, endpoint=hub.url)
    finally:
        hub.fail_commits = 0
    message = str(failed.value)
    assert "publishing to dataset user/catalog-tagging-data" in message and "500" in message
    assert f"nothing was published: main is still at {head[:12]}" in message and TOKEN not in message
    assert api.dataset_info("user/catalog-tagging-data").sha == head


def test_publish_space(hub, published, run_copy, tmp_path):
    assert published.returncode == 0, published.stderr
    space = tmp_path / "spaces"
    (space / "__pycache__").mkdir(parents=True)
    (space / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    (space / "app.py").write_text("import gradio as gr\n")
    (space / "requirements.txt").write_text("torch\ntransformers\npeft\n")
    (space / "adapters.yaml").write_text(
        "adapters:\n  tag: ./runs/sample-tagging\n  category: ./runs/sample-category\nquantization: auto\n"
    )
    (space / "README.md").write_text(
        "---\ntitle: catalog-lora\nemoji: 🧴\nsdk: gradio\nsdk_version: 1.0.0\nmodels:\n- old/model\n---\n\n"
        "# Catalog demo\n\nTry the adapters.\n"
    )
    proc = cli(hub, tmp_path, "space", str(space), "--repo-id", "user/catalog-demo", "--adapter", REPO_ID)
    assert proc.returncode == 0, proc.stderr
    api = HfApi(endpoint=hub.url, token=TOKEN)
    assert api.space_info("user/catalog-demo").sdk == "gradio"
    files = set(api.list_repo_files("user/catalog-demo", repo_type="space"))
    assert {"app.py", "requirements.txt", "adapters.yaml", "README.md"} <= files
    core = {path.relative_to(REPO).as_posix() for path in (REPO / "catalog_lora").rglob("*.py")}
    assert "catalog_lora/records/prompts.py" in core and core <= files  # the whole core, every room with it
    assert not any("__pycache__" in f for f in files)

    def remote(name: str) -> str:
        return Path(
            hf_hub_download(
                "user/catalog-demo",
                name,
                repo_type="space",
                endpoint=hub.url,
                token=TOKEN,
                cache_dir=tmp_path / "cache",
            )
        ).read_text()

    front = yaml.safe_load(remote("README.md").split("---")[1])
    assert front["sdk"] == "gradio" and front["sdk_version"] == version("gradio") and front["app_file"] == "app.py"
    assert front["models"] == [REPO_ID, EMBEDDED_HUB_ID]  # the adapters, then their base model
    assert front["title"] == "catalog-lora" and front["emoji"] == "🧴"
    assert "Try the adapters." in remote("README.md")
    settings = yaml.safe_load(remote("adapters.yaml"))
    assert settings["adapters"] == {"tag": REPO_ID, "category": None, "describe": None}
    assert settings["quantization"] == "auto"

    with pytest.raises(PublishError, match="not a published catalog-lora adapter"):
        publish_space(space, "user/catalog-demo", ["user/missing-adapter"], token=TOKEN, endpoint=hub.url)
    publish_adapter(run_copy, "user/tagging-two", token=TOKEN, endpoint=hub.url)
    with pytest.raises(PublishError, match="both tagging adapters"):
        publish_space(space, "user/catalog-demo", [REPO_ID, "user/tagging-two"], token=TOKEN, endpoint=hub.url)
    (space / "app.py").unlink()
    with pytest.raises(PublishError, match="app.py"):
        publish_space(space, "user/catalog-demo", [REPO_ID], token=TOKEN, endpoint=hub.url)


def test_a_file_holding_the_token_is_never_uploaded(hub, run_copy):
    requests = len(hub.log)
    with (run_copy / "config.yaml").open("a") as f:
        f.write(f"# pasted by mistake: HF_TOKEN={TOKEN}\n")
    with pytest.raises(PublishError) as error:
        publish_adapter(run_copy, "user/leaky", token=TOKEN, endpoint=hub.url)
    assert "config.yaml contains your Hub token" in str(error.value) and TOKEN not in str(error.value)
    assert len(hub.log) == requests
