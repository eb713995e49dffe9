"""Writes the `.keras` files and logits of `test_saved_heads.py` (run once, at 82b8a65).

The files were saved by the heads as they were before the classifier/margin split
(commit 82b8a65), with their state moved away from its initial value; the logits are
those of one training call and one inference call right after saving. Do not regenerate
them with newer code: they pin what older files load into. The JAX and PyTorch logits
(`saved_heads_logits_jax.npz`, `..._torch.npz`) were computed by the code of 82b8a65
loading these files on those backends, inference call first.

    KERAS_BACKEND=tensorflow python tests/heads/data/make_saved_heads.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_face import heads  # noqa: E402

NUM_CLASSES, DIM = 7, 4
rng = np.random.default_rng(2026)
x = rng.normal(size=(6, DIM)).astype("float32")
y = np.array([0, 3, 6, 2, 5, 1], "int32")
specs = {
    "arc_face": (heads.ArcFace, {"margin": 0.4}),
    "sub_center_arc_face": (heads.SubCenterArcFace, {"sub_centers": 3}),
    "curricular_face": (heads.CurricularFace, {}),
    "ada_face": (heads.AdaFace, {}),
    "norm_face": (heads.NormFace, {}),
}
out = {"embeddings": x, "labels": y}
for name, (cls, kw) in specs.items():
    keras.utils.set_random_seed(1)
    e = keras.Input((DIM,), name="embeddings")
    labels = keras.Input((), dtype="int32", name="labels")
    head = cls(NUM_CLASSES, name=name, **kw)
    model = keras.Model([e, labels], head([e, labels]))
    # Move the state away from its initial value.
    for v in head.non_trainable_variables:
        v.assign(v.value + 0.25)
    model.save(f"tests/heads/data/{name}.keras")
    out[f"{name}_training"] = keras.ops.convert_to_numpy(head([x, y], training=True))
    out[f"{name}_inference"] = keras.ops.convert_to_numpy(head([x, y], training=False))
np.savez("tests/heads/data/saved_heads_logits_tensorflow.npz", **out)
