"""CPU decode speed of the bundled model, side by side in one run on this machine: Haven's local engine
(transformers fp32, dequantized from the bundled GGUF), Haven's llama.cpp engine (in process, streaming, on the
bundled Q4_1 GGUF) and raw llama.cpp (llama_cpp.Llama driven token by token, same GGUF, same threads), plus
Haven's llama.cpp engine on a tuned GGUF from `haven export --gguf` when one is given.

    .venv/bin/python benchmarks/cpu_decode.py [--runs 3] [--max-new-tokens 64] [--threads N]
                                              [--tuned-gguf PATH]

Every path answers the same prompts greedily with the same light repetition penalty, interleaved prompt by
prompt so all see the same load. Decode speed counts the tokens after the first over the time after the first
(the time to first token includes prompt processing; every llama.cpp path reuses the cached prefix of the
previous prompt, the shared system guidance); every reply is counted with the same tokenizer. The target
is Haven's fastest CPU path at >= 0.5x raw llama.cpp's tokens/s. llama.cpp rows need the optional
`llama-cpp-python` package. Prints the load average next to the figures; never prints the replies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROMPTS = [
    "I can't sleep and my mind keeps racing about work.",
    "I've been feeling really lonely since I moved to a new city.",
    "My exams start next week and I'm panicking.",
]
REPETITION_PENALTY = 1.1  # what both Haven engines use


async def timed_engine(engine: Any, messages: list[Any], count_tokens: Callable[[str], int]) -> tuple[float, float]:
    """(time to first piece, decode tokens/s after it) through a Haven engine's stream()."""
    t0, first, text = time.perf_counter(), None, ""
    async for piece in engine.stream(messages):
        first = first if first is not None else time.perf_counter()
        text += piece
    end = time.perf_counter()
    first = first or end
    return first - t0, max(count_tokens(text) - 1, 0) / max(end - first, 1e-9)


class RawLlamaCpp:
    """llama.cpp with nothing of Haven's around it: the prompt rendered once, then Llama.generate token by token."""

    def __init__(self, gguf: Path, threads: int, render: Callable[[list[Any]], str], max_new_tokens: int) -> None:
        from llama_cpp import Llama

        self.llama = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                           verbose=False)
        self.render = render
        self.max_new_tokens = max_new_tokens

    def timed(self, messages: list[Any], count_tokens: Callable[[str], int]) -> tuple[float, float]:
        prompt = self.llama.tokenize(self.render(messages).encode(), add_bos=False, special=True)
        t0, first, generated = time.perf_counter(), None, []
        for token in self.llama.generate(prompt, top_k=1, temp=0.0, repeat_penalty=REPETITION_PENALTY):
            first = first if first is not None else time.perf_counter()
            if token == self.llama.token_eos():
                break
            generated.append(token)
            if len(generated) >= self.max_new_tokens:
                break
        end = time.perf_counter()
        first = first or end
        text = self.llama.detokenize(generated).decode("utf-8", errors="ignore")
        return first - t0, max(count_tokens(text) - 1, 0) / max(end - first, 1e-9)


async def measure(runs: int, max_new_tokens: int, threads: int, tuned_gguf: Path | None) -> None:
    import torch

    from core.engines.bundled import bundled_gguf_path, bundled_model_dir
    from core.engines.local import TransformersEngine
    from core.prompts import build_messages, system_prompt
    from core.settings import load_settings

    torch.set_num_threads(threads)
    gguf = bundled_gguf_path()
    local = TransformersEngine(bundled_model_dir(load_settings().data_dir), max_new_tokens=max_new_tokens,
                               temperature=0.0, max_batch_size=1)
    local.warm_up()

    def count(text: str) -> int:
        return len(local.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(messages: list[Any]) -> str:
        return local.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    engines: dict[str, Any] = {"transformers fp32 (Haven local)": local}
    raw: RawLlamaCpp | None = None
    try:
        from core.engines.llamacpp import LlamaCppEngine

        for name, path in [("Haven llamacpp, bundled Q4_1", gguf), ("Haven llamacpp, tuned", tuned_gguf)]:
            if path is not None:
                engine = LlamaCppEngine(path, max_new_tokens=max_new_tokens, temperature=0.0, n_threads=threads,
                                        n_ctx=2048)
                engine.warm_up()
                engines[name.replace("tuned", f"tuned {path.name}")] = engine
        raw = RawLlamaCpp(gguf, threads, render, max_new_tokens)
    except Exception as exc:  # EngineUnavailable or ImportError when llama-cpp-python is not installed
        print(f"llama.cpp rows skipped: {type(exc).__name__}: {exc}")

    chats = [build_messages(system_prompt(), [], PROMPTS[i % len(PROMPTS)]) for i in range(runs)]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
    raw_name = "raw llama.cpp, bundled Q4_1"
    if raw is not None:
        results[raw_name] = []
        raw.timed(chats[0], count)  # warm-up
    for engine in engines.values():
        await timed_engine(engine, chats[0], count)  # warm-up
    for messages in chats:  # interleaved: every path sees the same load
        for name, engine in engines.items():
            results[name].append(await timed_engine(engine, messages, count))
        if raw is not None:
            results[raw_name].append(raw.timed(messages, count))

    load = os.getloadavg()
    print(f"\n{runs} prompts, up to {max_new_tokens} new tokens, greedy, repeat penalty {REPETITION_PENALTY}, "
          f"{threads} threads (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs)")
    print(f"{'path':<48}{'TTFT p50 s':>12}{'decode tok/s p50':>18}")
    speed = {}
    for name, samples in results.items():
        speed[name] = statistics.median(s[1] for s in samples)
        print(f"{name:<48}{statistics.median(s[0] for s in samples):>12.2f}{speed[name]:>18.1f}")
    if raw_name in speed:
        haven_bundled = {n: s for n, s in speed.items() if n != raw_name and "tuned" not in n}
        fastest = max(haven_bundled, key=haven_bundled.__getitem__)
        ratio = speed[fastest] / speed[raw_name]
        print(f"Haven's fastest CPU path ({fastest}) / raw llama.cpp: {ratio:.2f} "
              f"(target >= 0.5: {'met' if ratio >= 0.5 else 'not met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tuned-gguf", type=Path, help="a GGUF written by haven export --gguf")
    args = parser.parse_args()
    asyncio.run(measure(args.runs, args.max_new_tokens, args.threads, args.tuned_gguf))


if __name__ == "__main__":
    main()
