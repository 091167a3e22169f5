"""How a conversation becomes a model prompt: one module shared by serving and training.

Training renders its examples with `render_chat`, and the engines render live prompts with it, so the model sees
exactly the format it was tuned on. Templates without a system role (Gemma's raises "System role not
supported") get the system guidance folded into the first user turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.texts import load_data_file
from core.types import ChatMessage, Turn


def system_prompt(*, concern: bool = False) -> str:
    prompts = load_data_file("prompts.yaml")
    guidance = str(prompts["system"])
    if concern:
        guidance += "\n" + str(prompts["concern"])
    return guidance


def build_messages(system: str, history: Sequence[Turn], user_text: str) -> list[ChatMessage]:
    """System guidance, then the remembered turns, then the new message."""
    messages: list[ChatMessage] = [{"role": "system", "content": system}]
    messages += [{"role": turn.role, "content": turn.content} for turn in history]
    messages.append({"role": "user", "content": user_text})
    return messages


def fold_system_into_first_user(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """For templates without a system role: the guidance becomes the head of the first user turn."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    system, rest = messages[0]["content"], list(messages[1:])
    if rest and rest[0]["role"] == "user":
        rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
    else:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def supports_system_role(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template accepts a system message (Gemma's refuses it)."""
    probe: list[ChatMessage] = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    try:
        tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception:  # jinja raises TemplateError through raise_exception(); any failure means "no"
        return False
    return True


def render_chat(tokenizer: Any, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
    """The prompt text for `messages` in the model's own chat format."""
    if not supports_system_role(tokenizer):
        messages = fold_system_into_first_user(messages)
    return str(tokenizer.apply_chat_template(list(messages), tokenize=False,
                                             add_generation_prompt=add_generation_prompt))


def stop_token_ids(tokenizer: Any) -> list[int]:
    """End-of-turn ids: the tokenizer's eos plus the turn markers of Gemma and ChatML templates."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for marker in ("<end_of_turn>", "<|im_end|>", "<eos>", "<|endoftext|>"):
        if marker in vocab:
            ids.add(int(vocab[marker]))
    return sorted(ids)
