"""int8 linear layers for CPU inference: int8 weights (one scale per output channel) times int8
activations (one scale per token, chosen per call), accumulated in int32 by ``torch._int_mm``.

Why not ``torch.ao``'s dynamic quantization: it quantizes a call's whole input with one scale, so
one token with large activations (or a padding position) coarsens every other token of the batch;
on the body-wash adapter that changed most tag sets. One scale per token keeps each row's own
range, at the same int8 matmul speed.
"""

from __future__ import annotations

import torch


class Int8Linear(torch.nn.Module):
    """A ``torch.nn.Linear`` (no bias) in int8: ``y = (q(x) @ W_q.T) * s_x * s_w``."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Int8Linear takes linear layers without bias (the decoder's)")
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127
        self.register_buffer("weight_t", torch.round(weight / scale[:, None]).to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", scale)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
        quantized = torch.round(rows / scale).to(torch.int8)
        if quantized.shape[0] <= 16:  # torch._int_mm needs more than 16 rows
            quantized = torch.nn.functional.pad(quantized, (0, 0, 0, 17 - quantized.shape[0]))
        out = torch._int_mm(quantized, self.weight_t)[: rows.shape[0]].float() * scale * self.weight_scale
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def quantize_int8(model) -> int:
    """Replace every linear layer of the decoder's layers by an :class:`Int8Linear`, in place: plain,
    merged or the base layer under a LoRA adapter (its small A and B stay fp32). The output layer
    (tied to the embeddings) stays fp32. Returns how many layers were replaced."""
    replaced = 0
    for layer in model.model.layers:
        for name, module in list(layer.named_modules()):
            if isinstance(module, torch.nn.Linear) and "lora_" not in name:  # a LoRA layer's A and B stay fp32
                parent_name, _, child = name.rpartition(".")
                setattr(layer.get_submodule(parent_name) if parent_name else layer, child, Int8Linear(module))
                replaced += 1
    if not replaced:
        raise ValueError("quantize_int8 found no linear layer to quantize in the decoder")
    return replaced
