"""SeqTrack: box tokens (hand-worked values, the round-trip bound), the weighted loss, decoder
causality, the Hanning window and the tracker loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.errors import CheckpointError, ParameterError
from repro.tracking import seqtrack as st

TINY = dict(embed_dim=32, depth=1, num_heads=2, decoder_dim=32, decoder_ffn=64,
            decoder_heads=2, bins=16)


def test_quantize_hand_worked_values():
    v = torch.tensor([0.0, 0.5, 1.0, 0.34, 1.7, -0.2])
    # 10 bins: v * 9 = 0, 4.5, 9, 3.06, clamp, clamp
    assert st.quantize(v, 10, "truncate").tolist() == [0, 4, 9, 3, 9, 0]
    assert st.quantize(v, 10, "round").tolist() == [0, 4, 9, 3, 9, 0]  # 4.5 rounds to even
    assert st.dequantize(torch.tensor([0, 9, 3]), 10).tolist() == pytest.approx([0, 1, 1 / 3])


@pytest.mark.parametrize("bins", [8, 64, 4000])
@pytest.mark.parametrize("mode,bound", [("round", 0.5), ("truncate", 1.0)])
def test_round_trip_is_within_one_bin(bins, mode, bound):
    v = torch.rand(10_000, generator=torch.Generator().manual_seed(bins))
    err = v - st.dequantize(st.quantize(v, bins, mode), bins)
    assert err.abs().max() <= bound / (bins - 1) + 1e-6
    if mode == "truncate":
        assert (err >= -1e-6).all()  # truncation always rounds down


def test_sequences_use_the_codes_special_tokens():
    inp, tgt = st.build_sequences(torch.tensor([[0.2, 0.4, 0.6, 0.8]]), bins=11)
    # (cx, cy, w, h) = (0.4, 0.6, 0.4, 0.4) -> x10 -> 4, 6, 4, 4; START = 12, END = 11
    assert inp.tolist() == [[12, 4, 6, 4, 4]] and tgt.tolist() == [[4, 6, 4, 4, 11]]


def test_token_loss_weights_special_tokens():
    bins = 4
    logits = torch.zeros(1, 2, bins + 2)  # uniform: every token costs log(6)
    logits[0, 1, 0] = 5.0  # the END target at position 1 gets a worse loss
    targets = torch.tensor([[1, bins]])
    per = torch.nn.functional.cross_entropy(logits[0], targets[0], reduction="none")
    expected = (per[0] * 1.0 + per[1] * 0.01) / 1.01
    assert st.token_loss(logits, targets, bins) == pytest.approx(float(expected))


def test_decoder_is_causal():
    torch.manual_seed(0)
    model = st.create_model(**TINY).eval()
    z, x = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    tokens = torch.tensor([[17, 3, 5, 7, 9], [17, 1, 2, 3, 4]])
    changed = tokens.clone()
    changed[:, 3:] = torch.tensor([[0, 15], [11, 12]])
    with torch.no_grad():
        a, b = model([z], x, tokens), model([z], x, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # positions before the change
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_hanning_window_keeps_centre_tokens_near_the_middle():
    torch.manual_seed(0)
    model = st.create_model(**TINY).eval()
    with torch.no_grad():  # a head that prefers token 0 (the crop's corner) for everything
        model.head[-1].bias.zero_()
        model.head[-1].weight.zero_()
        model.head[-1].bias[0] = 3.0
    z, x = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    _, plain, _ = st.greedy_decode(model, [z], x, window=False)
    _, windowed, conf = st.greedy_decode(model, [z], x, window=True)
    assert plain[0].tolist() == [0, 0, 0, 0]
    assert 0 < windowed[0, 0] < 15 and windowed[0, 2] == 0  # window on cx, cy only
    assert (conf > 0).all()
    np.testing.assert_allclose(st.hanning_window(16).numpy(), np.hanning(16), rtol=1e-6)


def test_quantization_iou_is_one_for_representable_boxes():
    boxes = torch.tensor([[0.5, 0.5, 0.25, 0.25]])
    assert st.quantization_iou(boxes, 5)[0] == pytest.approx(1.0)
    assert st.quantization_iou(torch.tensor([[0.5, 0.5, 0.3, 0.3]]), 5, "truncate")[0] < 0.8


def test_tracker_runs_and_updates_templates():
    torch.manual_seed(0)
    model = st.create_model(**{**TINY, "num_templates": 2})
    tracker = st.SeqTrackTracker(model, update_interval=1, update_threshold=-1.0)
    frames = np.random.default_rng(0).integers(0, 255, (2, 3, 96, 96, 3), dtype=np.uint8)
    tracker.init_batch(frames[:, 0], np.array([[30.0, 30, 20, 20], [10, 50, 16, 24]]))
    before = tracker.templates[1].clone()
    boxes = tracker.update_batch(frames[:, 1])
    assert boxes.shape == (2, 4) and (boxes[:, 2:] >= 4).all()
    assert not torch.equal(before, tracker.templates[1])  # threshold -1: always replaced
    assert torch.equal(tracker.templates[0], tracker.template)  # the first stays


def test_bad_configuration_and_released_weights_are_refused():
    with pytest.raises(ParameterError, match="multiple of patch_size"):
        st.SeqTrackConfig(search_size=60)
    with pytest.raises(ParameterError, match="unknown SeqTrack variant"):
        st.create_model("seqtrack_xl")
    with pytest.raises(ParameterError, match="unknown SeqTrackConfig field"):
        st.create_model(bin=3)
    with pytest.raises(CheckpointError, match="seqtrack-b256-released"):
        st.convert_official_state_dict({})
