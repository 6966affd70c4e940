"""Xwin-LM pieces: DPO and Bradley-Terry losses against hand-worked values and TRL, the SFT
mask, sequence log-probs, the reward head, sampling, pair construction and the oracle."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from repro.errors import ParameterError
from repro.lm import alignment as A
from repro.lm.model import tiny_llama


def _tiny(vocab: int = 13, seed: int = 0):
    return tiny_llama(vocab, d_model=16, n_layers=1, n_heads=2, mlp=32, max_seq=64, seed=seed)


# --------------------------------------------------------------------------- DPO loss
def test_dpo_loss_is_log2_when_policy_equals_reference():
    g = torch.Generator().manual_seed(0)
    chosen, rejected = torch.randn(16, generator=g), torch.randn(16, generator=g)
    loss, r_w, r_l = A.dpo_loss(chosen, rejected, chosen.clone(), rejected.clone(), beta=0.3)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-6)
    assert torch.all(r_w == 0) and torch.all(r_l == 0)


def test_dpo_loss_hand_worked_value():
    # beta 0.5, chosen log-ratio 2, rejected log-ratio 0: -log sigmoid(1) = log(1 + e^-1)
    loss, r_w, r_l = A.dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]),
                                torch.tensor([-3.0]), torch.tensor([-3.0]), beta=0.5)
    assert float(loss) == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)
    assert float(r_w) == pytest.approx(1.0) and float(r_l) == pytest.approx(0.0)


def test_dpo_gradient_raises_chosen_and_lowers_rejected_logprob():
    chosen = torch.tensor([-5.0, -2.0], requires_grad=True)
    rejected = torch.tensor([-4.0, -6.0], requires_grad=True)
    loss, _, _ = A.dpo_loss(chosen, rejected, torch.tensor([-5.0, -3.0]),
                            torch.tensor([-4.0, -5.0]), beta=0.1)
    loss.backward()
    assert torch.all(chosen.grad < 0)  # descent increases log pi(y_w)
    assert torch.all(rejected.grad > 0)  # and decreases log pi(y_l)


# --------------------------------------------------------------------------- BT loss
def test_bt_loss_on_hand_worked_scores():
    r_w, r_l = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
    assert float(A.bt_loss(r_w, r_l)) == pytest.approx(expected, rel=1e-6)
    # a margin of 1 asks the chosen score to lead by one more
    with_margin = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(2.0))) / 2
    assert float(A.bt_loss(r_w, r_l, margin=1.0)) == pytest.approx(with_margin, rel=1e-6)


def test_pairwise_accuracy_counts_ties_as_half():
    assert A.pairwise_accuracy(torch.tensor([1.0, 0.0, 2.0, 5.0]),
                               torch.tensor([0.0, 0.0, 3.0, 1.0])) == pytest.approx(0.625)


# --------------------------------------------------------------------------- against TRL
def _trl_or_skip(module: str):
    try:
        return pytest.importorskip(module, reason="trl (a dev extra) is not importable")
    except Exception as err:  # a broken install: skip with the reason, never fail
        pytest.skip(f"trl import failed: {type(err).__name__}: {err}")


def _fake_accelerator():
    return SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x,
                           gather=lambda x: x)


def test_dpo_loss_agrees_with_trl_sigmoid_loss_on_random_inputs():
    trainer_mod = _trl_or_skip("trl.trainer.dpo_trainer")
    g = torch.Generator().manual_seed(1)
    batch, length, beta = 6, 9, 0.2
    per_token = -torch.rand(2 * batch, length - 1, generator=g) * 3
    completion = torch.zeros(2 * batch, length, dtype=torch.long)
    completion[:, 4:] = 1
    per_token = per_token * completion[:, 1:]  # TRL's fused head gives 0 at masked labels
    ref_chosen, ref_rejected = -torch.rand(batch, generator=g) * 10, -torch.rand(batch) * 10
    fake_self = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=_fake_accelerator(),
        aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True,
        f_divergence_type="reverse_kl", loss_types=["sigmoid"], loss_weights=[1.0], beta=beta,
        use_weighting=False, label_smoothing=0.0, _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0, _tp_size=1, args=SimpleNamespace())

    def fake_model(**kwargs):
        return SimpleNamespace(log_probs=per_token, entropy=torch.zeros_like(per_token),
                               mean_logits=torch.zeros_like(per_token),
                               is_top1=torch.zeros_like(per_token, dtype=torch.bool),
                               logits=torch.zeros(2 * batch, length, 2))

    inputs = {"input_ids": torch.zeros(2 * batch, length, dtype=torch.long),
              "attention_mask": torch.ones(2 * batch, length, dtype=torch.long),
              "completion_mask": completion, "ref_chosen_logps": ref_chosen,
              "ref_rejected_logps": ref_rejected}
    try:
        trl_loss = trainer_mod.DPOTrainer._compute_loss(fake_self, fake_model, inputs, False)
    except (AttributeError, KeyError, TypeError) as err:
        pytest.skip(f"TRL's DPOTrainer internals changed ({type(err).__name__}: {err})")
    logps = per_token.sum(1)
    ours, _, _ = A.dpo_loss(logps[:batch], logps[batch:], ref_chosen, ref_rejected, beta)
    assert float(ours) == pytest.approx(float(trl_loss), rel=1e-5)


def test_bt_loss_agrees_with_trl_reward_trainer_on_random_inputs():
    trainer_mod = _trl_or_skip("trl.trainer.reward_trainer")
    g = torch.Generator().manual_seed(2)
    rewards = torch.randn(10, 1, generator=g) * 2
    fake_self = SimpleNamespace(
        model=SimpleNamespace(training=False), accelerator=_fake_accelerator(),
        args=SimpleNamespace(center_rewards_coefficient=None), _tp_size=1,
        _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0)
    inputs = {"input_ids": torch.zeros(10, 3, dtype=torch.long),
              "attention_mask": torch.ones(10, 3, dtype=torch.long)}
    try:
        trl_loss = trainer_mod.RewardTrainer.compute_loss(
            fake_self, lambda **kw: SimpleNamespace(logits=rewards), inputs)
    except (AttributeError, KeyError, TypeError) as err:
        pytest.skip(f"TRL's RewardTrainer internals changed ({type(err).__name__}: {err})")
    chosen, rejected = rewards.squeeze(-1).chunk(2)
    assert float(A.bt_loss(chosen, rejected)) == pytest.approx(float(trl_loss), rel=1e-6)


# --------------------------------------------------------------------------- SFT and log-probs
def test_sft_loss_is_cross_entropy_on_response_tokens_only():
    task = A.SortingTask(n_digits=4)
    tok = A.task_tokenizer(task)
    model = _tiny(tok.vocab_size)
    batch = A.encode_pairs(tok, ["3120:", "9:"], ["0123", "9"])
    ids, attn, resp = batch
    logits = model(input_ids=ids, attention_mask=attn).logits
    labels = ids.clone()
    labels[resp == 0] = -100  # prompt and padding ignored
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                               labels[:, 1:].reshape(-1), ignore_index=-100)
    assert float(A.sft_loss(model, batch).detach()) == pytest.approx(float(expected.detach()),
                                                           rel=1e-5)
    # the response mask covers the response and its end token, not the prompt
    assert resp[0].tolist() == [0] * 5 + [1] * 5 and resp[1].tolist()[:4] == [0, 0, 1, 1]


@torch.no_grad()
def test_sequence_logprob_does_not_depend_on_batch_padding():
    tok = A.task_tokenizer(A.SortingTask())
    model = _tiny(tok.vocab_size).eval()
    alone = A.sequence_logprob(model, *A.encode_pairs(tok, ["12:"], ["12"]))
    padded = A.sequence_logprob(model, *A.encode_pairs(tok, ["12:", "1234567:"],
                                                       ["12", "1234567"]))
    assert float(padded[0]) == pytest.approx(float(alone[0]), abs=1e-5)
    # and it is the sum of the per-token log-probs of the 3 response tokens
    ids, attn, _ = A.encode_pairs(tok, ["12:"], ["12"])
    logp = F.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
    manual = sum(float(logp[t, ids[0, t + 1]]) for t in range(2, 5))
    assert float(alone[0]) == pytest.approx(manual, abs=1e-5)


def test_reward_model_reads_the_last_real_token():
    tok = A.task_tokenizer(A.SortingTask())
    rm = A.new_reward_model(tok.vocab_size, d_model=32, n_layers=1, seed=0).eval()
    alone = A.reward_scores(rm, tok, ["12:"], ["12"])
    padded = A.reward_scores(rm, tok, ["12:", "1234567:"], ["12", "1234567"])
    assert float(padded[0]) == pytest.approx(float(alone[0]), abs=1e-5)
    other = A.reward_scores(rm, tok, ["12:"], ["21"])
    assert float(other[0]) != pytest.approx(float(alone[0]))


# --------------------------------------------------------------------------- sampling
def test_sample_responses_is_seeded_and_cut_at_eos():
    task = A.SortingTask(n_digits=4)
    tok = A.task_tokenizer(task)
    model = _tiny(tok.vocab_size)
    prompts = task.prompts(3, seed=0)
    a = A.sample_responses(model, tok, prompts, 5, temperature=1.0, max_new_tokens=6, seed=3)
    b = A.sample_responses(model, tok, prompts, 5, temperature=1.0, max_new_tokens=6, seed=3)
    c = A.sample_responses(model, tok, prompts, 5, temperature=1.0, max_new_tokens=6, seed=4)
    assert a == b and a != c
    assert [len(g) for g in a] == [5, 5, 5]
    assert all(A.EOS not in r and len(r) <= 6 for g in a for r in g)
    greedy = A.sample_responses(model, tok, prompts, 2, temperature=0.0, max_new_tokens=6)
    assert all(g[0] == g[1] for g in greedy)


def test_sample_responses_rejects_bad_arguments():
    tok = A.task_tokenizer(A.SortingTask())
    with pytest.raises(ParameterError, match="n >= 1"):
        A.sample_responses(_tiny(tok.vocab_size), tok, ["1:"], 0)


# --------------------------------------------------------------------------- task and oracle
@pytest.mark.parametrize("response, reward", [("0123", 1.0), ("0132", 0.5), ("01234", 0.9),
                                              ("", 0.0), ("0123\n99", 1.0)])
def test_oracle_reward_hand_worked(response, reward):
    task = A.SortingTask(n_digits=4)
    assert task.oracle_reward("3120:", response) == pytest.approx(reward)


def test_multi_turn_prompts_are_judged_on_the_last_turn():
    task = A.SortingTask(n_digits=3, turns=2)
    prompt = task.prompts(1, seed=0)[0]
    earlier, last = prompt.split(";")
    digits = earlier.split(":")[0]
    assert earlier.split(":")[1] == "".join(sorted(digits))
    assert task.ideal(prompt) == "".join(sorted(last.rstrip(":")))


def test_annotator_orders_pairs_and_flips_at_the_noise_rate():
    task = A.SortingTask(n_digits=4)
    prompts = task.prompts(400, seed=1)
    samples = [[task.ideal(p), task.ideal(p)[::-1] + "0"] for p in prompts]
    clean = A.annotate_pairs(task, prompts, samples, label_noise=0.0, seed=0)
    assert all(task.oracle_reward(p, w) > task.oracle_reward(p, lo)
               for p, w, lo in zip(clean.prompts, clean.chosen, clean.rejected))
    noisy = A.annotate_pairs(task, prompts, samples, label_noise=0.3, seed=0)
    flipped = sum(task.oracle_reward(p, w) < task.oracle_reward(p, lo)
                  for p, w, lo in zip(noisy.prompts, noisy.chosen, noisy.rejected))
    assert 0.22 < flipped / len(noisy) < 0.38
    with pytest.raises(ParameterError, match="label_noise"):
        A.annotate_pairs(task, prompts, samples, label_noise=0.7, seed=0)


# --------------------------------------------------------------------------- RS and DPO pairs
def _hand_set():
    responses = [["a", "b", "c", "d", "e"]]
    scores = torch.tensor([[0.1, 0.9, 0.5, -1.0, 0.3]])  # ranking b c e a d
    return A.XwinSet(["p"], responses, scores, torch.zeros(1, 5))


@pytest.mark.parametrize("rank, rejected", [("worst", "d"), ("median", "e"), (1, "c"),
                                            (4, "d")])
def test_dpo_pairs_pick_the_rejected_by_rm_rank(rank, rejected):
    pairs = A.dpo_pairs(_hand_set(), rank)
    assert pairs.chosen == ["b"] and pairs.rejected == [rejected]


def test_dpo_pairs_random_rank_never_picks_the_chosen_and_off_policy_uses_the_other_set():
    picks = {A.dpo_pairs(_hand_set(), "random", seed=s).rejected[0] for s in range(40)}
    assert picks == {"a", "c", "d", "e"}
    other = A.XwinSet(["p"], [["x", "y"]], torch.tensor([[0.0, 2.0]]), torch.zeros(1, 2))
    pairs = A.dpo_pairs(_hand_set(), "worst", off_policy=other)
    assert pairs.chosen == ["b"] and pairs.rejected == ["x"]
    assert len(A.dpo_pairs(_hand_set(), "worst", min_margin=5.0)) == 0
    with pytest.raises(ParameterError, match="rejected_rank"):
        A.dpo_pairs(_hand_set(), "best")


def test_best_of_n_takes_the_rm_top_among_the_first_n():
    assert A.best_of_n(_hand_set())[1] == ["b"]
    assert A.best_of_n(_hand_set(), n=1)[1] == ["a"]
    with pytest.raises(ParameterError, match="best_of_n"):
        A.best_of_n(_hand_set(), n=9)


def test_dpo_training_moves_the_policy_toward_the_chosen_responses():
    task = A.SortingTask(n_digits=3)
    tok = A.task_tokenizer(task)
    reference = _tiny(tok.vocab_size, seed=1)
    policy = _tiny(tok.vocab_size, seed=1)
    prompts = task.prompts(8, seed=0)
    pairs = A.PreferencePairs(prompts, [task.ideal(p) for p in prompts],
                              ["999" for _ in prompts], [1.0] * 8)
    history = A.train_dpo(policy, reference, tok, pairs, steps=15, batch_size=8, lr=1e-2,
                          beta=0.5)
    assert history.loss[0] == pytest.approx(math.log(2), abs=1e-4)  # starts at the reference
    ids, attn, resp = A.encode_pairs(tok, prompts * 2, pairs.chosen + pairs.rejected)
    with torch.no_grad():
        delta = (A.sequence_logprob(policy, ids, attn, resp)
                 - A.sequence_logprob(reference, ids, attn, resp))
    assert float(delta[:8].mean()) > float(delta[8:].mean())
