"""How a run uses its device: gradient checkpointing, the optimizer, mixed precision.

The base model's precision (bf16 LoRA or QLoRA 4-bit on CUDA, fp32 on CPU) is chosen by the one
loader, :func:`catalog_lora.model.base_model.choose_precision`; what follows from it for training is decided
here, by plain functions of (device, free memory, model shape, config) that CPU tests can check:

- ``model.gradient_checkpointing: auto`` turns recomputation on only when the estimated activations
  of one micro-batch would not fit beside the weights. It costs a second forward pass per step (about
  a fifth of the step or more) and buys nothing when the activations fit.
- ``train.optimizer: auto`` is torch's AdamW (fused into one kernel on CUDA) unless the base is
  quantized, where the QLoRA recipe's 8-bit AdamW is kept. For a few million LoRA parameters the
  8-bit states save a few MB and cost a kernel per tensor per step.
- On CUDA the run computes under bf16 (or fp16) autocast with the trainable weights in fp32: a bf16
  master copy would lose updates smaller than its 8-bit mantissa once the learning rate decays.
- ``train.compile`` (``off``, ``on``, ``graphs``): a 135M model's GPU step is bound by the host issuing its
  ~7,700 small kernels (``bench/results/gpu-profile.txt``), not by the GPU; compiling fuses them, CUDA
  graphs replay them without the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from catalog_lora.model.base_model import Precision

CHECKPOINTING = ("auto", "on", "off")
COMPILE = ("off", "on", "graphs")
GRAPH_LENGTH_STEP = 16  # train.compile=graphs pads each batch's length up to a multiple of this
# Activation memory may take at most this share of what the weights leave free: the rest is for the
# allocator's fragmentation, the loss's logits and the evaluation's batches.
ACTIVATION_SHARE = 0.5


@dataclass(frozen=True)
class ModelShape:
    """What the activation estimate needs of a decoder (read from its transformers config)."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int

    @classmethod
    def of(cls, config) -> ModelShape:
        return cls(
            config.num_hidden_layers,
            config.hidden_size,
            getattr(config, "intermediate_size", 4 * config.hidden_size),
            config.num_attention_heads,
            config.vocab_size,
        )


def activation_bytes(shape: ModelShape, rows: int, width: int, layers: int, bytes_per_value: int, logits: bool) -> int:
    """A generous estimate of the activations backpropagation keeps for one micro-batch of ``rows`` x ``width``
    tokens through ``layers`` decoder layers (Korthikanti et al. 2022, per layer and token: about 34 hidden
    widths at 2 bytes, counted here as 16 hidden and 3 gated-MLP widths of values, plus the attention
    probabilities ``heads x width`` per token), and the fp32 logits over the vocabulary for a language model's loss."""
    tokens = rows * width
    per_token_layer = (16 * shape.hidden + 3 * shape.intermediate) * bytes_per_value + 5 * shape.heads * width
    total = tokens * layers * per_token_layer
    if logits:
        total += tokens * shape.vocab * 4 * 2  # the logits and their gradient
    return total


def choose_checkpointing(setting: str, device: str, estimate: int, free_bytes: int | None) -> tuple[bool, str]:
    """Whether to recompute activations in the backward pass, and why."""
    if setting not in CHECKPOINTING:
        raise ValueError(f"gradient checkpointing {setting!r} is not one of {', '.join(CHECKPOINTING)}")
    gib = lambda n: f"{n / 2**30:.2f} GiB"  # noqa: E731
    if setting != "auto":
        return setting == "on", f"model.gradient_checkpointing={setting} asked for"
    if free_bytes is None:
        return False, f"auto: the activations (about {gib(estimate)} a micro-batch) are not weighed on {device}"
    room = ACTIVATION_SHARE * free_bytes
    if estimate <= room:
        return False, f"auto: the activations (about {gib(estimate)} a micro-batch) fit in {gib(room)} of {device} memory"
    return True, f"auto: the activations (about {gib(estimate)} a micro-batch) exceed {gib(room)} of {device} memory"


def choose_optimizer(setting: str, precision: Precision) -> tuple[str, bool]:
    """The optimizer's name (``adamw`` or ``adamw_8bit``) and whether torch's fused AdamW kernel is used."""
    if setting == "auto":
        setting = "adamw_8bit" if precision.quantization in ("4bit", "8bit") else "adamw"
    fused = setting == "adamw" and precision.device.startswith("cuda")
    return setting, fused


def mixed_precision(device_type: str) -> str:
    """accelerate's ``mixed_precision`` on a device: autocast in the compute dtype that
    :func:`~catalog_lora.model.base_model.choose_precision` gives CUDA (trainable weights kept in fp32, see
    :func:`upcast_trainable`), none on CPU (fp32 throughout)."""
    if device_type != "cuda":
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def upcast_trainable(model) -> None:
    """The trainable weights (LoRA, a head's new layer) in fp32, the frozen base as loaded, for a run under
    autocast. peft's cast of each LoRA input to its weights' dtype is turned off: under autocast the LoRA
    product runs in the compute dtype whatever the input's, so that cast (and its gradient's cast back)
    would be two more kernels per LoRA module per pass, for nothing (about 11% of a step's kernels)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False


def length_multiple(setting: str) -> int:
    """Each batch's padded length is a multiple of this under ``train.compile`` ``setting``: under ``graphs``
    one CUDA graph is captured per batch shape, so the lengths come in steps of :data:`GRAPH_LENGTH_STEP`."""
    return GRAPH_LENGTH_STEP if setting == "graphs" else 1


def compile_model(model, setting: str) -> None:
    """``train.compile`` applied to the PEFT model's base model in place (the state dict's keys stay as they are)."""
    if setting == "on":
        model.get_base_model().compile(dynamic=True)
    elif setting == "graphs":  # one CUDA graph per batch shape: the lengths are bucketed (GRAPH_LENGTH_STEP)
        model.get_base_model().compile(mode="reduce-overhead")
