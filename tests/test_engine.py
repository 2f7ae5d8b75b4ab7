"""The inference engine on the embedded model: batching, constraints, adapters, batch files."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import torch

from catalog_lora.catalogs.batch import BatchInputError, blank_lines_note, escape_formulas, predict_table, read_table
from catalog_lora.inference.engine import Engine
from catalog_lora.inference.micro_batch import MicroBatcher
from catalog_lora.model.base_model import cpu_computes_bf16, load_base_model
from catalog_lora.model.int8 import Int8Linear, quantize_int8
from catalog_lora.records.labels import Taxonomy, parse_category, parse_tags

PRODUCTS = [
    "Smells like a spring garden, I keep sniffing my arms.",
    "Way too pricey for such a tiny bottle.",
    "The pump broke on day two and the gel leaked everywhere in my bag.",
    "ok",
    "Rich creamy foam, skin feels soft for hours after the shower, and the scent lingers.",
]
# one batch of three lengths whose rows finish apart: what a batched-vs-single comparison needs, at less cost
SPREAD = [PRODUCTS[0], PRODUCTS[3], PRODUCTS[4]]


@pytest.fixture(scope="module")
def engine(tiny_runs):
    return Engine.load({name: str(path) for name, path in tiny_runs.items()})


def test_batched_greedy_equals_one_at_a_time(engine):
    for constrained in (False, True):
        batched = [p.text for p in engine.predict("tagging", SPREAD, batch_size=8, constrained=constrained)]
        single = [engine.predict("tagging", [text], constrained=constrained)[0].text for text in SPREAD]
        assert batched == single


def test_shared_prefix_cache_changes_cost_not_answers(engine):
    answers, costs = {}, {}
    for share in (False, True):
        engine.share_prefix = share
        engine.tokens_processed = 0
        answers[share] = [p.text for p in engine.predict("tagging", PRODUCTS, batch_size=8)]
        costs[share] = engine.tokens_processed
    assert answers[True] == answers[False]
    assert costs[True] < costs[False], "the instruction prefix is run once per batch, not once per product"


def test_constrained_answers_only_hold_taxonomy_labels(engine):
    spec = engine.spec("tagging")
    for use_adapter in (True, False):
        for prediction in engine.predict("tagging", PRODUCTS, use_adapter=use_adapter, batch_size=8):
            assert prediction.labels, prediction
            assert set(prediction.labels) <= set(spec.taxonomy.labels)
            assert prediction.unknown == []
    for prediction in engine.predict("category", PRODUCTS[:2], top_k=3):
        assert len(prediction.labels) == 1 and prediction.labels[0] in engine.spec("category").taxonomy.labels
        assert 1 <= len(prediction.scores) <= 3 and set(prediction.scores) <= set(
            engine.spec("category").taxonomy.labels
        )


def test_adapters_share_one_base_and_switch_per_request(engine):
    tags = engine.predict("tagging", PRODUCTS[:1])[0]
    category = engine.predict("category", PRODUCTS[:1])[0]
    again = engine.predict("tagging", PRODUCTS[:1])[0]
    assert tags.text == again.text
    assert category.labels[0] in engine.spec("category").taxonomy.labels
    assert len(engine.adapters) == 3


def test_long_text_is_truncated_and_flagged(engine):
    long_text = "great lather " * 400
    prediction = engine.predict("tagging", [long_text])[0]
    assert prediction.truncated and prediction.labels


def test_description_streams_growing_text(engine):
    pieces = list(engine.stream("description", "Sunny Farms Organic Rolled Oats 1 kg", {"brand": "Sunny Farms"}))
    assert len(pieces) >= 2 and pieces[-1].startswith(pieces[0])


def test_predict_table_keeps_every_row(engine, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text('title,brand\n"Smells great, lathers well",a\n   ,b\n=HYPERLINK("x"),c\ntoo,many,fields\n')
    frame = read_table(path)
    out = predict_table(engine, frame, "title", ["tagging", "category"])
    assert len(out) == 4 and list(out.columns) == ["title", "brand", "tagging", "category", "error"]
    assert out.loc[0, "error"] == "" and out.loc[0, "tagging"]
    assert "empty title" in out.loc[1, "error"] and out.loc[1, "tagging"] == ""
    assert "malformed row (line 5)" in out.loc[3, "error"] and out.loc[3, "tagging"]
    assert escape_formulas(out).loc[2, "title"].startswith("'=")


def test_csv_line_numbers_and_blank_lines_are_reported(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text('title,brand\n"two\nline title",a\n\n,\ntoo,many,fields\nok,b\n')
    frame = read_table(path)
    assert frame["title"].tolist() == ["two\nline title", "", "", "too", "ok"]  # ",": an empty title, still a row
    assert frame.loc[1, "error"] == "blank line (line 4)"
    assert frame.loc[3, "error"] == "malformed row (line 6): 3 fields, expected 2"
    assert blank_lines_note(frame) == " (1 blank line, marked in the error column)"


def test_bad_tables_get_clear_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(BatchInputError, match="empty"):
        read_table(empty)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("title\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(BatchInputError, match="not UTF-8"):
        read_table(latin)
    with pytest.raises(BatchInputError, match="unsupported file type"):
        read_table(tmp_path / "catalog.pdf")
    frame = pd.DataFrame({"name": ["x"]})
    with pytest.raises(BatchInputError, match="column 'title' not found; the file has: name"):
        predict_table(None, frame, "title", [])


def test_label_parsing():
    taxonomy = Taxonomy(["Fragrance", "Price", "Skin Feel"], multi_label=True)
    parsed = parse_tags(" fragrance, Price ,price; skin  feel, Glitter.", taxonomy)
    assert parsed.labels == ["Fragrance", "Price", "Skin Feel"] and parsed.unknown == ["Glitter"]
    paths = Taxonomy(["Beverages > Tea", "Beverages > Coffee"], multi_label=False)
    assert parse_category("beverages >> tea\nmore text", paths).labels == ["Beverages > Tea"]
    assert parse_category("Beverages / Juice", paths).unknown == ["Beverages > Juice"]


def test_every_chosen_label_has_its_probability(engine, tiny_runs):
    for name in ("tagging", "category"):
        for prediction in engine.predict(name, PRODUCTS, batch_size=8):
            assert set(prediction.confidence) == set(prediction.labels), prediction
            assert all(0.0 < p <= 1.0 for p in prediction.confidence.values())
    assert engine.predict("description", PRODUCTS[:1])[0].confidence == {}
    for task in ("tagging", "category"):
        threshold = json.loads((tiny_runs[task] / "catalog_lora.json").read_text())["review_threshold"]
        assert 0.0 <= threshold <= 1.0, "chosen on the validation split at the end of training"


def test_greedy_confidence_is_the_constrained_sequence_probability(engine):
    """Recorded while decoding, it equals the teacher-forced probability of the same path (the ranking's numbers)."""
    spec = engine.spec("category")
    for text in PRODUCTS[:3]:
        [prediction] = engine.predict("category", [text])
        ranked = engine.rank_categories(spec, engine.prompt_for(spec, text)[0], 3)
        assert list(ranked.values()) == sorted(ranked.values(), reverse=True) and sum(ranked.values()) <= 1 + 1e-6
        label = prediction.labels[0]
        if label in ranked:
            assert prediction.confidence[label] == pytest.approx(ranked[label], rel=1e-3)


def test_answers_below_the_review_threshold_are_marked(engine):
    spec = engine.spec("tagging")
    saved = spec.info.review_threshold
    try:
        spec.info.review_threshold = 1.01
        marked = engine.predict("tagging", PRODUCTS[:2])
        assert all(p.needs_review and p.low_confidence == p.labels for p in marked)
        spec.info.review_threshold = 0.0
        assert not any(p.needs_review for p in engine.predict("tagging", PRODUCTS[:2]))
    finally:
        spec.info.review_threshold = saved


def test_choose_threshold_separates_wrong_from_right():
    from catalog_lora.inference.confidence import choose_threshold

    assert choose_threshold([(0.9, True), (0.8, True), (0.3, False), (0.2, False)]) == 0.31
    assert choose_threshold([(0.4, False), (0.3, False)]) == 0.41, "all wrong: every answer is reviewed"
    assert choose_threshold([(0.4, True)]) == 0.0 and choose_threshold([]) == 0.5


def test_decoding_loop_answers_as_generate(engine):
    """The engine's own loop (finished rows dropped, the output layer only on allowed columns) answers
    exactly as ``generate`` with the same constraint and stop, one product at a time."""
    spec = engine.spec("tagging")
    for constrained in (False, True):
        ours = [p.text for p in engine.predict("tagging", SPREAD, batch_size=8, constrained=constrained)]
        theirs = []
        for text in SPREAD:
            batch = engine.tokenizer([engine.prompt_for(spec, text)[0]], return_tensors="pt", add_special_tokens=False)
            length = batch["input_ids"].shape[1]
            with engine._using(spec, True), torch.inference_mode():
                output = engine.model.generate(
                    **batch,
                    max_new_tokens=spec.info.max_new_tokens,
                    do_sample=False,
                    top_p=None,
                    top_k=None,
                    **engine._generation_kwargs(spec, length, constrained),
                )
            theirs.append(engine.tokenizer.decode(output[0, length:], skip_special_tokens=True).strip())
        assert ours == theirs


def tag_sets(engine: Engine, name: str, products: list[str] = PRODUCTS * 2) -> list[frozenset[str]]:
    return [frozenset(p.labels) for p in engine.predict(name, products, batch_size=4)]


def test_merged_engine_answers_as_fp32_and_int8_answers_in_the_taxonomy(engine, tiny_runs):
    """Merged fp32 gives the fp32 LoRA engine's tags exactly. The int8 engines (merged, and on the
    base under the adapter) give taxonomy answers; how often their tag sets equal fp32's on a real
    adapter is the benchmark's agreement figure (bench/results/speed.md), not a test's."""
    fp32 = tag_sets(engine, "tagging", PRODUCTS)  # two batches of 4: a full one and a part one
    merged = Engine.load({"tagging": str(tiny_runs["tagging"])}, merge=True)
    assert merged.merged == "tagging" and tag_sets(merged, "tagging", PRODUCTS) == fp32
    labels = set(engine.spec("tagging").taxonomy.labels)
    for options in ({"merge": True}, {}):
        int8 = Engine.load({"tagging": str(tiny_runs["tagging"])}, quantization="int8", **options)
        assert int8.precision.describe().startswith("int8 linear layers (per-token activations, output layer fp32)")
        assert sum(isinstance(m, Int8Linear) for m in int8.model.modules()) == 7 * 30, "every linear layer of the 30"
        # one product: int8 matmuls are slow on a CPU without VNNI (this suite's machine has AVX2 only)
        assert all(answer and answer <= labels for answer in tag_sets(int8, "tagging", PRODUCTS[1:2])), options


@pytest.mark.skipif(not cpu_computes_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 or AMX)")
def test_bf16_engines_answer_in_the_taxonomy_with_the_adapter_in_bf16(engine, tiny_runs):
    """The bf16 engines (merged, and several adapters on one base) run every weight in bf16 (peft
    loads adapters in fp32: the engine casts them) and give taxonomy answers; their agreement with
    fp32 on a real adapter is the benchmark's figure."""
    labels = set(engine.spec("tagging").taxonomy.labels)
    for options in ({"merge": True}, {}):
        bf16 = Engine.load({"tagging": str(tiny_runs["tagging"])}, quantization="bf16", **options)
        assert bf16.precision.describe().startswith("bf16 weights and activations, bfloat16 on cpu")
        assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}, options
        assert all(answer and answer <= labels for answer in tag_sets(bf16, "tagging")), options
    several = Engine.load({name: str(path) for name, path in tiny_runs.items()}, quantization="bf16")
    assert {p.dtype for p in several.model.parameters()} == {torch.bfloat16}
    [category] = several.predict("category", PRODUCTS[:1])
    assert category.labels and category.labels[0] in several.spec("category").taxonomy.labels


def test_int8_layers_track_fp32_on_real_activations():
    """Every int8 linear layer of the embedded model (outlier channels found on one product), fed the
    real inputs it sees on another, stays within 5% (relative) of its fp32 output (12% without the
    fp32 outlier channels)."""
    model, tokenizer, _ = load_base_model("embedded", "none", "cpu")
    names = [name for name, m in model.model.layers.named_modules() if isinstance(m, torch.nn.Linear)]
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [
        model.model.layers.get_submodule(name).register_forward_hook(
            lambda m, args, out, name=name: seen.setdefault(name, (args[0], out)) and None
        )
        for name in names
    ]
    with torch.inference_mode():
        model(**tokenizer(PRODUCTS[0], return_tensors="pt"))
        for hook in hooks:
            hook.remove()
        assert quantize_int8(model, tokenizer(PRODUCTS[4], return_tensors="pt")["input_ids"]) == 7 * 30
        errors = []
        for name, (x, exact) in seen.items():
            layer = model.model.layers.get_submodule(name)
            assert isinstance(layer, Int8Linear)
            errors.append(float((layer(x) - exact).norm() / exact.norm()))
    assert len(errors) == 7 * 30 and max(errors) < 0.05, sorted(errors)[-3:]


def test_merged_bf16_and_int8_refuse_what_they_cannot_do(tiny_runs):
    with pytest.raises(ValueError, match=r"merge=True folds one adapter into the base, got 2 \(tagging, category\)"):
        Engine.load({"tagging": str(tiny_runs["tagging"]), "category": str(tiny_runs["category"])}, merge=True)
    with pytest.raises(ValueError, match="quantization='int8' is the CPU inference path, not for device='cuda'"):
        Engine.load({"tagging": str(tiny_runs["tagging"])}, quantization="int8", device="cuda")
    with pytest.raises(ValueError, match="quantization='bf16' is the CPU inference path, not for device='cuda'"):
        Engine.load({"tagging": str(tiny_runs["tagging"])}, quantization="bf16", device="cuda")
    with pytest.raises(ValueError, match="quantization='fp8' is not one of auto, 4bit, 8bit, none, int8, bf16"):
        Engine.load({"tagging": str(tiny_runs["tagging"])}, quantization="fp8")
    merged = Engine.load({"tagging": str(tiny_runs["tagging"])}, merge=True)
    with pytest.raises(
        ValueError, match="'tagging' is merged into the base: use_adapter=False needs an Engine without merge"
    ):
        merged.predict("tagging", PRODUCTS[:1], use_adapter=False)
    with pytest.raises(
        ValueError, match="adapter 'tagging' is merged into this Engine's base; load 'category' in another"
    ):
        merged.add_adapter(str(tiny_runs["category"]), "category")


def test_micro_batcher_answers_each_caller_and_never_mixes_adapters(engine):
    """Twelve concurrent callers, two adapters interleaved: each gets the answer to its own product
    from its own adapter, and the requests ran in fewer engine calls than there were requests."""
    batcher = MicroBatcher(engine.predict, max_batch=16, max_wait_s=0.5)
    jobs = [("tagging" if i % 3 else "category", PRODUCTS[i % len(PRODUCTS)]) for i in range(12)]
    alone = {(name, text): engine.predict(name, [text])[0].text for name, text in set(jobs)}  # each distinct one, alone
    expected = [alone[job] for job in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: batcher.predict(*job).text, jobs))
    assert answers == expected
    assert batcher.batches < len(jobs)
    with pytest.raises(KeyError, match="no adapter named 'nope'"):
        batcher.predict("nope", "x")
    assert batcher.predict("tagging", PRODUCTS[1]).text == expected[1], "an error leaves the worker serving"


def test_micro_batcher_runs_a_lone_request_at_once(engine):
    """A request with nobody else waiting is not held back for company: one engine call, no wait."""
    batcher = MicroBatcher(engine.predict, max_wait_s=30)
    answers = [batcher.predict("tagging", text).text for text in PRODUCTS[:2]]
    assert answers == [p.text for p in engine.predict("tagging", PRODUCTS[:2], batch_size=1)]
    assert batcher.batches == 2
