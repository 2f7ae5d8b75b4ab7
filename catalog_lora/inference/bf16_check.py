"""Whether a head adapter may be served in bf16: measured once, stored with the adapter, read by the Space.

On a CPU that computes bf16 natively (AVX512-BF16 or AMX) a head answers several times faster in bf16
than in fp32, but bf16 rounds every weight and activation, and an answer near a threshold can change.
So the run records how often it does not: :func:`measure_bf16_agreement` answers texts of the run's
validation split in fp32 and in bf16 and stores the share of equal answers as ``catalog_lora.json``'s
``bf16_agreement`` (at the end of training, ``eval.bf16_check``; for a finished run,
``python -m training.precision RUN``). :func:`serving_quantization` then picks bf16 for that adapter where
the CPU computes it natively and the agreement is at least :data:`BF16_MIN_AGREEMENT`, fp32 otherwise,
and says why.

The measurement runs on any CPU: where bf16 is not native torch emulates it (several times slower, the
same rounding of weights and activations), so a run trained on a machine without native bf16 still
carries the figure the serving machine needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from catalog_lora.model.base_model import Precision, cpu_computes_bf16
from catalog_lora.runs.folder import RunInfo

BF16_MIN_AGREEMENT = 0.98
"""The least share of validation texts whose bf16 answer equals the fp32 one for bf16 serving."""


@dataclass(frozen=True)
class Bf16Agreement:
    agreement: float
    """Share of the texts whose labels in bf16 equal those in fp32."""
    texts: int
    native: bool
    """Whether this CPU computed bf16 natively (else torch emulated it: same rounding, slower)."""


def measure_bf16_agreement(
    source: str, texts: list[str], attributes: list[dict | None] | None = None, batch_size: int = 16, progress: bool = True
) -> Bf16Agreement:
    """Answer ``texts`` (with their ``attributes``, for a description head) with the head adapter at ``source``
    (run folder or Hub id) in fp32, then with the same weights and activations in bf16, on the CPU; the share
    of equal label sets."""
    from catalog_lora.inference.engine import Engine

    if not texts:
        raise ValueError("measure_bf16_agreement needs at least one text (e.g. the validation split's)")
    engine = Engine.load({"adapter": source}, quantization="none", device="cpu")
    if engine.spec("adapter").info.method != "head":
        raise ValueError(f"{source} is a {engine.spec('adapter').info.method} adapter: bf16 serving is chosen for heads")
    fp32 = engine.predict("adapter", texts, attributes, batch_size=batch_size, progress=progress)
    # The same engine in bf16, as Engine.load(quantization="bf16") would load it; built by hand because that
    # refuses a CPU without native bf16, where this measurement is still worth making (emulated).
    engine.model.to(torch.bfloat16)
    engine.precision = Precision("bf16", torch.bfloat16, "cpu", "bf16 agreement measurement")
    bf16 = engine.predict("adapter", texts, attributes, batch_size=batch_size, progress=progress)
    same = sum(set(a.labels) == set(b.labels) for a, b in zip(fp32, bf16, strict=True))
    return Bf16Agreement(same / len(texts), len(texts), cpu_computes_bf16())


def serving_quantization(quantization: str, info: RunInfo, device: str, cpu_bf16: bool | None = None) -> tuple[str, str]:
    """The quantization to load an adapter with for serving, and why (``""``: the loader's own reason).

    Only ``quantization="auto"`` for a head adapter on the CPU is decided here: bf16 where ``cpu_bf16``
    (default: this CPU computes bf16 natively) and the adapter's recorded ``bf16_agreement`` is at least
    :data:`BF16_MIN_AGREEMENT`; fp32 otherwise. Anything else is kept as asked."""
    if quantization != "auto" or info.method != "head" or device != "cpu":
        return quantization, ""
    cpu_bf16 = cpu_computes_bf16() if cpu_bf16 is None else cpu_bf16
    if info.bf16_agreement is None:
        return "none", (
            "fp32: no bf16 agreement is recorded with this adapter (`python -m training.precision RUN` measures it)"
        )
    measured = f"its answers in bf16 equal fp32's on {info.bf16_agreement:.1%} of {info.bf16_agreement_texts} validation texts"
    if info.bf16_agreement < BF16_MIN_AGREEMENT:
        return "none", f"fp32: {measured}, under the {BF16_MIN_AGREEMENT:.0%} that bf16 serving needs"
    if not cpu_bf16:
        return "none", f"fp32: this CPU has no native bf16 (AVX512-BF16 or AMX), although {measured}"
    return "bf16", f"bf16: this CPU computes it natively and {measured} (at least {BF16_MIN_AGREEMENT:.0%})"
