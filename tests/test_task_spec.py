"""The task spec: labels, answer and taxonomy of each task; allowed values; the run info and the config embed it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog_lora.records.task_spec import TaskSpec
from catalog_lora.runs.folder import INFO_FILE, read_run_info
from training.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"

TAGGED = {"id": "1", "text": "t", "labels": ["Fragrance", "Price"], "labels_l2": ["Scent"]}
PATHED = {"id": "2", "text": "t", "path": ["Beauty", "Hair Care", "Oil"]}


def test_labels_and_answer_of_each_task():
    assert TaskSpec("tagging").labels(TAGGED) == ["Fragrance", "Price"]
    assert TaskSpec("tagging", label_field="labels_l2").answer(TAGGED) == ["Scent"]
    assert TaskSpec("category").labels(PATHED) == ["Beauty > Hair Care > Oil"]
    assert TaskSpec("category", levels=2).answer(PATHED) == "Beauty > Hair Care"
    assert TaskSpec("description").answer({"description": "A lamp."}) == "A lamp."
    with pytest.raises(ValueError, match="has no labels"):
        TaskSpec("description").labels({"description": "A lamp."})


def test_taxonomy_of_the_training_records():
    taxonomy = TaskSpec("category", levels=1).taxonomy([PATHED, {**PATHED, "path": ["Food", "Rice"]}])
    assert taxonomy.labels == ["Beauty", "Food"] and not taxonomy.multi_label
    assert TaskSpec("tagging").taxonomy([TAGGED]).multi_label
    assert TaskSpec("description").taxonomy([{"description": "x"}]) is None


@pytest.mark.parametrize(
    ("fields", "named", "allowed"),
    [
        ({"task": "summary"}, "task='summary'", "tagging, category, description"),
        ({"task": "category", "levels": 0}, "levels=0", "None (the whole path)"),
        ({"task": "category", "levels": -1}, "levels=-1", "None (the whole path)"),
        ({"task": "tagging", "label_field": "labels_l3"}, "label_field='labels_l3'", "labels, labels_l2"),
    ],
)
def test_a_bad_value_is_named_with_the_allowed_ones(fields, named, allowed):
    with pytest.raises(ValueError) as error:
        TaskSpec(**fields)
    assert named in str(error.value) and allowed in str(error.value)


def test_a_frozen_value():
    spec = TaskSpec("category", levels=2)
    with pytest.raises(AttributeError):
        spec.levels = 3
    assert spec == TaskSpec("category", 2, "labels") and len({spec, TaskSpec("category", 2)}) == 1


def test_run_info_reads_the_flat_keys_of_catalog_lora_json(tmp_path):
    (tmp_path / INFO_FILE).write_text(json.dumps({"task": "category", "label_levels": 2, "label_field": "labels"}))
    assert read_run_info(str(tmp_path)).spec == TaskSpec("category", 2)
    (tmp_path / INFO_FILE).write_text(json.dumps({"task": "tagging", "label_levels": None}))
    info = read_run_info(str(tmp_path))
    assert info.spec == TaskSpec("tagging") and info.multi_label


def test_the_config_whole_path_is_levels_none():
    assert load_config(CONFIGS / "sample_tagging.yaml").spec == TaskSpec("tagging")
    assert load_config(CONFIGS / "sample_category.yaml").spec == TaskSpec("category", 2)
    with pytest.raises(ValueError, match="data.label_levels"):
        load_config(CONFIGS / "sample_category.yaml", ["data.label_levels=-1"])
