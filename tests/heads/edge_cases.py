"""Edge-case inputs shared by the head tests.

`edge_cases()` returns embeddings, labels and a kernel (class centres, `(dim, classes)`)
that hit every numerical corner of a margin head:

- target angles across 0..180 degrees: embeddings built at exact angles to their class
  centre in a 2-D plane of the embedding space (0 and 180 degrees give a cosine of
  exactly +1 / -1);
- angles just beyond `pi - m` (where ArcFace's `cos(theta + m)` turns back up);
- a non-target cosine of exactly -1 (class 1's centre is the opposite of class 0's);
- float32 cosines that round above 1 and below -1 (the embedding is +-3 times a class
  centre chosen so that the naive float32 `normalize(x) . normalize(w)` exceeds 1);
- zero embeddings, tiny (1e-20, below the 1e-12 floor of `x / max(||x||, 1e-12)`, so
  their cosines are ~1e-8; and 1e-11, just above it) and huge (1e20) norms;
- class centres of different norms (the heads normalise them).

`sub_center_kernel()` turns the kernel into a Sub-center ArcFace kernel
`(dim, classes * K)` (class-major) that keeps each designed centre as one sub-centre.

Used by the tests of every head (heads A and B): keep the signature stable.
"""

import collections

import numpy as np

EdgeCases = collections.namedtuple(
    "EdgeCases", ["embeddings", "labels", "kernel", "descriptions", "target_angles"]
)

# Target angles (degrees) of the class-0 rows. 151.35 = 180 - 0.5 rad is avoided: at the
# exact threshold of ArcFace's `cosface` fallback, float32 rounding decides the branch.
ANGLES_DEGREES = (
    0.0,
    0.5,
    1.0,
    5.0,
    10.0,
    30.0,
    45.0,
    60.0,
    89.0,
    90.0,
    120.0,
    135.0,
    150.0,
    152.0,
    155.0,
    160.0,
    170.0,
    175.0,
    179.0,
    179.5,
    180.0,
)
NUM_CLASSES = 5
EMBEDDING_DIM = 8


def _unit(index, dim=EMBEDDING_DIM):
    vector = np.zeros(dim, np.float64)
    vector[index] = 1.0
    return vector


def _at_angle(degrees, centre_axis, plane_axis, sign=1.0):
    """Unit vector at `degrees` from `sign * e_centre_axis`, in the plane of two axes."""
    if degrees == 0.0:
        return sign * _unit(centre_axis)
    if degrees == 180.0:
        return -sign * _unit(centre_axis)
    radians = np.deg2rad(degrees)
    return sign * np.cos(radians) * _unit(centre_axis) + np.sin(radians) * _unit(plane_axis)


def rounding_centre(dim=EMBEDDING_DIM, seed=1234):
    """A float32 vector `w` whose naive float32 cosine with `3 w` exceeds 1."""
    rng = np.random.default_rng(seed)
    for _ in range(10_000):
        w = rng.normal(size=dim).astype(np.float32)
        x = np.float32(3.0) * w
        x_hat = x / np.sqrt(np.sum(x * x, dtype=np.float32))
        w_hat = w / np.sqrt(np.sum(w * w, dtype=np.float32))
        if np.dot(x_hat, w_hat) > np.float32(1.0):
            return w
    raise RuntimeError("no rounding centre found")  # pragma: no cover


def edge_cases(exclude_near_degrees=(), exclusion_width=0.25):
    """The edge-case batch (float32 embeddings, int32 labels, float32 kernel).

    Args:
        exclude_near_degrees: target angles (degrees) to keep away from, e.g. the
            threshold `180 - degrees(m)` of a head with a discontinuous fallback.
        exclusion_width: float. Rows whose designed target angle lies within this many
            degrees of an excluded angle are dropped.

    Returns:
        `EdgeCases(embeddings (N, 8) float32, labels (N,) int32, kernel (8, 5) float32,
        descriptions list of N str, target_angles (N,) float64 degrees, NaN where the
        row has no designed angle)`.
    """
    rng = np.random.default_rng(7)
    rounding = rounding_centre()
    kernel = np.zeros((EMBEDDING_DIM, NUM_CLASSES), np.float64)
    kernel[:, 0] = 0.03 * _unit(0)  # class 0: +e0 (norm 0.03)
    kernel[:, 1] = -0.02 * _unit(0)  # class 1: -e0, opposite of class 0
    kernel[:, 2] = rounding  # class 2: cos(3 w, w) rounds above 1 in float32
    kernel[:, 3:] = rng.normal(scale=0.01, size=(EMBEDDING_DIM, NUM_CLASSES - 3))

    rows, labels, descriptions, angles = [], [], [], []

    def add(vector, label, description, angle=np.nan):
        rows.append(vector)
        labels.append(label)
        descriptions.append(description)
        angles.append(angle)

    excluded = np.asarray(exclude_near_degrees, np.float64)

    def allowed(angle):
        return not np.any(np.abs(excluded - angle) < exclusion_width)

    for angle in ANGLES_DEGREES:
        if allowed(angle):
            add(_at_angle(angle, 0, 1), 0, f"class 0 at {angle} deg", angle)
    for angle in (0.0, 30.0, 120.0, 170.0, 180.0):
        if allowed(angle):
            add(2.5 * _at_angle(angle, 0, 2, sign=-1.0), 1, f"class 1 at {angle} deg", angle)
    add(3.0 * rounding.astype(np.float64), 2, "3 w: cosine rounds above 1", 0.0)
    add(-3.0 * rounding.astype(np.float64), 2, "-3 w: cosine rounds below -1", 180.0)
    add(np.zeros(EMBEDDING_DIM), 3, "zero embedding", 90.0)
    add(np.zeros(EMBEDDING_DIM), 0, "zero embedding, class 0", 90.0)
    for angle in (0.0, 30.0, 170.0):
        if allowed(angle):
            add(1e-20 * _at_angle(angle, 0, 3), 0, f"norm 1e-20 at {angle} deg", angle)
    if allowed(45.0):  # just above the 1e-12 floor of the normalisation
        add(1e-11 * _at_angle(45.0, 0, 3), 0, "norm 1e-11 at 45.0 deg", 45.0)
    for angle in (0.0, 60.0, 180.0):
        if allowed(angle):
            add(1e20 * _at_angle(angle, 0, 4), 0, f"norm 1e20 at {angle} deg", angle)
    for index in range(4):
        add(rng.normal(size=EMBEDDING_DIM), 3 + index % 2, f"random embedding {index}")

    return EdgeCases(
        embeddings=np.asarray(rows).astype(np.float32),
        labels=np.asarray(labels, np.int32),
        kernel=kernel.astype(np.float32),
        descriptions=descriptions,
        target_angles=np.asarray(angles, np.float64),
    )


def sub_center_kernel(kernel, sub_centers, seed=3):
    """A class-major `(dim, classes * K)` kernel keeping each designed centre.

    Class `j`'s designed centre `kernel[:, j]` becomes its sub-centre `j % K`; the other
    sub-centres are random `N(0, 0.01^2)` vectors.
    """
    rng = np.random.default_rng(seed)
    dim, classes = kernel.shape
    out = rng.normal(scale=0.01, size=(dim, classes * sub_centers))
    for j in range(classes):
        out[:, j * sub_centers + j % sub_centers] = kernel[:, j]
    return out.astype(np.float32)


def set_kernel(layer, kernel):
    """Build `layer` for `kernel.shape[0]`-dimensional embeddings and set its kernel."""
    import keras

    if not layer.built:
        layer.build([(None, kernel.shape[0]), (None,)])
    layer.kernel.assign(keras.ops.convert_to_tensor(np.asarray(kernel, np.float32)))
    return layer
