"""FP8Linear against hand-written references: float8 casts with MS-AMP's power-of-two scales,
dequantised and multiplied in fp32 (never the layer's own helpers)."""

import math

import pytest
import torch
from torch import nn

from repro.fp8.linear import FP8Linear, fp8_gemm

torch.set_num_threads(1)

E4M3_MAX, E5M2_MAX = 448.0, 57344.0


def ref_scale(x: torch.Tensor, fp_max: float) -> float:
    """MS-AMP: the largest power of two s with amax * s <= fp_max."""
    return 2.0 ** math.floor(math.log2(fp_max / float(x.detach().abs().max())))


def ref_fake_quant(x: torch.Tensor, dtype: torch.dtype, fp_max: float, s: float) -> torch.Tensor:
    """Scale, clamp, cast to float8, back to fp32, unscale."""
    return (x.detach().float() * s).clamp(-fp_max, fp_max).to(dtype).float() / s


def e4m3(x):
    return ref_fake_quant(x, torch.float8_e4m3fn, E4M3_MAX, ref_scale(x, E4M3_MAX))


def e5m2(x):
    return ref_fake_quant(x, torch.float8_e5m2, E5M2_MAX, ref_scale(x, E5M2_MAX))


def make_layer(in_f=24, out_f=40, bias=True, seed=0, **kw):
    torch.manual_seed(seed)
    return FP8Linear(in_f, out_f, bias=bias, **kw)


def wide(*shape, seed, lo=-24.0, hi=0.0):
    """Random signs, magnitudes log-uniform over 2**lo..2**hi: reaches E4M3/E5M2 subnormals,
    so a power-of-two scale off by one binade changes the payload (far from the range ends the
    FP8 grid is scale-invariant and would hide a wrong scale)."""
    gen = torch.Generator().manual_seed(seed)
    sign = torch.randint(0, 2, shape, generator=gen) * 2.0 - 1
    return sign * 2.0 ** (lo + (hi - lo) * torch.rand(*shape, generator=gen))


@pytest.mark.parametrize("gemm", ["scaled_mm", "dequant"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_equals_fake_quant_reference_bitwise(gemm, dtype, bias):
    layer = make_layer(bias=bias, gemm=gemm)
    with torch.no_grad():
        layer.weight.copy_(wide(40, 24, seed=0, lo=-20, hi=-3))
    x = wide(2, 5, 24, seed=1, hi=3).to(dtype)
    out = layer(x)
    # first step: empty history -> just-in-time scale for the input, as for the weight
    ref = (e4m3(x) @ e4m3(layer.weight).t()).to(dtype)
    if bias:
        ref = ref + layer.bias.detach().to(dtype)
    assert out.dtype == dtype and out.shape == (2, 5, 40)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("gemm", ["scaled_mm", "dequant"])
@pytest.mark.parametrize("wgrad", ["fp32", "e4m3", "e5m2"])
def test_backward_equals_fake_quant_reference_bitwise(gemm, wgrad):
    layer = make_layer(gemm=gemm, wgrad=wgrad)
    with torch.no_grad():
        layer.weight.copy_(wide(40, 24, seed=0, lo=-20, hi=-3))
    x = wide(3, 7, 24, seed=2).requires_grad_()
    g = wide(3, 7, 40, seed=3, lo=-40, hi=-10)
    layer(x).backward(g)
    x2, g2 = x.detach().reshape(-1, 24), g.reshape(-1, 40)
    gq, xq, wq = e5m2(g2), e4m3(x2), e4m3(layer.weight)
    ref_dx = (gq @ wq).reshape(x.shape)
    ref_dw = gq.t() @ xq
    if wgrad == "e4m3":
        ref_dw = e4m3(ref_dw)
    elif wgrad == "e5m2":
        ref_dw = e5m2(ref_dw)
    assert torch.equal(x.grad, ref_dx)
    assert torch.equal(layer.weight.grad, ref_dw)
    assert torch.equal(layer.bias.grad, g2.sum(0))  # bias gradient stays high precision


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("wgrad", ["fp32", "e4m3"])
def test_scaled_mm_and_dequant_agree_bitwise_over_steps(dtype, wgrad):
    a = make_layer(gemm="scaled_mm", wgrad=wgrad)
    b = make_layer(gemm="dequant", wgrad=wgrad)
    gen = torch.Generator().manual_seed(4)
    for step in range(4):  # steps 1+ use delayed scales from the history
        x = (torch.randn(4, 6, 24, generator=gen) * (1 + step)).to(dtype)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randn(4, 6, 40, generator=gen).to(dtype)
        ya, yb = a(xa), b(xb)
        ya.backward(g)
        yb.backward(g)
        assert torch.equal(ya, yb)
        assert torch.equal(xa.grad, xb.grad)
    assert torch.equal(a.weight.grad, b.weight.grad)
    assert a.fp8_stats() == b.fp8_stats()


def test_fp8_gemm_scaled_mm_takes_any_operand_layout_on_cpu():
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(9, 13, generator=gen).to(torch.float8_e5m2)
    b = torch.randn(11, 13, generator=gen).to(torch.float8_e4m3fn)
    ref = (a.float() / 4) @ (b.float() / 0.5).t()
    for bb in (b.t(), b.t().contiguous()):
        assert torch.equal(fp8_gemm(a, 4.0, bb, 0.5, torch.float32, "scaled_mm"), ref)
        assert torch.equal(fp8_gemm(a, 4.0, bb, 0.5, torch.float32, "dequant"), ref)


def normwise_rel_err(a, b):
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


def test_close_to_fp32_linear_within_fp8_precision():
    layer = make_layer(in_f=64, out_f=96, wgrad="fp32")
    ref = nn.Linear(64, 96)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(8, 16, 64, generator=torch.Generator().manual_seed(6))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(8, 16, 96, generator=torch.Generator().manual_seed(7))
    ya, yb = layer(xa), ref(xb)
    ya.backward(g)
    yb.backward(g)
    # E4M3 rounds each operand by at most 2**-4 relative, E5M2 by 2**-3
    assert normwise_rel_err(ya, yb) < 0.1
    assert normwise_rel_err(xa.grad, xb.grad) < 0.1
    assert normwise_rel_err(layer.weight.grad, ref.weight.grad) < 0.1
    assert normwise_rel_err(ya, yb) > 0  # it did quantise


def test_leading_dims_and_non_contiguous_input():
    layer = make_layer()
    base = torch.randn(6, 3, 24, generator=torch.Generator().manual_seed(8))
    x = base.transpose(0, 1)  # (3, 6, 24), not contiguous
    assert not x.is_contiguous()
    layer.eval()  # no history update, so both calls use the same just-in-time scale
    y = layer(x)
    assert y.shape == (3, 6, 40)
    assert torch.equal(y, layer(x.contiguous()))
    assert torch.equal(layer(x[1]), y[1])
    assert torch.equal(layer(x.reshape(-1, 24)).reshape(3, 6, 40), y)


def unit_amax(shape, gen, amax=1.0):
    x = torch.randn(*shape, generator=gen)
    return x / x.abs().max() * amax


@pytest.mark.parametrize("scaling, clamped", [("delayed", True), ("jit", False)])
def test_activation_spike_is_clamped_only_with_delayed_scaling(scaling, clamped):
    layer = make_layer(scaling=scaling, history_len=4)
    gen = torch.Generator().manual_seed(9)
    for _ in range(5):
        layer(unit_amax((4, 24), gen))
    before = layer.fp8_stats()["input"]
    assert before["overflow"] == 0 and before["scale"] == 256.0  # 2**floor(log2(448 / 1))
    spike = unit_amax((4, 24), gen, amax=10.0)
    y = layer(spike)
    after = layer.fp8_stats()["input"]
    assert (after["overflow_casts"] == 1) is clamped
    assert (after["overflow"] > 0) is clamped
    assert after["amax_history"][-1] == 10.0
    assert torch.isfinite(y).all()
    if clamped:  # the spike's largest entries were saturated at 448 / 256
        ref = ref_fake_quant(spike, torch.float8_e4m3fn, E4M3_MAX, 256.0)
        assert float(ref.abs().max()) == 448.0 / 256.0
        assert torch.equal(y, ref @ e4m3(layer.weight).t() + layer.bias.detach())


@pytest.mark.parametrize("scaling", ["delayed", "jit"])
def test_nan_input_does_not_poison_the_scale(scaling):
    layer = make_layer(scaling=scaling)
    gen = torch.Generator().manual_seed(10)
    layer(unit_amax((4, 24), gen))
    scale = layer.fp8_stats()["input"]["scale"]
    bad = unit_amax((4, 24), gen)
    bad[0, 0] = float("nan")
    assert torch.isnan(layer(bad)).any()  # NaN is reported, not hidden
    assert layer.fp8_stats()["input"]["scale"] == scale
    good = unit_amax((4, 24), gen)
    layer(good)
    assert layer.fp8_stats()["input"]["scale"] == scale
    assert torch.isfinite(layer(good)).all()


def test_grad_output_spike_is_clamped_not_inf():
    layer = make_layer(wgrad="fp32")
    gen = torch.Generator().manual_seed(11)
    for _ in range(3):
        x = torch.randn(4, 24, generator=gen, requires_grad=True)
        layer(x).backward(unit_amax((4, 40), gen, 1e-3))
    x = torch.randn(4, 24, generator=gen, requires_grad=True)
    layer(x).backward(unit_amax((4, 40), gen, 100.0))  # 1e5x the history: E5M2 cast -> inf
    stats = layer.fp8_stats()["grad_output"]
    assert stats["overflow_casts"] == 1
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.weight.grad).all()


def test_tiny_values_do_not_get_an_infinite_scale():
    layer = make_layer(bias=False)
    x = torch.zeros(2, 24)
    x[0, 0] = 1e-37  # 448 / 1e-37 > 2**128: an uncapped power-of-two scale is inf in fp32
    y = layer(x)
    assert torch.isfinite(y).all()
    assert torch.equal(y[1], torch.zeros(40))


def test_eval_mode_records_nothing():
    layer = make_layer()
    layer(torch.randn(4, 24))
    before = layer.fp8_stats()
    layer.eval()
    with torch.no_grad():
        layer(torch.randn(4, 24) * 1000)
    assert layer.fp8_stats() == before


def test_stats_count_every_role():
    layer = make_layer(wgrad="e4m3")
    x = torch.randn(5, 24, requires_grad=True)
    layer(x).sum().backward()
    stats = layer.fp8_stats()
    assert set(stats) == {"input", "weight", "grad_output", "wgrad"}
    assert stats["input"]["numel"] == 5 * 24 and stats["weight"]["numel"] == 40 * 24
    assert stats["grad_output"]["numel"] == 5 * 40 and stats["wgrad"]["numel"] == 40 * 24
    assert all(s["casts"] == 1 for s in stats.values())
    layer.reset_fp8_stats()
    assert all(s["casts"] == 0 and s["numel"] == 0 for s in layer.fp8_stats().values())
    assert "wgrad" not in make_layer(wgrad="fp32").fp8_stats()


def test_bad_inputs_raise_clear_errors():
    layer = make_layer()
    with pytest.raises(TypeError, match="float64"):
        layer(torch.randn(2, 24, dtype=torch.float64))
    with pytest.raises(ValueError, match="features"):
        layer(torch.randn(2, 23))
    with pytest.raises(ValueError, match="wgrad"):
        make_layer(wgrad="int8")
    with pytest.raises(ValueError, match="gemm"):
        make_layer(gemm="cublas")
    with pytest.raises(ValueError, match="scaling"):
        make_layer(scaling="sometimes")


def test_from_linear_shares_parameters():
    lin = nn.Linear(24, 40)
    layer = FP8Linear.from_linear(lin)
    assert layer.weight is lin.weight and layer.bias is lin.bias
    assert list(layer.state_dict()) == list(lin.state_dict())


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scale", [2.0**-10, 1.0, 2.0**12, 2.0**126])
def test_layer_statistics_equal_the_decoding_quantize_counts(fmt, dtype, scale):
    from repro.fp8.formats import QuantStats, get_format, quantize
    from repro.fp8.linear import _quant_stats

    x = wide(64, 33, seed=12, lo=-140, hi=10).to(dtype)
    x[0, :3] = 0.0
    x[1, 0], x[1, 1], x[1, 2] = float("nan"), float("inf"), -float("inf")
    x[2, 0] = get_format(fmt).min_subnormal / 2 / scale  # the tie, rounds to 0
    ref = QuantStats()
    quantize(x, fmt, scale, stats=ref)  # counts by decoding the float8 payload
    x_amax = float(x.float().abs().max())
    assert _quant_stats(x, get_format(fmt), scale, x_amax) == ref
