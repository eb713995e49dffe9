"""Verification pairs whose probe wears an occluder (synthetic faces re-rendered)."""

import dataclasses

import numpy as np

from keras_face.data.synthetic import SyntheticFaces
from keras_face.data.synthetic import synthetic_pairs

OCCLUDER_KINDS = {1: "face mask", 2: "bar", 3: "blob"}


def occluded_pairs(faces, kind, num_pairs, seed=0, n_folds=10):
    """The pairs of `synthetic_pairs`, with the second image of each pair occluded.

    The probe is the same synthetic image re-rendered with a forced occluder
    (`SyntheticFaces.with_occlusion`): identity, pose, light and quality are unchanged,
    so the clean pairs of the same seed are the exact baseline.

    Args:
        faces: `keras_face.data.SyntheticFaces` (held-out identities).
        kind: int. 1 face mask, 2 bar, 3 blob.
        num_pairs: int.
        seed: int. Seed of the pairs (as `synthetic_pairs`). Defaults to `0`.
        n_folds: int. Defaults to `10`.

    Returns:
        `(images, issame)`: uint8 `(2P, H, W, 3)` in pair order, bool `(P,)`.

    Example:
        ```python
        images, issame = keras_face.occlusion.occluded_pairs(heldout, kind=1, num_pairs=600)
        ```
    """
    if not isinstance(faces, SyntheticFaces):
        raise ValueError(
            "occluded_pairs re-renders synthetic faces: pass a SyntheticFaces. "
            f"Received: faces={type(faces).__name__}"
        )
    if kind not in OCCLUDER_KINDS:
        raise ValueError(
            f"kind must be 1 (face mask), 2 (bar) or 3 (blob). Received: kind={kind!r}"
        )
    # The pairs of image indices: the same draws as the clean pairs of this seed.
    indexed = dataclasses.replace(faces, images=np.arange(len(faces))[:, None, None, None])
    order, issame = synthetic_pairs(indexed, num_pairs, seed=seed, n_folds=n_folds)
    order = order.reshape(-1)
    images = faces.images[order].copy()
    probes = order[1::2]
    images[1::2] = faces.with_occlusion(kind, indices=probes).images
    return images, issame
