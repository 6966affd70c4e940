"""Efficient vision models: the book's part on efficient vision and tracking.

- :mod:`repro.vision.efficientvit` -- EfficientViT (MSRA, CVPR 2023): cascaded group attention,
  the sandwich layout, variants M0--M5 (weight-compatible with timm), BN folding, parameter and
  FLOP counts, attention-map capture and the head-redundancy metric.

Import the submodule you need; this package itself imports nothing heavy.
"""
