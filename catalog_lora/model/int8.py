"""int8 linear layers for CPU inference: int8 weights (one scale per output channel) times int8
activations (one scale per token, chosen per call), accumulated in int32 by ``torch._int_mm``.

Why not ``torch.ao``'s dynamic quantization: it quantizes a call's whole input with one scale, so
one token with large activations (or a padding position) coarsens every other token of the batch;
on the body-wash adapter that changed most tag sets. One scale per token keeps each row's own
range, at the same int8 matmul speed. A few input channels carry activations far above the rest
(up to ~200x the median in ``v_proj``), always the same ones: they are found once, on a calibration
text (a column maximum above ``OUTLIER_FACTOR`` times the median column maximum), and multiplied in
fp32, as in LLM.int8(). That takes the worst layer's relative error from 12% to under 5%
(``tests/test_engine.py``).
"""

from __future__ import annotations

import torch

OUTLIER_FACTOR = 6.0


class Int8Linear(torch.nn.Module):
    """A ``torch.nn.Linear`` (no bias) in int8: ``y = (q(x) @ W_q.T) * s_x * s_w``, plus the
    ``outliers`` input channels in fp32."""

    def __init__(self, linear: torch.nn.Linear, outliers: torch.Tensor):
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Int8Linear takes linear layers without bias (the decoder's)")
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127
        self.register_buffer("weight_t", torch.round(weight / scale[:, None]).to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", scale)
        self.register_buffer("outliers", outliers)
        self.register_buffer("outlier_weight", weight[:, outliers].t().contiguous())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        dense = None
        if self.outliers.numel():
            dense = rows[:, self.outliers] @ self.outlier_weight
            rows = rows.index_fill(1, self.outliers, 0.0)
        scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
        quantized = torch.round(rows / scale).to(torch.int8)
        if quantized.shape[0] <= 16:  # torch._int_mm needs more than 16 rows
            quantized = torch.nn.functional.pad(quantized, (0, 0, 0, 17 - quantized.shape[0]))
        out = torch._int_mm(quantized, self.weight_t)[: rows.shape[0]].float() * scale * self.weight_scale
        if dense is not None:
            out += dense
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


@torch.inference_mode()
def quantize_int8(model, calibration_ids: torch.Tensor) -> int:
    """Replace every linear layer of the decoder's layers by an :class:`Int8Linear`, in place: plain,
    merged or the base layer under a LoRA adapter (its small A and B stay fp32). The output layer
    (tied to the embeddings) stays fp32. ``calibration_ids`` (``[1, tokens]``) is run once in fp32 to
    find each layer's outlier channels. Returns how many layers were replaced."""
    linears = {
        (index, name): module
        for index, layer in enumerate(model.model.layers)
        for name, module in layer.named_modules()
        if isinstance(module, torch.nn.Linear) and "lora_" not in name  # a LoRA layer's A and B stay fp32
    }
    if not linears:
        raise ValueError("quantize_int8 found no linear layer to quantize in the decoder")
    column_max: dict[torch.nn.Module, torch.Tensor] = {}

    def record(module, args):
        column_max[module] = args[0].reshape(-1, module.in_features).abs().amax(dim=0).float()

    hooks = [module.register_forward_pre_hook(record) for module in linears.values()]
    try:
        model.model(input_ids=calibration_ids)
    finally:
        for hook in hooks:
            hook.remove()
    for (index, name), module in linears.items():
        peak = column_max[module]
        outliers = (peak > OUTLIER_FACTOR * peak.median()).nonzero().flatten()
        layer = model.model.layers[index]
        parent, _, child = name.rpartition(".")
        setattr(layer.get_submodule(parent) if parent else layer, child, Int8Linear(module, outliers))
    return len(linears)
