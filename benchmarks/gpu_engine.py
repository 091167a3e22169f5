"""Haven's local transformers engine on a GPU, on a Gemma-2-2B-shaped model: one conversation at a time (batch 1)
vs 16 at once (continuous batching), measured side by side in one run.

The real Gemma 2 2B weights cannot be downloaded here, so the model is built from Gemma 2 2B's published config
with random bf16 weights (the same shapes, so the same memory traffic and arithmetic per token) and a word-level
tokenizer of the same vocabulary size, in Gemma's turn format. Generation is greedy and every reply runs to
`--max-new-tokens` unless it meets an end-of-turn token, so tokens are counted, not assumed.

    python benchmarks/gpu_engine.py [--max-new-tokens 128] [--batch 16] [--nf4]

Prints, for batch 1 and batch N: total tokens/s, time to first token p50, peak GPU memory, and the ratio.
Exits 0 with a "skipped" line where there is no CUDA device.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.train_gpu_check import GEMMA2_2B  # the published Gemma 2 2B shape, one copy

PROMPTS = [
    "I can't sleep and my mind keeps racing about work.",
    "I've been feeling really lonely since I moved to a new city.",
    "My exams start next week and I'm panicking.",
    "How do I tell my friend I'm struggling without scaring her?",
]
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
GEMMA_TURNS = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def build_gemma2_2b_shaped(folder: Path) -> Path:
    """Random-weight Gemma-2-2B-shaped checkpoint plus a tokenizer with one word per vocabulary id."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, Gemma2Config, PreTrainedTokenizerFast

    size = GEMMA2_2B["vocab_size"]
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), size)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    backend.add_special_tokens(SPECIALS)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>",
                                        pad_token="<pad>", unk_token="<unk>")
    tokenizer.chat_template = GEMMA_TURNS
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(Gemma2Config(**GEMMA2_2B), dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


@contextlib.contextmanager
def recorded_requests(engine: Any) -> Iterator[list[Any]]:
    """The requests the engine's scheduler receives inside the block, so tokens are counted as the model made
    them (a random-weight model may choose tokens that decode to no visible text)."""
    seen: list[Any] = []
    scheduler = engine._scheduler
    submit = scheduler.submit

    def recording(request: Any) -> None:
        seen.append(request)
        submit(request)

    scheduler.submit = recording
    try:
        yield seen
    finally:
        scheduler.submit = submit


async def run(engine: Any, chats: list[list], concurrent: bool) -> tuple[float, list[float], int, int]:
    """(seconds, time to first text per reply, tokens generated, replies with no visible text) for the chats
    answered together or one by one."""
    async def answer(messages: list, t0: float) -> tuple[float, bool]:
        first, text = None, ""
        async for piece in engine.stream(messages):
            first = first if first is not None else time.perf_counter() - t0
            text += piece
        return (first if first is not None else time.perf_counter() - t0), not text.strip()

    with recorded_requests(engine) as requests:
        t0 = time.perf_counter()
        if concurrent:
            results = await asyncio.gather(*(answer(chat, t0) for chat in chats))
        else:
            results = [await answer(chat, time.perf_counter()) for chat in chats]
        seconds = time.perf_counter() - t0
    tokens = sum(len(request.tokens) for request in requests)
    return seconds, [r[0] for r in results], tokens, sum(r[1] for r in results)


async def measure(args: argparse.Namespace) -> None:
    import torch

    from core.engines.local import TransformersEngine
    from core.prompts import build_messages, system_prompt

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_gemma2_2b_shaped(Path(tmp))
        torch.cuda.reset_peak_memory_stats()
        engine = TransformersEngine(folder, load_in_4bit=args.nf4, max_new_tokens=args.max_new_tokens,
                                    temperature=0.0, max_batch_size=args.batch)
        engine.warm_up()
        weights_gb = torch.cuda.memory_allocated() / 2**30
        chats = [build_messages(system_prompt(), [], PROMPTS[i % len(PROMPTS)]) for i in range(args.batch)]
        await run(engine, chats[:2], concurrent=True)  # warm the kernels and the allocator before timing

        rows = []
        for label, group, concurrent in (("batch 1", chats[:args.single], False),
                                         (f"batch {args.batch}", chats, True)):
            torch.cuda.synchronize()
            seconds, firsts, tokens, blank = await run(engine, group, concurrent)
            rows.append((label, len(group), tokens, tokens / seconds, statistics.median(firsts), blank))
        peak_gb = torch.cuda.max_memory_allocated() / 2**30
        finite = check_logits_finite(engine, chats[0])

    print(f"\nGemma-2-2B-shaped model ({'nf4' if args.nf4 else 'bf16'}, random weights), "
          f"{torch.cuda.get_device_name()}, greedy, up to {args.max_new_tokens} new tokens per reply")
    print(f"weights on GPU {weights_gb:.2f} GiB; peak allocated {peak_gb:.2f} GiB")
    print(f"{'run':<10}{'replies':>8}{'tokens':>8}{'tokens/s':>10}{'TTFT p50 s':>12}{'blank replies':>15}")
    for label, replies, tokens, rate, ttft, blank in rows:
        print(f"{label:<10}{replies:>8}{tokens:>8}{rate:>10.1f}{ttft:>12.3f}{blank:>15}")
    print(f"prompt logits finite: {finite} (blank replies are special tokens chosen by random weights; TTFT then "
          "counts to the end of the reply)")
    print(f"batch {args.batch} / batch 1 throughput: {rows[1][3] / rows[0][3]:.1f}x")
    print(f"engine batch stats: {engine.batch_stats()}")


def check_logits_finite(engine: Any, messages: list) -> bool:
    """Whether the loaded model's next-token scores for a prompt are all finite (random weights in bf16 could
    overflow; a NaN would make every greedy choice token 0)."""
    import torch

    ids = engine.tokenizer(engine.render(messages), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = engine._model(input_ids=ids.to(engine._model.device)).logits[0, -1]
    return bool(torch.isfinite(logits).all())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--single", type=int, default=4, help="replies answered one at a time for batch 1")
    parser.add_argument("--nf4", action="store_true", help="load the weights in 4-bit nf4 (bitsandbytes)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA device (benchmarks/batching.py measures batching on the CPU)")
        return 0
    asyncio.run(measure(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
