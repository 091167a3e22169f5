"""`haven export --gguf`: the tuned model (base + LoRA adapter merged) as one GGUF file that llama.cpp serves.

On a CPU, llama.cpp decodes several times faster than transformers in fp32, but it reads only GGUF files and
does not take a PEFT adapter folder. So the adapter is merged into the fp32 base, the merged weights are written
as a GGUF (F16, norms in F32) with the `gguf` package, and llama.cpp's own quantizer (through llama-cpp-python)
turns that into the requested type. Only llama-architecture models (SmolLM2, Llama, ...) with byte-level BPE
tokenizers are supported; anything else is refused with one line that names what is missing.

The layout facts this relies on:
- tensor names come from `gguf.TENSOR_NAMES` (token_embd, blk.N.attn_q, ..., output_norm, output);
- llama.cpp applies rotary embeddings to adjacent pairs of each head's dimensions, while transformers' Llama
  rotates the two halves of each head, so the rows of q_proj and k_proj are reordered per head
  (`_pair_rotary_rows`);
- a model with tied embeddings has no `output` tensor (llama.cpp reuses token_embd).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# requested type -> (llama_ftype, file-name suffix)
GGUF_TYPES = {"f32": (0, "F32"), "f16": (1, "F16"), "q8_0": (7, "Q8_0"), "q4_k_m": (15, "Q4_K_M")}
# Q8_0 by default: near-lossless, and a small model loses more to 4-bit rounding than a large one
DEFAULT_GGUF_TYPE = "q8_0"

_TOKENIZER_FIELD_PREFIX = "tokenizer."


def require_llama_cpp() -> Any:
    """The llama_cpp module, or one line saying how to get it (the quantizer and every GGUF check need it)."""
    try:
        import llama_cpp
    except ImportError:
        raise SystemExit("haven export --gguf needs llama-cpp-python: pip install 'haven[llamacpp]'") from None
    return llama_cpp


def unsupported_reasons(config: Any) -> list[str]:
    """Why this transformers config cannot be written as a llama-architecture GGUF (empty when it can)."""
    reasons = []
    if getattr(config, "model_type", None) != "llama":
        return [f"model type {getattr(config, 'model_type', None)!r} (only 'llama', e.g. SmolLM2, is supported)"]
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if (rope.get("rope_type") or "default") != "default":  # e.g. Llama 3.1's "llama3" frequency scaling
        reasons.append(f"rope scaling {rope.get('rope_type')!r}")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        reasons.append("bias terms in attention or MLP")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head_dim * config.num_attention_heads != config.hidden_size:
        reasons.append("a head size that does not divide the hidden size")
    return reasons


def _rope_theta(config: Any) -> float:
    theta = getattr(config, "rope_theta", None)
    if theta is None:  # transformers 5 keeps it in rope_parameters
        theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    return float(theta)


def _pair_rotary_rows(weight: Any, n_heads: int) -> Any:
    """Reorder a q/k projection's output rows from transformers' half-split rotary layout to llama.cpp's
    adjacent pairs: within each head, row i of the first half and row i of the second half become rows 2i, 2i+1."""
    rows, cols = weight.shape
    head_dim = rows // n_heads
    return weight.reshape(n_heads, 2, head_dim // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def llama_tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """(GGUF tensor name, fp32 numpy array) for every weight of a transformers Llama model, in file order."""
    import gguf

    config = model.config
    state = {name: tensor.detach().to("cpu").float().numpy() for name, tensor in model.state_dict().items()}

    def name(kind: Any, block: int | None = None) -> str:
        base = gguf.TENSOR_NAMES[kind]
        return (base.format(bid=block) if block is not None else base) + ".weight"

    T = gguf.MODEL_TENSOR
    yield name(T.TOKEN_EMBD), state["model.embed_tokens.weight"]
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        yield name(T.ATTN_NORM, i), state[p + "input_layernorm.weight"]
        yield name(T.ATTN_Q, i), _pair_rotary_rows(state[p + "self_attn.q_proj.weight"], config.num_attention_heads)
        yield name(T.ATTN_K, i), _pair_rotary_rows(state[p + "self_attn.k_proj.weight"], config.num_key_value_heads)
        yield name(T.ATTN_V, i), state[p + "self_attn.v_proj.weight"]
        yield name(T.ATTN_OUT, i), state[p + "self_attn.o_proj.weight"]
        yield name(T.FFN_NORM, i), state[p + "post_attention_layernorm.weight"]
        yield name(T.FFN_GATE, i), state[p + "mlp.gate_proj.weight"]
        yield name(T.FFN_UP, i), state[p + "mlp.up_proj.weight"]
        yield name(T.FFN_DOWN, i), state[p + "mlp.down_proj.weight"]
    yield name(T.OUTPUT_NORM), state["model.norm.weight"]
    if not config.tie_word_embeddings:  # tied: llama.cpp reads token_embd for the output too
        yield name(T.OUTPUT), state["lm_head.weight"]


def tokenizer_fields_from_gguf(gguf_file: Path) -> dict[str, tuple[Any, Any, Any]]:
    """Every `tokenizer.*` field of an existing GGUF as (value, type, array item type): the vocabulary, merges,
    special ids, pre-tokenizer name and chat template exactly as llama.cpp already reads them for that base."""
    import gguf

    reader = gguf.GGUFReader(gguf_file)
    fields = {}
    for key, field in reader.fields.items():
        if key.startswith(_TOKENIZER_FIELD_PREFIX):
            sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            fields[key] = (field.contents(), field.types[0], sub_type)
    return fields


def _pre_tokenizer_name(pre_tokenizer: dict[str, Any] | None) -> str | None:
    """llama.cpp's name for a byte-level pre-tokenizer from tokenizer.json, or None when it has no match here."""
    if not pre_tokenizer:
        return None

    def byte_level(step: dict[str, Any]) -> bool:
        return step.get("type") == "ByteLevel" and step.get("use_regex", True)

    if byte_level(pre_tokenizer):
        return "gpt-2"  # GPT-2's split regex
    steps = pre_tokenizer.get("pretokenizers") if pre_tokenizer.get("type") == "Sequence" else None
    if (steps and len(steps) == 2 and steps[0].get("type") == "Digits" and steps[0].get("individual_digits")
            and byte_level(steps[1])):
        return "smollm"  # each digit on its own, then GPT-2's regex (SmolLM's tokenizer)
    return None


def tokenizer_fields_from_hf(tokenizer: Any, vocab_size: int) -> dict[str, tuple[Any, Any, Any]]:
    """The `tokenizer.*` fields for a byte-level BPE (GPT-2 family) transformers tokenizer."""
    import json

    import gguf

    V = gguf.GGUFValueType
    if not getattr(tokenizer, "is_fast", False):
        raise SystemExit("haven export --gguf: the base has no tokenizer.json (a fast tokenizer is needed)")
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model_type = spec.get("model", {}).get("type")
    if model_type != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise SystemExit(f"haven export --gguf: the {model_type} tokenizer is not supported "
                         "(only byte-level BPE tokenizers such as SmolLM2's)")
    pre = _pre_tokenizer_name(spec.get("pre_tokenizer"))
    if pre is None:
        kind = (spec.get("pre_tokenizer") or {}).get("type")
        raise SystemExit(f"haven export --gguf: the tokenizer's {kind} pre-tokenizer has no llama.cpp match here "
                         "(supported: ByteLevel, Digits + ByteLevel)")

    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = {t.content: t for t in tokenizer.added_tokens_decoder.values()}
    tokens, token_types = [], []
    for index in range(vocab_size):  # a config vocabulary larger than the tokenizer's is padded with unused ids
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            token_types.append(int(gguf.TokenType.UNUSED))
        elif token in added:
            tokens.append(token)
            token_types.append(int(gguf.TokenType.CONTROL if added[token].special else gguf.TokenType.USER_DEFINED))
        else:
            tokens.append(token)
            token_types.append(int(gguf.TokenType.NORMAL))
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]

    probe = tokenizer("a")["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    K = gguf.Keys.Tokenizer
    fields: dict[str, tuple[Any, Any, Any]] = {
        K.MODEL: ("gpt2", V.STRING, None),
        K.PRE: (pre, V.STRING, None),
        K.LIST: (tokens, V.ARRAY, V.STRING),
        K.TOKEN_TYPE: (token_types, V.ARRAY, V.INT32),
        K.MERGES: (merges, V.ARRAY, V.STRING),
        K.ADD_BOS: (len(probe) > len(bare) and probe[0] == tokenizer.bos_token_id, V.BOOL, None),
        K.ADD_EOS: (len(probe) > len(bare) and probe[-1] == tokenizer.eos_token_id, V.BOOL, None),
    }
    for key, token_id in ((K.BOS_ID, tokenizer.bos_token_id), (K.EOS_ID, tokenizer.eos_token_id),
                          (K.UNK_ID, tokenizer.unk_token_id), (K.PAD_ID, tokenizer.pad_token_id)):
        if token_id is not None:
            fields[key] = (int(token_id), V.UINT32, None)
    if isinstance(tokenizer.chat_template, str):
        fields[K.CHAT_TEMPLATE] = (tokenizer.chat_template, V.STRING, None)
    return fields


def write_gguf(model: Any, tokenizer_fields: dict[str, tuple[Any, Any, Any]], path: Path, *, name: str,
               half: bool = True) -> None:
    """Write a transformers Llama model as a GGUF: 2-D weights in F16 (`half`) or F32, norms always in F32."""
    import gguf
    import numpy as np
    from tqdm import tqdm

    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(int(GGUF_TYPES["f16" if half else "f32"][0]))
    for key, (value, value_type, sub_type) in tokenizer_fields.items():
        writer.add_key_value(key, value, value_type, sub_type=sub_type)

    count = config.num_hidden_layers * 9 + 2 + (0 if config.tie_word_embeddings else 1)
    for tensor_name, array in tqdm(llama_tensors(model), total=count, desc="Converting", unit="tensor"):
        keep_f32 = not half or array.ndim == 1  # llama.cpp keeps norm weights in F32
        writer.add_tensor(tensor_name, np.ascontiguousarray(array, dtype=np.float32 if keep_f32 else np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()


def quantize(source: Path, target: Path, gguf_type: str, *, threads: int | None = None) -> None:
    """llama.cpp's own quantizer (llama_model_quantize through ctypes), with a progress line while it runs."""
    import ctypes

    from tqdm import tqdm

    llama_cpp = require_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = GGUF_TYPES[gguf_type][0]
    params.nthread = int(threads or 0)  # 0: all cores
    result: dict[str, int] = {}

    def run() -> None:
        result["status"] = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(),
                                                          ctypes.byref(params))

    # llama.cpp logs a line per tensor through llama-cpp-python's logger: errors only, the bar says enough
    llama_logger = logging.getLogger("llama-cpp-python")
    previous_level = llama_logger.level
    llama_logger.setLevel(logging.ERROR)
    worker = threading.Thread(target=run, name="haven-quantize")
    # the C call reports nothing back while it runs: the bar follows the output file's growth instead
    expected = source.stat().st_size * {"q8_0": 0.55, "q4_k_m": 0.33}.get(gguf_type, 1.0)
    with tqdm(total=int(expected), desc=f"Quantizing to {GGUF_TYPES[gguf_type][1]}", unit="byte",
              unit_scale=True) as bar:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            size = target.stat().st_size if target.exists() else 0
            bar.update(max(0, min(size, bar.total) - bar.n))
        bar.update(bar.total - bar.n)
    llama_logger.setLevel(previous_level)
    if result.get("status") != 0:
        raise SystemExit(f"haven export --gguf: llama.cpp could not quantize to {gguf_type} "
                         f"(status {result.get('status')})")


def merged_model(base_path: str, adapter_dir: Path) -> Any:
    """The fp32 base with the LoRA adapter folded into its weights (a plain transformers model again)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload().eval()


def export_gguf(cfg: dict[str, Any], adapter_dir: Path, dest_dir: Path, gguf_type: str = DEFAULT_GGUF_TYPE, *,
                threads: int | None = None) -> Path:
    """Merge the run's adapter into its base and write `<dest_dir>/<run_name>.<TYPE>.gguf`; returns its path."""
    from transformers import AutoConfig, AutoTokenizer

    from training.prepare import resolve_model

    if gguf_type not in GGUF_TYPES:
        raise SystemExit(f"haven export --gguf: {gguf_type!r} is not one of {', '.join(GGUF_TYPES)}")
    require_llama_cpp()
    base_ref = cfg["model"]["path"]
    base_path = resolve_model(base_ref)
    reasons = unsupported_reasons(AutoConfig.from_pretrained(base_path))
    if reasons:
        raise SystemExit(f"haven export --gguf: this base cannot be written as GGUF yet: {'; '.join(reasons)}")

    started = time.perf_counter()
    model = merged_model(base_path, adapter_dir)
    if base_ref == "bundled":
        # the bundled base came from a GGUF: its tokenizer fields are the most faithful source there is
        from core.engines.bundled import bundled_gguf_path

        tokenizer_fields = tokenizer_fields_from_gguf(bundled_gguf_path())
    else:
        tokenizer_fields = tokenizer_fields_from_hf(AutoTokenizer.from_pretrained(base_path), model.config.vocab_size)
    token_count = len(tokenizer_fields["tokenizer.ggml.tokens"][0])
    if token_count != model.config.vocab_size:
        raise SystemExit(f"haven export --gguf: the tokenizer has {token_count} tokens but the model "
                         f"{model.config.vocab_size} embeddings")

    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{cfg['run_name']}.{GGUF_TYPES[gguf_type][1]}.gguf"
    partial = target.with_name(target.name + ".partial")  # only a complete file gets the final name
    f16_file = dest_dir / f".{target.stem}.F16.gguf.partial"
    try:
        if gguf_type in ("f32", "f16"):
            write_gguf(model, tokenizer_fields, partial, name=cfg["run_name"], half=gguf_type == "f16")
        else:
            write_gguf(model, tokenizer_fields, f16_file, name=cfg["run_name"], half=True)
            print(f"F16 GGUF: {f16_file.stat().st_size / 2**20:.1f} MiB (removed after quantizing)")
            quantize(f16_file, partial, gguf_type, threads=threads)
        partial.rename(target)
    finally:
        f16_file.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    print(f"GGUF ({GGUF_TYPES[gguf_type][1]}) -> {target} ({target.stat().st_size / 2**20:.1f} MiB, "
          f"{time.perf_counter() - started:.0f} s)")
    return target
