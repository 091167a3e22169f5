"""Does Haven's Gemma 2B QLoRA config fit a 16 GB GPU? Runs the real QLoRA path (training/train.py's loader,
LoRA and SFTConfig, from training/configs/gemma2-2b-qlora.yaml) on a Gemma-2-2B-shaped model built from its
config with random weights (the real weights cannot be downloaded here), at sequence length 512.

Prints peak GPU memory (target ≤ 8 GB), seconds per optimizer step and training tokens/s. Exits 0 with a
"skipped" line where there is no CUDA device.

    python benchmarks/train_gpu_check.py [--seq-len 512] [--steps 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Gemma 2 2B's published architecture (google/gemma-2-2b-it config.json).
GEMMA2_2B = {
    "vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 8192,
    "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 256, "sliding_window": 4096,
    "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0, "tie_word_embeddings": True,
    "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2,
}
CONFIG = Path(__file__).resolve().parents[1] / "training" / "configs" / "gemma2-2b-qlora.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps (after 2 warm-up steps)")
    parser.add_argument("--batch-size", type=int, help="override the config's per-device batch size")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA device (the QLoRA path needs a GPU; "
              "tests/training/test_quantized.py covers nf4 on CPU)")
        return 0
    sys.path.insert(0, str(CONFIG.parents[2]))
    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import AutoModelForCausalLM, Gemma2Config, PreTrainedTokenizerFast, TrainerCallback
    from trl import SFTTrainer

    from training.train import build_peft_config, build_sft_config, load_base_model, load_config

    cfg = load_config(CONFIG)
    batch = args.batch_size or cfg["training"]["per_device_batch_size"]
    accumulation = cfg["training"]["gradient_accumulation_steps"]
    warmup = 2
    with tempfile.TemporaryDirectory() as tmp:
        # 1. a Gemma-2-2B-shaped checkpoint with random bf16 weights, saved so the 4-bit loader reads it as it would
        #    read the real one
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(Gemma2Config(**GEMMA2_2B), dtype=torch.bfloat16)
        n_params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(tmp)
        del model
        torch.cuda.empty_cache()

        # 2. the config's QLoRA path: nf4 + double quantization, bf16 compute, LoRA r=16 on all linear layers,
        #    paged 8-bit AdamW, gradient checkpointing
        cfg["model"]["path"] = tmp
        cfg["data"]["max_length"] = args.seq_len
        cfg["training"].update(max_steps=warmup + args.steps, logging_steps=1, per_device_batch_size=batch,
                               save_steps=10**9, max_train_minutes=None)
        torch.cuda.reset_peak_memory_stats()
        model = load_base_model(cfg["model"], tmp)
        weights_gb = torch.cuda.memory_allocated() / 2**30
        vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                            pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>")
        rows = batch * accumulation * (warmup + args.steps)
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(4, GEMMA2_2B["vocab_size"], (rows, args.seq_len), generator=generator).tolist()
        # like a real example: the first ~40% is prompt (system guidance + user), the rest is the reply
        mask = [[0] * (args.seq_len * 2 // 5) + [1] * (args.seq_len - args.seq_len * 2 // 5)] * rows
        dataset = Dataset.from_dict({"input_ids": ids, "assistant_masks": mask})
        sft_args = build_sft_config(cfg, Path(tmp) / "run", has_eval=False)
        sft_args.save_strategy = "no"

        step_seconds: list[float] = []

        class StepTimer(TrainerCallback):
            def on_step_begin(self, *a: object, **k: object) -> None:
                torch.cuda.synchronize()
                self.started = time.perf_counter()

            def on_step_end(self, *a: object, **k: object) -> None:
                torch.cuda.synchronize()
                step_seconds.append(time.perf_counter() - self.started)

        trainer = SFTTrainer(model=model, args=sft_args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=build_peft_config(cfg["lora"]), callbacks=[StepTimer()])
        trainer.train()

    timed = step_seconds[warmup:]
    step = statistics.median(timed)
    tokens_per_step = batch * accumulation * args.seq_len
    print(f"device: {torch.cuda.get_device_name(0)}")
    print(f"model: Gemma-2-2B-shaped, {n_params / 1e9:.2f}B parameters, random weights; nf4 + double quant, "
          f"bf16 compute, LoRA r={cfg['lora']['r']} all-linear, optimizer {sft_args.optim}, "
          f"gradient checkpointing {sft_args.gradient_checkpointing}")
    print(f"batch {batch} x accumulation {accumulation} x seq len {args.seq_len} = {tokens_per_step} tokens/step")
    print(f"4-bit weights resident: {weights_gb:.2f} GiB")
    print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB "
          f"(reserved {torch.cuda.max_memory_reserved() / 2**30:.2f} GiB; target <= 8 GB)")
    print(f"step time: median {step:.2f} s over {len(timed)} steps (min {min(timed):.2f}, max {max(timed):.2f})")
    print(f"training throughput: {tokens_per_step / step:.0f} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
