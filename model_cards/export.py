"""Take a trained adapter anywhere: GGUF for llama.cpp and Ollama, ONNX for the heads, with agreement measured.

    python -m model_cards.export runs/sample-tagging --format gguf --outtype q8_0 [--output DIR]
    python -m model_cards.export runs/bodywash-l1-head --format onnx [--output DIR]
        [--sample FILE.jsonl] [--limit N] [--min-agreement 0.95]

A generate adapter becomes one GGUF file: the LoRA merged into the base by the engine
(``Engine.load(..., merge=True)``), converted by llama.cpp's own ``convert_hf_to_gguf.py``. The prompt
the adapter was trained with (:class:`catalog_lora.records.prompts.PromptTemplate`, rendered around a
mark) is the GGUF's chat template, so llama.cpp and Ollama wrap a user's product text exactly as
training did. Beside it: an Ollama ``Modelfile`` (the same template in Ollama's syntax, temperature 0)
and, for tags and categories, ``taxonomy.gbnf``: a llama.cpp grammar that keeps the answer inside the
taxonomy, in the ``Tag, Tag`` / ``A > B`` form :func:`catalog_lora.records.labels.parse_answer` reads
(like the engine's constraint, except that a grammar cannot forbid a repeated tag; the parser drops
repeats). A generate adapter whose prompts show the nearest training examples is refused: a chat
template cannot search the references index.

The converter is llama.cpp's, as shipped in the llama-cpp-python source distribution
(:data:`LLAMA_CPP_VERSION`, the version ``scripts/install_llama_cpp.sh`` builds): fetched once with
``pip download`` (no build) and only ``convert_hf_to_gguf.py``, ``conversion/`` and ``gguf-py/`` kept, in
``<cache>/llama.cpp-<version>`` (``$CATALOG_LORA_CACHE`` or ``~/.cache/catalog-lora``).
``$CATALOG_LORA_LLAMA_CPP`` names a llama.cpp checkout to use instead.

A head adapter becomes ``model.onnx`` (the merged ``LlamaForSequenceClassification``, torch's dynamo
exporter; inputs ``input_ids`` and ``attention_mask``, output ``logits``) with its tokenizer and
``head.json``: the input format, labels, thresholds, and the neighbours' vote (k, share, temperature,
``neighbours.safetensors`` as :func:`catalog_lora.retrieval.neighbours.save_plain` writes it), all a
caller needs to give the engine's mixed answer. Description heads (a choice among candidate lines found
in the references index) are not exported.

**llama.cpp cannot carry this head** (checked in the llama.cpp of :data:`LLAMA_CPP_VERSION`): its
converter registers no ``LlamaForSequenceClassification`` (only BERT-family, NeoBERT, ModernBERT and
Qwen3 rerankers have a classifier path), and its Llama graph loads no ``cls.output`` tensor, so a
SmolLM2 head has no GGUF form; heads go to ONNX.

Every export measures itself: the engine's answers (:meth:`Engine.predict` with the adapter merged,
fp32, on the CPU) on the run's test split (the dataset recorded in its ``config.yaml``) or on ``--sample`` (JSON
lines with a ``text`` field), against the exported file read back by an independent reader:
onnxruntime for ONNX, transformers' GGUF loader for GGUF (greedy, unconstrained, compared with the
engine unconstrained: the same weights, tokenizer and chat template). ``export.json`` beside the file
says how often they agree ("same tags as the adapter on 97.3% of 234 test texts"), with the counts,
versions and date; below ``--min-agreement`` the export is flagged (a warning, ``"flagged": true``) and
``python -m model_cards.publish --export`` refuses it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import yaml
from filelock import FileLock

from catalog_lora.model.base_model import cache_dir
from catalog_lora.records.dataset_files import load_split, split_path
from catalog_lora.records.labels import parse_answer
from catalog_lora.records.prompts import (
    ATTRIBUTE_PAIR,
    ATTRIBUTE_PAIRS_SEPARATOR,
    ATTRIBUTE_SEPARATOR,
    ATTRIBUTES_LINE,
    WITH_ATTRIBUTES,
    PromptTemplate,
)
from catalog_lora.runs.folder import (
    CONFIG_FILE,
    LEXICAL_FILES,
    NEIGHBOURS_FILE,
    TAXONOMY_FILE,
    fetch_file,
    read_run_info,
)

# The llama-cpp-python sdist whose llama.cpp converts (scripts/install_llama_cpp.sh builds the same version).
LLAMA_CPP_VERSION = "0.3.36"
LLAMA_CPP_ENV = "CATALOG_LORA_LLAMA_CPP"  # a llama.cpp checkout to convert with instead
CONVERTER = "convert_hf_to_gguf.py"
CONVERTER_PARTS = (CONVERTER, "conversion", "gguf-py")  # what the converter needs of llama.cpp
FORMATS = {"gguf": "generate", "onnx": "head"}  # each format and the adapters it takes
READERS = {"gguf": ("gguf",), "onnx": ("onnx", "onnxscript", "onnxruntime")}  # packages an export's versions name
OUTTYPES = ("q8_0", "f16", "bf16")
MIN_AGREEMENT = 0.95
EXPORT_FILE = "export.json"
EXPORT_DIR = "export"  # <run folder>/export/<format> unless --output says otherwise
MODELFILE = "Modelfile"
GRAMMAR_FILE = "taxonomy.gbnf"
ONNX_FILE = "model.onnx"
HEAD_FILE = "head.json"
HEAD_INPUT = PromptTemplate("tagging", "alpaca").user_input("{text}")  # what a head reads (Engine.prompt_for)
MARK = "\x00product\x00"  # stands for the product text while a prompt is cut into a template
SAME = {"tagging": "same tags", "category": "same category", "description": "same description"}
BATCH = 16
SHOWN_DIFFERENCES = 20  # the first rows where the export answers otherwise, kept in export.json


class ExportError(ValueError):
    """The adapter cannot be exported as asked; the message names the value and what is expected."""


def default_output(source: str, fmt: str) -> Path:
    """``<run folder>/export/<format>``, or ``exports/<repo name>-<format>`` for a Hub id."""
    if Path(source).is_dir():
        return Path(source) / EXPORT_DIR / fmt
    return Path("exports") / f"{source.split('/')[-1]}-{fmt}"


# --- GGUF -------------------------------------------------------------------------------------------


def llama_cpp_converter() -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py``: from ``$CATALOG_LORA_LLAMA_CPP``, else from the llama-cpp-python
    sdist, fetched once into the cache (the sdist is not built: only the converter's files are kept)."""
    if os.environ.get(LLAMA_CPP_ENV):
        script = Path(os.environ[LLAMA_CPP_ENV]) / CONVERTER
        if not script.is_file():
            raise ExportError(
                f"{LLAMA_CPP_ENV}={os.environ[LLAMA_CPP_ENV]} holds no {CONVERTER}: name a llama.cpp checkout"
            )
        return script
    folder = cache_dir() / f"llama.cpp-{LLAMA_CPP_VERSION}"
    if (folder / CONVERTER).is_file():
        return folder / CONVERTER
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.with_name(f".{folder.name}.lock")):  # one fetch; other processes wait and reuse it
        if not (folder / CONVERTER).is_file():
            fetch_llama_cpp_converter(folder)
    return folder / CONVERTER


def fetch_llama_cpp_converter(folder: Path) -> None:
    """The converter's files from the llama-cpp-python sdist into ``folder``."""
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".llama.cpp-") as tmp:
        print(f"Fetching llama.cpp's converter (llama-cpp-python {LLAMA_CPP_VERSION} sdist, not built) into {folder}")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                tmp,
                f"llama-cpp-python=={LLAMA_CPP_VERSION}",
            ],
            check=True,
        )
        root = f"llama_cpp_python-{LLAMA_CPP_VERSION}/vendor/llama.cpp/"
        with tarfile.open(Path(tmp) / f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz") as sdist:
            members = [
                m
                for m in sdist.getmembers()
                if m.name.startswith(root) and m.name[len(root) :].split("/")[0] in CONVERTER_PARTS
            ]
            for member in members:
                member.name = member.name[len(root) :]
            sdist.extractall(Path(tmp) / "llama.cpp", members=members, filter="data")
        (Path(tmp) / "llama.cpp").rename(folder)


def prompt_parts(template: PromptTemplate, tokenizer) -> list[str]:
    """The adapter's prompt cut where the product text goes: the text between the parts is the product."""
    return template.prompt(MARK, tokenizer).split(MARK)


def jinja_chat_template(parts: list[str]) -> str:
    """The prompt as a chat template: the last message's content is the product text."""

    def literal(text: str) -> str:
        return f"{{% raw %}}{text}{{% endraw %}}" if any(s in text for s in ("{{", "{%", "{#")) else text

    return "{% set product = messages[-1]['content'] %}" + "{{ product }}".join(literal(p) for p in parts)


def modelfile(gguf_name: str, parts: list[str], eos: str, max_new_tokens: int) -> str:
    """Ollama's Modelfile: the same prompt in Ollama's template syntax, greedy, at most the adapter's answer length."""
    if any('"""' in part or "{{" in part for part in parts):
        raise ExportError("the prompt holds '\"\"\"' or '{{', which an Ollama TEMPLATE cannot hold as text")
    return (
        f"FROM ./{gguf_name}\n"
        f'TEMPLATE """{"{{ .Prompt }}".join(parts)}"""\n'
        "PARAMETER temperature 0\n"
        f"PARAMETER num_predict {max_new_tokens}\n"
        f'PARAMETER stop "{eos}"\n'
    )


def taxonomy_grammar(labels: list[str], multi_label: bool, leading_space: bool) -> str:
    """GBNF for an answer inside the taxonomy: one label, or for tags labels joined by ``", "`` (the
    engine's constraint, except that GBNF cannot forbid a repeated label; the parser drops repeats).
    ``leading_space``: the prompt ends without one (``Tags:``), so the answer starts with it, as in training."""

    def literal(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    first = '" " ' if leading_space else ""
    more = ' ("," " " label)*' if multi_label else ""
    return f"root ::= {first}label{more}\nlabel ::= " + " | ".join(literal(label) for label in labels) + "\n"


def gguf_file(source: str, outtype: str, output: Path, engine=None) -> Path:
    """The adapter merged into its base, its prompt as the chat template, converted by llama.cpp to
    ``output/<name>-<outtype>.gguf``. ``engine``: the adapter already loaded merged (else loaded here)."""
    from catalog_lora.inference.engine import Engine

    if outtype not in OUTTYPES:
        raise ExportError(f"outtype={outtype!r} is not one of {', '.join(OUTTYPES)}")
    script = llama_cpp_converter()
    engine = engine or Engine.load({"adapter": source}, quantization="none", device="cpu", merge=True)
    spec = next(iter(engine.adapters.values()))
    output.mkdir(parents=True, exist_ok=True)
    target = output / f"{Path(source).name}-{outtype}.gguf"
    with tempfile.TemporaryDirectory(prefix="merged-") as merged:
        engine.causal_lm.save_pretrained(merged)
        tokenizer = engine.tokenizer
        chat_template = tokenizer.chat_template
        tokenizer.chat_template = jinja_chat_template(prompt_parts(spec.template, tokenizer))
        try:
            tokenizer.save_pretrained(merged)
        finally:
            tokenizer.chat_template = chat_template
        # the converter's own gguf-py (its version of the gguf package) and its conversion/ modules
        env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(script.parent / "gguf-py"), str(script.parent)))}
        done = subprocess.run(
            [sys.executable, str(script), merged, "--outtype", outtype, "--outfile", str(target)],
            env=env,
            capture_output=True,
            text=True,
        )
    if done.returncode:
        raise ExportError(f"llama.cpp's converter ({script}) failed:\n{done.stderr[-3000:]}")
    return target


def gguf_answers(gguf: Path, texts: list[str], task: str, taxonomy, max_new_tokens: int) -> tuple[list, list[str]]:
    """What the GGUF file answers, read by transformers' GGUF loader: its tokenizer, its chat template, its
    weights (dequantized), greedy. Returns the answers (labels, or text for descriptions) and the prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    tokenizer.padding_side = "left"
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        for text in texts
    ]
    single_line = task != "description"
    answers = []
    for start in range(0, len(prompts), BATCH):
        batch = tokenizer(prompts[start : start + BATCH], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **batch,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=["\n"] if single_line else None,
                tokenizer=tokenizer,
            )
        for row in out[:, batch["input_ids"].shape[1] :]:
            text = tokenizer.decode(row, skip_special_tokens=True)
            text = (text.split("\n", 1)[0] if single_line else text).strip()
            answers.append(text if task == "description" else parse_answer(text, taxonomy).labels)
    return answers, prompts


# --- ONNX -------------------------------------------------------------------------------------------


def onnx_file(engine, output: Path) -> Path:
    """The merged head as ONNX (torch's dynamo exporter): ``input_ids``, ``attention_mask`` → ``logits``,
    batch and sequence length dynamic."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    engine.tokenizer.padding_side = "right"
    example = engine.tokenizer(["a product", "another product text"], return_tensors="pt", padding=True)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    target = output / ONNX_FILE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes on transformers' internals
        torch.onnx.export(
            Logits(engine.causal_lm).eval(),
            (example["input_ids"], example["attention_mask"]),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_shapes={"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
            dynamo=True,
            optimize=False,  # onnxruntime optimizes the graph as it loads it; torch's pass doubled the export time
            verbose=False,
        )
    return target


MIX_RECIPE = (
    "probabilities = (1 - (knn.weight + lexical.weight)) * activation(logits) + knn.weight * votes"
    " + lexical.weight * lexical probabilities (each part only where its entry is not null)"
)


def head_settings(info, labels: list[str], knn: bool, lexical: bool) -> dict:
    """``head.json``: what a caller of ``model.onnx`` needs to give the adapter's answers."""
    from catalog_lora.retrieval.embeddings import MODEL_NAME

    return {
        "file": ONNX_FILE,
        "inputs": ["input_ids", "attention_mask"],
        "output": "logits",
        "input": HEAD_INPUT,
        "max_length": info.max_length,
        "padding_side": "right",
        "add_special_tokens": False,
        "labels": labels,
        "multi_label": info.multi_label,
        "activation": "sigmoid" if info.multi_label else "softmax",
        "thresholds": (info.thresholds or [0.5] * len(labels)) if info.multi_label else None,
        "at_least_one_label": info.at_least_one_label if info.multi_label else None,
        "knn": {
            "k": info.knn_k,
            "weight": info.knn_weight,
            "temperature": info.knn_temperature,
            "embedder": MODEL_NAME,
            "file": NEIGHBOURS_FILE,
            "recipe": "votes = softmax(top-k cosine similarity / temperature) @ labels[top-k]",
        }
        if knn
        else None,
        "attributes": {
            "names": info.attributes,
            "input": ATTRIBUTES_LINE,
            "pair": ATTRIBUTE_PAIR,
            "pairs_separator": ATTRIBUTE_PAIRS_SEPARATOR,
            "vote_input": WITH_ATTRIBUTES,
            "values_separator": ATTRIBUTE_SEPARATOR,
            "recipe": "a product's named attributes, in this order, values on one line, empty ones left out: the model reads "
            "input + ATTRIBUTES_LINE of their pairs (none: input alone); the votes read vote_input of the text (on one "
            "line) and the values joined (none: the text)",
        }
        if info.attributes
        else None,
        "lexical": {
            "weight": info.lexical_weight,
            "files": list(LEXICAL_FILES),
            "recipe": "TF-IDF of scikit-learn's word 1-2-gram and char_wb 2-5-gram analyzers (1 + ln count, x idf, unit "
            "length per kind) x coef + intercept, then the activation (the adapter card's lexical_votes)",
        }
        if lexical
        else None,
        "mix": MIX_RECIPE if knn or lexical else None,
    }


def head_inputs(head: dict, texts: list[str], attributes: list[dict | None]) -> tuple[list[str], list[str]]:
    """What the model and the votes read of each product, by ``head.json``'s ``attributes`` recipe."""
    recipe = head["attributes"]
    if not recipe:
        return [head["input"].format(text=text) for text in texts], list(texts)
    inputs, lines = [], []
    for text, given in zip(texts, attributes, strict=True):
        chosen = {key: " ".join(str((given or {}).get(key) or "").split()) for key in recipe["names"]}
        chosen = {key: value for key, value in chosen.items() if value}
        pairs = recipe["pairs_separator"].join(recipe["pair"].format(key=key, value=value) for key, value in chosen.items())
        inputs.append(head["input"].format(text=text) + (recipe["input"].format(attributes=pairs) if pairs else ""))
        values = recipe["values_separator"].join(chosen.values())
        line = " ".join(text.split())
        lines.append(recipe["vote_input"].format(text=line, values=values) if values else line)
    return inputs, lines


def onnx_answers(folder: Path, texts: list[str], attributes: list[dict | None] | None = None) -> tuple[list[list[str]], np.ndarray]:
    """What ``model.onnx`` answers, read by onnxruntime with ``head.json``'s recipe (the neighbours' vote by
    an exact search over ``neighbours.safetensors``; ``attributes``: each text's, for a head that reads some).
    Returns the labels and each label's probability."""
    import onnxruntime
    from transformers import AutoTokenizer

    head = json.loads((folder / HEAD_FILE).read_text())
    inputs, lines = head_inputs(head, texts, attributes or [None] * len(texts))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = head["padding_side"]
    session = onnxruntime.InferenceSession(str(folder / head["file"]), providers=["CPUExecutionProvider"])
    logits = []
    for start in range(0, len(texts), BATCH):
        batch = tokenizer(
            inputs[start : start + BATCH],
            padding=True,
            truncation=True,
            max_length=head["max_length"],
            add_special_tokens=head["add_special_tokens"],
            return_tensors="np",
        )
        feed = {name: batch[name].astype(np.int64) for name in head["inputs"]}
        logits.append(session.run([head["output"]], feed)[0])
    logits = np.concatenate(logits).astype(np.float64)
    if head["multi_label"]:
        probs = 1.0 / (1.0 + np.exp(-logits))
    else:
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
    knn, lexical = head["knn"], head["lexical"]
    if knn or lexical:
        probs = (1 - ((knn["weight"] if knn else 0.0) + (lexical["weight"] if lexical else 0.0))) * probs
    if knn:
        probs = probs + knn["weight"] * plain_votes(folder / knn["file"], lines, knn["k"], knn["temperature"])
    if lexical:
        from catalog_lora.inference.lexical import LexicalModel

        probs = probs + lexical["weight"] * LexicalModel.load(*(folder / f for f in lexical["files"])).probabilities(lines).numpy()
    labels = head["labels"]
    if not head["multi_label"]:
        return [[labels[int(row.argmax())]] for row in probs], probs
    answers = []
    for row in probs:
        chosen = [j for j in range(len(labels)) if row[j] >= head["thresholds"][j]]
        if not chosen and head["at_least_one_label"]:
            chosen = [int(row.argmax())]
        answers.append([labels[j] for j in sorted(chosen, key=lambda j: -row[j])])
    return answers, probs


def plain_votes(path: Path, texts: list[str], k: int, temperature: float) -> np.ndarray:
    """Each label's share of the similarity-weighted vote of the ``k`` nearest training examples in the plain
    tensors of ``save_plain``, by an exact search (the engine searches ChromaDB's index)."""
    from safetensors.numpy import load_file

    from catalog_lora.retrieval.embeddings import embed

    plain = load_file(str(path))
    similarity = np.asarray(embed(texts), dtype=np.float64) @ plain["embeddings"].T.astype(np.float64)
    top = np.argsort(-similarity, axis=1)[:, : min(k, similarity.shape[1])]
    scores = np.take_along_axis(similarity, top, axis=1)
    weights = np.exp((scores - scores.max(axis=1, keepdims=True)) / temperature)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkl->nl", weights, plain["labels"][top].astype(np.float64))


# --- measuring and the command ----------------------------------------------------------------------


def measurement_texts(source: str, sample: str | None, limit: int | None) -> tuple[list[str], list[dict | None], str]:
    """The texts to measure on: ``sample`` (JSON lines, a ``text`` each, ``attributes`` optional), else the test
    split of the dataset the run recorded; their attributes; and the words that say which."""
    if sample:
        path = Path(sample)
        if not path.is_file():
            raise ExportError(
                f"--sample {sample} does not exist; expected a JSON-lines file with a 'text' field per line"
            )
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                rows.extend([json.loads(line)] if line.strip() else [])
            except json.JSONDecodeError as error:
                raise ExportError(
                    f"--sample {sample} line {number} is not JSON ({error.msg}); expected one record a line"
                ) from None
        where = f"texts of {path.name}"
    else:
        config_file = fetch_file(source, CONFIG_FILE, required=False)
        data = (yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}).get("data") if config_file else None
        folder = Path(data["path"]) if isinstance(data, dict) and data.get("path") else None
        if folder is None or not split_path(folder, "test").is_file():
            raise ExportError(
                f"the dataset {source} was trained on ({folder or 'not recorded'}: data.path in {CONFIG_FILE}) has no "
                "test split here; pass --sample FILE (JSON lines with a 'text' field per line) to measure on"
            )
        rows = load_split(folder, "test")
        where = f"test texts of {folder.name}"
    if not rows or not all(isinstance(row, dict) and isinstance(row.get("text"), str) for row in rows):
        raise ExportError(f"every line to measure on needs a 'text' string ({where}); found none or a line without")
    rows = rows[:limit] if limit else rows
    return [row["text"] for row in rows], [row.get("attributes") for row in rows], where


def _versions(*names: str) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _same(task: str, ours, theirs) -> bool:
    return ours == theirs if task == "description" else set(ours) == set(theirs)


def export(
    source: str,
    fmt: str,
    *,
    outtype: str | None = None,
    output: str | Path | None = None,
    sample: str | None = None,
    limit: int | None = None,
    min_agreement: float = MIN_AGREEMENT,
) -> dict:
    """Export the adapter ``source`` (run folder or Hub id) as ``fmt``, measure it, and return ``export.json``."""
    from catalog_lora.inference.engine import Engine

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    info = read_run_info(source)
    if info.method != FORMATS[fmt]:
        other = next(f for f, method in FORMATS.items() if method == info.method)
        raise ExportError(
            f"{source} is a {info.method} adapter (method in catalog_lora.json); --format {fmt} exports "
            f"{FORMATS[fmt]} adapters: use --format {other}"
        )
    if fmt == "onnx" and outtype:
        raise ExportError(f"--outtype {outtype} is for --format gguf; an ONNX export keeps the model's fp32 weights")
    outtype = outtype or ("q8_0" if fmt == "gguf" else None)
    if fmt == "gguf" and outtype not in OUTTYPES:
        raise ExportError(f"--outtype {outtype!r} is not one of {', '.join(OUTTYPES)}")
    if fmt == "gguf" and info.prompt_examples:
        raise ExportError(
            f"{source} shows {info.prompt_examples} nearest training example(s) in each prompt (prompt_examples), "
            "which a GGUF chat template cannot look up; export an adapter trained without them"
        )
    if fmt == "gguf" and info.attributes:
        raise ExportError(
            f"{source} reads the products' {', '.join(info.attributes)} beside the text (attributes in catalog_lora.json), "
            "which a GGUF chat template cannot carry; export an adapter trained with data.attributes=false"
        )
    if fmt == "onnx" and info.task == "description":
        raise ExportError(
            f"{source} is a description head, which chooses among candidates from its references index; "
            "--format onnx exports tag and category heads"
        )
    if not 0.0 <= min_agreement <= 1.0:
        raise ExportError(f"--min-agreement {min_agreement} is not a share between 0 and 1")
    texts, attributes, where = measurement_texts(source, sample, limit)
    output = Path(output) if output else default_output(source, fmt)
    if output.exists() and any(output.iterdir()) and not (output / EXPORT_FILE).is_file():
        raise ExportError(f"--output {output} is a folder with other files in it; name a new or an export's folder")
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)

    engine = Engine.load({"adapter": source}, quantization="none", device="cpu", merge=True)
    spec = engine.spec("adapter")
    if fmt == "gguf":
        predictions = engine.predict("adapter", texts, constrained=False)
        ours = [p.text if info.task == "description" else p.labels for p in predictions]
        engine_prompts = [engine.prompt_for(spec, text)[0] for text in texts]
        path = gguf_file(source, outtype, output, engine)
        parts = prompt_parts(spec.template, engine.tokenizer)
        (output / MODELFILE).write_text(modelfile(path.name, parts, engine.tokenizer.eos_token, info.max_new_tokens))
        file, files = path.name, [path.name, MODELFILE]
        if info.task != "description" and spec.taxonomy:
            grammar = taxonomy_grammar(spec.taxonomy.labels, info.multi_label, info.prompt_template == "alpaca")
            (output / GRAMMAR_FILE).write_text(grammar)
            files.append(GRAMMAR_FILE)
        taxonomy, max_new_tokens = spec.taxonomy, info.max_new_tokens
        del engine, spec
        theirs, prompts = gguf_answers(path, texts, info.task, taxonomy, max_new_tokens)
        details = {
            "grammar": GRAMMAR_FILE if GRAMMAR_FILE in files else None,
            "reader": f"transformers {version('transformers')} GGUF loader (its tokenizer and chat template), greedy",
            "compared_with": "catalog-lora's engine (Engine.predict), adapter merged, fp32, greedy, unconstrained",
            "chat_template_prompts_equal": sum(a == b for a, b in zip(prompts, engine_prompts, strict=True)),
            "converter": f"llama.cpp convert_hf_to_gguf.py ({LLAMA_CPP_ENV} checkout)"
            if _env_checkout()
            else f"llama.cpp convert_hf_to_gguf.py from llama-cpp-python {LLAMA_CPP_VERSION}",
        }
        probability_difference = None
    else:
        predictions = engine.predict("adapter", texts, attributes)
        ours = [p.labels for p in predictions]
        file = onnx_file(engine, output).name
        engine.tokenizer.save_pretrained(output)
        knn = engine.vote_k(spec, use_adapter=True) > 0
        if knn:
            from catalog_lora.retrieval.neighbours import save_plain

            save_plain(spec.neighbours, spec.taxonomy, info.label_levels, output / NEIGHBOURS_FILE)
        lexical = bool(info.lexical_weight)
        for name in LEXICAL_FILES if lexical else ():
            shutil.copy2(fetch_file(source, name), output / name)
        labels = spec.taxonomy.labels
        head = head_settings(info, labels, knn, lexical)
        (output / HEAD_FILE).write_text(json.dumps(head, indent=2, ensure_ascii=False) + "\n")
        shutil.copy2(fetch_file(source, TAXONOMY_FILE), output / TAXONOMY_FILE)
        del engine, spec
        theirs, probs = onnx_answers(output, texts, attributes)
        probability_difference = max(
            (
                abs(probs[i, labels.index(label)] - p)
                for i, prediction in enumerate(predictions)
                for label, p in prediction.scores.items()
            ),
            default=0.0,
        )
        files = sorted(p.name for p in output.iterdir())
        details = {
            "knn": head["knn"],
            "lexical": head["lexical"],
            "attributes": head["attributes"],
            "reader": f"onnxruntime {version('onnxruntime')} with {HEAD_FILE}'s recipe"
            + (f" (neighbours by an exact search over {NEIGHBOURS_FILE})" if knn else ""),
            "compared_with": "catalog-lora's engine (Engine.predict), adapter merged, fp32"
            + (" (head mixed with its neighbours)" if knn else "")
            + (" (head mixed with its TF-IDF model)" if lexical else ""),
        }
    cut = [p.truncated for p in predictions]  # the engine cut the text to fit max_length; the readers do not always
    agree = [_same(info.task, a, b) for a, b in zip(ours, theirs, strict=True)]
    differing = [
        {"row": i, "text": texts[i], "truncated": cut[i], "adapter": ours[i], "export": theirs[i]}
        for i, a in enumerate(agree)
        if not a
    ]
    same = sum(agree)
    agreement = same / len(texts)
    flagged = agreement < min_agreement
    record = {
        "format": fmt,
        "outtype": outtype or "fp32",
        "file": file,
        "files": sorted(set(files) | {EXPORT_FILE}),
        "adapter": str(source),
        "task": info.task,
        "method": info.method,
        "summary": f"{SAME[info.task]} as the adapter on {agreement:.1%} of {len(texts)} {where}",
        "measured_on": where,
        "n": len(texts),
        "same": same,
        "different": len(texts) - same,
        "agreement": agreement,
        "min_agreement": min_agreement,
        "flagged": flagged,
        "truncated_by_engine": sum(cut),
        "same_where_not_truncated": sum(a for a, c in zip(agree, cut, strict=True) if not c),
        "differing": differing[:SHOWN_DIFFERENCES],
        **details,
        **({} if probability_difference is None else {"max_probability_difference": probability_difference}),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions("catalog-lora", "torch", "transformers", "peft", *READERS[fmt])
        | ({"llama-cpp-python (converter)": LLAMA_CPP_VERSION} if fmt == "gguf" and not _env_checkout() else {}),
    }
    (output / EXPORT_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(f"Exported {output / record['file']}: {record['summary']}")
    if flagged:
        warnings.warn(
            f"FLAGGED: the export agrees with the adapter on {agreement:.1%}, below --min-agreement {min_agreement:.0%}; "
            f"{EXPORT_FILE} says flagged: true and model_cards.publish will not push it",
            stacklevel=2,
        )
    return record


def _env_checkout() -> bool:
    return bool(os.environ.get(LLAMA_CPP_ENV))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_cards.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("adapter", help="run folder or Hub id of the adapter")
    parser.add_argument("--format", required=True, choices=tuple(FORMATS), help="gguf: generate adapters; onnx: heads")
    parser.add_argument("--outtype", choices=OUTTYPES, help="GGUF weights (default q8_0)")
    parser.add_argument("--output", help="folder to write (default: <run folder>/export/<format>)")
    parser.add_argument("--sample", help="JSON lines with a 'text' field to measure on (default: the run's test split)")
    parser.add_argument("--limit", type=int, help="measure on the first N texts only")
    parser.add_argument("--min-agreement", type=float, default=MIN_AGREEMENT, help="below it the export is flagged")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit {args.limit}: expected a number of texts, at least 1")
    try:
        record = export(
            args.adapter,
            args.format,
            outtype=args.outtype,
            output=args.output,
            sample=args.sample,
            limit=args.limit,
            min_agreement=args.min_agreement,
        )
    except (ExportError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if record["flagged"] else 0


if __name__ == "__main__":
    sys.exit(main())
