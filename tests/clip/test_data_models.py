"""CLIP data (toy sources, real-format readers on fixtures) and the model factory's paths."""

import tarfile

import pytest
import torch
from PIL import Image

from repro.clip.data import (
    captioned_digits,
    compositional_scenes,
    load_images,
    read_csv_pairs,
    read_image_folder,
    read_webdataset_shards,
)
from repro.clip.models import (
    CaptionTokenizer,
    TinyCLIPConfig,
    create_model,
    load_hf_clip,
    load_pretrained,
    register_model_config,
)
from repro.errors import CheckpointError, DataUnavailableError, ParameterError

TINY = TinyCLIPConfig(embed_dim=8, image_size=8, patch_size=4, vision_width=16, vision_layers=1,
                      vision_head_width=8, text_width=16, text_layers=1, text_heads=2,
                      context_length=6, vocab_size=20)


def _png(path, color=(255, 0, 0), size=(10, 8)):
    Image.new("RGB", size, color).save(path)
    return path


def test_scenes_are_seeded_and_the_mask_holds_the_captioned_colour():
    a = compositional_scenes(20, seed=3)
    b = compositional_scenes(20, seed=3)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    red = torch.tensor([0.9, 0.1, 0.1]) * 2 - 1
    for i in range(20):
        words = a.captions[i].split()
        assert words[1] in ("small", "large") and a.classnames[a.labels[i]] == " ".join(words[2:4])
        pixels = a.images[i].permute(1, 2, 0)[a.object_masks[i]]
        assert len(pixels) > 0
        if words[2] == "red":
            assert torch.allclose(pixels, red.expand_as(pixels), atol=1e-6)
    assert a.object_masks.float().mean() < 0.05  # the object is small


def test_digit_captions_name_the_digit():
    train, test = captioned_digits(seed=0)
    assert len(train) + len(test) == 1797
    for caption, label in zip(train.captions[:50], train.labels[:50].tolist()):
        assert train.classnames[label] in caption


def test_caption_tokenizer_puts_end_of_text_last_and_refuses_unknown_words():
    tok = CaptionTokenizer.fit(["a red circle", "a blue square"], context_length=6)
    ids = tok(["a blue circle"])
    assert ids[0, 0] == tok.sot and int(ids[0].argmax()) == 4 and ids[0, 4] == tok.eot
    assert tok.eot == tok.vocab_size - 1
    with pytest.raises(ParameterError, match="outside the tokenizer"):
        tok(["a green circle"])


def test_csv_reader_reads_open_clips_format(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", (0, 0, 255))
    (tmp_path / "train.csv").write_text("filepath\ttitle\na.png\ta red thing\nb.png\tblue\n")
    rows = read_csv_pairs(tmp_path / "train.csv")
    assert [c for _, c in rows] == ["a red thing", "blue"]
    x = load_images([p for p, _ in rows], size=8)
    assert x.shape == (2, 3, 8, 8) and x[0, 0].mean() > x[1, 0].mean()
    (tmp_path / "bad.csv").write_text("path,caption\na.png,x\n")
    with pytest.raises(DataUnavailableError, match="columns"):
        read_csv_pairs(tmp_path / "bad.csv")


def test_webdataset_reader_groups_members_by_key_and_names_a_corrupt_shard(tmp_path):
    shard = tmp_path / "00000.tar"
    with tarfile.open(shard, "w") as tar:
        for key, caption in (("000", "first"), ("001", "second")):
            tar.add(_png(tmp_path / f"{key}.jpg"), arcname=f"{key}.jpg")
            (tmp_path / f"{key}.txt").write_text(caption)
            tar.add(tmp_path / f"{key}.txt", arcname=f"{key}.txt")
    samples = list(read_webdataset_shards([shard]))
    assert [(c, k) for _, c, k in samples] == [("first", "000"), ("second", "001")]
    assert load_images([samples[0][0]], size=8).shape == (1, 3, 8, 8)
    broken = tmp_path / "broken.tar"
    broken.write_bytes(shard.read_bytes()[:700])
    with pytest.raises(DataUnavailableError, match="broken.tar"):
        list(read_webdataset_shards([broken]))


def test_image_folder_reader_and_missing_data_name_the_manifest(tmp_path):
    for wnid in ("n02", "n01"):
        (tmp_path / "val" / wnid).mkdir(parents=True)
        _png(tmp_path / "val" / wnid / "x.JPEG")
    files, labels, classes = read_image_folder(tmp_path / "val")
    assert classes == ["n01", "n02"] and labels.tolist() == [0, 1]
    with pytest.raises(DataUnavailableError, match="imagenet-1k.yaml"):
        read_image_folder(tmp_path / "missing")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataUnavailableError, match="bad.png"):
        load_images([tmp_path / "bad.png"])


def test_create_model_is_seeded_and_registered_with_open_clip():
    import open_clip

    a, b = create_model(TINY, seed=4), create_model(TINY, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))
    name = register_model_config("repro-test-tiny", TINY)
    assert name in open_clip.list_models()


def test_pretrained_path_loads_a_saved_checkpoint_offline(tmp_path):
    from safetensors.torch import save_file

    name = register_model_config("repro-test-tiny", TINY)
    saved = create_model(TINY, seed=7)
    save_file({k: v.contiguous() for k, v in saved.state_dict().items()},
              str(tmp_path / "ckpt.safetensors"))
    model, preprocess = load_pretrained(name, tmp_path / "ckpt.safetensors")
    assert torch.equal(model.visual.proj, saved.visual.proj)
    with pytest.raises(DataUnavailableError, match="not found"):
        load_pretrained(name, tmp_path / "missing.safetensors", manifest="x")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises((CheckpointError, Exception)):
        load_pretrained(name, tmp_path / "bad.safetensors")


def test_transformers_clip_checkpoint_loads_offline(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": 16, "intermediate_size": 32,
                     "num_hidden_layers": 1, "num_attention_heads": 2,
                     "max_position_embeddings": 77},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 16},
        projection_dim=8)
    torch.manual_seed(0)
    reference = CLIPModel(config).eval()
    reference.save_pretrained(tmp_path / "tinyclip")
    model, tokenizer = load_hf_clip(tmp_path / "tinyclip")
    images = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[49406, 320, 49407, 0, 0]])
    ref = reference.get_image_features(pixel_values=images)
    ref = getattr(ref, "pooler_output", ref)
    assert tokenizer is None and torch.allclose(model.encode_image(images), ref, atol=1e-6)
    assert model.encode_text(ids).shape == (1, 8)
    with pytest.raises(DataUnavailableError, match="tinyclip-checkpoints.yaml"):
        load_hf_clip(tmp_path / "nothing")


def test_missing_real_pretraining_data_names_its_manifest_and_never_falls_back(tmp_path):
    from repro.clip.data import load_caption_data

    with pytest.raises(DataUnavailableError, match="laion-400m.yaml"):
        load_caption_data("laion-400m", root=tmp_path / "nothing")
