"""The llama.cpp peer of ``bench/speed.py``: the same adapter merged into the base, exported to GGUF
and run through llama-cpp-python, greedy, one product at a time (its high-level API has no batch),
with llama.cpp's own reuse of the KV cache of the prompt prefix the previous product shared.

Needs ``bash scripts/install_llama_cpp.sh`` (llama-cpp-python built from its source distribution,
which also carries llama.cpp's ``convert_hf_to_gguf.py`` and ``gguf-py``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LLAMA_CPP = REPO / "bench/.work/llama_cpp"
GGUF_DIR = REPO / "bench/.work/gguf"
OUTTYPES = ("f16", "q8_0")


def converter() -> Path:
    found = sorted(LLAMA_CPP.glob("llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    if not found:
        raise FileNotFoundError(f"no convert_hf_to_gguf.py under {LLAMA_CPP}: run bash scripts/install_llama_cpp.sh")
    return found[-1]


def export_gguf(adapter: Path, outtype: str) -> Path:
    """The adapter merged into its base, as a GGUF file of ``outtype`` (cached by adapter content)."""
    if outtype not in OUTTYPES:
        raise ValueError(f"outtype={outtype!r} is not one of {', '.join(OUTTYPES)}")
    digest = hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()[:12]
    target = GGUF_DIR / f"{adapter.name}-{digest}-{outtype}.gguf"
    if target.is_file():
        return target
    from catalog_lora.inference.engine import Engine

    merged = GGUF_DIR / f"{adapter.name}-{digest}-merged"
    if not (merged / "config.json").is_file():
        engine = Engine.load({"adapter": str(adapter)}, quantization="none", merge=True)
        engine.causal_lm.save_pretrained(merged)
        engine.tokenizer.save_pretrained(merged)
    script = converter()
    # The sdist's gguf-py is the converter's own version of the gguf package.
    env = {**os.environ, "PYTHONPATH": f"{script.parent / 'gguf-py'}{os.pathsep}{script.parent}"}
    partial = target.with_suffix(".partial")
    subprocess.run(
        [sys.executable, str(script), str(merged), "--outtype", outtype, "--outfile", str(partial)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    partial.replace(target)
    return target


def taxonomy_grammar(labels: list[str], leading_space: bool) -> str:
    """GBNF for a tag answer: taxonomy labels joined by ``", "`` (the engine's constraint, except that
    GBNF cannot forbid a repeated label; the parser drops repeats)."""

    def literal(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    first = '" "' if leading_space else ""
    return (
        f'root ::= {first} label ("," " " label)*\nlabel ::= ' + " | ".join(literal(label) for label in labels) + "\n"
    )


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
