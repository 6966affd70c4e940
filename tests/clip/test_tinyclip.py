"""TinyCLIP: affinity mimicking, manual and automatic weight inheritance."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from repro.clip.models import TinyCLIPConfig, create_model
from repro.clip.tinyclip import (
    AutoInheritance,
    HardConcreteGate,
    affinity_mimicking_loss,
    inherit_weights_manual,
    interval_front_layers,
    manual_student,
    progressive_configs,
)
from repro.errors import ParameterError

TEACHER = TinyCLIPConfig(embed_dim=16, image_size=8, patch_size=4, vision_width=32,
                         vision_layers=4, vision_head_width=8, text_width=32, text_layers=4,
                         text_heads=4, context_length=6, vocab_size=20)
STUDENT = replace(TEACHER, vision_width=16, text_layers=2)


def _features(seed, n=6, d=8):
    g = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(n, d, generator=g), dim=-1),
            F.normalize(torch.randn(n, d, generator=g), dim=-1))


def test_affinity_loss_is_zero_when_student_equals_teacher():
    image, text = _features(0)
    assert float(affinity_mimicking_loss(image, text, 20.0, image, text, 20.0)) == \
        pytest.approx(0.0, abs=1e-6)
    other_image, other_text = _features(1)
    assert float(affinity_mimicking_loss(other_image, other_text, 20.0, image, text, 20.0)) > 0.01


def test_affinity_loss_is_open_clips_soft_cross_entropy_minus_teacher_entropy():
    from open_clip.loss import DistillClipLoss

    s_img, s_txt = _features(2)
    t_img, t_txt = _features(3)
    ours = affinity_mimicking_loss(s_img, s_txt, 10.0, t_img, t_txt, 50.0)
    peer = DistillClipLoss()
    soft = peer.dist_loss(t_img @ t_txt.T * 50.0, s_img @ s_txt.T * 10.0)
    soft_t = peer.dist_loss(t_txt @ t_img.T * 50.0, s_txt @ s_img.T * 10.0)
    entropy = lambda z: -(z.softmax(1) * z.log_softmax(1)).sum(1).mean()  # noqa: E731
    expected = 0.5 * (soft - entropy(t_img @ t_txt.T * 50.0)) + \
        0.5 * (soft_t - entropy(t_txt @ t_img.T * 50.0))
    assert float(ours) == pytest.approx(float(expected), rel=1e-5)


def test_interval_front_layers_match_the_official_examples():
    assert interval_front_layers(12, 6) == [0, 2, 4, 6, 8, 10]
    assert interval_front_layers(12, 9) == list(range(9))
    assert interval_front_layers(12, 3) == [0, 4, 8]
    with pytest.raises(ParameterError):
        interval_front_layers(4, 5)


def test_inherited_weights_are_exactly_the_teachers_selected_slices():
    teacher = create_model(TEACHER, seed=0)
    student = manual_student(teacher, STUDENT, TEACHER, seed=1)
    t, s = teacher.state_dict(), student.state_dict()
    # image tower: same depth, half width = the first 2 of 4 heads (head width 8)
    w_t = t["visual.transformer.resblocks.1.attn.in_proj_weight"]  # (3*32, 32)
    w_s = s["visual.transformer.resblocks.1.attn.in_proj_weight"]  # (3*16, 16)
    for part in range(3):  # q, k, v: rows of heads 0 and 1, first 16 input channels
        assert torch.equal(w_s[part * 16:(part + 1) * 16], w_t[part * 32:part * 32 + 16, :16])
    assert torch.equal(s["visual.transformer.resblocks.3.mlp.c_fc.weight"],
                       t["visual.transformer.resblocks.3.mlp.c_fc.weight"][:64, :16])
    assert torch.equal(s["visual.conv1.weight"], t["visual.conv1.weight"][:16])
    assert torch.equal(s["visual.proj"], t["visual.proj"][:16])
    # text tower: same width, layers 0 and 2 of 4
    assert torch.equal(s["transformer.resblocks.1.attn.in_proj_weight"],
                       t["transformer.resblocks.2.attn.in_proj_weight"])
    assert torch.equal(s["transformer.resblocks.0.mlp.c_proj.bias"],
                       t["transformer.resblocks.0.mlp.c_proj.bias"])
    assert torch.equal(s["token_embedding.weight"], t["token_embedding.weight"])


def test_inheriting_into_the_teachers_own_shape_reproduces_the_teacher():
    teacher = create_model(TEACHER, seed=0).eval()
    copy = manual_student(teacher, TEACHER, TEACHER, seed=5).eval()
    images, texts = torch.randn(3, 3, 8, 8), torch.randint(1, 20, (3, 6))
    assert torch.equal(copy.encode_image(images), teacher.encode_image(images))
    assert torch.equal(copy.encode_text(texts), teacher.encode_text(texts))


def test_inheritance_refuses_a_student_larger_than_the_teacher():
    with pytest.raises(ParameterError, match="does not fit"):
        inherit_weights_manual(create_model(replace(TEACHER, vision_width=40)).state_dict(),
                               create_model(TEACHER).state_dict(), vision_head_width=8,
                               text_head_width=8)


def test_hard_concrete_probability_matches_the_closed_form():
    gate = HardConcreteGate(1, 3)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([[0.0, 10.0, -4.0]]))
    expected = [1 - 1 / (1 + math.exp(-(2 / 3) * math.log(1 / 11) + a)) for a in (0, 10, -4)]
    assert gate.prob_nonzero()[0].tolist() == pytest.approx(expected, rel=1e-5)
    z = gate.sample(torch.Generator().manual_seed(0))
    assert ((z >= 0) & (z <= 1)).all()


def test_a_closed_head_gate_equals_zeroing_that_heads_value_rows():
    teacher = create_model(TEACHER, seed=0).eval()
    auto = AutoInheritance(teacher, TEACHER, target_sparsity=0.5).eval()
    auto.prune()  # deterministic gates of log alpha 10: all open, values sigma(12)
    auto.fixed = {k: torch.ones_like(v) for k, v in auto.fixed.items()}
    auto.fixed["head.visual"][2, 1] = 0.0
    reference = create_model(TEACHER, seed=0).eval()
    with torch.no_grad():  # layer 2, head 1 (channels 8..15): its V rows are 64 + 8 .. 64 + 16
        reference.visual.transformer.resblocks[2].attn.in_proj_weight[72:80] = 0
        reference.visual.transformer.resblocks[2].attn.in_proj_bias[72:80] = 0
    images = torch.randn(2, 3, 8, 8)
    assert torch.allclose(auto.encode_image(images), reference.encode_image(images), atol=1e-6)
    assert auto.structure()["visual heads"] == 4 * 4 - 1


def test_sparsity_penalty_grows_the_lambdas_and_opens_no_gate():
    auto = AutoInheritance(create_model(TEACHER), TEACHER, target_sparsity=0.5, warmup_steps=1)
    # all gates open
    assert float(auto.expected_sparsity().detach()) == pytest.approx(0.0, abs=1e-3)
    loss = auto.sparsity_loss(step=1)
    loss.backward()
    assert (auto.lambdas.grad < 0).all()  # negated: a descent step *raises* the multipliers
    assert (auto.head_gates["visual"].log_alpha.grad > 0).all()  # descent closes gates


def test_progressive_configs_end_at_the_student():
    stages = progressive_configs(TEACHER, STUDENT, 2)
    assert stages[-1] == STUDENT
    assert stages[0].vision_width == 24 and stages[0].text_layers == 3


def test_steps_to_reach_interpolates_between_evaluations():
    from types import SimpleNamespace

    from repro.clip.tinyclip import steps_to_reach

    h = SimpleNamespace(evals=[{"step": 0, "top1": 10.0}, {"step": 10, "top1": 30.0},
                               {"step": 20, "top1": 50.0}])
    assert steps_to_reach(h, 40.0) == pytest.approx(15.0)
    assert steps_to_reach(h, 10.0) == 0.0
    assert steps_to_reach(h, 60.0) == math.inf
