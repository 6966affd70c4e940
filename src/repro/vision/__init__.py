"""Efficient vision models: the book's part on efficient vision and tracking.

- :mod:`repro.vision.efficientvit` -- EfficientViT (MSRA, CVPR 2023): cascaded group attention,
  the sandwich layout, variants M0--M5 (weight-compatible with timm at any input size), BN
  folding (ours and the baselines'), parameter and FLOP counts, attention-map capture and the
  head-redundancy measures.
- :mod:`repro.vision.evaluate` -- the released weights on the ImageNet validation set (official
  eval transform, labels by WordNet id), and head redundancy of a trained checkpoint.
- :mod:`repro.vision.train_classifier` -- ``repro train efficientvit``: the official ImageNet
  recipe under torchrun, with either attention.

Import the submodule you need; this package itself imports nothing heavy.
"""
