"""The llama.cpp peer of ``bench/speed.py``: the same adapter merged into the base, exported to GGUF
and run through llama-cpp-python, greedy, one product at a time (its high-level API has no batch),
with llama.cpp's own reuse of the KV cache of the prompt prefix the previous product shared.

Needs ``bash scripts/install_llama_cpp.sh`` (llama-cpp-python built from its source distribution); the GGUF
file is made by :mod:`model_cards.export`, with the same llama.cpp's converter.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GGUF_DIR = REPO / "bench/.work/gguf"
OUTTYPES = ("f16", "q8_0")


def export_gguf(adapter: Path, outtype: str) -> Path:
    """The adapter as a GGUF file of ``outtype`` (:func:`model_cards.export.gguf_file`), cached by adapter content."""
    from model_cards.export import gguf_file

    if outtype not in OUTTYPES:
        raise ValueError(f"outtype={outtype!r} is not one of {', '.join(OUTTYPES)}")
    digest = hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()[:12]
    folder = GGUF_DIR / f"{adapter.name}-{digest}-{outtype}"
    found = sorted(folder.glob("*.gguf"))
    return found[0] if found else gguf_file(str(adapter), outtype, folder)


def run(
    adapter: Path, outtype: str, prompts: list[str], max_new_tokens: int, grammar: str | None, threads: int
) -> dict:
    """Greedy answers for ``prompts`` and what it took: seconds, tokens processed (prompt tokens
    not reused from the previous prompt's cache, plus generated tokens)."""
    from llama_cpp import Llama, LlamaGrammar

    model = Llama(
        str(export_gguf(adapter, outtype)),
        n_ctx=512,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    compiled = LlamaGrammar.from_string(grammar, verbose=False) if grammar else None
    answers, tokens, previous = [], 0, []
    start = time.perf_counter()
    for prompt in prompts:
        ids = model.tokenize(prompt.encode(), add_bos=False, special=True)
        shared = 0
        while shared < min(len(ids), len(previous)) and ids[shared] == previous[shared]:
            shared += 1
        out = model.create_completion(
            ids,
            max_tokens=max_new_tokens,
            temperature=0.0,
            stop=["\n"],
            grammar=compiled,
        )
        answers.append(out["choices"][0]["text"].strip())
        tokens += len(ids) - min(shared, len(ids) - 1) + out["usage"]["completion_tokens"]
        previous = ids
    return {"answers": answers, "seconds": time.perf_counter() - start, "tokens": tokens}
