"""The training subcommands of `haven`: `data prepare`, `train`, `eval`, `export`.

`bots/cli.py` wires them with two lines: `add_commands(commands)` in its parser, and
`if args.command in TRAINING_COMMANDS: return run_training_command(args)` in `main`. `python -m training.cli ...`
runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from training.gguf import DEFAULT_GGUF_TYPE, GGUF_TYPES

TRAINING_COMMANDS = frozenset({"data", "train", "eval", "export"})


def add_commands(subparsers: Any) -> None:
    """Add the training subcommands to an argparse subparsers object."""
    data = subparsers.add_parser("data", help="the training dataset")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    prepare = data_commands.add_parser("prepare", help="validate, dedupe, split and render the dataset")
    prepare.add_argument("--data-dir", help="folder with qa/ and dialogues/ (default training/data)")
    prepare.add_argument("--out-dir", help="where the splits and the report go (default training/prepared)")
    prepare.add_argument("--model", help="tokenizer that renders the examples: bundled (default), a folder or hub id")
    prepare.add_argument("--seed", type=int)

    train = subparsers.add_parser("train", help="fine-tune a LoRA/QLoRA adapter from a config")
    train.add_argument("--config", required=True, help="training/configs/<name>.yaml")
    train.add_argument("--output-dir", help="override the config's output_dir")
    train.add_argument("--max-steps", type=int, help="override training.max_steps (a quick run)")
    train.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")

    evaluate = subparsers.add_parser("eval", help="base vs tuned on the held-out split, with a markdown report")
    evaluate.add_argument("--config", required=True, help="the training config of the run to evaluate")
    evaluate.add_argument("--output-dir", help="the run folder, if train was given --output-dir")
    evaluate.add_argument("--adapter", help="adapter folder (default <run>/adapter)")
    evaluate.add_argument("--sample-size", type=int, help="test prompts answered by each model")
    evaluate.add_argument("--loss-examples", type=int, help="held-out loss on a topic-spread subset of this size")
    evaluate.add_argument("--max-new-tokens", type=int)

    export = subparsers.add_parser("export", help="the adapter folder with a model card (optionally merged weights)")
    export.add_argument("--config", required=True, help="the training config of the run to export")
    export.add_argument("--output-dir", help="the run folder, if train was given --output-dir")
    export.add_argument("--dest", required=True, help="where the adapter folder goes")
    export.add_argument("--merged-dir", help="also write full merged weights here")
    export.add_argument("--adapter", help="an exported adapter folder to use instead of the run's (e.g. the shipped "
                        "training/adapters/haven-smollm2-135m)")
    export.add_argument("--gguf", nargs="?", const=DEFAULT_GGUF_TYPE, choices=sorted(GGUF_TYPES), metavar="TYPE",
                        help=f"also write the merged model as a GGUF for llama.cpp into --dest: "
                             f"{', '.join(GGUF_TYPES)} (default {DEFAULT_GGUF_TYPE}; needs llama-cpp-python)")


def _run_config(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    from training.train import load_config

    extra: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "output_dir", None):
        extra["output_dir"] = args.output_dir
    return load_config(args.config, extra)


def run_training_command(args: argparse.Namespace) -> int:
    """Run one parsed training subcommand; returns the exit status."""
    if args.command == "data":
        from training import prepare

        prepare.main({"data_dir": args.data_dir, "out_dir": args.out_dir, "model": args.model, "seed": args.seed})
    elif args.command == "train":
        from training import train

        training: dict[str, Any] = {}
        if args.max_steps is not None:
            training["max_steps"] = args.max_steps
        if args.no_resume:
            training["resume"] = False
        train.main(_run_config(args, training=training or None))
    elif args.command == "eval":
        from training import evaluate

        evaluate.main(_run_config(args), {"adapter": args.adapter, "sample_size": args.sample_size,
                                          "loss_examples": args.loss_examples,
                                          "max_new_tokens": args.max_new_tokens})
    elif args.command == "export":
        from training import export

        export.main(_run_config(args), args.dest, merged_dir=args.merged_dir, gguf=args.gguf, adapter=args.adapter)
    else:
        raise ValueError(f"not a training command: {args.command}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.cli", description="Haven's training commands.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run_training_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
