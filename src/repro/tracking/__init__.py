"""Single-object tracking: the book's chapters on SeqTrack and HiT.

- :mod:`repro.tracking.data` -- a seeded generator of tracking sequences, the LaSOT, GOT-10k
  and TrackingNet file formats, crops and training pairs;
- :mod:`repro.tracking.metrics` -- one-pass evaluation (success/AUC, precision, normalised
  precision, per attribute; GOT-10k's AO/SR);
- :mod:`repro.tracking.runner` -- the tracker protocol, the runner, FPS, trivial trackers;
- :mod:`repro.tracking.seqtrack` -- SeqTrack (CVPR 2023): a box as a sequence of tokens;
- :mod:`repro.tracking.hit` -- HiT (ICCV 2023): a hierarchical one-stream tracker with the
  Bridge Module and the dual-image position encoding.

Names are exported lazily, so ``import repro.tracking`` imports neither torch nor numpy.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "GeneratorConfig": "data", "make_bank": "data", "render": "data",
    "generated_benchmark": "data", "read_lasot": "data", "read_lasot_sequence": "data",
    "read_got10k_sequence": "data", "read_trackingnet_sequence": "data",
    "write_lasot": "data", "write_got10k": "data", "write_trackingnet": "data",
    "sample_pairs": "data", "TrackingSequence": "data", "AnnotationError": "data",
    "ope": "metrics", "sequence_curves": "metrics", "got10k_ao_sr": "metrics",
    "run_benchmark": "runner", "measure_fps": "runner", "StaticBoxTracker": "runner",
    "TemplateMatchingTracker": "runner", "CropTracker": "runner",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
