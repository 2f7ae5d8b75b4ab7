"""Training references: a real ChromaDB index with the bundled all-MiniLM-L6-v2 (no mocks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from catalog_lora.retrieval.embeddings import embed, load_model, model_path
from catalog_lora.retrieval.references import (
    COLLECTION_NAME,
    Reference,
    ReferenceIndex,
    ReferenceIndexError,
    build_index,
    main,
)

REPO = Path(__file__).resolve().parents[1]

TITLES = [
    ("Coconut Hair Oil - 100% Pure, Cold Pressed", ["hair care", "natural"]),
    ("Basmati Rice - Extra Long Grain, Aged", ["staples", "rice"]),
    ("Dark Chocolate Bar 70% Cocoa", ["snacks", "chocolate"]),
    ("Green Tea Bags - Lemon & Honey", ["beverages", "tea"]),
    ("Instant Coffee Powder - Classic Roast", ["beverages", "coffee"]),
    ("Stainless Steel Pressure Cooker 5 Litre", ["kitchen", "cookware"]),
    ("Non-Stick Frying Pan with Glass Lid", ["kitchen", "cookware"]),
    ("Anti-Dandruff Shampoo with Tea Tree", ["hair care", "shampoo"]),
    ("Aloe Vera Face Wash for Oily Skin", ["skin care", "face wash"]),
    ("Baby Diapers - Large, 48 Pieces", ["baby care", "diapers"]),
    ("Toilet Cleaner Liquid - Thick Bleach", ["cleaning", "bathroom"]),
    ("Dishwash Liquid Gel - Lime", ["cleaning", "kitchen"]),
    ("Whole Wheat Atta - Chakki Fresh", ["staples", "flour"]),
    ("Toor Dal - Unpolished", ["staples", "pulses"]),
    ("Cold Pressed Groundnut Oil", ["staples", "oil"]),
    ("Turmeric Powder - Pure Haldi", ["spices", "powder"]),
    ("Tomato Ketchup - No Onion No Garlic", ["sauces", "ketchup"]),
    ("Salted Potato Chips - Classic", ["snacks", "chips"]),
    ("Dog Food - Chicken & Rice, Adult", ["pets", "dog food"]),
    ("Cat Litter - Lavender Scented Clumping", ["pets", "cat"]),
    ("Men's Shaving Foam - Sensitive Skin", ["grooming", "shaving"]),
    ("Toothpaste - Charcoal Whitening", ["oral care", "toothpaste"]),
    ("Electric Toothbrush with 2 Brush Heads", ["oral care", "toothbrush"]),
    ("LED Bulb 9W Cool Daylight", ["electricals", "lighting"]),
    ("AA Alkaline Batteries, Pack of 4", ["electricals", "batteries"]),
    ("Notebook - Ruled, A4, 200 Pages", ["stationery", "notebook"]),
    ("Ballpoint Pens - Blue Ink, Set of 10", ["stationery", "pens"]),
    ("Mosquito Repellent Liquid Refill", ["home", "repellent"]),
    ("Fresh Paneer - Malai, Soft", ["dairy", "paneer"]),
    ("Greek Yogurt - Blueberry", ["dairy", "yogurt"]),
    ("Oats - Rolled, Gluten Free", ["breakfast", "oats"]),
    ("Corn Flakes - Original", ["breakfast", "cereal"]),
]

# paraphrase → id of the title it rewrites
PARAPHRASES = {
    "pure cold-pressed coconut oil for hair": "t00",
    "aged long grain basmati rice": "t01",
    "bitter chocolate with 70 percent cacao": "t02",
    "dog kibble with chicken and rice for adult dogs": "t18",
    "scented clumping litter for cats": "t19",
    "pack of 4 AA batteries": "t24",
    "blue ball pens, 10 pack": "t26",
    "gluten-free rolled oats": "t30",
}


def tagging_records() -> list[dict]:
    return [{"id": f"t{i:02d}", "text": t, "source": "hand", "labels": tags} for i, (t, tags) in enumerate(TITLES)]


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> ReferenceIndex:
    return build_index(tagging_records(), tmp_path_factory.mktemp("refs"), task="tagging", progress=False)


def test_index_holds_every_record(index):
    assert index.count == len(TITLES)


@pytest.mark.parametrize("query,expected", sorted(PARAPHRASES.items()))
def test_paraphrase_finds_its_title_in_top_3(index, query, expected):
    (references,) = index.query([query], k=3)
    assert expected in [r.id for r in references], references


def test_query_returns_references_ranked_by_cosine(index):
    results = index.query(["coconut hair oil", "blueberry yogurt"], k=5)  # one batched call
    assert len(results) == 2 and all(len(refs) == 5 for refs in results)
    top = results[0][0]
    assert isinstance(top, Reference)
    assert (top.id, top.text, top.answer, top.task) == ("t00", TITLES[0][0], "hair care, natural", "tagging")
    for refs in results:
        scores = [r.score for r in refs]
        assert scores == sorted(scores, reverse=True)
        assert all(-1.0 <= s <= 1.0 for s in scores)
    exact = index.query(TITLES[5][0], k=1)[0][0]  # a stored text scores ≈ 1 against itself
    assert exact.id == "t05" and exact.score == pytest.approx(1.0, abs=1e-3)


def test_k_larger_than_index_and_bad_k(index):
    assert len(index.query(["rice"], k=100)[0]) == len(TITLES)
    assert index.query([], k=3) == []
    with pytest.raises(ValueError):
        index.query(["rice"], k=0)


def test_embeddings_cut_by_tokens_keep_their_order_and_values():
    """Texts of spread lengths, embedded in batches cut by a small token budget (longest first), come back
    in input order with the values of one batch of all of them."""
    texts = ["Coconut oil", "A long review of a body wash " * 12, "Lavender shower gel, 400 ml", "ok"]
    whole = np.array(embed(texts, max_tokens=0))
    cut = np.array(embed(texts, max_tokens=24))
    assert cut.shape == (4, 384) and np.allclose(cut, whole, atol=1e-5)
    assert np.allclose(cut[2], embed([texts[2]])[0], atol=1e-5)


def test_model_loaded_once_per_process():
    assert load_model() is load_model()


def test_embeddings_are_sentence_transformers_own_without_importing_it():
    """Plain transformers, mean pooling and unit length give sentence-transformers' embeddings of the bundled
    model (so indexes built before stay valid), in a process that never imports sentence-transformers (nor the
    scikit-learn and datasets it brings)."""
    from sentence_transformers import SentenceTransformer

    texts = ["Coconut oil", "A long review of a body wash " * 40, "Ünïcode façade soap 😀", "ok"]
    reference = SentenceTransformer(str(model_path())).encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(np.array(embed(texts)) - reference).max() < 1e-5
    code = (
        "import sys\n"
        "from catalog_lora.retrieval.embeddings import embed\n"
        "assert len(embed(['Coconut oil'])[0]) == 384\n"
        "loaded = [m for m in ('sentence_transformers', 'sklearn', 'datasets') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_reindexing_does_not_duplicate_and_updates_answers(tmp_path):
    records = tagging_records()[:10]
    first = build_index(records, tmp_path, task="tagging", progress=False)
    assert first.count == 10
    again = build_index(records, tmp_path, task="tagging", progress=False)
    assert again.count == 10
    assert again.add(records, progress=False) == 0  # unchanged entries are not embedded again
    changed = dict(records[0], labels=["relabelled"])
    assert again.add([changed], progress=False) == 1
    assert again.count == 10
    assert again.query([records[0]["text"]], k=1)[0][0].answer == "relabelled"
    fresh = build_index(records[:3], tmp_path, task="tagging", progress=False, reset=True)
    assert fresh.count == 3


def test_category_and_description_answers_and_task_inference(tmp_path):
    records = [
        {"id": "c1", "text": "Basmati Rice 5 kg", "source": "bb", "path": ["Foodgrains", "Rice", "Basmati"]},
        {"id": "d1", "text": "Dark Chocolate Bar", "source": "bb", "description": "A rich bar of 70% cocoa."},
        {"id": "g1", "text": "Shampoo with Tea Tree", "source": "bb", "labels": ["hair"], "labels_l2": []},
    ]
    index = build_index(records, tmp_path, progress=False)  # task from each record's fields
    by_id = {r.id: r for r in index.query(["x"], k=3)[0]}
    assert (by_id["c1"].answer, by_id["c1"].task) == ("Foodgrains > Rice > Basmati", "category")
    assert (by_id["d1"].answer, by_id["d1"].task) == ("A rich bar of 70% cocoa.", "description")
    assert (by_id["g1"].answer, by_id["g1"].task) == ("hair", "tagging")


def test_empty_dataset_is_an_error(tmp_path):
    with pytest.raises(ReferenceIndexError, match="empty"):
        build_index([], tmp_path / "refs", task="tagging", progress=False)


def test_record_missing_its_answer_field_is_an_error(tmp_path):
    with pytest.raises(ReferenceIndexError, match="labels"):
        build_index([{"id": "a", "text": "x"}], tmp_path / "refs", task="tagging", progress=False)
    with pytest.raises(ReferenceIndexError, match="none of the answer fields"):
        build_index([{"id": "a", "text": "x"}], tmp_path / "refs", progress=False)
    assert not (tmp_path / "refs").exists()  # checked before anything is written


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(ReferenceIndexError, match="no reference index"):
        ReferenceIndex.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReferenceIndexError, match="no reference index"):
        ReferenceIndex.open(tmp_path / "empty")
    assert not (tmp_path / "nowhere").exists()  # opening does not create anything


def test_corrupt_index_is_a_clear_error(tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    (folder / "chroma.sqlite3").write_bytes(b"this is not a sqlite database\x00" * 500)
    with pytest.raises(ReferenceIndexError, match="corrupt"):
        ReferenceIndex.open(folder)


def test_index_without_the_collection_is_a_clear_error(tmp_path):
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(tmp_path), settings=Settings(anonymized_telemetry=False))
    client.create_collection("something_else", embedding_function=None)
    with pytest.raises(ReferenceIndexError, match="corrupt or unreadable"):
        ReferenceIndex.open(tmp_path)
    assert COLLECTION_NAME not in [c.name for c in client.list_collections()]


def test_cli_build_in_another_process_then_open_and_query(tmp_path, capsys):
    """Persistence across a restart: a subprocess builds the index, this process reads it."""
    dataset = tmp_path / "prepared"
    dataset.mkdir()
    with (dataset / "train.jsonl").open("w", encoding="utf-8") as handle:
        for record in tagging_records():
            handle.write(json.dumps(record) + "\n")
    output = tmp_path / "run" / "references"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "catalog_lora.retrieval.references", "build", str(dataset), "--output", str(output)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(TITLES)} references" in done.stdout

    with ReferenceIndex.open(output) as index:
        assert index.count == len(TITLES)
        assert index.query(["gluten-free rolled oats"], k=3)[0][0].id == "t30"

    assert main(["query", str(output), "aged long grain basmati rice", "-k", "2", "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["query"] == "aged long grain basmati rice"
    assert line["references"][0]["id"] == "t01"
    assert line["references"][0]["answer"] == "staples, rice"

    assert main(["query", str(tmp_path / "missing"), "rice"]) == 2
    assert "no reference index" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "missing"), "--output", str(tmp_path / "x")]) == 2
