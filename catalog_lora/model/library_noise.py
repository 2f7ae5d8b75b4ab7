"""Known harmless messages of the libraries under the model, silenced at their source.

Each filter matches one exact message of one library's logger or warning, so every other warning
still reaches the user. :func:`catalog_lora.model.base_model.load_base_model` installs them before anything
imports peft (whose import loads bitsandbytes), builds an adapter or saves a checkpoint.
"""

from __future__ import annotations

import logging
import re
import warnings
from functools import cache

# bitsandbytes, imported by peft, tries on CPUs with AVX512-BF16 to fetch an optional 4-bit CPU kernel from
# the Hub's kernels-community and warns at import when the `kernels` package is not installed; it then uses
# its own CPU kernel. Only 4-bit inference on a CPU would be slower, and this project runs 4-bit on CUDA only.
BITSANDBYTES_KERNELS = ("bitsandbytes.backends.cpu.ops", r"Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'")
# accelerate's save_state (a training checkpoint) stores tensors that share memory once. SmolLM2 ties its
# output layer to its input embeddings (tie_word_embeddings), so lm_head.weight is embed_tokens.weight; a
# resumed run builds the model with the tie, which makes it whole again. Any other shared tensor still warns.
ACCELERATE_TIED_HEAD = ("accelerate.utils.other", r"Removed shared tensor \{'[\w.]*lm_head\.weight'\} while saving")
# peft 0.21's PeftModel reads transformers 5's deprecated alias `is_gradient_checkpointing` (the same value
# as its replacement `is_activation_checkpointing`) on every adapter it builds or loads.
TRANSFORMERS_CHECKPOINTING_ALIAS = ("transformers.modeling_utils", r"`is_gradient_checkpointing` is deprecated")


class DropMessage(logging.Filter):
    """A logging filter that drops the records whose message matches ``pattern`` and passes the rest."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


@cache
def silence_known_noise() -> None:
    """Install the filters above, once per process."""
    for logger, pattern in (BITSANDBYTES_KERNELS, ACCELERATE_TIED_HEAD):
        logging.getLogger(logger).addFilter(DropMessage(pattern))
    module, message = TRANSFORMERS_CHECKPOINTING_ALIAS
    warnings.filterwarnings("ignore", message=message, category=FutureWarning, module=re.escape(module))
