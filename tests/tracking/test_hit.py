"""HiT: shapes through every stage, the dual-image position encoding, the Bridge Module, the
loss against hand-worked boxes, and the ONNX export checked under ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.errors import CheckpointError, ParameterError
from repro.tracking import hit


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN statistics and attention biases, so that no branch is the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.running_mean.normal_(0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
        for name, p in model.named_parameters():
            if "attention_biases" in name:
                p.normal_(0, 1, generator=g)
    return model.eval()


@pytest.mark.parametrize("stem_layers,grids", [(2, [(16, 8), (8, 4), (4, 2)]),
                                               (3, [(8, 4), (4, 2), (2, 1)])])
def test_shapes_through_every_stage(stem_layers, grids):
    model = hit.create_model(stem_layers=stem_layers).eval()
    assert model.cfg.grids == grids
    z, x = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    stem = model.backbone.patch_embed(x)
    assert stem.shape == (2, 32, grids[0][0], grids[0][0])
    maps, tokens = model.backbone(z, x)
    for (rx, _rz), dim, m in zip(grids, model.cfg.embed_dims, maps):
        assert m.shape == (2, dim, rx, rx)
    assert tokens.shape == (2, grids[2][0] ** 2 + grids[2][1] ** 2, 96)
    feature, g = model.neck(maps, tokens)
    assert feature.shape == (2, 64, grids[0][0], grids[0][0]) and g.shape == (2, 64)
    box = model(z, x)
    assert box.shape == (2, 4) and ((box[:, :2] > 0) & (box[:, :2] < 1)).all()


def test_canvas_places_the_template_after_the_search_grid():
    coords = hit._canvas(3, 2)
    assert coords[:9].tolist()[:4] == [[0, 0], [0, 1], [0, 2], [1, 0]]
    assert coords[9:].tolist() == [[3, 3], [3, 4], [4, 3], [4, 4]]
    # shrink attention: the 2x-subsampled query grid is scaled back onto the key grid
    assert hit._canvas(2, 1, scale=2).tolist() == [[0, 0], [0, 2], [2, 0], [2, 2], [4, 4]]


def test_position_encoding_distinguishes_template_from_search():
    bias = hit.DualImageBias(num_heads=2, key_grid=(4, 2))
    with torch.no_grad():
        bias.attention_biases.normal_(generator=torch.Generator().manual_seed(0))
    table = bias()  # (heads, N, N), N = 16 + 4
    search_00, template_00 = 0, 16  # the same (0, 0) cell in each image
    assert not torch.equal(bias.index[search_00], bias.index[template_00])
    assert not torch.allclose(table[:, search_00], table[:, template_00])
    # offsets are symmetric and zero on the diagonal, as LeViT's
    assert torch.equal(bias.index, bias.index.T) and (bias.index.diagonal() == 0).all()
    # in a model the bias changes the output; with position="none" it cannot
    z, x = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    torch.manual_seed(0)
    model = randomize_(hit.create_model(stem_layers=3))
    out = model(z, x)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "attention_biases" in name:
                p.zero_()
    assert not torch.allclose(out, model(z, x))
    assert not any("attention_biases" in n for n, _ in
                   hit.create_model(position="none").named_parameters())


def test_bridge_uses_every_stage_and_last_stage_neck_only_the_last():
    torch.manual_seed(0)
    z, x = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    for neck, uses_stage1 in (("bridge", True), ("last", False)):
        model = randomize_(hit.create_model(neck=neck, stem_layers=3))
        maps, tokens = model.backbone(z, x)
        f1, _ = model.neck(maps, tokens)
        maps[0] = maps[0] + 1.0
        f2, _ = model.neck(maps, tokens)
        assert (not torch.allclose(f1, f2)) == uses_stage1


def test_hit_loss_of_hand_worked_boxes():
    pred = torch.tensor([[0.5, 0.5, 0.5, 0.5]])  # x1y1x2y2 = 0.25, 0.25, 0.75, 0.75
    target = torch.tensor([[0.25, 0.25, 0.75, 0.75]])
    loss, parts = hit.hit_loss(pred, target)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    # disjoint boxes: IoU 0, hull 1 x 0.5, union 0.25 + 0.25 -> GIoU = 0 - (0.5 - 0.5) / 0.5 = 0
    a, b = torch.tensor([[0.0, 0.0, 0.5, 0.5]]), torch.tensor([[0.5, 0.0, 1.0, 0.5]])
    assert float(hit.giou(a, b)[0]) == pytest.approx(0.0, abs=1e-6)
    c = torch.tensor([[0.75, 0.0, 1.0, 0.25]])  # hull 1 x 0.5, union 0.3125
    assert float(hit.giou(a, c)[0]) == pytest.approx(-(0.5 - 0.3125) / 0.5)
    loss, parts = hit.hit_loss(torch.tensor([[0.25, 0.25, 0.5, 0.5]]), b)
    assert float(parts["l1"]) == pytest.approx((0.5 + 0.0 + 0.5 + 0.0) / 4)
    assert float(loss) == pytest.approx(2 * (1 - 0.0) + 5 * 0.25, abs=1e-6)


def test_onnx_export_agrees_with_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    torch.manual_seed(0)
    model = randomize_(hit.create_model(stem_layers=3))
    path = tmp_path / "hit.onnx"
    hit.export_onnx(model, path)
    assert path.is_file() and not list(tmp_path.glob(".*"))
    z, x = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"template": z.numpy(), "search": x.numpy()})[0]
    with torch.no_grad():
        expected = model(z, x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_bad_input_is_refused_before_compute():
    with pytest.raises(ParameterError, match="multiple of 4"):
        hit.HiTConfig(search_size=72)
    with pytest.raises(ParameterError, match="neck"):
        hit.HiTConfig(neck="fpn")
    with pytest.raises(ParameterError, match="unknown HiT variant"):
        hit.create_model("hit_huge")
    model = hit.create_model()
    with pytest.raises(ParameterError, match="64-px search"):
        model(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 96, 96))
    with pytest.raises(CheckpointError, match="hit-base-released"):
        hit.convert_official_state_dict({})


def test_paper_variants_build_with_the_papers_widths():
    model = hit.create_model("hit_tiny")
    assert model.cfg.embed_dims == (128, 256, 384) and model.cfg.grids[0] == (16, 8)
    assert len(model.backbone.stages[2]) == 2 * 4  # depth 4: attention + MLP per block
