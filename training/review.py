"""The adapter's review threshold, chosen on the validation split at the end of training."""

from __future__ import annotations

from catalog_lora.confidence import choose_threshold
from catalog_lora.engine import Engine
from training.config import TrainConfig
from training.data import target_of


def review_threshold(engine: Engine, name: str, validation: list[dict], config: TrainConfig) -> float:
    """Predict the validation split and choose the confidence below which an answer is sent to review.

    Every label the adapter chose is one answer: right when it is in the record's gold labels
    (tags) or equals the gold path (categories); see :func:`catalog_lora.confidence.choose_threshold`."""
    predictions = engine.predict(
        name, [r["text"] for r in validation], [r.get("attributes") for r in validation],
        batch_size=config.eval.batch_size, constrained=config.eval.constrained,
    )
    answers = []
    for prediction, record in zip(predictions, validation, strict=True):
        gold = target_of(record, config.task, config.data.label_levels, config.data.label_field)
        gold = set(gold) if isinstance(gold, list) else {gold}
        answers += [(prediction.confidence.get(label, 0.0), label in gold) for label in prediction.labels]
    return choose_threshold(answers)
