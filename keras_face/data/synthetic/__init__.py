"""Synthetic face identities: the built-in data set of keras_face's demos and tests.

Every identity is a fixed random draw of facial geometry and appearance (face shape,
eyes, brows, nose, mouth, ears, skin / hair / iris / lip colours, hair style and length,
glasses, beard, a mole). Every image of an identity adds nuisance (pose and scale jitter,
yaw and pitch parallax, expression, gaze, blink, illumination direction, exposure,
colour cast, background, clothing, partial occlusion by a mask, a bar or a blob,
glasses taken off) and a recorded quality level `q` in [0, 1] that drives the
degradations of a low-quality capture: optical blur, down-scaling to a quarter of the
resolution, sensor noise at the low resolution, JPEG compression, and up-scaling back.

Faces are rendered on the 112x112 ArcFace template (eyes, nose tip and mouth corners
sit on the five reference landmarks, up to the identity's geometry and the pose
jitter), with NumPy over batches of images (signed-distance shapes composited with
anti-aliased edges; blur and resizing as per-image matrix products).

Everything is a function of `(seed, identity, image index)`: identity `k` looks the same
whatever `num_identities` is, and image `j` of an identity is the same whatever
`images_per_identity` is, so training and held-out sets are made by `identity_offset`.

The package has one module per concern:

- `appearance`: the random streams and the parameters drawn from them (identity
  appearance, per-image nuisance, quality levels);
- `ageing`: per-identity ageing traits, per-image ages, and the aged parameters
  (stream `[seed, identity, 5]`; without `ages` the images are those of the
  generator without ageing);
- `renderer`: the rasteriser, parameters to a clean image and its five landmarks;
- `degradation`: the quality-degradation model, a level q to a low-quality capture;
- `dataset`: the user-facing API (`synthetic_faces`, `SyntheticFaces`, `synthetic_pairs`,
  `render_faces`).
"""

from keras_face.data.synthetic.ageing import sample_ageing_traits
from keras_face.data.synthetic.ageing import sample_ages
from keras_face.data.synthetic.appearance import sample_identity_parameters
from keras_face.data.synthetic.appearance import sample_image_parameters
from keras_face.data.synthetic.appearance import sample_quality
from keras_face.data.synthetic.dataset import SyntheticFaces
from keras_face.data.synthetic.dataset import render_faces
from keras_face.data.synthetic.dataset import synthetic_faces
from keras_face.data.synthetic.dataset import synthetic_pairs
from keras_face.data.synthetic.renderer import CANVAS_SIZE

__all__ = [
    "CANVAS_SIZE",
    "SyntheticFaces",
    "render_faces",
    "sample_ages",
    "sample_ageing_traits",
    "sample_identity_parameters",
    "sample_image_parameters",
    "sample_quality",
    "synthetic_faces",
    "synthetic_pairs",
]
