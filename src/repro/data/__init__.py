"""Data: manifests and verified fetching of real data sets and checkpoints, the small real
data that ships inside packages (scikit-learn's digits), and seeded synthetic generators.

``load_digits`` and ``batch_indices`` are cheap to import; fetching pulls in pooch lazily.
"""

from .digits import ImageSplit, load_digits
from .loader import batch_indices
from .manifest import Manifest, fetch, list_manifests, load_manifest, manifests_dir

__all__ = ["ImageSplit", "Manifest", "batch_indices", "fetch", "list_manifests",
           "load_digits", "load_manifest", "manifests_dir"]
