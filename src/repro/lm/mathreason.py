"""Xwin-Math: synthetic SFT data, answer checking and the capability-vs-stability metrics.

Chen Li, Weiqi Wang, Jingcheng Hu, Yixuan Wei, Nanning Zheng, Han Hu, Zheng Zhang, Houwen Peng.
*Common 7B Language Models Already Possess Strong Math Capabilities.* arXiv:2403.04706, 2024.

Paper → code:

* §3, the three-step synthesis with GPT-4 Turbo (new question from a seed, verify and modify,
  answer step by step) → :func:`brand_new_from_seed` (draft, :func:`verify_problem` and repair,
  :func:`cot_solution`) and :func:`synthesize`; "real" data is :func:`generate_problems`;
* the released eval toolkit (``Xwin-Math/eval``): :func:`extract_answer` with the ``strict``
  rule 1 ("####", "The answer is: ", "The answer is") and the ``flex`` rules 2 (``\\boxed{}``,
  ``\\mbox{}``) and 3 (the last number); :func:`answers_match` with exact equality for integers,
  1e-3 relative tolerance otherwise, and the ``strict`` / ``model_include_gt`` /
  ``gt_include_model`` policies;
* Eqs. 1-3: :func:`pass_at_n` (the plug-in ``mean(min(c, 1))`` the paper uses),
  :func:`pass_ratio_at_n` (``mean(c / N)``); extensions: :func:`pass_at_k_unbiased` (Codex)
  and :func:`maj_at_k` (self-consistency, not used by the paper);
* §5, Acc_final = Acc_step^s → :func:`fit_step_accuracy`; first error position and the
  calculation/reasoning error split → :func:`first_error_position`, :func:`classify_error`;
* GSM8K JSONL and MATH JSON readers (:func:`read_gsm8k`, :func:`read_math`), manifests
  ``data/manifests/gsm8k.yaml`` / ``math.yaml``; the released checkpoints through transformers
  (:func:`load_causal_lm`, :func:`evaluate_model`), manifests ``xwin-math-*.yaml``.

Departures:

* GPT-4 Turbo is replaced by a program: problems are random operation chains (a path-shaped
  operation graph: every step combines the running value with a new quantity) over +, -, ×
  and exact ÷, rendered in templated English; the program is generator, verifier and solver
  at once, so "verification" is exact (the question is parsed back and recomputed).
* The MATH checker's SymPy ``parse_latex`` equivalence is not reimplemented: MATH answers are
  compared literally after light LaTeX normalisation, then numerically when both are single
  numbers. GSM8K-style checking is the toolkit's.
* The paper's error types are judged by GPT-4 on GSM8K; here they are exact (a wrong result of
  the right operation on the right operands is a calculation error; a wrong operation,
  operand or a missing step is a reasoning error; no extractable answer is its own class).
* The step-accuracy fit floors a zero accuracy at ``0.5 / n`` (a continuity correction) before
  taking logs, and weights each step count by its number of problems.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataUnavailableError, ParameterError

__all__ = [
    "ProblemConfig", "Problem", "generate_problems", "verify_problem", "parse_question",
    "cot_solution", "brand_new_from_seed", "synthesize", "math_tokenizer", "MATH_PROMPT",
    "PAPER_PROMPT", "ANSWER_PATTERNS", "extract_answer", "extract_number", "extract_numbers",
    "answers_match", "numbers_equal", "pass_at_n", "pass_ratio_at_n", "pass_at_k_unbiased",
    "maj_at_k", "fit_step_accuracy", "parse_steps", "classify_error", "first_error_position",
    "MathItem", "read_gsm8k", "read_math", "last_boxed", "load_benchmark", "MathSFTConfig",
    "training_problems", "ERROR_TYPES",
    "math_policy", "evaluate_model", "load_causal_lm", "save_tiny_checkpoint", "FULL_SCALE",
    "PAPER_RESULTS",
]

# --------------------------------------------------------------------------- paper constants
# The prompt of §4.2 (the same for SFT and evaluation), Vicuna-v1.1 system prompt.
PAPER_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user's questions. USER: {question} "
    "Give your solution in detail. In the end, write your final answer in the format of "
    "'The answer is: <ANSWER>.'. ASSISTANT: ")
# The tiny models' prompt (ours).
MATH_PROMPT = "{question}\nA:"

FULL_SCALE: dict[str, Any] = {  # §4.2 and the V1.1 model cards (spec §3.3)
    "base_models": ["LLaMA-2-7B", "LLaMA-2-13B", "LLaMA-2-70B", "Mistral-7B", "Llemma-7B"],
    "synthetic_gsm8k": 960_000, "synthetic_math": 480_000,
    "optimizer": "Adam", "schedule": "cosine", "epochs": 3, "peak_lr": 2e-5,
    "warmup_fraction": 0.04, "max_length": 2048, "eval_decoding": "greedy",
    "sampling_temperature": 0.7, "pass_at_n": 256, "synthesis_temperature": 1.0,
}

PAPER_RESULTS: dict[str, Any] = {
    # Table 1, LLaMA-2-7B, Pass@1 (%): size -> (GSM8K real, GSM8K syn, MATH real, MATH syn)
    "table1": {940: (26.7, 25.9, 4.2, 3.9), 1880: (32.8, 31.9, 5.6, 4.9),
               3750: (43.3, 42.2, 6.6, 6.0), 7500: (50.2, 49.5, 8.4, 7.9)},
    # §2, LLaMA-2-7B SFT on 7.5K: Pass@256 and PassRatio@256 (%)
    "pass256": {"gsm8k": 97.7, "math": 72.0},
    "pass_ratio256": {"gsm8k": 48.2, "math": 7.9},
    # Table 2, Pass@1 (%) after synthetic scaling: (GSM8K, MATH)
    "table2": {"LLaMA-2-7B": (82.6, 40.6), "LLaMA-2-13B": (88.1, 44.9),
               "LLaMA-2-70B": (90.6, 52.8), "Mistral-7B": (89.2, 43.7),
               "Llemma-7B": (84.2, 47.2)},
    # Table 4, 7B GSM8K: data -> (Acc_step %, first-error position %)
    "table4": {7500: (78.9, 67.1), 120_000: (89.7, 83.9), 960_000: (94.2, 90.9)},
    # HF model cards (V1.1), Pass@1 (%): (GSM8K, MATH)
    "v1_1": {"Xwin-Math-7B-V1.1": (84.4, 44.7), "Xwin-Math-70B-V1.1": (90.6, 51.9)},
}


# --------------------------------------------------------------------------- problems
NAMES = ("Eve", "Bob", "Ann", "Tom", "Mia", "Sam", "Zoe", "Max")
OBJECTS = ("coins", "apples", "cards", "books", "pens", "cups")
VERBS = {"+": ("finds", "gets", "buys"), "-": ("loses", "gives away", "sells")}
# × and ÷ read as "gets k times as many" / "keeps one of k equal shares"
STEP_SYMBOLS = {"+": "+", "-": "-", "*": "*", "/": "/"}


@dataclass(frozen=True)
class ProblemConfig:
    """The distribution of problems (the pilot's: 2-3 steps of + and -, operands 1-9, start
    2-9, every intermediate value in 0-30)."""

    min_steps: int = 2
    max_steps: int = 3
    ops: tuple[str, ...] = ("+", "-")
    operand_range: tuple[int, int] = (1, 9)
    start_range: tuple[int, int] = (2, 9)
    value_range: tuple[int, int] = (0, 30)

    def __post_init__(self) -> None:
        if not 1 <= self.min_steps <= self.max_steps:
            raise ParameterError(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, "
                                 f"{self.max_steps}")
        bad = [op for op in self.ops if op not in STEP_SYMBOLS]
        if bad or not self.ops:
            raise ParameterError(f"ops must be a non-empty subset of + - * /, got {self.ops}")


@dataclass(frozen=True)
class Problem:
    """One word problem: who, what, the start value and the operation chain."""

    name: str
    obj: str
    start: int
    steps: tuple[tuple[str, int], ...]

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def values(self) -> list[float]:
        """The running value after each step (exact; a non-integer marks a bad ÷)."""
        out, value = [], float(self.start)
        for op, k in self.steps:
            value = _apply(op, value, k)
            out.append(value)
        return out

    @property
    def answer(self) -> int:
        return int(self.values()[-1])

    @property
    def question(self) -> str:
        parts = []
        for i, (op, k) in enumerate(self.steps):
            if op in VERBS:
                verb = VERBS[op][(i + self.start + k) % len(VERBS[op])]
                parts.append(f"{verb} {k}")
            elif op == "*":
                parts.append(f"gets {k} times as many")
            else:
                parts.append(f"keeps one of {k} equal shares")
        return (f"Q: {self.name} has {self.start} {self.obj}. {self.name} "
                + ", then ".join(parts) + ". How many?")

    @property
    def solution(self) -> str:
        return cot_solution(self)


def _apply(op: str, value: float, k: int) -> float:
    if op == "+":
        return value + k
    if op == "-":
        return value - k
    if op == "*":
        return value * k
    return value / k


def cot_solution(problem: Problem) -> str:
    """Step 3, the chain-of-thought answer: one ``a op k = b`` line per step, then
    ``The answer is: X``."""
    lines, value = [], problem.start
    for (op, k), new in zip(problem.steps, problem.values()):
        lines.append(f"{_fmt_num(value)}{STEP_SYMBOLS[op]}{k}={_fmt_num(new)}")
        value = new
    return " " + " ".join(lines) + f" The answer is: {_fmt_num(value)}"


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


_QUESTION_RE = re.compile(r"^Q: (\w+) has (\d+) (\w+)\. (\w+) (.+)\. How many\?$")
_PART_RES = [
    (re.compile(r"^gets (\d+) times as many$"), "*"),
    (re.compile(r"^keeps one of (\d+) equal shares$"), "/"),
    *[(re.compile(rf"^{verb} (\d+)$"), op) for op, verbs in VERBS.items() for verb in verbs],
]


def parse_question(text: str) -> Problem | None:
    """Read a rendered question back into its program (None if it is not one)."""
    match = _QUESTION_RE.match(text.strip())
    if not match or match.group(1) != match.group(4):
        return None
    steps = []
    for part in match.group(5).split(", then "):
        for pattern, op in _PART_RES:
            m = pattern.match(part)
            if m:
                steps.append((op, int(m.group(1))))
                break
        else:
            return None
    return Problem(match.group(1), match.group(3), int(match.group(2)), tuple(steps))


def verify_problem(problem: Problem, config: ProblemConfig) -> tuple[bool, str]:
    """Step 2, the verifier: the question must read back into the same program (solvable from
    its text alone), use allowed operations and step counts, and keep every value an integer
    inside ``value_range``. Returns (ok, reason)."""
    if parse_question(problem.question) != problem:
        return False, "the question does not read back into its program"
    if not config.min_steps <= problem.num_steps <= config.max_steps:
        return False, f"{problem.num_steps} steps"
    if any(op not in config.ops for op, _ in problem.steps):
        return False, "operation not allowed"
    lo, hi = config.value_range
    for value in [float(problem.start), *problem.values()]:
        if not value.is_integer():
            return False, "a non-integer value"
        if not lo <= value <= hi:
            return False, f"value {value:g} outside [{lo}, {hi}]"
    return True, "ok"


def _draw_step(rng: random.Random, config: ProblemConfig, value: float) -> tuple[str, int]:
    op = rng.choice(config.ops)
    lo, hi = config.operand_range
    if op == "/":
        divisors = [k for k in range(max(lo, 2), hi + 1) if value % k == 0]
        if divisors:
            return op, rng.choice(divisors)
        op = "+"
    return op, rng.randint(lo, hi)


def _fresh_problem(rng: random.Random, config: ProblemConfig, num_steps: int,
                   max_tries: int = 100) -> Problem:
    for _ in range(max_tries):
        start = rng.randint(*config.start_range)
        value, steps = float(start), []
        for _ in range(num_steps):
            for _ in range(20):
                op, k = _draw_step(rng, config, value)
                new = _apply(op, value, k)
                if new.is_integer() and config.value_range[0] <= new <= config.value_range[1]:
                    break
            else:
                break
            steps.append((op, k))
            value = new
        if len(steps) == num_steps:
            return Problem(rng.choice(NAMES), rng.choice(OBJECTS), start, tuple(steps))
    raise ParameterError(f"could not draw a valid {num_steps}-step problem from {config}")


def generate_problems(n: int, config: ProblemConfig, seed: int) -> list[Problem]:
    """``n`` "real" problems (the GSM8K-train analogue), a pure function of ``seed``."""
    rng = random.Random(seed)
    return [_fresh_problem(rng, config, rng.randint(config.min_steps, config.max_steps))
            for _ in range(n)]


def brand_new_from_seed(seed_problem: Problem, config: ProblemConfig, rng: random.Random,
                        max_repairs: int = 5) -> tuple[Problem | None, str]:
    """The paper's three steps for one seed: (1) draft a brand-new question inspired by the
    seed (new person, object and numbers; the step count may move by one; each operation kept
    or redrawn), unconstrained like a first draft; (2) verify it and, where a value breaks the
    rules, modify the offending operand (up to ``max_repairs`` times); (3) the solution is
    :func:`cot_solution`. Returns (problem or None, "accepted" | "repaired" | "rejected")."""
    num_steps = min(max(seed_problem.num_steps + rng.choice((-1, 0, 0, 1)), config.min_steps),
                    config.max_steps)
    ops = [op for op, _ in seed_problem.steps]
    ops = [ops[i % len(ops)] if rng.random() < 0.5 else rng.choice(config.ops)
           for i in range(num_steps)]
    lo, hi = config.operand_range
    draft = Problem(rng.choice(NAMES), rng.choice(OBJECTS), rng.randint(*config.start_range),
                    tuple((op, rng.randint(max(lo, 2) if op in "*/" else lo, hi)) for op in ops))
    ok, _ = verify_problem(draft, config)
    if ok:
        return draft, "accepted"
    problem = draft
    for _ in range(max_repairs):
        value, steps = float(problem.start), list(problem.steps)
        for i, (op, k) in enumerate(steps):
            new = _apply(op, value, k)
            if not (new.is_integer() and config.value_range[0] <= new <= config.value_range[1]):
                steps[i] = _draw_step(rng, config, value)
                new = _apply(steps[i][0], value, steps[i][1])
            value = new
        problem = Problem(problem.name, problem.obj, problem.start, tuple(steps))
        ok, _ = verify_problem(problem, config)
        if ok:
            return problem, "repaired"
    return None, "rejected"


def synthesize(seeds: Sequence[Problem], n: int, config: ProblemConfig,
               seed: int) -> tuple[list[Problem], dict[str, int]]:
    """``n`` synthetic problems, cycling through ``seeds`` (one new problem per seed visit),
    and the counts of accepted, repaired and rejected drafts."""
    if not seeds:
        raise ParameterError("synthesize needs at least one seed problem")
    rng = random.Random(seed)
    out: list[Problem] = []
    stats = {"accepted": 0, "repaired": 0, "rejected": 0}
    i = 0
    while len(out) < n:
        problem, status = brand_new_from_seed(seeds[i % len(seeds)], config, rng)
        stats[status] += 1
        i += 1
        if problem is not None:
            out.append(problem)
        if i > 20 * n + 100:
            raise ParameterError("synthesis rejects nearly every draft; widen the config")
    return out, stats


def math_tokenizer():
    """The character tokenizer of the generated problems and solutions."""
    from .data import CharTokenizer

    words = [*NAMES, *OBJECTS, *(v for vs in VERBS.values() for v in vs),
             "Q: has . How many? then gets times as many keeps one of equal shares",
             "A: The answer is: 0123456789 +-*/=,\n"]
    return CharTokenizer.fit("".join(words))


# --------------------------------------------------------------------------- answers
ANSWER_PATTERNS = ("####", "The answer is: ", "The answer is")
NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


def _boxed_span(text: str, commands: Sequence[str] = ("\\boxed", "\\mbox")
                ) -> tuple[int, int] | None:
    """Span of the contents of the last ``\\boxed{...}`` (or ``\\mbox{...}``), braces
    matched."""
    best = None
    for command in commands:
        start = text.rfind(command + "{")
        while start != -1:
            depth, i = 0, start + len(command)
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    if best is None or start > best[2]:
                        best = (i + 1, j, start)
                    break
            if best is not None and best[2] == start:
                break
            start = text.rfind(command + "{", 0, start)
    return None if best is None else (best[0], best[1])


def _answer_span(text: str, policy: str, patterns: Sequence[str]) -> tuple[int, int] | None:
    if policy not in ("strict", "flex"):
        raise ParameterError(f"policy must be 'strict' or 'flex', got {policy!r}")
    for pattern in patterns:  # rule 1: text after the last answer marker
        at = text.rfind(pattern)
        if at != -1:
            start = at + len(pattern)
            end = text.find("\n", start)
            end = len(text) if end == -1 else end
            if text[start:end].strip():
                return start, end
    if policy == "strict":
        return None
    span = _boxed_span(text)  # rule 2
    if span is not None and text[span[0]:span[1]].strip():
        return span
    numbers = list(NUMBER_RE.finditer(text))  # rule 3: the last number
    return (numbers[-1].start(), numbers[-1].end()) if numbers else None


def extract_answer(text: str, policy: str = "flex",
                   patterns: Sequence[str] = ANSWER_PATTERNS) -> str | None:
    """The answer text of a response: rule 1 (``strict``); rules 1, 2, 3 (``flex``)."""
    span = _answer_span(text, policy, patterns)
    if span is None:
        return None
    answer = text[span[0]:span[1]].strip()
    return answer[:-1].rstrip() if answer.endswith(".") else answer


def _to_float(token: str) -> float:
    return float(token.replace(",", ""))


def extract_numbers(text: str | None) -> list[float]:
    """Every number in ``text`` (thousands separators allowed)."""
    return [] if text is None else [_to_float(m.group()) for m in NUMBER_RE.finditer(text)]


def extract_number(text: str, policy: str = "flex",
                   patterns: Sequence[str] = ANSWER_PATTERNS) -> float | None:
    """The first number that starts inside the answer span (by construction a number of
    ``text``), or None."""
    span = _answer_span(text, policy, patterns)
    if span is None:
        return None
    for m in NUMBER_RE.finditer(text):
        if span[0] <= m.start() < span[1]:
            return _to_float(m.group())
    return None


def numbers_equal(a: float, b: float, rel_tol: float = 1e-3) -> bool:
    """The toolkit's rule: exact for two integers, else ``|a - b| <= rel_tol · |b|``."""
    if float(a).is_integer() and float(b).is_integer():
        return a == b
    return abs(a - b) <= rel_tol * abs(b)


def _normalise_latex(text: str) -> str:
    text = text.strip().rstrip(".").replace(" ", "")
    for old, new in (("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"),
                     ("\\tfrac", "\\frac"), ("\\!", ""), ("$", "")):
        text = text.replace(old, new)
    return text


def answers_match(pred: str | None, gt: str, mode: str = "strict",
                  rel_tol: float = 1e-3) -> bool:
    """Does the extracted answer ``pred`` match ``gt``? Numbers compared with
    :func:`numbers_equal`; ``strict`` pairs the numbers one to one (order-free),
    ``model_include_gt`` needs every reference number among the prediction's,
    ``gt_include_model`` every predicted number among the reference's. Without numbers on
    both sides the (LaTeX-normalised) texts are compared."""
    if mode not in ("strict", "model_include_gt", "gt_include_model"):
        raise ParameterError(f"unknown mode {mode!r}")
    if pred is None:
        return False
    p, g = extract_numbers(pred), extract_numbers(gt)
    if not p or not g:
        return _normalise_latex(pred) == _normalise_latex(gt)

    def covered(needles: list[float], haystack: list[float], one_to_one: bool) -> bool:
        pool = list(haystack)
        for x in needles:
            hit = next((i for i, y in enumerate(pool) if numbers_equal(x, y, rel_tol)), None)
            if hit is None:
                return False
            if one_to_one:
                pool.pop(hit)
        return True

    if mode == "strict":
        return len(p) == len(g) and covered(p, g, True)
    if mode == "model_include_gt":
        return covered(g, p, False)
    return covered(p, g, False)


# --------------------------------------------------------------------------- metrics
def _rows(correct: Any) -> list[list[bool]]:
    rows = [[bool(x) for x in row] for row in correct]
    if not rows or any(len(r) != len(rows[0]) or not r for r in rows):
        raise ParameterError("correct must be a non-empty (problems × N) table")
    return rows


def pass_at_n(correct: Any) -> float:
    """Eq. 1, the paper's plug-in Pass@N: the share of problems with at least one correct
    answer among their N samples."""
    rows = _rows(correct)
    return sum(any(r) for r in rows) / len(rows)


def pass_ratio_at_n(correct: Any) -> float:
    """Eq. 2, PassRatio@N: the mean share of correct answers among N."""
    rows = _rows(correct)
    return sum(sum(r) / len(r) for r in rows) / len(rows)


def pass_at_k_unbiased(n: int, c: int, k: int) -> float:
    """Codex's unbiased estimator ``1 - C(n-c, k) / C(n, k)`` (an extension)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ParameterError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def maj_at_k(answers: Sequence[Sequence[float | None]], truths: Sequence[float],
             k: int | None = None) -> float:
    """Self-consistency (an extension): the most frequent extracted answer among the first
    ``k`` (ties: the earliest), compared with the truth."""
    hits = 0
    for group, truth in zip(answers, truths):
        votes = Counter(a for a in list(group)[:k] if a is not None)
        if votes and numbers_equal(votes.most_common(1)[0][0], truth):
            hits += 1
    return hits / len(truths)


def fit_step_accuracy(accuracy: dict[int, float], counts: dict[int, int] | None = None
                      ) -> float:
    """Least-squares fit of ``log Acc_s = s · log p`` (through the origin, weighted by the
    number of problems per step count); returns the single-step accuracy p."""
    if not accuracy:
        raise ParameterError("fit_step_accuracy needs at least one step count")
    num = den = 0.0
    for s, acc in accuracy.items():
        n = (counts or {}).get(s, 1)
        floor = 0.5 / n if counts else 1e-3
        num += n * s * math.log(min(max(acc, floor), 1.0))
        den += n * s * s
    return math.exp(num / den)


_STEP_RE = re.compile(r"(-?\d+)\s*([+\-*/])\s*(\d+)\s*=\s*(-?\d+(?:\.\d+)?)")


def parse_steps(text: str) -> list[tuple[float, str, int, float]]:
    """The ``a op k = b`` lines of a solution, before its answer marker."""
    body = text.split("The answer is")[0]
    return [(float(a), op, int(k), float(b)) for a, op, k, b in _STEP_RE.findall(body)]


def _reference_steps(problem: Problem) -> list[tuple[float, str, int, float]]:
    value, out = float(problem.start), []
    for (op, k), new in zip(problem.steps, problem.values()):
        out.append((value, op, k, new))
        value = new
    return out


ERROR_TYPES = ("calculation", "reasoning", "no answer")


def classify_error(output: str, problem: Problem) -> str | None:
    """None if the answer is right; else, at the first step that differs from the reference,
    ``"calculation"`` (right operation and operands, wrong result) or ``"reasoning"`` (wrong
    operation or operand, a missing or extra step); ``"no answer"`` if none can be read."""
    answer = extract_number(output, "strict")
    if answer is None:
        return "no answer"
    if numbers_equal(answer, problem.answer):
        return None
    model, reference = parse_steps(output), _reference_steps(problem)
    for i, ref in enumerate(reference):
        if i >= len(model):
            return "reasoning"
        a, op, k, b = model[i]
        if (a, op, k) == ref[:3]:
            if not numbers_equal(b, ref[3]):
                return "calculation"
        else:
            return "reasoning"
    return "reasoning"  # every step right, then a wrong final answer or extra steps


def first_error_position(output: str, problem: Problem) -> float:
    """Index of the first wrong step over the number of steps (1.0 when none is wrong)."""
    model, reference = parse_steps(output), _reference_steps(problem)
    for i, ref in enumerate(reference):
        if i >= len(model) or model[i][:3] != ref[:3] or not numbers_equal(model[i][3], ref[3]):
            return i / len(reference)
    return 1.0


# --------------------------------------------------------------------------- real formats
@dataclass
class MathItem:
    """One benchmark problem: its question, the reference answer and, where given, the
    solution and metadata (MATH level and type)."""

    question: str
    answer: str
    solution: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def read_gsm8k(path: str | Path) -> list[MathItem]:
    """GSM8K JSONL (``{"question": ..., "answer": "... #### 72"}`` per line); the reference
    answer is the text after ``####`` with thousands separators removed."""
    path = Path(path)
    if not path.is_file():
        raise DataUnavailableError(f"GSM8K file {path} not found; see data/manifests/gsm8k.yaml")
    items = []
    for lineno, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question, solution = row["question"], row["answer"]
            answer = solution.split("####")[-1].strip().replace(",", "")
            if "####" not in solution or not answer:
                raise KeyError("####")
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise DataUnavailableError(
                f"{path}, line {lineno}: not a GSM8K record ({type(err).__name__}: {err}); "
                "each line must be a JSON object with 'question' and an 'answer' ending in "
                "'#### <number>'. Re-download it as data/manifests/gsm8k.yaml describes."
            ) from None
        items.append(MathItem(question, answer, solution))
    return items


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` of ``text`` (braces matched)."""
    span = _boxed_span(text, ("\\boxed",))
    return None if span is None else text[span[0]:span[1]]


def _math_record(row: Any, where: str) -> MathItem:
    try:
        problem, solution = row["problem"], row.get("solution", "")
        answer = row.get("answer") or last_boxed(solution)
        if not isinstance(problem, str) or not answer:
            raise KeyError("answer")
    except (KeyError, TypeError, AttributeError) as err:
        raise DataUnavailableError(
            f"{where}: not a MATH record ({type(err).__name__}: {err}); it needs 'problem' and "
            "an 'answer' or a 'solution' with \\boxed{...}. Re-download it as "
            "data/manifests/math.yaml describes.") from None
    meta = {k: row[k] for k in ("level", "type", "subject", "unique_id") if k in row}
    return MathItem(problem, answer, solution, meta)


def read_math(path: str | Path) -> list[MathItem]:
    """MATH in any of its released layouts: a folder of per-problem ``.json`` files (Hendrycks
    et al.: ``test/<type>/<id>.json``), one JSON list, or JSONL (the MATH-500 subset)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.json"))
        if not files:
            raise DataUnavailableError(f"no .json problems under {path}; see "
                                       "data/manifests/math.yaml")
        out = []
        for f in files:
            try:
                row = json.loads(f.read_text("utf-8"))
            except json.JSONDecodeError as err:
                raise DataUnavailableError(f"{f}: not valid JSON ({err}); re-download it as "
                                           "data/manifests/math.yaml describes") from None
            out.append(_math_record(row, str(f)))
        return out
    if not path.is_file():
        raise DataUnavailableError(f"MATH data {path} not found; see data/manifests/math.yaml")
    text = path.read_text("utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((json.loads(line), f"{path}, line {lineno}"))
                except json.JSONDecodeError as err:
                    raise DataUnavailableError(f"{path}, line {lineno}: not valid JSON ({err});"
                                               " see data/manifests/math.yaml") from None
        return [_math_record(r, w) for r, w in rows]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataUnavailableError(f"{path}: not valid JSON ({err}); see "
                                   "data/manifests/math.yaml") from None
    rows = doc if isinstance(doc, list) else [doc]
    return [_math_record(r, f"{path}, item {i}") for i, r in enumerate(rows)]


def load_benchmark(name: str, path: str | Path | None = None) -> list[MathItem]:
    """GSM8K test or MATH test at full scale: ``path`` if given, else the manifest's file under
    the data root (hash-checked). Never downloads at run time and never falls back to
    synthetic data: a missing file raises DataUnavailableError naming the manifest."""
    from ..data.manifest import data_root, fetch, load_manifest

    readers = {"gsm8k": read_gsm8k, "math": read_math}
    if name not in readers:
        raise ParameterError(f"unknown benchmark {name!r}: use 'gsm8k' or 'math'")
    if path is None:
        manifest = load_manifest(name)
        folder = data_root() / manifest.name
        target = folder / (manifest.filename or "")
        if not target.exists():
            raise DataUnavailableError(
                f"{name} is not on disk (expected {target}). Manifest: {manifest.path}. "
                f"To get it: {manifest.manual.strip()}")
        path = fetch(manifest)
        if manifest.unpack != "none":
            path = Path(path) / "MATH" / "test"
    return readers[name](path)


# --------------------------------------------------------------------------- tiny SFT
@dataclass
class MathSFTConfig:
    """A tiny SFT model on ``n_train`` problems, real (generated) or synthetic (from as many
    real seeds); the pilot's d64/L2, batch 32, lr 3e-3."""

    n_train: int = 1000
    kind: str = "real"  # real | synthetic
    d_model: int = 64
    n_layers: int = 2
    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    problems: ProblemConfig = field(default_factory=ProblemConfig)

    def __post_init__(self) -> None:
        if self.kind not in ("real", "synthetic"):
            raise ParameterError(f"kind must be 'real' or 'synthetic', got {self.kind!r}")


def training_problems(config: MathSFTConfig) -> list[Problem]:
    """The SFT set of ``config``: generated problems, or brand-new ones synthesised from
    as many generated seeds."""
    real = generate_problems(config.n_train, config.problems, seed=config.seed + 101)
    if config.kind == "real":
        return real
    return synthesize(real, config.n_train, config.problems, seed=config.seed + 202)[0]


def math_policy(config: MathSFTConfig):
    """``(model, tokenizer, loss curve)`` of the tiny SFT model of ``config``, trained once
    and cached (each data size is its own cached job)."""
    import torch

    from ..cache import cached_tensors
    from .alignment import _new_policy, train_sft

    tokenizer = math_tokenizer()

    def build():
        problems = training_problems(config)
        model = _new_policy(tokenizer.vocab_size, config.d_model, config.n_layers, config.seed,
                            max_seq=160)
        prompts = [MATH_PROMPT.format(question=p.question) for p in problems]
        history = train_sft(model, tokenizer, prompts, [p.solution for p in problems],
                            steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                            seed=config.seed, desc=f"SFT {config.kind} {config.n_train}")
        return {**{f"model.{k}": v for k, v in model.state_dict().items()},
                "loss": torch.tensor(history.loss)}

    tensors = cached_tensors("xwin-math-sft", asdict(config), build)
    model = _new_policy(tokenizer.vocab_size, config.d_model, config.n_layers, config.seed,
                        max_seq=160)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    return model.eval(), tokenizer, tensors["loss"].tolist()


# --------------------------------------------------------------------------- evaluation
def evaluate_model(model, tokenizer, questions: Sequence[str], answers: Sequence[str], *,
                   n_samples: int = 0, temperature: float = 0.7, max_new_tokens: int = 64,
                   prompt: str = MATH_PROMPT, policy: str = "flex", mode: str = "strict",
                   seed: int = 0, stop: str = "\n", batch_size: int = 4096) -> dict[str, Any]:
    """The toolkit's evaluation: greedy first answers (Pass@1) and, with ``n_samples`` > 0,
    N samples at ``temperature`` per problem (Pass@N, PassRatio@N), extracted with ``policy``
    and matched with ``mode``. Works for the tiny char models and for transformers
    checkpoints alike (``tokenizer`` needs ``encode``/``decode``; ``stop`` ends a response)."""
    from .alignment import sample_responses

    prompts = [prompt.format(question=q) for q in questions]
    greedy = sample_responses(model, tokenizer, prompts, 1, temperature=0.0,
                              max_new_tokens=max_new_tokens, seed=seed, eos=stop,
                              batch_size=batch_size, desc="greedy")
    first = [g[0] for g in greedy]
    result: dict[str, Any] = {
        "greedy_outputs": first,
        "greedy_correct": [answers_match(extract_answer(o, policy), a, mode)
                           for o, a in zip(first, answers)],
    }
    result["pass@1"] = sum(result["greedy_correct"]) / len(first)
    if n_samples:
        samples = sample_responses(model, tokenizer, prompts, n_samples,
                                   temperature=temperature, max_new_tokens=max_new_tokens,
                                   seed=seed + 1, eos=stop, batch_size=batch_size,
                                   desc=f"{n_samples} samples")
        correct = [[answers_match(extract_answer(o, policy), a, mode) for o in group]
                   for group, a in zip(samples, answers)]
        result.update(samples=samples, correct=correct, pass_at_n=pass_at_n(correct),
                      pass_ratio_at_n=pass_ratio_at_n(correct))
    return result


class _HFTokenizer:
    """encode/decode over a transformers tokenizer (no special tokens added)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


CHAR_TOKENIZER_FILE = "char_tokenizer.json"


@contextlib.contextmanager
def _quiet_transformers():
    """No weight-loading/-writing progress bars in executed notebooks (restored after)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def save_tiny_checkpoint(model, tokenizer, folder: str | Path) -> Path:
    """Save a tiny model in the transformers layout (safetensors) with its char tokenizer, the
    ci stand-in for a released checkpoint."""
    from ..io import atomic_write_text

    folder = Path(folder)
    with _quiet_transformers():
        model.save_pretrained(folder, safe_serialization=True)
    atomic_write_text(folder / CHAR_TOKENIZER_FILE,
                      json.dumps({"type": "char", "chars": tokenizer.chars}))
    return folder


def load_causal_lm(name_or_path: str | Path, manifest: str | None = None, **kwargs):
    """``(model, tokenizer)`` from a local folder or a hub id through transformers (never
    ``trust_remote_code``). A folder with ``char_tokenizer.json`` is a tiny checkpoint of
    ours. A missing checkpoint raises DataUnavailableError naming ``manifest``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .data import CharTokenizer

    where = f"data/manifests/{manifest}.yaml" if manifest else "its model card"
    local = Path(name_or_path)
    looks_local = local.is_absolute() or str(name_or_path).startswith(".") or \
        str(name_or_path).count("/") != 1
    if looks_local and not local.exists():
        raise DataUnavailableError(
            f"checkpoint folder {local} does not exist. Download it as {where} describes "
            "(hf download ...) and pass the local folder.")
    try:
        with _quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(str(name_or_path),
                                                         trust_remote_code=False, **kwargs)
    except (OSError, ValueError) as err:
        raise DataUnavailableError(
            f"checkpoint {name_or_path} could not be loaded ({err}). Download it as {where} "
            "describes (hf download ...) and pass the local folder.") from None
    char_file = Path(name_or_path) / CHAR_TOKENIZER_FILE
    if char_file.is_file():
        tokenizer: Any = CharTokenizer.load(char_file)
    else:
        tokenizer = _HFTokenizer(AutoTokenizer.from_pretrained(str(name_or_path),
                                                               trust_remote_code=False))
    return model.eval(), tokenizer
