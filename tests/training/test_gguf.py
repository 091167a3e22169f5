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


def test_the_tuned_gguf_gives_llama_cpp_the_merged_models_logits(tuned_run: dict[str, Any], tiny_model_dir: Path,
                                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    token_ids = tokenizer(TEXT)["input_ids"]
    merged = merged_model(str(tiny_model_dir), Path(tuned_run["output_dir"]) / "adapter")
    expected = transformers_logits(merged, token_ids)
    base = transformers_logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir), token_ids)
    assert np.abs(expected - base).max() > 0.05  # the adapter really changes the model

    # F32 through the real export command: the adapter folder and the GGUF side by side
    dest = export.main(tuned_run, tmp_path / "export", gguf="f32")
    f32_file = dest / "tiny-tuned.F32.gguf"
    assert "GGUF (F32) -> " in capsys.readouterr().out
    assert sorted(p.name for p in dest.iterdir() if ".gguf" in p.name) == [f32_file.name]

    gguf_model = Llama(model_path=str(f32_file), n_ctx=256, vocab_only=True, verbose=False)
    assert gguf_model.tokenize(TEXT.encode(), add_bos=False, special=True) == token_ids
    assert gguf_model.metadata["tokenizer.chat_template"] == tokenizer.chat_template
    got = llama_cpp_logits(f32_file, token_ids)
    assert np.abs(got - expected).max() < 1e-3 * max(1.0, np.abs(expected).max())
    assert np.abs(got - base).max() > 0.05

    # Q8_0: quantized by llama.cpp from an intermediate F16 file that is removed afterwards
    q8_file = export_gguf(tuned_run, dest, tmp_path / "q8", "q8_0")
    assert [p.name for p in q8_file.parent.iterdir()] == ["tiny-tuned.Q8_0.gguf"]
    assert q8_file.stat().st_size < f32_file.stat().st_size / 2
    got = llama_cpp_logits(q8_file, token_ids)
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    assert np.abs(got - expected).max() < 0.1 * max(1.0, np.abs(expected).max())


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
