"""The constraint judge of the text game's ``gold`` profile: every checker on hand-written
answers, the judge's weighted mean and its errors, the fluency guard, and the prompt file."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from fpo_envs.lm.prompts import BUILTIN, GOLD, load_prompts
from fpo_envs.models.judge import (
    CONSTRAINTS,
    ConstraintJudge,
    check_constraint,
    guarded,
    load_constrained_prompts,
    words,
)

ROOT = Path(__file__).resolve().parents[2]


def check(name, response, value):
    return CONSTRAINTS[name](response, value)


def test_words_are_runs_of_letters_and_digits_with_inner_apostrophes():
    assert words("Don't hard-boil 3.5 eggs, OK?") == ["Don't", "hard", "boil", "3", "5", "eggs", "OK"]
    assert words("**Owl**, the_end  café Earth’s") == ["Owl", "the", "end", "café", "Earth’s"]
    assert words("") == [] and words("  \n\t ") == [] and words("... -- !!") == []


def test_constraints_are_read_only():
    assert set(CONSTRAINTS) >= {"keyword", "max_words", "min_words", "list_items", "avoid_char", "end_phrase", "start_word"}
    with pytest.raises(TypeError):
        CONSTRAINTS["mine"] = lambda response, value: 1.0


@pytest.mark.parametrize(
    "response, expected",
    [
        ("An owl hoots.", 1.0),
        ("OWL!", 1.0),
        ("The (owl), at night", 1.0),
        ("owl-like eyes", 1.0),  # "-" separates words
        ("Owls hoot.", 0.0),  # a whole word only
        ("a bowl of soup", 0.0),
        ("", 0.0),
        ("   ", 0.0),
    ],
)
def test_keyword(response, expected):
    assert check("keyword", response, "owl") == expected


def test_keyword_value_is_case_folded():
    assert check("keyword", "an owl", "OWL") == 1.0


@pytest.mark.parametrize(
    "response, expected",
    [
        ("", 1.0),
        ("one two three four", 1.0),
        ("one, two; three... four!!!", 1.0),  # punctuation is not a word
        ("one two three four five", 0.75),  # 1 - (5 - 4) / 4
        ("a b c d e f", 0.5),
        ("a b c d e f g h", 0.0),  # twice the limit
        ("a b c d e f g h i j", 0.0),
    ],
)
def test_max_words(response, expected):
    assert check("max_words", response, 4) == pytest.approx(expected)


@pytest.mark.parametrize("response, expected", [("", 0.0), ("a b", 0.5), ("a b c d", 1.0), ("a b c d e f", 1.0), (" - ! ", 0.0)])
def test_min_words(response, expected):
    assert check("min_words", response, 4) == pytest.approx(expected)


@pytest.mark.parametrize(
    "response, expected",
    [
        ("- basil\n- oregano\n- thyme", 1.0),
        ("Here they are:\n* basil\n* oregano\n* thyme\nThat is all.", 1.0),  # other lines allowed
        ("• basil\n  • oregano\n\t• thyme", 1.0),  # indented markers
        ("1. basil\n2. oregano\n3) thyme", 1.0),
        ("- basil\n- oregano", 2 / 3),
        ("- a\n- b\n- c\n- d", 2 / 3),
        ("- a\n- b\n- c\n- d\n- e\n- f", 0.0),
        ("basil, oregano and thyme", 0.0),
        ("- basil - oregano - thyme", 1 / 3),  # one line, one item
        ("**basil**\n-5 degrees\n1.5 cups\n-\n- ", 0.0),  # no space after the marker, or no text
        ("", 0.0),
    ],
)
def test_list_items(response, expected):
    assert check("list_items", response, 3) == pytest.approx(expected)


@pytest.mark.parametrize(
    "response, char, expected",
    [
        ("A quiet day.", "z", 1.0),
        ("A lazy day.", "z", 0.0),
        ("ZERO", "z", 0.0),  # case-folded
        ("zero", "Z", 0.0),
        ("", "z", 1.0),
        ("Yes!", "!", 0.0),
        ("Yes.", "!", 1.0),
    ],
)
def test_avoid_char(response, char, expected):
    assert check("avoid_char", response, char) == expected


@pytest.mark.parametrize(
    "response, expected",
    [
        ("Paris is the capital. That is all.", 1.0),
        ("Paris is the capital. that is ALL!", 1.0),  # case and final punctuation
        ("Paris. That is all", 1.0),
        ("Paris.\nThat   is\n all.  \n", 1.0),  # whitespace runs and trailing whitespace
        ('He said "That is all."', 1.0),  # closing quote is punctuation
        ("That is all.", 1.0),
        ("Paris. That is all. Bye.", 0.0),
        ("Paris. What is all.", 0.0),  # not "hat is all" inside a word
        ("Paris. That is all:)", 1.0),  # ":" and ")" are both punctuation
        ("", 0.0),
        ("   ", 0.0),
    ],
)
def test_end_phrase(response, expected):
    assert check("end_phrase", response, "That is all.") == expected


def test_end_phrase_needs_a_word_boundary_before_it():
    assert check("end_phrase", "Goodnight all", "night all") == 0.0
    assert check("end_phrase", "Good-night all", "night all") == 1.0


@pytest.mark.parametrize(
    "response, expected",
    [
        ("Sure, here it is.", 1.0),
        ("sure.", 1.0),
        ("**Sure**! Paris.", 1.0),  # markdown before the first word is ignored
        ("  - Sure thing", 1.0),
        ("Surely not.", 0.0),
        ("Paris, sure.", 0.0),
        ("", 0.0),
        ("  !? ", 0.0),
    ],
)
def test_start_word(response, expected):
    assert check("start_word", response, "Sure") == expected


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("keyword", 3, TypeError),
        ("keyword", "two words", ValueError),
        ("keyword", "", ValueError),
        ("max_words", "10", TypeError),
        ("max_words", 10.0, TypeError),
        ("max_words", True, TypeError),
        ("max_words", 0, ValueError),
        ("min_words", -1, ValueError),
        ("list_items", None, TypeError),
        ("avoid_char", "zz", ValueError),
        ("avoid_char", " ", ValueError),
        ("avoid_char", 1, TypeError),
        ("end_phrase", "...", ValueError),
        ("end_phrase", ["That"], TypeError),
        ("start_word", "Sure,", ValueError),
    ],
)
def test_a_value_of_the_wrong_type_or_range_is_an_error(name, value, error):
    with pytest.raises(error, match=name):
        CONSTRAINTS[name]("any text", value)
    with pytest.raises(error, match=name):
        check_constraint([name, value])
    with pytest.raises(error, match=name):
        ConstraintJudge().score("any text", [[name, value]])


def test_checkers_stay_in_the_unit_interval_on_odd_answers():
    values = {"keyword": "owl", "max_words": 3, "min_words": 3, "list_items": 2, "avoid_char": "x"}
    values |= {"end_phrase": "That is all.", "start_word": "Sure"}
    odd = ["", " ", "\n\n", "- ", "🦉🦉", "x" * 500, "word " * 200, "1.\n2.\n- -\n* *", "\ufffd"]
    for name, value in values.items():
        for response in odd:
            assert 0.0 <= CONSTRAINTS[name](response, value) <= 1.0, (name, response)


def test_the_judge_is_the_weighted_mean_of_its_checkers():
    constraints = [["keyword", "owl"], ["max_words", 4]]
    response = "An owl hoots at night."  # the keyword (1) and 5 words of 4 (0.75)
    assert ConstraintJudge().score(response, constraints) == pytest.approx(0.875)
    assert ConstraintJudge({"keyword": 3.0}).score(response, constraints) == pytest.approx((3 * 1 + 0.75) / 4)
    assert ConstraintJudge({"max_words": 0.0}).score(response, constraints) == 1.0
    assert ConstraintJudge().score(response, [("keyword", "owl")]) == 1.0  # tuples as well as lists
    assert ConstraintJudge().score("", constraints) == 0.5
    assert ConstraintJudge.utility_range == (0.0, 1.0)


def test_a_gate_multiplies_the_mean_of_the_others():
    constraints = [["keyword", "owl"], ["min_words", 8], ["max_words", 12]]
    judge = ConstraintJudge()
    assert judge.gates == {"min_words"}
    # The hole the gate closes: a bare keyword meets the keyword and the limit.
    assert judge.score("Owl.", constraints) == pytest.approx(1 / 8)
    assert ConstraintJudge(gates=()).score("Owl.", constraints) == pytest.approx((1 + 1 / 8 + 1) / 3)
    assert judge.score("An owl hoots softly at night in the old barn.", constraints) == 1.0  # 10 words
    assert judge.score("A cat sleeps softly at night in the old barn.", constraints) == 0.5  # no keyword
    assert judge.score("An owl hoots.", constraints) == pytest.approx(3 / 8)
    assert judge.score("", constraints) == 0.0
    # A gate's weight is not used; the others' weights still are.
    assert ConstraintJudge({"min_words": 0.0}).score("Owl.", constraints) == pytest.approx(1 / 8)
    assert ConstraintJudge({"keyword": 3.0}).score("An owl hoots.", constraints) == pytest.approx(3 / 8)
    assert ConstraintJudge({"max_words": 3.0}).score("A cat hoots.", constraints) == pytest.approx(3 / 8 * 3 / 4)
    # Gates only: their product; two gates multiply.
    assert judge.score("An owl hoots.", [["min_words", 6]]) == pytest.approx(0.5)
    both = ConstraintJudge(gates=("min_words", "keyword"))
    assert both.score("A cat hoots.", [["keyword", "owl"], ["min_words", 6]]) == 0.0
    assert both.score("An owl hoots.", [["keyword", "owl"], ["min_words", 6], ["max_words", 2]]) == pytest.approx(0.5 * 0.5)


def test_bad_gates_are_errors():
    with pytest.raises(ValueError, match="gates name an unknown constraint 'colour'"):
        ConstraintJudge(gates=("colour",))
    with pytest.raises(TypeError, match="sequence of constraint names"):
        ConstraintJudge(gates="min_words")
    assert repr(ConstraintJudge()) == "ConstraintJudge()"
    assert repr(ConstraintJudge({"keyword": 2.0}, gates=())) == "ConstraintJudge(weights={'keyword': 2.0}, gates=())"


def test_the_judge_spans_its_range():
    constraints = [["start_word", "Sure"], ["end_phrase", "That is all."]]
    judge = ConstraintJudge()
    assert judge.score("Sure, Paris. That is all.", constraints) == 1.0
    assert judge.score("Paris.", constraints) == 0.0
    assert judge.score("Sure, Paris.", constraints) == 0.5


def test_judge_errors_name_the_fix():
    judge = ConstraintJudge()
    with pytest.raises(ValueError, match="unknown constraint 'colour'.*keyword, max_words"):
        judge.score("text", [["colour", "blue"]])
    with pytest.raises(ValueError, match="prompts without constraints under a constraint judge"):
        judge.score("text", [])
    with pytest.raises(TypeError, match=r"\[name, value\] pair"):
        judge.score("text", [["keyword", "owl", "extra"]])
    with pytest.raises(TypeError, match="list of"):
        judge.score("text", {"keyword": "owl"})
    with pytest.raises(TypeError, match="response must be a str"):
        judge.score(None, [["keyword", "owl"]])
    with pytest.raises(ValueError, match="weight 0"):
        ConstraintJudge({"keyword": 0}).score("text", [["keyword", "owl"]])


@pytest.mark.parametrize(
    "weights, match",
    [
        ({"keyword": -1.0}, ">= 0"),
        ({"keyword": math.inf}, "finite"),
        ({"keyword": math.nan}, "finite"),
        ({"keyword": "1"}, "finite"),
        ({"colour": 1.0}, "unknown constraint 'colour'.*keyword"),
    ],
)
def test_bad_weights_are_errors(weights, match):
    with pytest.raises(ValueError, match=match):
        ConstraintJudge(weights)


def test_the_guard_keeps_the_score_up_to_the_floor_then_falls_to_zero():
    assert guarded(0.8, 3.0, 4.0, 2.0) == 0.8
    assert guarded(0.8, 4.0, 4.0, 2.0) == 0.8
    assert guarded(0.8, 5.0, 4.0, 2.0) == pytest.approx(0.4)
    assert guarded(0.8, 6.0, 4.0, 2.0) == 0.0
    assert guarded(0.8, 60.0, 4.0, 2.0) == 0.0
    assert guarded(0.8, math.inf, 4.0, 2.0) == 0.0
    assert guarded(0.0, 1.0, 4.0, 2.0) == 0.0 and guarded(1.0, -1.0, 4.0, 2.0) == 1.0


@pytest.mark.parametrize(
    "args, match",
    [
        ((1.5, 3.0, 4.0, 2.0), "score"),
        ((-0.1, 3.0, 4.0, 2.0), "score"),
        ((0.5, math.nan, 4.0, 2.0), "nll"),
        ((0.5, 3.0, math.inf, 2.0), "floor"),
        ((0.5, 3.0, 4.0, 0.0), "width"),
        ((0.5, 3.0, 4.0, -1.0), "width"),
        ((0.5, 3.0, 4.0, math.inf), "width"),
        ((0.5, "3", 4.0, 2.0), "nll"),
    ],
)
def test_guard_errors(args, match):
    with pytest.raises(ValueError, match=match):
        guarded(*args)


# The prompt file ---------------------------------------------------------------------------------
def test_the_gold_prompts_load_in_both_splits_with_valid_constraints():
    judge = ConstraintJudge()
    sizes = {}
    for split in ("train", "eval"):
        rows = load_constrained_prompts(split=split)
        sizes[split] = len(rows)
        assert [p for p, _ in rows] == load_prompts(str(GOLD), split)  # the env's prompts, in order
        for prompt, constraints in rows:
            assert len(constraints) == 3 and len({n for n, _ in constraints}) == 3
            assert ["min_words", 8] in [list(c) for c in constraints]  # the floor on every prompt
            for name, value in constraints:
                check_constraint([name, value])
                assert str(value) in prompt  # the sentence states the value
            assert 0.0 <= judge.score("Sure, an owl. That is all.", constraints) <= 1.0
            assert judge.score("Owl.", constraints) <= 1 / 8  # a bare keyword does not pass
    assert sizes == {"train": 144, "eval": 36}
    assert load_constrained_prompts(GOLD, "train") == load_constrained_prompts(None, "train")


def test_the_gold_prompts_keep_the_builtin_split():
    builtin = [json.loads(line) for line in BUILTIN.read_text().splitlines() if line.strip()]
    gold = [json.loads(line) for line in GOLD.read_text().splitlines() if line.strip()]
    assert [(b["id"], b["split"]) for b in builtin] == [(g["id"], g["split"]) for g in gold]
    for b, g in zip(builtin, gold):
        assert g["prompt"].startswith(b["prompt"].strip() + " ")


def test_the_script_rewrites_the_committed_file_byte_for_byte(tmp_path):
    spec = importlib.util.spec_from_file_location("make_gold_prompts", ROOT / "scripts" / "make_gold_prompts.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "gold.jsonl"
    script.main(["--out", str(out)])
    assert out.read_bytes() == GOLD.read_bytes()
    script.main(["--out", str(out), "--seed", "1"])
    assert out.read_bytes() != GOLD.read_bytes()
    assert len(load_constrained_prompts(out, "eval")) == 36


def _write(tmp_path, lines):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_loader_reads_rows_without_a_split_into_both(tmp_path):
    path = _write(
        tmp_path,
        [
            '{"prompt": " Hi. Use the word \\"owl\\". ", "constraints": [["keyword", "owl"]]}',
            "",
            '{"prompt": "Bye.", "constraints": [["max_words", 3]], "split": "eval"}',
        ],
    )
    assert load_constrained_prompts(path, "train") == [('Hi. Use the word "owl".', [("keyword", "owl")])]
    assert [p for p, _ in load_constrained_prompts(path, "eval")] == ['Hi. Use the word "owl".', "Bye."]


@pytest.mark.parametrize(
    "lines, match",
    [
        (['{"prompt": "Hi."'], "line 1: not valid JSON"),
        (['{"prompt": "Hi.", "constraints": [["keyword", "owl"]]}', "[1, 2]"], "line 2: each line must be a JSON object"),
        (['{"prompt": "Hi."}'], "line 1: has no 'constraints'"),
        (['{"prompt": "Hi.", "constraints": []}'], "line 1: prompts without constraints"),
        (['{"prompt": "Hi.", "constraints": [["colour", "blue"]]}'], "line 1: unknown constraint 'colour'"),
        (['{"prompt": "Hi.", "constraints": [["max_words", "ten"]]}'], "line 1: max_words takes a whole number"),
        (['{"constraints": [["keyword", "owl"]]}'], "line 1: needs a non-empty 'prompt'"),
        (['{"prompt": "Hi.", "constraints": [["keyword", "owl"]], "split": "test"}'], "line 1: split must be"),
        (
            ['{"prompt": "Hi.", "constraints": [["keyword", "owl"]]}', '{"prompt": "Hi.", "constraints": [["keyword", "fox"]]}'],
            "line 2: the prompt of line 1 again",
        ),
        (['{"prompt": "Hi.", "constraints": [["keyword", "owl"]], "split": "eval"}'], "no train prompts"),
    ],
)
def test_loader_errors_name_the_line(tmp_path, lines, match):
    with pytest.raises(ValueError, match=match):
        load_constrained_prompts(_write(tmp_path, lines), "train")


def test_loader_missing_file_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_gold_prompts"):
        load_constrained_prompts(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="split must be 'train' or 'eval'"):
        load_constrained_prompts(split="test")
