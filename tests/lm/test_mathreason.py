"""Xwin-Math pieces: answer extraction and matching (the eval toolkit's rules), the metrics
against hand-worked and brute-force values, the generator/verifier/synthesiser, the error
taxonomy, the GSM8K/MATH readers on fixture files, and the released-checkpoint path on a saved
random-init tiny model."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.errors import DataUnavailableError, ParameterError
from repro.lm import mathreason as M


# --------------------------------------------------------------------------- extraction
@pytest.mark.parametrize("text, policy, answer", [
    ("so 3 + 4 = 7\n#### 7", "strict", "7"),
    ("9 apples. The answer is: 12.", "strict", "12"),
    ("The answer is 1,234 coins", "strict", "1,234 coins"),
    ("first 5 then The answer is: 8 and\nlater 9", "strict", "8 and"),
    ("we get \\boxed{\\frac{1}{2}} in the end", "flex", "\\frac{1}{2}"),
    ("\\boxed{3} or rather \\boxed{4}", "flex", "4"),
    ("no marker, 3 then 41 items", "flex", "41"),
    ("no marker, 3 then 41 items", "strict", None),
    ("nothing numeric here", "flex", None),
])
def test_extract_answer_follows_the_toolkit_rules(text, policy, answer):
    assert M.extract_answer(text, policy) == answer


def test_extract_number_reads_thousands_and_negative_numbers():
    assert M.extract_number("#### 1,234") == 1234.0
    assert M.extract_number("The answer is: -5") == -5.0
    assert M.extract_number("The answer is: 2.5 kg") == 2.5
    with pytest.raises(ParameterError, match="policy"):
        M.extract_answer("x", "loose")


_TEXT = st.text(alphabet=st.sampled_from(list("0123456789,.-# :\n{}\\abxThe answersiod")),
                max_size=60)
_MARKED = st.builds(lambda a, m, b: a + m + b, _TEXT,
                    st.sampled_from(["####", "The answer is: ", "The answer is", "\\boxed{"]),
                    _TEXT)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_TEXT, _MARKED), st.sampled_from(["strict", "flex"]))
def test_extractor_never_crashes_and_never_invents_a_number(text, policy):
    answer = M.extract_answer(text, policy)
    assert answer is None or answer in text
    value = M.extract_number(text, policy)
    if value is not None:
        in_text = {float(t.replace(",", "")) for t in M.NUMBER_RE.findall(text)}
        assert value in in_text


# --------------------------------------------------------------------------- matching
@pytest.mark.parametrize("pred, gt, match", [
    ("1000", "1000", True), ("1001", "1000", False),  # integers: exact
    ("0.5004", "0.5", True), ("0.51", "0.5", False),  # 1e-3 relative tolerance
    ("3.002", "3", True),  # not both integers: tolerance applies
    ("1,000", "1000", True), ("\\frac{1}{2}", "\\dfrac{1}{2}", True),
    (None, "3", False),
])
def test_answers_match_strict(pred, gt, match):
    assert M.answers_match(pred, gt) is match


def test_answers_match_inclusion_policies():
    assert M.answers_match("2 and 3", "3, 2") is True  # strict: one to one, order-free
    assert M.answers_match("2 and 3 and 4", "3, 2") is False
    assert M.answers_match("2 and 3 and 4", "3, 2", mode="model_include_gt") is True
    assert M.answers_match("2", "3, 2", mode="gt_include_model") is True
    assert M.answers_match("5", "3, 2", mode="gt_include_model") is False
    with pytest.raises(ParameterError, match="mode"):
        M.answers_match("1", "1", mode="lenient")


# --------------------------------------------------------------------------- metrics
def test_pass_at_n_and_pass_ratio_on_a_hand_worked_table():
    correct = [[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]
    assert M.pass_at_n(correct) == pytest.approx(2 / 3)
    assert M.pass_ratio_at_n(correct) == pytest.approx((0.25 + 0 + 1) / 3)
    with pytest.raises(ParameterError):
        M.pass_at_n([])


@pytest.mark.parametrize("n, c, k", [(5, 2, 1), (5, 2, 2), (6, 3, 4), (7, 0, 3), (4, 4, 2)])
def test_unbiased_pass_at_k_equals_the_brute_force_over_subsets(n, c, k):
    results = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(results[i] for i in s) for s in subsets) / len(subsets)
    assert M.pass_at_k_unbiased(n, c, k) == pytest.approx(brute)


def test_maj_at_k_takes_the_most_frequent_answer():
    answers = [[3.0, 4.0, 4.0], [1.0, 2.0, None], [None, None, None]]
    assert M.maj_at_k(answers, [4.0, 1.0, 5.0]) == pytest.approx(2 / 3)
    assert M.maj_at_k(answers, [4.0, 1.0, 5.0], k=1) == pytest.approx(1 / 3)


def test_step_accuracy_fit_recovers_p():
    acc = {s: 0.9 ** s for s in (2, 3, 4, 5)}
    assert M.fit_step_accuracy(acc) == pytest.approx(0.9)
    assert M.fit_step_accuracy(acc, {2: 10, 3: 50, 4: 5, 5: 1}) == pytest.approx(0.9)


# --------------------------------------------------------------------------- problems
def test_generated_problems_verify_read_back_and_solve():
    config = M.ProblemConfig(ops=("+", "-", "*", "/"), max_steps=4, value_range=(0, 60))
    problems = M.generate_problems(200, config, seed=0)
    assert len({p.question for p in problems}) > 150
    for p in problems:
        assert M.verify_problem(p, config) == (True, "ok")
        assert M.parse_question(p.question) == p
        assert M.extract_number(p.solution) == p.answer
        assert M.classify_error(p.solution, p) is None
    assert M.generate_problems(5, config, seed=3) == M.generate_problems(5, config, seed=3)


def test_hand_worked_problem_and_solution():
    p = M.Problem("Eve", "coins", 7, (("+", 5), ("-", 2)))
    assert p.solution == " 7+5=12 12-2=10 The answer is: 10"
    assert p.answer == 10 and p.num_steps == 2
    assert M.verify_problem(p, M.ProblemConfig()) == (True, "ok")
    too_big = M.Problem("Eve", "coins", 7, (("+", 9), ("+", 9), ("+", 9)))
    assert M.verify_problem(too_big, M.ProblemConfig())[0] is False


def test_synthesis_yields_verified_brand_new_problems():
    config = M.ProblemConfig()
    seeds = M.generate_problems(20, config, seed=1)
    synthetic, stats = M.synthesize(seeds, 100, config, seed=2)
    assert len(synthetic) == 100 and stats["accepted"] + stats["repaired"] == 100
    assert all(M.verify_problem(p, config)[0] for p in synthetic)
    assert len(set(synthetic) & set(seeds)) < 5
    with pytest.raises(ParameterError, match="seed"):
        M.synthesize([], 3, config, seed=0)


def test_problem_config_rejects_unknown_operations():
    with pytest.raises(ParameterError, match="ops"):
        M.ProblemConfig(ops=("^",))


# --------------------------------------------------------------------------- taxonomy
def test_error_taxonomy_is_exact():
    p = M.Problem("Eve", "coins", 7, (("+", 5), ("-", 2)))
    assert M.classify_error(" 7+5=12 12-2=10 The answer is: 10", p) is None
    assert M.classify_error(" 7+5=13 13-2=11 The answer is: 11", p) == "calculation"
    assert M.classify_error(" 7-5=2 2-2=0 The answer is: 0", p) == "reasoning"
    assert M.classify_error(" 7+5=12 The answer is: 12", p) == "reasoning"  # missing step
    assert M.classify_error(" 7+5=12 12-2=", p) == "no answer"
    assert M.first_error_position(" 7+5=12 12-2=11 The answer is: 11", p) == 0.5
    assert M.first_error_position(" 7+5=12 12-2=10 The answer is: 10", p) == 1.0


# --------------------------------------------------------------------------- readers
def test_read_gsm8k_fixture(tmp_path):
    path = tmp_path / "test.jsonl"
    rows = [{"question": "Ann has 3 pens and buys 4. How many?", "answer": "3+4=7\n#### 7"},
            {"question": "A big one?", "answer": "It is 1,200.\n#### 1,200"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = M.read_gsm8k(path)
    assert [i.answer for i in items] == ["7", "1200"]
    assert items[0].question.startswith("Ann")


def test_read_gsm8k_names_the_file_and_line_of_a_corrupt_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n{not json\n")
    with pytest.raises(DataUnavailableError, match=r"bad\.jsonl, line 2.*gsm8k\.yaml"):
        M.read_gsm8k(path)
    path.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(DataUnavailableError, match="####"):
        M.read_gsm8k(path)


def test_read_math_in_its_three_layouts(tmp_path):
    record = {"problem": "What is $1/2 + 0$?", "level": "Level 1", "type": "Algebra",
              "solution": "It is $\\boxed{\\frac{1}{2}}$."}
    folder = tmp_path / "test" / "algebra"
    folder.mkdir(parents=True)
    (folder / "1.json").write_text(json.dumps(record))
    (tmp_path / "all.json").write_text(json.dumps([record, {**record, "answer": "0.5"}]))
    (tmp_path / "math500.jsonl").write_text(json.dumps({**record, "answer": "\\frac12"}))
    from_dir = M.read_math(tmp_path / "test")
    assert from_dir[0].answer == "\\frac{1}{2}" and from_dir[0].meta["level"] == "Level 1"
    assert [i.answer for i in M.read_math(tmp_path / "all.json")] == ["\\frac{1}{2}", "0.5"]
    assert M.read_math(tmp_path / "math500.jsonl")[0].answer == "\\frac12"


def test_read_math_names_a_corrupt_file(tmp_path):
    (tmp_path / "x.json").write_text('{"problem": "p", "solution": "no box"}')
    with pytest.raises(DataUnavailableError, match=r"x\.json.*boxed"):
        M.read_math(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{oops")
    with pytest.raises(DataUnavailableError, match=r"y\.json: not valid JSON"):
        M.read_math(tmp_path / "y.json")


def test_full_scale_benchmark_without_data_names_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    with pytest.raises(DataUnavailableError, match=r"gsm8k\.yaml"):
        M.load_benchmark("gsm8k")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    with pytest.raises(ParameterError, match="benchmark"):
        M.load_benchmark("aime")


# --------------------------------------------------------------------------- checkpoints
def test_released_weights_path_on_a_saved_random_init_tiny_model(tmp_path):
    from repro.lm.model import tiny_llama

    tok = M.math_tokenizer()
    model = tiny_llama(tok.vocab_size, d_model=16, n_layers=1, n_heads=2, mlp=32,
                       max_seq=160).eval()
    questions = [p.question for p in M.generate_problems(3, M.ProblemConfig(), seed=0)]
    before = M.evaluate_model(model, tok, questions, ["1", "2", "3"], max_new_tokens=8)
    M.save_tiny_checkpoint(model, tok, tmp_path / "ckpt")
    loaded, loaded_tok = M.load_causal_lm(tmp_path / "ckpt")
    after = M.evaluate_model(loaded, loaded_tok, questions, ["1", "2", "3"], max_new_tokens=8)
    assert after["greedy_outputs"] == before["greedy_outputs"]
    assert 0.0 <= after["pass@1"] <= 1.0
    with pytest.raises(DataUnavailableError, match=r"xwin-math-7b-v1\.1\.yaml"):
        M.load_causal_lm(tmp_path / "missing", manifest="xwin-math-7b-v1.1")


def test_unbiased_estimator_rejects_bad_counts():
    with pytest.raises(ParameterError):
        M.pass_at_k_unbiased(3, 4, 1)
    assert M.pass_at_k_unbiased(10, 3, 1) == pytest.approx(0.3)
    assert math.isclose(M.pass_at_k_unbiased(10, 0, 5), 0.0)
