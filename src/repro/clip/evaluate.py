"""Zero-shot classification with prompt ensembling, and image-text retrieval R@K.

- :func:`zero_shot_classifier`: for each class and template, encode ``template.format(name)``,
  L2-normalise, average over templates, re-normalise (CLIP's prompt ensembling, as TinyCLIP's
  and SLIP/A-CLIP's evaluation code do it). :func:`zero_shot_accuracy` takes the top-k of
  ``image_features @ classifier.T``.
- :func:`retrieval_recall`: image→text, a hit if *any* of the image's captions is in the top K;
  text→image, a hit if its image is in the top K (Flickr30K/COCO protocol). Ranks come from a
  stable descending sort, so ties are broken by index, deterministically.
- :func:`encode_dataset` / :func:`evaluate_clip`: the toy-data evaluation the notebooks share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["zero_shot_classifier", "zero_shot_accuracy", "retrieval_recall", "encode_dataset",
           "evaluate_clip", "text_encoder", "zero_shot_image_folder"]


@torch.no_grad()
def zero_shot_classifier(encode_text: Callable[[list[str]], Tensor], classnames: Sequence[str],
                         templates: Sequence[str]) -> Tensor:
    """(num_classes, embed_dim) unit-norm class weights, ensembled over ``templates``
    (format strings with one ``{}``, or callables such as open_clip's
    ``OPENAI_IMAGENET_TEMPLATES``)."""
    if not templates or not classnames:
        raise ValueError("need at least one class name and one template")
    weights = []
    for name in classnames:
        emb = encode_text([t(name) if callable(t) else t.format(name) for t in templates])
        emb = nn.functional.normalize(emb.float(), dim=-1).mean(0)
        weights.append(nn.functional.normalize(emb, dim=-1))
    return torch.stack(weights)


def zero_shot_accuracy(image_features: Tensor, classifier: Tensor, labels: Tensor,
                       topk: Sequence[int] = (1,)) -> dict[int, float]:
    """Top-k accuracy (fraction) of ``argmax(x · W^T)`` for each k."""
    logits = nn.functional.normalize(image_features.float(), dim=-1) @ classifier.T
    ranked = logits.argsort(dim=1, descending=True, stable=True)
    return {k: float((ranked[:, :k] == labels[:, None]).any(1).float().mean()) for k in topk}


def retrieval_recall(similarity: Tensor, image_of_text: Tensor | None = None, *,
                     positives: Tensor | None = None,
                     ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """R@K in both directions from an (n_images, n_texts) similarity matrix.

    Give either ``image_of_text`` (n_texts,) — the image each caption describes — or a boolean
    ``positives`` (n_images, n_texts) matrix (for toy data where identical captions of
    different images all count as matches). Returns ``{"i2t_R@1": ..., "t2i_R@1": ...}``
    as fractions."""
    n_img, n_txt = similarity.shape
    if positives is None:
        if image_of_text is None or len(image_of_text) != n_txt:
            raise ValueError("give image_of_text with one entry per text, or positives")
        positives = torch.zeros(n_img, n_txt, dtype=torch.bool)
        positives[image_of_text, torch.arange(n_txt)] = True
    if positives.shape != similarity.shape:
        raise ValueError(f"positives {tuple(positives.shape)} and similarity "
                         f"{tuple(similarity.shape)} differ in shape")
    out = {}
    i2t = similarity.argsort(dim=1, descending=True, stable=True)
    t2i = similarity.T.argsort(dim=1, descending=True, stable=True)
    hit_i2t = torch.gather(positives, 1, i2t)  # hit_i2t[i, r]: the rank-r text matches i
    hit_t2i = torch.gather(positives.T, 1, t2i)
    for k in ks:
        out[f"i2t_R@{k}"] = float(hit_i2t[:, :k].any(1).float().mean())
    for k in ks:
        out[f"t2i_R@{k}"] = float(hit_t2i[:, :k].any(1).float().mean())
    return out


def text_encoder(model: nn.Module, tokenizer: Callable[[list[str]], Tensor]
                 ) -> Callable[[list[str]], Tensor]:
    """``texts -> model.encode_text(tokenizer(texts))`` on the model's device."""
    device = next(model.parameters()).device

    def encode(texts: list[str]) -> Tensor:
        return model.encode_text(tokenizer(texts).to(device))

    return encode


@torch.no_grad()
def encode_dataset(model: nn.Module, images: Tensor, *, batch_size: int = 512,
                   encode_image: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Unit-norm image features of ``images`` (eval mode, in batches)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    encode_image = encode_image or model.encode_image
    feats = [encode_image(images[i:i + batch_size].to(device)).float()
             for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return nn.functional.normalize(torch.cat(feats), dim=-1)


@torch.no_grad()
def evaluate_clip(model: nn.Module, tokenizer: Callable[[list[str]], Tensor], data,
                  templates: Sequence[str], *, retrieval: bool = True,
                  encode_image: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
    """Zero-shot top-1 (%) over ``data.classnames`` with ``templates`` and, optionally,
    retrieval R@1/5/10 (%) between ``data.images`` and their captions (identical captions
    count as matches). ``data`` is a :class:`repro.clip.data.CaptionedImages`."""
    was_training = model.training
    model.eval()
    encode_text = text_encoder(model, tokenizer)
    image_features = encode_dataset(model, data.images, encode_image=encode_image)
    classifier = zero_shot_classifier(encode_text, data.classnames, templates)
    out = {"zero-shot top-1 (%)":
           100 * zero_shot_accuracy(image_features, classifier, data.labels)[1]}
    if retrieval:
        unique, inverse = torch.unique(data.caption_ids, return_inverse=True)
        first = torch.zeros(len(unique), dtype=torch.long).scatter_(
            0, inverse.flip(0), torch.arange(len(inverse)).flip(0))
        texts = [data.captions[i] for i in first.tolist()]
        text_features = nn.functional.normalize(encode_text(texts).float(), dim=-1)
        positives = inverse[:, None] == torch.arange(len(unique))[None, :]
        recall = retrieval_recall(image_features @ text_features.T, positives=positives)
        out.update({f"{k} (%)": 100 * v for k, v in recall.items()})
    model.train(was_training)
    return out


@torch.no_grad()
def zero_shot_image_folder(model: nn.Module, encode_text: Callable[[list[str]], Tensor],
                           root, classnames: Sequence[str], templates: Sequence, *,
                           image_size: int = 224, batch_size: int = 64,
                           limit: int | None = None, manifest: str = "imagenet-1k",
                           mean: Sequence[float] | None = None,
                           std: Sequence[float] | None = None) -> dict[str, float]:
    """Zero-shot top-1/top-5 (%) of ``model`` on an ImageNet-style class-folder tree (the
    full-scale protocol of both chapters: ImageNet-1k val, sorted wnid folders, one class
    name per folder in that order)."""
    from repro.errors import DataUnavailableError
    from repro.progress import progress

    from .data import CLIP_MEAN, CLIP_STD, load_images, read_image_folder

    files, labels, folders = read_image_folder(root, manifest=manifest)
    if len(folders) != len(classnames):
        raise DataUnavailableError(
            f"{root} has {len(folders)} class folders but {len(classnames)} class names were "
            f"given; see data/manifests/{manifest}.yaml for the expected layout")
    if limit is not None:
        step = max(1, len(files) // limit)
        keep = list(range(0, len(files), step))[:limit]
        files, labels = [files[i] for i in keep], labels[keep]
    model.eval()
    classifier = zero_shot_classifier(encode_text, classnames, templates)
    feats = []
    for i in progress(range(0, len(files), batch_size), total=-(-len(files) // batch_size),
                      desc="zero-shot", unit="batches"):
        images = load_images(files[i:i + batch_size], size=image_size,
                             mean=mean or CLIP_MEAN, std=std or CLIP_STD)
        feats.append(model.encode_image(images).float())
    acc = zero_shot_accuracy(torch.cat(feats), classifier, labels, topk=(1, 5))
    return {"top-1 (%)": 100 * acc[1], "top-5 (%)": 100 * acc[5], "images": len(files)}
