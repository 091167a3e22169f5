"""The trained classifier: its training and loading code on a tiny run, the LoRA merge, and the shipped file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.safety import RiskLevel, SafetyScreen
from core.safety.classifier import (
    ClassifierConfig,
    ClassifierLayer,
    RiskClassifier,
    default_classifier_dir,
    encoder_from_bundled,
    merge_lora,
    rows_digest,
    traced_encoder,
)
from core.safety.semantic import DEVELOPMENT_SPLITS, Thresholds, bundled_model_path, read_jsonl, training_rows
from core.safety.train import (
    FALSE_ALARM_TOLERANCE,
    RECALL_FLOOR,
    TARGET_PATTERN,
    TARGETS,
    choose_crisis_doubt,
    choose_ngram_weights,
    choose_on_dev,
    choose_thresholds,
    lora_tensors,
    main,
    ngram_reader,
    soup,
    train_model,
)

TINY_ROWS = [
    {"text": "i want to die tonight, i have the pills ready", "level": "crisis", "categories": ["suicide"]},
    {"text": "im going to end it after everyone is asleep", "level": "crisis", "categories": ["suicide"]},
    {"text": "he is outside with a knife and says he will kill me", "level": "crisis", "categories": ["abuse"]},
    {"text": "nothing feels worth it lately and i feel like a burden", "level": "concern", "categories": ["suicide"]},
    {"text": "i used to cut and the urge came back this week", "level": "concern", "categories": ["self_harm"]},
    {"text": "i drink every night to stop thinking", "level": "concern", "categories": ["substance"]},
    {"text": "what a lovely sunny morning", "level": "none", "categories": []},
    {"text": "this homework is killing me lol", "level": "none", "categories": []},
    {"text": "any tips for sleeping before an interview", "level": "none", "categories": []},
]
SETTINGS = {"layers": 1, "rank": 4, "alpha": 8.0, "epochs": 1, "learning_rate": 1e-3, "max_tokens": 32, "seed": 0}


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer classifier trained for one epoch on nine rows, written as `haven safety train` writes it."""
    from core.safety.train import _config, save

    folder = tmp_path_factory.mktemp("classifier")
    tensors = train_model(TINY_ROWS, **SETTINGS)
    config = _config(SETTINGS, Thresholds(crisis=0.6, concern=0.5), rows_digest(TINY_ROWS),
                     {"ngram_weight": 0.3, "ngram_weight_other_language": 0.7})
    save(folder, tensors, config, {}, ngram_reader(TINY_ROWS))
    return folder


def test_a_trained_file_loads_and_scores_every_text(tiny_classifier: Path) -> None:
    classifier = RiskClassifier(tiny_classifier)
    assert classifier.config.layers == 1 and classifier.config.targets == TARGETS
    levels, categories = classifier.scores(["hello there", "i want to die", ""])
    assert levels.shape == (3, 3) and categories.shape == (3, 7)
    np.testing.assert_allclose(levels.sum(axis=1), 1.0, rtol=1e-5)
    assert ((categories >= 0) & (categories <= 1)).all()


def test_scores_are_deterministic_across_loads(tiny_classifier: Path) -> None:
    texts = ["i cant do this anymore", "pizza tonight?"]
    first = RiskClassifier(tiny_classifier).scores(texts)[0]
    second = RiskClassifier(tiny_classifier).scores(texts)[0]
    np.testing.assert_array_equal(first, second)


def test_a_texts_scores_do_not_depend_on_what_else_is_scored_with_it() -> None:
    # The shipped classifier is int8: scored in one batch, a short text was padded and its layers' inputs quantized
    # on the batch's range, so the same message scored differently alone (as the live screen scores it).
    classifier = RiskClassifier()
    texts = ["i cant do this anymore",
             "so tired of everything. i gave my cat to my sister today and wrote a few letters, i think im done "
             "and honestly nobody would notice if i was gone. work was awful again and i didnt eat"]
    together = classifier.scores(texts)[0]
    alone = np.concatenate([classifier.scores([text])[0] for text in texts])
    np.testing.assert_array_equal(together, alone)


def test_the_layer_remembers_verdicts_and_names_categories(tiny_classifier: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr("core.safety.semantic.CRISIS_NEEDS_RISK", 0.0)  # an untrained head may favour none
    layer = ClassifierLayer(RiskClassifier(tiny_classifier), thresholds=Thresholds(crisis=0.0, concern=0.0))
    first = layer.classify(["anything at all"])
    assert first[0].level is RiskLevel.CRISIS and first[0].categories  # a raised verdict always names a category
    assert layer.classify(["anything at all"])[0] == first[0]
    calm = ClassifierLayer(RiskClassifier(tiny_classifier), thresholds=Thresholds(crisis=1.1, concern=1.1))
    verdict = calm.classify(["anything at all"])[0]
    assert verdict.level is RiskLevel.NONE and not verdict.categories and not verdict.reasons


def test_merged_lora_gives_the_same_encoder_output_as_peft() -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    wrapped = get_peft_model(encoder_from_bundled(2), LoraConfig(r=4, lora_alpha=8, target_modules=TARGET_PATTERN))
    for name, param in wrapped.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: give the update something to add
            torch.nn.init.normal_(param, std=0.05)
    wrapped.eval()
    config = ClassifierConfig(layers=2, rank=4, alpha=8.0, targets=TARGETS, max_tokens=32, thresholds=Thresholds(),
                              trained_on="test")
    tensors = lora_tensors(wrapped)
    assert len(tensors) == 2 * 6 * 2  # query, key, value, 3 dense per layer; A and B each; two layers
    merged = encoder_from_bundled(2)
    merge_lora(merged, tensors, config)
    merged.eval()
    ids = torch.tensor([[101, 1045, 2215, 2000, 3280, 102]])
    with torch.no_grad():
        expected = wrapped(input_ids=ids).last_hidden_state
        got = merged(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        merge_lora(encoder_from_bundled(1), {}, config)


def test_thresholds_keep_ordinary_rows_within_the_limits() -> None:
    rows = [{"level": level} for level in ["none"] * 100 + ["crisis"] * 10 + ["concern"] * 10]
    probs = np.zeros((120, 3))
    probs[:100] = [0.9, 0.05, 0.05]
    probs[:2] = [0.1, 0.1, 0.8]  # two ordinary rows the model reads as crisis
    probs[100:110] = [0.05, 0.05, 0.9]
    probs[110:] = [0.2, 0.7, 0.1]
    thresholds, figures = choose_thresholds(rows, probs, max_false_crisis=0.01, max_false_concern=0.05)
    assert 0.8 < thresholds.crisis <= 0.9  # 0.8 would raise 2% of ordinary rows to crisis
    assert figures["false_crisis"] <= 0.01 and figures["crisis_recall"] == 1.0
    assert figures["concern_or_higher_recall"] == 1.0 and figures["false_concern_or_higher"] <= 0.05


def test_the_train_command_writes_a_loadable_classifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("core.safety.train.training_rows", lambda: TINY_ROWS)
    assert main(["--dest", str(tmp_path), "--layers", "1", "--rank", "4", "--epochs", "1", "--folds", "0",
                 "--dev-splits", ""]) == 0
    out = capsys.readouterr().out
    assert "training rows: 9" in out and "wrote" in out
    assert not any(row["text"] in out for row in TINY_ROWS)  # figures only, never text
    config = ClassifierConfig.read(tmp_path)
    assert config.trained_on == rows_digest(TINY_ROWS)
    assert RiskClassifier(tmp_path).scores(["hi"])[0].shape == (1, 3)


def test_the_train_command_saves_the_thresholds_and_doubts_the_development_splits_choose(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With --dev-splits the command reports every chosen threshold and the doubts, then saves them. (Choosing on
    real splits takes minutes; its figures, in their real shape, stand in for it here.)"""
    chosen = Thresholds(crisis=0.3, concern=0.5, crisis_with_intent=0.3, crisis_doubt=0.12,
                        crisis_doubt_other_language=0.04)
    part = {"rows": 40, "crisis_threshold": 0.3, "crisis_recall": 0.98, "false_crisis": 0.02}
    doubts = {"english": {"crises_read_from_words": 120, "crisis_doubt": 0.12},
              "other_languages": {"crises_read_from_words": 60, "crisis_doubt": 0.04}}
    monkeypatch.setattr("core.safety.train.training_rows", lambda: TINY_ROWS)
    monkeypatch.setattr("core.safety.train.choose_ngram_weights",
                        lambda folder, splits: ({"ngram_weight": 0.5, "ngram_weight_other_language": 0.7}, {}))
    monkeypatch.setattr("core.safety.train.choose_on_dev", lambda folder, splits, thresholds: (
        chosen, {"splits": list(splits), "english": part, "crisis_doubt": doubts}))
    assert main(["--dest", str(tmp_path), "--layers", "1", "--rank", "4", "--epochs", "1", "--folds", "0",
                 "--dev-splits", "waiting"]) == 0
    out = capsys.readouterr().out
    assert "crisis threshold, english (40 rows of waiting): 0.3" in out
    assert "crisis doubt: English 0.12, other languages 0.04" in out
    assert ClassifierConfig.read(tmp_path).thresholds == chosen


@pytest.mark.slow
def test_the_thresholds_are_the_best_trade_off_on_the_development_split(tiny_classifier: Path) -> None:
    thresholds, figures = choose_on_dev(tiny_classifier, ["independent", "multilingual"],
                                        Thresholds(crisis=0.9, concern=0.5))
    english, other, concern = figures["english"], figures["other_languages"], figures["concern"]
    concern_other = figures["concern_other_languages"]
    assert thresholds.crisis == thresholds.crisis_with_intent == english["crisis_threshold"]
    assert thresholds.crisis_other_language == other["crisis_threshold"]
    assert thresholds.concern == concern["concern_or_higher_threshold"]
    assert thresholds.concern_other_language == concern_other["concern_or_higher_threshold"]
    for part, name, floor in ((english, "crisis", RECALL_FLOOR["crisis"]), (other, "crisis", RECALL_FLOOR["crisis"]),
                              (concern, "concern_or_higher", RECALL_FLOOR["concern"]),
                              (concern_other, "concern_or_higher", RECALL_FLOOR["concern"])):
        chosen, recall = part[f"{name}_threshold"], part[f"{name}_recall"]
        highest, false_at_highest = part["highest_reaching_floor"], part["false_at_highest"]
        # The curve is rounded to 3 places, the chosen point to 4.
        if recall >= floor:
            # Recall first: no threshold above `highest` reaches the floor; the chosen one is the lowest reaching it
            # whose false alarms stay within the tolerance of the highest's.
            assert chosen <= highest
            assert all(r < floor + 1e-3 for t, (r, _) in part["curve"].items() if float(t) > highest)
            assert part[f"false_{name}"] <= false_at_highest + FALSE_ALARM_TOLERANCE + 1e-3
            assert not any(r >= floor and false <= false_at_highest + FALSE_ALARM_TOLERANCE - 1e-3
                           for t, (r, false) in part["curve"].items() if float(t) < chosen)
        else:  # no threshold reaches it: the best Youden's J
            assert all(r < floor + 1e-3 for r, _ in part["curve"].values())
            best = recall - part[f"false_{name}"]
            assert all(r - false <= best + 1e-3 for r, false in part["curve"].values())
    assert english["rows"] + other["rows"] == len(read_jsonl("eval_independent.jsonl")) + len(
        read_jsonl("eval_multilingual.jsonl"))


def test_the_ngram_weight_is_the_one_that_best_ranks_the_development_crises(tiny_classifier: Path) -> None:
    weights, figures = choose_ngram_weights(tiny_classifier, ["independent", "multilingual"])
    assert set(weights) == {"ngram_weight", "ngram_weight_other_language"}
    for part, key in (("english", "ngram_weight"), ("other_languages", "ngram_weight_other_language")):
        areas = figures[part]["area_under_curve"]
        assert set(areas) == {"0.0", "0.3", "0.5", "0.7"}  # MiniLM alone is reported beside the three weights
        assert areas[f"{weights[key]:.1f}"] == max(areas[w] for w in ("0.3", "0.5", "0.7"))


def test_the_classifier_combines_both_readers_at_its_languages_weight(tiny_classifier: Path) -> None:
    from core.safety.ngrams import combine

    classifier = RiskClassifier(tiny_classifier)
    texts = ["i just want to sleep and not wake up", "ya no quiero despertar, estoy muy cansada de todo"]
    minilm, ngrams, _ = classifier.reader_scores(texts)
    assert ngrams is not None
    combined = classifier.scores(texts)[0]
    np.testing.assert_allclose(combined[0], combine(minilm[:1], ngrams[:1], 0.3)[0], rtol=1e-6)  # English
    np.testing.assert_allclose(combined[1], combine(minilm[1:], ngrams[1:], 0.7)[0], rtol=1e-6)  # Spanish
    assert not np.allclose(combined, minilm)


def test_a_soup_of_seeds_averages_each_update_and_head_exactly() -> None:
    first = train_model(TINY_ROWS, **SETTINGS)
    second = train_model(TINY_ROWS, **{**SETTINGS, "seed": 1})
    mixed = soup([first, second])
    pairs = [key.removesuffix(".lora_A") for key in first if key.endswith(".lora_A")]
    assert pairs
    for name in pairs:
        def update(model: dict, name: str = name) -> np.ndarray:
            return (model[f"{name}.lora_B"].float() @ model[f"{name}.lora_A"].float()).numpy()
        assert not np.allclose(update(first), update(second))  # two seeds, two different models
        np.testing.assert_allclose(update(mixed), (update(first) + update(second)) / 2, atol=1e-6)
    for head in ("level_head.weight", "level_head.bias", "category_head.weight"):
        np.testing.assert_allclose(mixed[head].numpy(), ((first[head] + second[head]) / 2).numpy(), atol=1e-6)


def test_a_message_in_another_language_is_decided_with_that_languages_threshold(tiny_classifier: Path) -> None:
    layer = ClassifierLayer(RiskClassifier(tiny_classifier))
    texts = ["i just want to sleep and not wake up", "ya no quiero despertar, estoy muy cansada de todo"]
    p_crisis = layer.probabilities(texts)[:, 2]
    # English decides at its own threshold; Spanish at crisis_other_language, here set either side of its score.
    for other, expected in ((float(p_crisis[1]) - 0.01, RiskLevel.CRISIS), (float(p_crisis[1]) + 0.01, None)):
        decided = layer.with_thresholds(Thresholds(crisis=0.999, concern=0.999, crisis_with_intent=0.999,
                                                   crisis_other_language=other)).classify(texts)
        assert decided[0].level is RiskLevel.NONE
        assert (decided[1].level is RiskLevel.CRISIS) == (expected is RiskLevel.CRISIS)
    assert Thresholds(crisis=0.6, concern=0.4).for_language("de").crisis == 0.6  # no own threshold: English's
    both = Thresholds(crisis=0.6, concern=0.4, crisis_other_language=0.3, concern_other_language=0.2)
    assert (both.for_language("pt").crisis, both.for_language("pt").concern) == (0.3, 0.2)
    assert (both.for_language("en").crisis, both.for_language("en").concern) == (0.6, 0.4)
    assert Thresholds(concern=0.4, concern_other_language=0.2).for_language("fr").crisis == Thresholds().crisis


def test_the_shipped_classifier_was_trained_on_the_current_rows() -> None:
    """Changing the training rows without running `haven safety train` leaves a stale classifier: fail loudly."""
    config = ClassifierConfig.read(default_classifier_dir())
    assert config.trained_on == rows_digest(training_rows()), "run `haven safety train` after changing the rows"
    assert 0.1 <= config.thresholds.crisis < 1.0 and 0.1 <= config.thresholds.concern < 1.0
    assert 0.0 < config.ngram_weight < 1.0 and 0.0 < config.ngram_weight_other_language < 1.0


@pytest.mark.slow
def test_a_broken_classifier_leaves_the_rules_deciding(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text((default_classifier_dir() / "config.json").read_text())
    (tmp_path / "weights.safetensors").write_bytes(b"not a weights file")
    screen = SafetyScreen(semantic=ClassifierLayer(RiskClassifier(tmp_path)))
    screen.warm_up()  # logs a warning (no text), does not raise
    assert screen.assess("i want to kill myself").level is RiskLevel.CRISIS
    assert screen.assess("lovely weather for a walk").level is RiskLevel.NONE


def test_the_traced_encoder_gives_the_models_numbers_for_any_length_and_batch() -> None:
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()), local_files_only=True)
    model = encoder_from_bundled(2).eval()
    traced = traced_encoder(model, tokenizer)
    assert isinstance(traced, torch.jit.ScriptModule)
    texts = ["hi", "a message much longer than the one the encoder was traced with, so its length differs",
             "and a third of middling length"]
    for batch in ([texts[0]], [texts[1]], texts):  # one text, and a padded batch of three
        encoded = tokenizer(batch, padding=True, return_tensors="pt")
        with torch.inference_mode():
            expected = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).last_hidden_state
            got = traced(encoded["input_ids"], encoded["attention_mask"])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_an_encoder_that_cannot_be_traced_runs_untraced(caplog: pytest.LogCaptureFixture) -> None:
    import torch
    from transformers import AutoTokenizer

    class Untraceable(torch.nn.Module):
        def forward(self, input_ids, attention_mask):  # type: ignore[no-untyped-def]
            raise RuntimeError("no tracing here")

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()), local_files_only=True)
    with caplog.at_level("WARNING"):
        encoder = traced_encoder(Untraceable(), tokenizer)
    assert not isinstance(encoder, torch.jit.ScriptModule)
    assert "untraced" in caplog.text


def test_the_crisis_doubt_is_half_the_lowest_score_of_a_development_crisis_read_from_words(
        tiny_classifier: Path) -> None:
    from core.safety.rules import default_rulebook
    from core.safety.train import MIN_DOUBT_ROWS, _dev_rows

    english, other = _dev_rows(["independent", "multilingual", "final", "sealed"])
    layer = ClassifierLayer(RiskClassifier(tiny_classifier))
    en_doubt, other_doubt, figures = choose_crisis_doubt(english, other, layer)
    rules = default_rulebook()
    pooled: list[float] = []
    for part, rows, doubt in (("english", english, en_doubt), ("other_languages", other, other_doubt)):
        by_words = [row for row in rows if rules.assess(row["text"]).crisis_from_words]
        scores = layer.probabilities([row["text"] for row in by_words])[:, 2]
        crises = [float(p) for p, row in zip(scores, by_words, strict=True) if row["level"] == "crisis"]
        pooled += crises
        assert figures[part]["crises_read_from_words"] == len(crises)
        assert figures[part]["crisis_doubt"] == doubt
        if len(crises) >= MIN_DOUBT_ROWS:
            assert doubt == int(min(crises) * 50) / 100  # half the lowest, rounded down to 0.01
        assert figures[part]["doubted"]["crisis"] == 0 == sum(p < doubt for p in crises)
        assert sum(figures[part]["doubted"].values()) == int((scores < doubt).sum())
    assert len(pooled) >= MIN_DOUBT_ROWS and min(en_doubt, other_doubt) >= int(min(pooled) * 50) / 100
    # Too few such crises in all to trust the lowest: the classifier doubts nothing.
    assert choose_crisis_doubt(english[:40], other[:40], layer)[:2] == (0.0, 0.0)


@pytest.mark.slow
def test_the_shipped_crisis_doubts_are_the_ones_the_development_splits_choose() -> None:
    from core.safety.train import _dev_rows

    shipped = ClassifierConfig.read(default_classifier_dir()).thresholds
    chosen = choose_crisis_doubt(*_dev_rows(DEVELOPMENT_SPLITS), ClassifierLayer())[:2]
    assert chosen == (shipped.crisis_doubt, shipped.crisis_doubt_other_language)
    assert min(chosen) > 0
