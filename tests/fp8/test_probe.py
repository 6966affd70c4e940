from __future__ import annotations

import pytest
import torch

from repro.fp8.probe import ScalingProbe

POLICIES = {"jit": ("jit", 1), "delayed": ("delayed", 4)}


def _run(probe, model, steps, x):
    for step in range(steps):
        probe.step = step
        model(x).sum().backward()


def test_spike_overflows_under_delayed_scaling_only_and_counts_every_entry():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    layers = {"fc1": model[0], "fc2": model[2]}
    probe = ScalingProbe(layers, steps=6, policies=POLICIES, spike_step=4, spike_factor=10.0)
    x = torch.randn(32, 8)
    _run(probe, model, 6, x)
    jit, delayed = probe.counts["activation", "jit"], probe.counts["activation", "delayed"]
    assert all(s.numel == 32 * 8 + 32 * 16 for s in jit)  # both layers' inputs, every step
    assert delayed[4].overflow > 0 and jit[4].overflow == 0  # the spike step
    assert all(s.overflow == 0 for k, s in enumerate(delayed) if k != 4)
    assert probe.fraction("activation", "delayed", "overflow")[4] == delayed[4].overflow_rate
    assert set(probe.kept) == {("fc1", "activation"), ("fc2", "activation"),
                               ("fc1", "gradient"), ("fc2", "gradient")}
    assert len(probe.amax["fc1", "gradient"]) == 6


def test_steps_outside_the_window_are_ignored_and_hooks_can_be_removed():
    model = torch.nn.Linear(4, 4)
    probe = ScalingProbe({"fc": model}, steps=2, policies=POLICIES)
    probe.step = 5
    model(torch.randn(2, 4)).sum().backward()
    assert all(s.numel == 0 for s in probe.counts["activation", "jit"])
    probe.remove()
    probe.step = 0
    model(torch.randn(2, 4))
    assert probe.counts["activation", "jit"][0].numel == 0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="at least one layer"):
        ScalingProbe({}, steps=1, policies=POLICIES)
    probe = ScalingProbe({"fc": torch.nn.Linear(2, 2)}, steps=1, policies=POLICIES)
    with pytest.raises(ValueError, match="overflow' or 'underflow"):
        probe.fraction("activation", "jit", "both")
