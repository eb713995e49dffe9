"""The occlusion mask dictionary: landmark boxes, halves, random half of a grid, FROM's grid."""

import itertools

import numpy as np
from keras import ops

from keras_face.data.alignment import arcface_template

MASK_FAMILIES = ("landmarks", "halves", "random_half")
LANDMARK_MASK_NAMES = ("left_eye", "right_eye", "eyes", "nose", "mouth")
HALF_MASK_NAMES = ("left", "right", "upper", "lower")
# FROM's rectangle patterns: how many masks each grid size gives (the first is empty).
GRID_PATTERN_COUNTS = {2: 10, 3: 37, 4: 101}


def _size(image_size):
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        height = width = int(image_size)
    else:
        try:
            height, width = (int(value) for value in image_size)
        except (TypeError, ValueError):
            height = width = 0
    if height < 1 or width < 1:
        raise ValueError(
            "image_size must be a positive int or (height, width). "
            f"Received: image_size={image_size!r}"
        )
    return height, width


def check_landmarks(landmarks):
    """Return 5-point landmarks as a float array `(..., 5, 2)`, else raise naming the shape."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim < 2 or landmarks.shape[-2:] != (5, 2) or not np.all(np.isfinite(landmarks)):
        raise ValueError(
            "landmarks must be finite (x, y) points of shape (5, 2) or (batch, 5, 2): left eye, "
            f"right eye, nose, left and right mouth corners. Received: landmarks of shape "
            f"{landmarks.shape}"
        )
    return landmarks


def mirror_landmarks(landmarks, width):
    """Landmarks of the horizontally flipped image: `x -> width - 1 - x`, left and right swapped.

    Args:
        landmarks: array `(5, 2)` or `(batch, 5, 2)` of `(x, y)` pixel coordinates.
        width: int. Image width.

    Returns:
        float64 array of the same shape: the left eye of the flipped image is the mirrored
        right eye, and the mouth corners likewise.

    Example:
        ```python
        flipped = keras_face.occlusion.mirror_landmarks(landmarks, 112)
        ```
    """
    landmarks = check_landmarks(landmarks).copy()
    landmarks[..., 0] = width - 1 - landmarks[..., 0]
    return landmarks[..., [1, 0, 2, 4, 3], :]


def _box(height, width, centre_x, centre_y, half_width, half_height):
    mask = np.zeros((height, width), np.float32)
    top = int(np.floor(centre_y - half_height + 0.5))
    bottom = int(np.floor(centre_y + half_height + 0.5))
    left = int(np.floor(centre_x - half_width + 0.5))
    right = int(np.floor(centre_x + half_width + 0.5))
    mask[
        max(top, 0) : max(min(bottom, height - 1) + 1, 0),
        max(left, 0) : max(min(right, width - 1) + 1, 0),
    ] = 1.0
    return mask


def landmark_masks(image_size, landmarks=None, radius=0.12):
    """Boxes around the facial landmarks: left eye, right eye, both eyes, nose, mouth.

    Each box has half-size `radius * S` (S = image height) around its landmark; "eyes" is
    one band over both eyes and "mouth" spans both mouth corners.

    Args:
        image_size: int or `(height, width)`.
        landmarks: array `(5, 2)` of `(x, y)` pixels, or `None` for the ArcFace template
            of aligned crops (`keras_face.data.arcface_template`). Defaults to `None`.
        radius: float. Half-size of a box relative to the image size. Defaults to `0.12`.

    Returns:
        float32 array `(5, H, W)`, 1 = occluded, in the order of `LANDMARK_MASK_NAMES`.

    Example:
        ```python
        masks = keras_face.occlusion.landmark_masks(112)
        ```
    """
    height, width = _size(image_size)
    if not (isinstance(radius, (int, float)) and 0 < radius <= 0.5):
        raise ValueError(f"radius must be in (0, 0.5]. Received: radius={radius!r}")
    points = arcface_template((height, width)) if landmarks is None else check_landmarks(landmarks)
    if points.ndim != 2:
        raise ValueError(
            f"landmark_masks takes one face's landmarks (5, 2). Received: shape {points.shape}"
        )
    half = radius * height
    (left_x, left_y), (right_x, right_y), (nose_x, nose_y) = points[0], points[1], points[2]
    mouth = points[3:]
    return np.stack(
        [
            _box(height, width, left_x, left_y, half, half),
            _box(height, width, right_x, right_y, half, half),
            _box(
                height,
                width,
                (left_x + right_x) / 2,
                (left_y + right_y) / 2,
                (right_x - left_x) / 2 + half,
                half,
            ),
            _box(height, width, nose_x, nose_y, half, half),
            _box(
                height,
                width,
                mouth[:, 0].mean(),
                mouth[:, 1].mean(),
                (mouth[1, 0] - mouth[0, 0]) / 2 + half,
                half,
            ),
        ]
    )


def landmark_box_masks(landmarks, image_size, radius=0.12):
    """`landmark_masks` of a batch of faces, computed with `keras.ops` (inside a model).

    Args:
        landmarks: tensor `(B, 5, 2)` of `(x, y)` pixels per image.
        image_size: int or `(height, width)`.
        radius: float. Half-size of a box relative to the image height. Defaults to `0.12`.

    Returns:
        float32 tensor `(B, 5, H, W)`, equal to `landmark_masks(image_size, landmarks[b])`.

    Example:
        ```python
        masks = keras_face.occlusion.landmark_box_masks(landmarks, 64)
        ```
    """
    height, width = _size(image_size)
    points = ops.cast(landmarks, "float32")
    half = radius * height
    left, right, nose = points[:, 0], points[:, 1], points[:, 2]
    mouth = points[:, 3:]
    eyes = (left + right) / 2
    centres = ops.stack([left, right, eyes, nose, ops.mean(mouth, axis=1)], axis=1)
    half_width = ops.stack(
        [
            ops.full_like(left[:, 0], half),
            ops.full_like(left[:, 0], half),
            (right[:, 0] - left[:, 0]) / 2 + half,
            ops.full_like(left[:, 0], half),
            (mouth[:, 1, 0] - mouth[:, 0, 0]) / 2 + half,
        ],
        axis=1,
    )

    def span(centre, half_size, length):
        low = ops.maximum(ops.floor(centre - half_size + 0.5), 0.0)
        high = ops.minimum(ops.floor(centre + half_size + 0.5), length - 1.0)
        grid = ops.arange(length, dtype="float32")
        return ops.cast(
            (grid >= low[..., None]) & (grid <= high[..., None]), "float32"
        )  # (B, 5, length)

    rows = span(centres[..., 1], half, height)
    columns = span(centres[..., 0], half_width, width)
    return rows[..., :, None] * columns[..., None, :]


def half_masks(image_size, landmarks=None):
    """The left, right, upper and lower half of the image.

    Args:
        image_size: int or `(height, width)`.
        landmarks: array `(5, 2)` or `None`. With landmarks the upper/lower split is at the
            eye-mouth midline, otherwise at `H / 2`. Defaults to `None`.

    Returns:
        float32 array `(4, H, W)` in the order of `HALF_MASK_NAMES`.

    Example:
        ```python
        left, right, upper, lower = keras_face.occlusion.half_masks(8)
        ```
    """
    height, width = _size(image_size)
    split_row = height // 2
    if landmarks is not None:
        points = check_landmarks(landmarks)
        eyes = points[:2, 1].mean()
        mouth = points[3:, 1].mean()
        split_row = int(np.clip(np.floor((eyes + mouth) / 2 + 0.5), 1, height - 1))
    masks = np.zeros((4, height, width), np.float32)
    masks[0, :, : width // 2] = 1.0
    masks[1, :, width // 2 :] = 1.0
    masks[2, :split_row] = 1.0
    masks[3, split_row:] = 1.0
    return masks


def grid_cell_masks(image_size, grid=4):
    """One mask per cell of a `grid x grid` partition of the image: `(grid^2, H, W)`."""
    height, width = _size(image_size)
    rows = np.array_split(np.arange(height), grid)
    columns = np.array_split(np.arange(width), grid)
    masks = np.zeros((grid * grid, height, width), np.float32)
    for index, (row, column) in enumerate(itertools.product(rows, columns)):
        masks[index][np.ix_(row, column)] = 1.0
    return masks


def random_half_masks(image_size, grid=4, count=4, seed=0):
    """Masks that each drop exactly half of the `grid x grid` cells, drawn from `seed`.

    Args:
        image_size: int or `(height, width)`.
        grid: int. Cells per side (an even number of cells in all). Defaults to `4`.
        count: int. Number of masks. Defaults to `4`.
        seed: int. Defaults to `0`.

    Returns:
        float32 array `(count, H, W)`.

    Example:
        ```python
        masks = keras_face.occlusion.random_half_masks(64, grid=4, count=4, seed=3)
        ```
    """
    if grid < 1 or (grid * grid) % 2:
        raise ValueError(f"grid must give an even number of cells. Received: grid={grid!r}")
    cells = grid_cell_masks(image_size, grid)
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(grid * grid)[: grid * grid // 2] for _ in range(count)]
    return np.stack([cells[indices].sum(axis=0) for indices in chosen]).astype(np.float32)


def grid_masks(image_size, pattern=4):
    """FROM's rectangle patterns: every axis-aligned block of cells of a `pattern` grid.

    For a `pattern x pattern` grid the blocks are all `[r0, r1) x [c0, c1)` cell ranges
    (`(N (N + 1) / 2)^2` of them, the whole grid included), preceded by the empty mask:
    10 masks for 2, 37 for 3, 101 for 4.

    Args:
        image_size: int or `(height, width)`.
        pattern: int. 2, 3 or 4. Defaults to `4`.

    Returns:
        float32 array `(N, H, W)`.

    Example:
        ```python
        keras_face.occlusion.grid_masks(112, 4).shape  # (101, 112, 112)
        ```

    References:
        - [Qiu et al., End2End Occluded Face Recognition by Masking Corrupted Features
          (FROM), TPAMI 2021](https://arxiv.org/abs/2108.09468)
    """
    if pattern not in GRID_PATTERN_COUNTS:
        raise ValueError(f"pattern must be 2, 3 or 4. Received: pattern={pattern!r}")
    height, width = _size(image_size)
    rows = np.array_split(np.arange(height), pattern)
    columns = np.array_split(np.arange(width), pattern)
    masks = [np.zeros((height, width), np.float32)]
    spans = [(start, stop) for start in range(pattern) for stop in range(start + 1, pattern + 1)]
    for (top, bottom), (left, right) in itertools.product(spans, spans):
        mask = np.zeros((height, width), np.float32)
        row = np.concatenate(rows[top:bottom])
        column = np.concatenate(columns[left:right])
        mask[np.ix_(row, column)] = 1.0
        masks.append(mask)
    return np.stack(masks)


def mask_to_feature_grid(masks, feature_size):
    """Image masks to a feature map's resolution: average over each cell, threshold at 0.5.

    Args:
        masks: array `(..., H, W)`.
        feature_size: int or `(h, w)`, dividing `(H, W)`... or not: cells follow
            `np.array_split`.

    Returns:
        float32 array `(..., h, w)`.

    Example:
        ```python
        keras_face.occlusion.mask_to_feature_grid(half_masks(64), 4)  # (4, 4, 4)
        ```
    """
    masks = np.asarray(masks, np.float32)
    rows_out, columns_out = _size(feature_size)
    height, width = masks.shape[-2:]
    if rows_out > height or columns_out > width:
        raise ValueError(
            f"The feature map ({rows_out}x{columns_out}) is larger than the masks "
            f"({height}x{width}). Received: feature_size={feature_size!r}"
        )
    rows = np.array_split(np.arange(height), rows_out)
    columns = np.array_split(np.arange(width), columns_out)
    out = np.zeros((*masks.shape[:-2], rows_out, columns_out), np.float32)
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            cell = masks[..., row[0] : row[-1] + 1, column[0] : column[-1] + 1]
            out[..., i, j] = (cell.mean(axis=(-2, -1)) >= 0.5).astype(np.float32)
    return out


def mask_family(name, image_size, landmarks=None, grid=4, count=4, seed=0, radius=0.12):
    """The masks of one family by name (`MASK_FAMILIES`).

    Args:
        name: str. `"landmarks"`, `"halves"` or `"random_half"`.
        image_size: int or `(height, width)`.
        landmarks, grid, count, seed, radius: passed to the family's function.

    Returns:
        float32 array `(K, H, W)`.

    Example:
        ```python
        keras_face.occlusion.mask_family("halves", 64).shape  # (4, 64, 64)
        ```
    """
    if name == "landmarks":
        return landmark_masks(image_size, landmarks, radius)
    if name == "halves":
        return half_masks(image_size, landmarks)
    if name == "random_half":
        return random_half_masks(image_size, grid, count, seed)
    raise ValueError(
        f"Unknown mask family; expected one of {', '.join(MASK_FAMILIES)}. Received: name={name!r}"
    )
