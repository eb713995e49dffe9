"""5-point face alignment: similarity transform to the ArcFace template and the warp.

Coordinates are `(x, y)` in pixel units with pixel centres at integers (the OpenCV
convention, used by insightface's `norm_crop` and by detectors such as RetinaFace).
"""

import numpy as np

# Left eye, right eye, nose tip, left mouth corner, right mouth corner in a 112x112 crop
# (insightface `arcface_dst`).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def _as_points(points, name):
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 2:
        raise ValueError(
            f"`{name}` must be an (N, 2) array of points with N >= 2. Received: shape={array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"`{name}` contains NaN or infinite coordinates. Received: {name}={array.tolist()}"
        )
    return array


def estimate_similarity_transform(src, dst):
    """Least-squares similarity transform (rotation, uniform scale, shift) from `src` to `dst`.

    Umeyama's closed form: with centred point sets and `Sigma = dst_c^T src_c / N`,
    `Sigma = U D V^T`, `R = U S V^T` (S flips the last axis when needed so that R is a
    rotation, not a reflection), `scale = trace(D S) / var(src)`, `t = mean(dst) - scale R
    mean(src)` (Umeyama 1991, Eqs. 40-42).

    Args:
        src: array-like (N, 2). Source points, e.g. detected landmarks.
        dst: array-like (N, 2). Target points, e.g. `keras_face.data.ARCFACE_TEMPLATE`.

    Returns:
        float64 array (2, 3) `M` with `dst ~= src @ M[:, :2].T + M[:, 2]`.

    Example:
        ```python
        matrix = keras_face.data.estimate_similarity_transform(
            landmarks, keras_face.data.ARCFACE_TEMPLATE
        )
        ```

    References:
        - [Umeyama, 1991](https://doi.org/10.1109/34.88573)
    """
    src = _as_points(src, "src")
    dst = _as_points(dst, "dst")
    if src.shape != dst.shape:
        raise ValueError(
            "`src` and `dst` must have the same shape. "
            f"Received: src.shape={src.shape}, dst.shape={dst.shape}"
        )
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_centred = src - src_mean
    dst_centred = dst - dst_mean
    src_variance = np.mean(np.sum(src_centred**2, axis=1))
    if src_variance <= 1e-12 * max(1.0, float(np.abs(src).max())) ** 2:
        raise ValueError(
            "`src` points all coincide, so no similarity transform is defined. "
            f"Received: src={src.tolist()}"
        )
    covariance = dst_centred.T @ src_centred / len(src)
    u, singular_values, vt = np.linalg.svd(covariance)
    signs = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        signs[-1] = -1.0
    rotation = u @ np.diag(signs) @ vt
    scale = float(np.sum(singular_values * signs)) / src_variance
    translation = dst_mean - scale * rotation @ src_mean
    return np.concatenate([scale * rotation, translation[:, None]], axis=1)


def _as_size(image_size):
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    size = tuple(int(value) for value in image_size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(
            "`image_size` must be a positive int or a (height, width) pair. "
            f"Received: image_size={image_size!r}"
        )
    return size


def warp_affine(image, matrix, output_size, border_value=0):
    """Applies a 2x3 affine map to an image with bilinear interpolation (like `cv2.warpAffine`).

    Output pixel `(x, y)` takes the input value at `inverse(matrix) @ (x, y, 1)`; samples
    outside the input read `border_value`.

    Args:
        image: array (H, W, C) or (H, W), any numeric dtype.
        matrix: array-like (2, 3). Maps input coordinates to output coordinates.
        output_size: int or `(height, width)`. Size of the result.
        border_value: number. Value outside the input. Defaults to `0`.

    Returns:
        array (height, width, C) or (height, width) of the input dtype (uint8 is rounded).

    Example:
        ```python
        crop = keras_face.data.warp_affine(photo, matrix, 112)
        ```
    """
    image = np.asarray(image)
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3):
        raise ValueError(f"`matrix` must have shape (2, 3). Received: shape={matrix.shape}")
    if image.ndim not in (2, 3):
        raise ValueError(f"`image` must be (H, W) or (H, W, C). Received: shape={image.shape}")
    height, width = _as_size(output_size)
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    try:
        inverse = np.linalg.inv(full)[:2]
    except np.linalg.LinAlgError:
        raise ValueError(
            f"`matrix` is not invertible. Received: matrix={matrix.tolist()}"
        ) from None

    pixels = image.astype(np.float64)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    in_height, in_width = pixels.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    source_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    source_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0 = np.floor(source_x).astype(np.int64)
    y0 = np.floor(source_y).astype(np.int64)
    fx = (source_x - x0)[..., None]
    fy = (source_y - y0)[..., None]

    def sample(x, y):
        inside = (x >= 0) & (x < in_width) & (y >= 0) & (y < in_height)
        values = pixels[np.clip(y, 0, in_height - 1), np.clip(x, 0, in_width - 1)]
        return np.where(inside[..., None], values, float(border_value))

    result = (
        sample(x0, y0) * (1 - fx) * (1 - fy)
        + sample(x0 + 1, y0) * fx * (1 - fy)
        + sample(x0, y0 + 1) * (1 - fx) * fy
        + sample(x0 + 1, y0 + 1) * fx * fy
    )
    if image.ndim == 2:
        result = result[..., 0]
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.round(result), info.min, info.max).astype(image.dtype)
    return result.astype(image.dtype)


def arcface_template(image_size=112):
    """Returns the ArcFace 5-point template for a crop of `image_size`.

    The 112x112 template is scaled by `height / 112` and shifted horizontally by
    `(width - height) / 2`, which gives insightface's templates for 112x112, 128x128 ...
    and the 112x96 crop of SphereFace/CosFace (x - 8).

    Args:
        image_size: int or `(height, width)`. Crop size. Defaults to `112`.

    Returns:
        float64 array (5, 2) of `(x, y)` points.

    Example:
        ```python
        template = keras_face.data.arcface_template(224)
        ```
    """
    height, width = _as_size(image_size)
    return ARCFACE_TEMPLATE * (height / 112.0) + np.array([(width - height) / 2.0, 0.0])


def align_face(image, landmarks, image_size=112, template=None, border_value=0):
    """Aligns a face to the ArcFace template from its five landmarks.

    Estimates the similarity transform from `landmarks` to the template
    (`estimate_similarity_transform`) and warps the image with it (`warp_affine`), giving the
    crops insightface models are trained on.

    Args:
        image: array (H, W, 3) (or (H, W)), typically uint8 RGB.
        landmarks: array-like (5, 2). `(x, y)` of left eye, right eye, nose tip, left and
            right mouth corners in `image` pixels.
        image_size: int or `(height, width)`. Output size. Defaults to `112`.
        template: array-like (5, 2) or `None`. Target points; `None` uses
            `arcface_template(image_size)`. Defaults to `None`.
        border_value: number. Value for pixels from outside the photo. Defaults to `0`.

    Returns:
        array (height, width, 3) of the input dtype.

    Example:
        ```python
        crop = keras_face.data.align_face(photo, landmarks)  # (112, 112, 3) uint8
        ```

    References:
        - [Deng et al., 2019](https://arxiv.org/abs/1801.07698)
        - [Umeyama, 1991](https://doi.org/10.1109/34.88573)
    """
    landmarks = _as_points(landmarks, "landmarks")
    target = arcface_template(image_size) if template is None else _as_points(template, "template")
    if target.shape != landmarks.shape:
        raise ValueError(
            "`landmarks` and `template` must have the same shape. Received: "
            f"landmarks.shape={landmarks.shape}, template.shape={target.shape}"
        )
    matrix = estimate_similarity_transform(landmarks, target)
    return warp_affine(image, matrix, image_size, border_value=border_value)
