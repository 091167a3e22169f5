"""Fixtures for the training tests: a tiny chat model built on the spot and a small hand-written dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Gemma's shape: no system role (it raises), <start_of_turn>/<end_of_turn> markers, "model" for the assistant.
GEMMA_LIKE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# Hand-written fixture rows: three QA topics and one dialogue theme, each row different in substance.
QA = {
    "sleep": [
        ("How can I fall asleep faster at night?", "A steady wind-down helps: dim the lights, put the phone away and "
         "keep the same bedtime. If you are still awake after twenty minutes, get up and read until you feel sleepy."),
        ("Is napping bad for me?", "A short nap of twenty minutes early in the afternoon is fine for most people. "
         "Long or late naps can make the night harder."),
        ("Why do I wake up at 4am every day?", "Early waking is common with stress and low mood. Keeping a sleep diary "
         "for a week can show a pattern worth taking to a GP."),
        ("Does coffee affect my sleep?", "Caffeine can stay in your body for many hours, so a coffee after lunch may "
         "still keep you up. Trying a cut-off around midday is a simple experiment."),
        ("My partner snores and I can't rest", "That sounds exhausting. Earplugs or white noise help some people, and "
         "loud snoring is worth your partner mentioning to a doctor."),
        ("I sleep ten hours and still feel tired", "Feeling unrefreshed after long sleep can have many causes, from "
         "low mood to physical health. It is a good reason to see a GP."),
    ],
    "worry": [
        ("how do i stop worrying all the time", "Constant worry is tiring. Some people set aside fifteen minutes a day "
         "as worry time and park worries until then. Would you like to try that?"),
        ("what can i do to stop worrying constantly", "One thing that helps is writing each worry down and asking "
         "whether you can act on it today. If not, let it wait on the paper."),
        ("My chest gets tight before meetings", "Many people feel anxiety in the body like that. Slow breathing, out "
         "for longer than in, can settle it. Chest pain should still be checked by a doctor."),
        ("Is it weird that I rehearse conversations in my head?", "Not weird at all. Rehearsing is the mind trying to "
         "keep you safe. It becomes a problem only when it takes over your day."),
        ("Everyone says just relax but I can't", "That advice can feel dismissive. Relaxing is a skill that takes "
         "practice, and small steps like a five-minute walk count."),
        ("Can worry make me feel sick?", "Yes, anxiety often shows up as nausea or a churning stomach. If it keeps "
         "happening, a GP can help rule out other causes."),
    ],
    "grief": [
        ("Is it normal to cry a lot after my dad died?", "Yes. Crying is one of the most natural parts of grief, and "
         "there is no right amount. Be gentle with yourself."),
        ("I feel guilty for laughing at the funeral", "Laughter at a funeral is more common than people think. It "
         "often comes from shared memories and love, not from not caring."),
        ("When does grief stop hurting?", "Grief does not follow a timetable. For many people it softens slowly, "
         "while the love and some sadness stay. Talking about the person can help."),
        ("My dog died and people say it's just a pet", "Losing a pet is real loss, and being brushed off hurts too. "
         "Your grief makes sense because the bond was real."),
        ("How do I support my mum after my grandad died?", "Being there matters more than finding the right words. "
         "Small practical help, like meals or errands, can mean a lot."),
        ("I can't remember my friend's voice anymore", "That can feel like losing them again. Some people keep "
         "voice notes or write down stories so the memories have a place."),
    ],
}
DIALOGUES = [
    [("i feel lonely since i moved cities", "Moving somewhere new can feel really isolating. How long has it been?"),
     ("three months", "Three months is still early to feel at home. Is there one place nearby you could visit this "
      "week, like a class or a library?")],
    [("work is crushing me", "That sounds like a lot to carry. What part of work feels heaviest right now?"),
     ("the deadlines", "Deadlines piling up can make everything feel urgent. Could you pick the single task that "
      "matters most today and let the rest wait?")],
    [("my exams start monday and i cant focus", "Exam pressure can scatter anyone's focus. What subject is first?"),
     ("maths", "Maybe try twenty-five minutes on one topic, then a five-minute break. Small blocks are easier to "
      "start than a whole day of revision.")],
    [("i snapped at my sister today", "It sounds like you feel bad about it. What happened?"),
     ("she borrowed my stuff again", "It makes sense to be annoyed when that keeps happening. When things are calmer, "
      "telling her how it felt might help more than the snap did.")],
    [("i dont enjoy anything anymore", "I'm sorry it feels that way. How long has everything felt flat?"),
     ("a few weeks", "A few weeks of feeling flat is worth taking seriously. Talking to a GP could help, and in the "
      "meantime one small thing you used to like might be worth a try.")],
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer trained on the fixture text and a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from core.prompts import system_prompt

    corpus = [system_prompt(), system_prompt(concern=True)]
    corpus += [q + " " + a for rows in QA.values() for q, a in rows]
    corpus += [u + " " + a for d in DIALOGUES for u, a in d]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus * 3, trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    import torch

    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture dataset, plus planted bad rows (each must be reported with its file:line). Read-only."""
    root = tmp_path_factory.mktemp("dataset") / "data"
    for topic, rows in QA.items():
        write_jsonl(root / "qa" / f"{topic}.jsonl", [
            {"id": f"{topic}-{i:03d}", "topic": topic, "source": "NHS (fixture)", "question": q, "answer": a}
            for i, (q, a) in enumerate(rows, start=1)])
    dialogues = []
    for i, turns in enumerate(DIALOGUES, start=1):
        messages = [m for u, a in turns for m in ({"role": "user", "content": u}, {"role": "assistant", "content": a})]
        dialogues.append({"id": f"support-{i:03d}", "topic": "low mood", "skill": "reflective-listening",
                          "source": "NHS (fixture)", "messages": messages})
    write_jsonl(root / "dialogues" / "reflective-listening.jsonl", dialogues)
    q0, a0 = QA["sleep"][0]
    write_jsonl(root / "qa" / "zz-planted.jsonl", [
        '{"id": "bad-json", "topic": ',  # line 1: broken JSON
        {"id": "no-answer", "topic": "sleep", "source": "x", "question": "Why?"},  # line 2: missing field
        {"id": "email", "topic": "sleep", "source": "x", "question": "Write to me at sam.lee@example.com please",
         "answer": "I can't use email, but I'm here to talk."},  # line 3: PII
        {"id": "phone", "topic": "sleep", "source": "x", "question": "Call me on 07700 900123 tonight",
         "answer": "I can only chat here, but I'm listening."},  # line 4: PII
        {"id": "empty", "topic": "sleep", "source": "x", "question": "   ", "answer": "Hello."},  # line 5: empty
        {"id": "copy", "topic": "sleep", "source": "x", "question": q0, "answer": a0},  # line 6: exact duplicate
        {"id": "synonym", "topic": "sleep", "source": "x", "question": q0,
         "answer": a0.replace("steady", "consistent")},  # line 7: near duplicate (one synonym)
    ])
    return root


@pytest.fixture(scope="session")
def prepared_run(dataset_dir: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """`prepare` run once over the fixture dataset (20% validation, 20% test): its report and output folder."""
    from training import prepare

    out = tmp_path_factory.mktemp("prepared")
    report = prepare.main({"data_dir": str(dataset_dir), "out_dir": str(out), "model": str(tiny_model_dir),
                           "validation_fraction": 0.2, "test_fraction": 0.2})
    return report, out
