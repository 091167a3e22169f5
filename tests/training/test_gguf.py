"""`haven export --gguf` is faithful: a tiny Llama with a non-zero LoRA adapter, merged and written as GGUF, gives
llama.cpp the same next-token logits as the merged transformers model (F32), the same top choice (Q8_0), the
same tokens for the same text, and the base's chat template. Skipped where llama-cpp-python is not installed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training import export, train
from training.gguf import export_gguf, merged_model

pytest.importorskip("llama_cpp")

TEXT = ("<|im_start|>user\nHow can I fall asleep faster at night? I worry about work.<|im_end|>\n"
        "<|im_start|>assistant\nA steady wind-down helps")


@pytest.fixture(scope="module")
def tuned_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run folder whose adapter has random, non-zero LoRA weights on every linear layer (an untrained LoRA
    has B = 0 and would merge to the base unchanged, hiding a merge that does nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path_factory.mktemp("gguf-run")
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(run_dir / "adapter")
    return train.merge_config(train.DEFAULTS, {
        "run_name": "tiny-tuned", "output_dir": str(run_dir),
        "model": {"path": str(tiny_model_dir), "base_model_id": "tiny-llama", "dtype": "float32"}})


def llama_cpp_logits(gguf_file: Path, token_ids: list[int]) -> np.ndarray:
    from llama_cpp import Llama

    llama = Llama(model_path=str(gguf_file), n_ctx=256, n_threads=2, logits_all=True, verbose=False)
    llama.eval(token_ids)
    return np.array(llama.scores[: len(token_ids)])


def transformers_logits(model: Any, token_ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([token_ids])).logits[0].numpy()


@pytest.fixture(scope="module")
def exported(tuned_run: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """F32 through the real export command (adapter folder and GGUF side by side), and Q8_0, quantized by llama.cpp
    from an intermediate F16 file that must be gone afterwards."""
    dest = export.main(tuned_run, tmp_path_factory.mktemp("export") / "tiny", gguf="f32")
    q8_file = export_gguf(tuned_run, dest, tmp_path_factory.mktemp("q8"), "q8_0")
    return {"dest": dest, "f32": dest / "tiny-tuned.F32.gguf", "q8_0": q8_file}


def test_the_tuned_gguf_gives_llama_cpp_the_merged_models_logits(tuned_run: dict[str, Any], tiny_model_dir: Path,
                                                                exported: dict[str, Path]) -> None:
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert sorted(p.name for p in exported["dest"].iterdir() if ".gguf" in p.name) == ["tiny-tuned.F32.gguf"]
    assert [p.name for p in exported["q8_0"].parent.iterdir()] == ["tiny-tuned.Q8_0.gguf"]
    assert exported["q8_0"].stat().st_size < exported["f32"].stat().st_size / 2

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    token_ids = tokenizer(TEXT)["input_ids"]
    merged = merged_model(str(tiny_model_dir), Path(tuned_run["output_dir"]) / "adapter")
    expected = transformers_logits(merged, token_ids)
    base = transformers_logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir), token_ids)
    assert np.abs(expected - base).max() > 0.05  # the adapter really changes the model

    vocab = Llama(model_path=str(exported["f32"]), n_ctx=256, vocab_only=True, verbose=False)
    assert vocab.tokenize(TEXT.encode(), add_bos=False, special=True) == token_ids
    assert vocab.metadata["tokenizer.chat_template"] == tokenizer.chat_template

    got = llama_cpp_logits(exported["f32"], token_ids)
    assert np.abs(got - expected).max() < 1e-3 * max(1.0, np.abs(expected).max())
    assert np.abs(got - base).max() > 0.05

    got = llama_cpp_logits(exported["q8_0"], token_ids)
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    assert np.abs(got - expected).max() < 0.1 * max(1.0, np.abs(expected).max())


async def test_havens_llamacpp_engine_serves_the_tuned_gguf_with_its_chat_template(tiny_model_dir: Path,
                                                                                  exported: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    from core.engines.llamacpp import LlamaCppEngine
    from core.prompts import build_messages

    engine = LlamaCppEngine(exported["q8_0"], max_new_tokens=6, temperature=0.0, n_threads=2, n_ctx=512)
    messages = build_messages("You are a kind listener.", [], "I can't sleep and my mind races.")
    reply = "".join([piece async for piece in engine.stream(messages)])
    assert isinstance(reply, str)

    # the prompt llama.cpp evaluated is the base's ChatML rendering, token for token (a missing template would
    # fall back to llama-cpp-python's Llama-2 format), and tokens were generated after it
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rendered = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    evaluated = engine._llama.input_ids[: engine._llama.n_tokens].tolist()
    assert evaluated[: len(prompt_ids)] == prompt_ids and len(evaluated) > len(prompt_ids)


def test_an_unsupported_architecture_is_refused_in_one_line(tuned_run: dict[str, Any], tmp_path: Path) -> None:
    from transformers import Gemma2Config

    base = tmp_path / "gemma-like"
    Gemma2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=16).save_pretrained(base)
    cfg = tuned_run | {"model": tuned_run["model"] | {"path": str(base)}}
    with pytest.raises(SystemExit, match=r"^haven export --gguf: .*'gemma2'") as refused:
        export_gguf(cfg, Path(tuned_run["output_dir"]) / "adapter", tmp_path / "out", "q8_0")
    assert "\n" not in str(refused.value) and not (tmp_path / "out").exists()


def test_without_llama_cpp_python_the_export_says_how_to_get_it(tuned_run: dict[str, Any], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` now raises ImportError
    with pytest.raises(SystemExit, match=r"needs llama-cpp-python: pip install 'haven\[llamacpp\]'"):
        export_gguf(tuned_run, Path(tuned_run["output_dir"]) / "adapter", tmp_path / "out", "q8_0")
