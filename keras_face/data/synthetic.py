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
"""

import contextlib
import dataclasses
import functools
import io
import math
import os

import numpy as np

from keras_face.data.alignment import ARCFACE_TEMPLATE

# The 112x112 ArcFace template (eyes, nose tip, mouth corners) is the canonical frame.
_TEMPLATE = ARCFACE_TEMPLATE.astype(np.float32)
# Canonical canvas (the template's frame) and the centre of the pose jitter in it.
CANVAS_SIZE = 112.0
_POSE_CENTRE = (56.0, 62.0)

_NUM_IDENTITY_UNIFORMS = 80
_NUM_IMAGE_UNIFORMS = 96

# Palettes (RGB) of the discrete appearance traits, with their probabilities.
_HAIR_COLOURS = np.array(
    [[22, 18, 17], [58, 40, 30], [105, 72, 45], [196, 165, 110], [150, 72, 38], [168, 166, 160]],
    dtype=np.float32,
)
_HAIR_PROBABILITIES = np.array([0.3, 0.25, 0.15, 0.12, 0.06, 0.12])
_IRIS_COLOURS = np.array(
    [[52, 30, 18], [105, 66, 34], [128, 108, 58], [78, 118, 78], [70, 110, 168], [118, 128, 138]],
    dtype=np.float32,
)
_IRIS_PROBABILITIES = np.array([0.3, 0.25, 0.12, 0.1, 0.15, 0.08])
_FRAME_COLOURS = np.array(
    [[20, 20, 22], [90, 60, 40], [175, 175, 180], [140, 30, 40], [30, 50, 120]], dtype=np.float32
)
_MASK_COLOURS = np.array([[236, 236, 236], [150, 190, 215], [40, 40, 46]], dtype=np.float32)
_SKIN_LIGHT = np.array([238.0, 206.0, 182.0], dtype=np.float32)
_SKIN_DARK = np.array([88.0, 58.0, 44.0], dtype=np.float32)
_LIP_RED = np.array([172.0, 62.0, 72.0], dtype=np.float32)


class _Columns:
    """Hands out the columns of a uniform matrix in a fixed order."""

    def __init__(self, uniforms):
        self.uniforms = uniforms
        self.index = 0

    def uniform(self, low=0.0, high=1.0):
        column = self.uniforms[:, self.index]
        self.index += 1
        return (low + (high - low) * column).astype(np.float32)

    def normal(self, mean=0.0, std=1.0):
        # Box-Muller on two uniform columns (keeps every draw a uniform column).
        first = np.maximum(self.uniforms[:, self.index], 1e-12)
        second = self.uniforms[:, self.index + 1]
        self.index += 2
        value = np.sqrt(-2.0 * np.log(first)) * np.cos(2.0 * math.pi * second)
        return (mean + std * value).astype(np.float32)

    def choice(self, probabilities):
        column = self.uniforms[:, self.index]
        self.index += 1
        edges = np.cumsum(probabilities) / np.sum(probabilities)
        return np.minimum(np.searchsorted(edges, column, side="right"), len(probabilities) - 1)


def _palette(columns, colours, probabilities, jitter):
    index = columns.choice(probabilities)
    noise = np.stack([columns.uniform(-jitter, jitter) for _ in range(3)], axis=1)
    return np.clip(colours[index] + noise, 0, 255).astype(np.float32)


def sample_identity_parameters(identities, seed=0):
    """Draw the fixed appearance of each identity.

    Args:
        identities: int array. Global identity ids (identity `k` always gets the same face
            for the same seed).
        seed: int. Global seed. Defaults to `0`.

    Returns:
        dict of float32 / int arrays with one row per identity (geometry in pixels of the
        112x112 canonical face, colours in RGB 0..255; `beard` is 0 none, 1 full,
        2 moustache, 3 goatee).

    Example:
        ```python
        params = keras_face.data.synthetic.sample_identity_parameters([0, 1, 2])
        ```
    """
    identities = np.asarray(identities, dtype=np.int64).reshape(-1)
    uniforms = np.stack(
        [
            np.random.default_rng([int(seed), int(identity), 0]).random(_NUM_IDENTITY_UNIFORMS)
            for identity in identities
        ]
    ) if identities.size else np.zeros((0, _NUM_IDENTITY_UNIFORMS))
    c = _Columns(uniforms)
    p = {}
    p["face_rx"] = c.uniform(33.5, 41.5)
    p["face_ry_top"] = c.uniform(47.0, 56.0)
    p["face_ry_bottom"] = c.uniform(44.0, 53.0)
    p["face_jaw"] = c.uniform(-0.15, 0.4)
    p["face_cy"] = c.uniform(58.5, 63.0)
    tone = c.uniform() ** 1.15
    redness = c.uniform(-1.0, 1.0)
    yellowness = c.uniform(-1.0, 1.0)
    skin = _SKIN_LIGHT[None] + tone[:, None] * (_SKIN_DARK - _SKIN_LIGHT)[None]
    skin = skin + redness[:, None] * np.array([9.0, -4.0, -5.0]) + yellowness[:, None] * np.array([4.0, 4.0, -11.0])
    p["skin"] = np.clip(skin, 0, 255).astype(np.float32)
    p["hair_colour"] = _palette(c, _HAIR_COLOURS, _HAIR_PROBABILITIES, 16.0)
    p["bald"] = (c.uniform() < 0.08).astype(np.float32)
    p["hairline"] = c.uniform(15.0, 31.0)
    p["hairline_curve"] = c.uniform(-6.0, 10.0)
    p["hair_part"] = c.uniform(-12.0, 12.0)
    p["hairline_tilt"] = c.uniform(-0.15, 0.15)
    p["hair_volume"] = c.uniform(2.0, 11.0)
    p["hair_length"] = c.uniform() ** 1.3
    p["eye_dx"] = c.uniform(-2.6, 2.6)
    p["eye_dy"] = c.uniform(-2.5, 2.5)
    p["eye_w"] = c.uniform(5.4, 8.2)
    p["eye_h"] = c.uniform(2.2, 3.9)
    p["eye_tilt"] = c.uniform(-0.2, 0.2)
    p["iris_r"] = c.uniform(2.0, 3.1)
    p["iris_colour"] = _palette(c, _IRIS_COLOURS, _IRIS_PROBABILITIES, 14.0)
    p["brow_gap"] = c.uniform(6.5, 11.0)
    p["brow_thickness"] = c.uniform(1.6, 4.2)
    p["brow_half_length"] = c.uniform(6.5, 10.5)
    p["brow_arch"] = c.uniform(-0.5, 3.2)
    p["brow_tilt"] = c.uniform(-0.12, 0.2)
    p["brow_dx"] = c.uniform(-2.0, 2.0)
    p["brow_darkness"] = c.uniform(0.4, 1.0)
    p["nose_dy"] = c.uniform(-3.0, 3.0)
    p["nose_w"] = c.uniform(3.4, 7.0)
    p["nose_length"] = c.uniform(13.0, 22.0)
    p["nostril_r"] = c.uniform(1.1, 2.0)
    p["nose_bulb"] = c.uniform(2.5, 5.0)
    p["mouth_dy"] = c.uniform(-3.0, 3.0)
    p["mouth_w"] = c.uniform(10.5, 17.0)
    p["lip_upper"] = c.uniform(1.4, 4.0)
    p["lip_lower"] = c.uniform(2.0, 5.5)
    lip_mix = c.uniform(0.15, 0.6)
    p["lip_colour"] = (p["skin"] + lip_mix[:, None] * (_LIP_RED[None] - p["skin"])).astype(np.float32)
    p["ear_size"] = c.uniform(-1.5, 2.5)
    p["ear_dy"] = c.uniform(-3.0, 3.0)
    p["neck_w"] = c.uniform(13.0, 19.0)
    p["glasses"] = (c.uniform() < 0.25).astype(np.float32)
    p["glasses_w"] = c.uniform(9.0, 12.5)
    p["glasses_h"] = c.uniform(6.5, 9.5)
    p["glasses_rim"] = c.uniform(0.8, 2.2)
    p["glasses_square"] = c.uniform(0.0, 1.0)
    p["glasses_colour"] = _palette(c, _FRAME_COLOURS, np.ones(len(_FRAME_COLOURS)), 12.0)
    p["glasses_tint"] = np.where(c.uniform() < 0.15, 0.82, 0.08).astype(np.float32)
    p["beard"] = np.where(c.uniform() < 0.2, 1 + c.choice([0.5, 0.3, 0.2]), 0).astype(np.int64)
    p["beard_density"] = c.uniform(0.55, 0.95)
    p["beard_top"] = c.uniform(-2.0, 4.0)
    p["mole"] = (c.uniform() < 0.35).astype(np.float32)
    p["mole_u"] = c.uniform(-24.0, 24.0)
    p["mole_v"] = c.uniform(-28.0, 30.0)
    p["mole_r"] = c.uniform(0.8, 1.8)
    return p


def sample_image_parameters(identities, num_images, seed=0, nuisance=1.0):
    """Draw the per-image nuisance of `num_images` images of each identity.

    Image `j` of identity `k` depends only on `(seed, k, j)`.

    Args:
        identities: int array. Global identity ids.
        num_images: int. Images per identity.
        seed: int. Global seed. Defaults to `0`.
        nuisance: float. Scale of every nuisance (pose, expression, lighting, colour
            cast, occlusion probability); `0` renders each identity's neutral face.
            Defaults to `1.0`.

    Returns:
        dict of arrays with `len(identities) * num_images` rows, identity-major
        (`occlusion` is 0 none, 1 face mask, 2 bar, 3 blob).

    Example:
        ```python
        nuisance = keras_face.data.synthetic.sample_image_parameters([0, 1], 4)
        ```
    """
    identities = np.asarray(identities, dtype=np.int64).reshape(-1)
    blocks = [
        np.random.default_rng([int(seed), int(identity), 1]).random((int(num_images), _NUM_IMAGE_UNIFORMS))
        for identity in identities
    ]
    uniforms = np.concatenate(blocks) if blocks else np.zeros((0, _NUM_IMAGE_UNIFORMS))
    k = float(nuisance)
    c = _Columns(uniforms)
    p = {}
    p["rotation"] = np.clip(c.normal(0.0, math.radians(4.0) * k), -0.3, 0.3)
    p["scale"] = np.exp(np.clip(c.normal(0.0, 0.04 * k), -0.15, 0.15)).astype(np.float32)
    p["shift_x"] = np.clip(c.normal(0.0, 1.3 * k), -5.0, 5.0)
    p["shift_y"] = np.clip(c.normal(0.0, 1.3 * k), -5.0, 5.0)
    p["yaw"] = np.clip(c.normal(0.0, 0.1 * k), -0.35, 0.35)
    p["pitch"] = np.clip(c.normal(0.0, 0.08 * k), -0.3, 0.3)
    p["smile"] = np.clip(c.normal(0.3 * k, 0.6 * k), -1.0, 1.6)
    p["mouth_open"] = np.clip(c.normal(-0.2, 0.7) * k, 0.0, 2.0) * 2.5
    p["brow_raise"] = np.clip(c.normal(0.0, 0.9 * k), -2.5, 3.0)
    eye_open = 1.0 - k * c.uniform(0.0, 0.4)
    blink = c.uniform() < 0.04 * k
    p["eye_open"] = np.where(blink, 0.12, eye_open).astype(np.float32)
    p["gaze_x"] = np.clip(c.normal(0.0, 0.6 * k), -1.5, 1.5)
    p["gaze_y"] = np.clip(c.normal(0.0, 0.4 * k), -1.0, 1.0)
    p["light_azimuth"] = c.uniform(0.0, 2.0 * math.pi)
    p["light_strength"] = c.uniform(0.0, 0.5) * min(k, 1.6)
    p["exposure"] = np.exp(np.clip(c.normal(0.0, 0.12 * k), -0.45, 0.45)).astype(np.float32)
    p["contrast"] = np.exp(np.clip(c.normal(0.0, 0.1 * k), -0.35, 0.35)).astype(np.float32)
    p["colour_gain"] = np.exp(np.clip(np.stack([c.normal(0.0, 0.05 * k) for _ in range(3)], 1), -0.2, 0.2)).astype(np.float32)
    p["background"] = np.stack([c.uniform(15.0, 240.0) for _ in range(3)], 1)
    p["background_gradient"] = np.stack([c.normal(0.0, 0.35) for _ in range(2)], 1)
    p["clothing"] = np.stack([c.uniform(10.0, 240.0) for _ in range(3)], 1)
    p["hairline_jitter"] = c.normal(0.0, 0.8 * k)
    p["hair_volume_jitter"] = c.normal(0.0, 0.8 * k)
    p["glasses_off"] = (c.uniform() < 0.15 * min(k, 1.0)).astype(np.float32)
    occluded = c.uniform() < 0.12 * k
    kind = 1 + c.choice([0.35, 0.4, 0.25])
    p["occlusion"] = np.where(occluded, kind, 0).astype(np.int64)
    p["occlusion_colour"] = np.stack([c.uniform(10.0, 245.0) for _ in range(3)], 1)
    mask_colour = _MASK_COLOURS[c.choice(np.ones(len(_MASK_COLOURS)))]
    p["occlusion_colour"] = np.where((p["occlusion"] == 1)[:, None], mask_colour, p["occlusion_colour"]).astype(np.float32)
    p["occlusion_u"] = c.uniform(-26.0, 26.0)
    p["occlusion_v"] = c.uniform(-30.0, 36.0)
    p["occlusion_angle"] = c.uniform(0.0, math.pi)
    p["occlusion_length"] = c.uniform(12.0, 45.0)
    p["occlusion_width"] = c.uniform(3.0, 9.0)
    p["mask_top"] = c.uniform(-4.0, 2.0)
    return p


def sample_quality(identities, num_images, seed=0, quality="realistic"):
    """Draw the quality level `q` of each image (0 pristine, 1 worst).

    Args:
        identities: int array. Global identity ids.
        num_images: int. Images per identity.
        seed: int. Global seed. Defaults to `0`.
        quality: `"realistic"` (Beta(1.2, 3): mostly good, a tail of bad images),
            `"uniform"` (U(0, 1)), `None` (all 0), a float (constant), a `(low, high)`
            pair (uniform in the range) or an array with one value per image.
            Defaults to `"realistic"`.

    Returns:
        float32 array with `len(identities) * num_images` values in [0, 1].

    Example:
        ```python
        q = keras_face.data.synthetic.sample_quality([0, 1], 10, quality="uniform")
        ```
    """
    identities = np.asarray(identities, dtype=np.int64).reshape(-1)
    total = identities.size * int(num_images)
    if quality is None:
        return np.zeros(total, dtype=np.float32)
    if isinstance(quality, str):
        if quality not in ("realistic", "uniform"):
            raise ValueError(
                "`quality` must be 'realistic', 'uniform', None, a float, a (low, high) "
                f"pair or an array. Received: quality={quality!r}"
            )
        values = []
        for identity in identities:
            rng = np.random.default_rng([int(seed), int(identity), 2])
            if quality == "uniform":
                values.append(rng.random(int(num_images)))
            else:
                values.append(rng.beta(1.2, 3.0, int(num_images)))
        values = np.concatenate(values) if values else np.zeros(0)
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    array = np.asarray(quality, dtype=np.float64)
    if array.ndim == 0:
        values = np.full(total, float(array))
    elif array.shape == (2,) and total != 2:
        low, high = float(array[0]), float(array[1])
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"A quality range must satisfy 0 <= low <= high <= 1. Received: quality={quality!r}")
        unit = sample_quality(identities, num_images, seed, "uniform")
        values = low + (high - low) * unit.astype(np.float64)
    elif array.shape == (total,):
        values = array
    else:
        raise ValueError(
            f"`quality` as an array needs one value per image ({total}). Received: quality.shape={array.shape}"
        )
    if np.any(values < 0.0) or np.any(values > 1.0):
        raise ValueError(f"Quality levels must lie in [0, 1]. Received: min={values.min()}, max={values.max()}")
    return values.astype(np.float32)


def _rows(parameters, index):
    return {name: value[index] for name, value in parameters.items()}


def _column(values):
    return np.asarray(values, dtype=np.float32)[:, None, None]


class _Canvas:
    """Per-batch pixel grids in the canonical frame and the planar image being composited.

    Shapes are drawn as signed distances in output pixels; a pixel's coverage is
    `clip(0.5 - distance, 0, 1)` (one-pixel anti-aliased edges). Each part is evaluated
    only inside the window of rows and columns that holds it in every image of the batch.
    """

    def __init__(self, batch, height, width):
        self.height = height
        self.width = width
        cx, cy = _POSE_CENTRE
        # Pixel centres in the 112-unit canonical frame.
        xs = (np.arange(width, dtype=np.float32) + 0.5) * (CANVAS_SIZE / width) - 0.5
        ys = (np.arange(height, dtype=np.float32) + 0.5) * (CANVAS_SIZE / height) - 0.5
        self.xs, self.ys = xs, ys
        cos = np.cos(batch["rotation"]).astype(np.float32)
        sin = np.sin(batch["rotation"]).astype(np.float32)
        scale = batch["scale"].astype(np.float32)
        shift_x = batch["shift_x"].astype(np.float32)
        shift_y = batch["shift_y"].astype(np.float32)
        self.forward = (cos * scale, sin * scale, shift_x, shift_y)
        # Inverse similarity, canonical = R(-theta) (p - centre - shift) / scale + centre,
        # is affine in the pixel's x and y: one broadcast addition per coordinate.
        x = xs[None, :] - cx - shift_x[:, None]
        y = ys[None, :] - cy - shift_y[:, None]
        inverse = (1.0 / scale)[:, None]
        self.u = ((cos[:, None] * x * inverse + cx)[:, None, :] + (sin[:, None] * y * inverse)[:, :, None])
        self.v = ((-sin[:, None] * x * inverse)[:, None, :] + (cos[:, None] * y * inverse + cy)[:, :, None])
        # Output pixels per canonical pixel.
        self.pixels = (scale * (width / CANVAS_SIZE)).astype(np.float32)
        # Planar (3, B, H, W); the background fills every pixel first.
        self.image = np.empty((3, len(scale), height, width), dtype=np.float32)
        self.foreground = np.zeros((len(scale), height, width), dtype=np.float32)
        self.face_distance = None

    def to_pixels(self, points_u, points_v, index=None):
        """Canonical points `(B, K)` -> output pixel coordinates `(x, y)`, each `(B, K)`."""
        forward = self.forward if index is None else tuple(value[index] for value in self.forward)
        a, b, tx, ty = (value[:, None] for value in forward)
        cx, cy = _POSE_CENTRE
        du = points_u - cx
        dv = points_v - cy
        x = a * du - b * dv + cx + tx
        y = b * du + a * dv + cy + ty
        return (x + 0.5) * (self.width / CANVAS_SIZE) - 0.5, (y + 0.5) * (self.height / CANVAS_SIZE) - 0.5

    def window(self, u_low, u_high, v_low, v_high, index=None):
        """Row and column slices holding a canonical box (per-image bounds) in every image.

        `index` selects the images the bounds belong to (default: all of them).
        """
        corners_u = np.stack([u_low, u_high, u_low, u_high], axis=1)
        corners_v = np.stack([v_low, v_low, v_high, v_high], axis=1)
        x, y = self.to_pixels(corners_u, corners_v, index)
        top = int(max(math.floor(float(np.min(y))) - 2, 0))
        bottom = int(min(math.ceil(float(np.max(y))) + 3, self.height))
        left = int(max(math.floor(float(np.min(x))) - 2, 0))
        right = int(min(math.ceil(float(np.max(x))) + 3, self.width))
        if bottom <= top or right <= left:
            return None
        return slice(top, bottom), slice(left, right)

    def offsets(self, window, centre_u, centre_v):
        """`u - centre_u`, `v - centre_v` inside a window (centres are per image)."""
        rows, cols = window
        return self.u[:, rows, cols] - _column(centre_u), self.v[:, rows, cols] - _column(centre_v)

    def paint(self, window, coverage, colour):
        """Composite `colour` (B, 3) with `coverage` (B, h, w) inside `window`."""
        rows, cols = window
        colour = np.asarray(colour, dtype=np.float32)
        for channel in range(3):
            region = self.image[channel, :, rows, cols]
            difference = _column(colour[:, channel]) - region
            difference *= coverage
            region += difference


def _coverage(distance):
    """Anti-aliased coverage from a signed distance in output pixels (consumes `distance`)."""
    np.subtract(0.5, distance, out=distance)
    return np.clip(distance, 0.0, 1.0, out=distance)


def _ellipse_distance(du, dv, rx, ry, pixels):
    """Signed distance (output pixels, negative inside) to axis-aligned ellipses.

    `(|(du / rx, dv / ry)| - 1) * sqrt(rx * ry)`: exact for circles, within a factor
    `sqrt(rx / ry)` elsewhere, which only widens or narrows the anti-aliasing ramp.
    """
    rx = np.asarray(rx, dtype=np.float32)
    ry = np.asarray(ry, dtype=np.float32)
    nx = du * _column(np.broadcast_to(1.0 / rx, pixels.shape))
    ny = dv * _column(np.broadcast_to(1.0 / ry, pixels.shape))
    np.multiply(nx, nx, out=nx)
    np.multiply(ny, ny, out=ny)
    nx += ny
    np.sqrt(nx, out=nx)
    nx -= 1.0
    nx *= _column(np.broadcast_to(np.sqrt(rx * ry), pixels.shape) * pixels)
    return nx


def _rotate(du, dv, angle):
    cos = _column(np.cos(angle))
    sin = _column(np.sin(angle))
    return cos * du + sin * dv, cos * dv - sin * du


def _render_background(canvas, batch):
    # A muted colour with a linear gradient (walls, sky, studio backdrops).
    grey = batch["background"].mean(axis=1, keepdims=True)
    colour = (grey + 0.6 * (batch["background"] - grey)).astype(np.float32)
    gradient = batch["background_gradient"].astype(np.float32)
    direction = (gradient[:, 0, None] * (canvas.xs[None, :] - 56.0))[:, None, :] + (
        gradient[:, 1, None] * (canvas.ys[None, :] - 56.0)
    )[:, :, None]
    for channel in range(3):
        np.add(direction, _column(colour[:, channel]), out=canvas.image[channel])


def _face_geometry(identity, batch):
    """Per-image feature anchors in the canonical frame, with yaw/pitch parallax."""
    yaw, pitch = batch["yaw"], batch["pitch"]
    g = {}
    g["face_cx"] = 56.0 + 3.0 * yaw
    g["face_cy"] = identity["face_cy"] + 2.0 * pitch
    # Parts nearer the camera move more when the head turns (depth factors in pixels).
    g["eye_y"] = (_TEMPLATE[0, 1] + _TEMPLATE[1, 1]) / 2 + identity["eye_dy"] + 6.0 * pitch
    g["eye_left_x"] = _TEMPLATE[0, 0] - identity["eye_dx"] + 7.0 * yaw
    g["eye_right_x"] = _TEMPLATE[1, 0] + identity["eye_dx"] + 7.0 * yaw
    g["nose_x"] = _TEMPLATE[2, 0] + 14.0 * yaw
    g["nose_y"] = _TEMPLATE[2, 1] + identity["nose_dy"] + 10.0 * pitch
    g["mouth_x"] = 56.0 + 9.0 * yaw
    g["mouth_y"] = (_TEMPLATE[3, 1] + _TEMPLATE[4, 1]) / 2 + identity["mouth_dy"] + 8.0 * pitch
    return {name: np.asarray(value, dtype=np.float32) for name, value in g.items()}


def _render_hair_back(canvas, identity, batch, geometry):
    bald = identity["bald"] > 0
    rx = np.where(bald, identity["face_rx"] + 1.5, identity["face_rx"] + np.maximum(identity["hair_volume"] + 0.5 * batch["hair_volume_jitter"], 1.0))
    ry = (identity["face_ry_top"] + identity["hair_volume"]) * 1.25
    bottom = np.where(bald, 60.0, 52.0 + identity["hair_length"] * 66.0).astype(np.float32)
    cx = geometry["face_cx"] - 2.0 * batch["yaw"]
    cy = geometry["face_cy"]
    window = canvas.window(cx - rx, cx + rx, cy - ry, np.minimum(np.maximum(bottom, cy), cy + ry))
    if window is None:
        return
    du, dv = canvas.offsets(window, cx, cy)
    distance = _ellipse_distance(du, dv, rx, ry, canvas.pixels)
    np.maximum(distance, (dv - _column(bottom - cy)) * _column(canvas.pixels), out=distance)
    coverage = _coverage(distance)
    canvas.paint(window, coverage, identity["hair_colour"] * 0.85)
    rows, cols = window
    np.maximum(canvas.foreground[:, rows, cols], coverage, out=canvas.foreground[:, rows, cols])


def _render_body(canvas, identity, batch, geometry):
    # Shoulders (clothing) and the neck, mostly hidden under the chin.
    cx = geometry["face_cx"]
    window = canvas.window(cx - 80.0, cx + 80.0, np.full_like(cx, 98.0), np.full_like(cx, 150.0))
    if window is None:
        return
    du, dv = canvas.offsets(window, cx, np.full_like(cx, 154.0))
    shoulders = _ellipse_distance(du, dv, np.full_like(cx, 78.0), np.full_like(cx, 46.0), canvas.pixels)
    canvas.paint(window, _coverage(shoulders), batch["clothing"])
    neck = np.maximum(np.abs(du) - _column(identity["neck_w"]), _column(geometry["face_cy"] + 20.0 - 154.0) - dv)
    neck *= _column(canvas.pixels)
    canvas.paint(window, _coverage(neck), identity["skin"] * 0.8)


def _render_ears(canvas, identity, batch, geometry):
    for side in (-1.0, 1.0):
        cx = geometry["face_cx"] + side * (identity["face_rx"] - 1.5) - 2.5 * batch["yaw"]
        cy = geometry["eye_y"] + 9.0 + identity["ear_dy"]
        rx = 4.5 + identity["ear_size"] * 0.6
        ry = 8.5 + identity["ear_size"]
        window = canvas.window(cx - rx, cx + rx, cy - ry, cy + ry)
        if window is None:
            continue
        du, dv = canvas.offsets(window, cx, cy)
        distance = _ellipse_distance(du, dv, rx, ry, canvas.pixels)
        canvas.paint(window, _coverage(distance), identity["skin"] * 0.9)


def _face_distance(du, dv, identity, pixels):
    """Signed distance (output pixels) to the face outline; `du, dv` from the face centre."""
    lower = dv > 0
    inverse_ry = np.where(lower, _column(1.0 / identity["face_ry_bottom"]), _column(1.0 / identity["face_ry_top"]))
    ny = dv * inverse_ry
    ny *= ny
    # The jaw widens (square jaw, jaw > 0) or narrows (pointed chin) the lower half.
    narrowing = ny * _column(identity["face_jaw"])
    narrowing *= lower
    np.subtract(1.0, narrowing, out=narrowing)
    nx = du * _column(1.0 / identity["face_rx"])
    nx *= narrowing
    np.multiply(nx, nx, out=nx)
    nx += ny
    np.sqrt(nx, out=nx)
    nx -= 1.0
    nx *= _column(0.85 * np.minimum(identity["face_rx"], identity["face_ry_top"]) * pixels)
    return nx


def _render_face(canvas, identity, batch, geometry):
    cx, cy = geometry["face_cx"], geometry["face_cy"]
    rx = identity["face_rx"] * (1.0 + np.maximum(identity["face_jaw"], 0.0))
    window = canvas.window(cx - rx, cx + rx, cy - identity["face_ry_top"], cy + identity["face_ry_bottom"])
    du, dv = canvas.offsets(window, cx, cy)
    distance = _face_distance(du, dv, identity, canvas.pixels)
    # Kept (in canonical units of the window) for the beard and the mask.
    canvas.face_window = window
    canvas.face_distance = distance.copy()
    coverage = _coverage(distance)
    canvas.paint(window, coverage, identity["skin"])
    rows, cols = window
    np.maximum(canvas.foreground[:, rows, cols], coverage, out=canvas.foreground[:, rows, cols])


def _face_distance_in(canvas, window):
    """The stored face distance restricted to `window` (which must lie inside the face window)."""
    face_rows, face_cols = canvas.face_window
    rows, cols = window
    top = max(rows.start, face_rows.start)
    left = max(cols.start, face_cols.start)
    bottom = min(rows.stop, face_rows.stop)
    right = min(cols.stop, face_cols.stop)
    if bottom <= top or right <= left:
        return None, None
    inner = (slice(top, bottom), slice(left, right))
    local = (slice(top - face_rows.start, bottom - face_rows.start), slice(left - face_cols.start, right - face_cols.start))
    return inner, canvas.face_distance[:, local[0], local[1]]


def _render_mole(canvas, identity, batch, geometry):
    index = np.nonzero(identity["mole"] > 0)[0]
    if index.size == 0:
        return
    cu = geometry["face_cx"] + identity["mole_u"] + 5.0 * batch["yaw"]
    cv = geometry["face_cy"] + identity["mole_v"]
    r = identity["mole_r"]
    window = canvas.window(cu[index] - r[index], cu[index] + r[index], cv[index] - r[index], cv[index] + r[index], index)
    if window is None:
        return
    du, dv = canvas.offsets(window, cu, cv)
    coverage = _coverage(_ellipse_distance(du, dv, r, r, canvas.pixels))
    coverage *= _column(identity["mole"] * 0.85)
    canvas.paint(window, coverage, identity["skin"] * 0.45)


def _render_beard(canvas, identity, batch, geometry):
    kind = identity["beard"]
    if not np.any(kind > 0):
        return
    index = kind > 0
    cx, cy = geometry["face_cx"], geometry["face_cy"]
    # A full beard climbs the cheeks: its top is 0.012 du^2 above the mouth line.
    reach = identity["face_rx"] + 4.0
    top_edge = np.minimum(geometry["mouth_y"] + identity["beard_top"] - 8.0 - 0.012 * reach * reach, geometry["mouth_y"] - 9.0)
    window = canvas.window(
        (cx - reach)[index],
        (cx + reach)[index],
        top_edge[index],
        (cy + identity["face_ry_bottom"] + 2.0)[index],
        np.nonzero(index)[0],
    )
    if window is None:
        return
    window, face = _face_distance_in(canvas, window)
    if window is None:
        return
    du, dv = canvas.offsets(window, geometry["mouth_x"], geometry["mouth_y"])
    pixels = _column(canvas.pixels)
    top = _column(identity["beard_top"])
    full = np.maximum(face, (top - 8.0 - dv - 0.012 * du * du) * pixels)
    moustache = np.maximum(
        np.maximum(np.abs(du) - _column(identity["mouth_w"] + 2.0), dv + _column(identity["lip_upper"]) - 1.0),
        -dv - 7.5 + top * 0.5,
    )
    moustache *= pixels
    goatee = np.maximum(np.maximum(face, (np.abs(du) - 9.0) * pixels), (3.0 - dv) * pixels)
    np.minimum(goatee, moustache, out=goatee)
    distance = np.where(_column(kind == 1), full, np.where(_column(kind == 2), moustache, goatee))
    coverage = _coverage(distance)
    coverage *= _column((kind > 0) * identity["beard_density"])
    canvas.paint(window, coverage, identity["hair_colour"] * 0.9)


def _render_nose(canvas, identity, batch, geometry):
    nx, ny = geometry["nose_x"], geometry["nose_y"]
    width = identity["nose_w"]
    window = canvas.window(nx - width - 4.0, nx + width + 4.0, ny - identity["nose_length"] - 1.0, ny + 5.0)
    if window is None:
        return
    du, dv = canvas.offsets(window, nx, ny)
    skin = identity["skin"]
    # Shadow along the bridge, on the side away from the light.
    side = (np.where(np.cos(batch["light_azimuth"]) > 0, -1.0, 1.0) * (batch["light_strength"] > 0.05)).astype(np.float32)
    half_length = identity["nose_length"] * 0.5
    bridge = _ellipse_distance(du - _column(side * 2.2), dv + _column(half_length), np.full_like(width, 1.3), half_length, canvas.pixels)
    coverage = _coverage(bridge)
    coverage *= _column(0.35 * np.abs(side))
    canvas.paint(window, coverage, skin * 0.72)
    bulb = _coverage(_ellipse_distance(du, dv + 0.5, width * 0.8, identity["nose_bulb"], canvas.pixels))
    bulb *= 0.45
    canvas.paint(window, bulb, skin * 0.82)
    for direction in (-1.0, 1.0):
        nostril = _ellipse_distance(
            du - _column(direction * width * 0.55), dv - 1.3, identity["nostril_r"], identity["nostril_r"] * 0.6, canvas.pixels
        )
        coverage = _coverage(nostril)
        coverage *= 0.9
        canvas.paint(window, coverage, skin * 0.38)


def _render_mouth(canvas, identity, batch, geometry):
    mx, my = geometry["mouth_x"], geometry["mouth_y"]
    half_width = identity["mouth_w"] * (1.0 + 0.06 * batch["smile"])
    window = canvas.window(
        mx - half_width - 2.0,
        mx + half_width + 2.0,
        my - identity["lip_upper"] - batch["mouth_open"] - 6.0,
        my + identity["lip_lower"] + batch["mouth_open"] + 3.0,
    )
    if window is None:
        return
    du, dv = canvas.offsets(window, mx, my)
    pixels = _column(canvas.pixels)
    x = du * _column(1.0 / half_width)
    body = np.clip(1.0 - x * x, 0.0, 1.0)
    root = np.sqrt(body)
    centre = -_column(2.6 * batch["smile"]) * x * x
    opening = _column(batch["mouth_open"] * 0.5) * body
    horizontal = np.abs(du) - _column(half_width)
    upper = centre - opening - _column(identity["lip_upper"]) * root
    lower = centre + opening + _column(identity["lip_lower"]) * root
    lips = np.maximum(np.maximum(upper - dv, dv - lower), horizontal)
    lips *= pixels
    canvas.paint(window, _coverage(lips), identity["lip_colour"])
    inner = np.maximum(np.maximum(centre - opening - dv, dv - centre - opening), horizontal + 1.0)
    inner *= pixels
    # A closed mouth still shows a dark line between the lips.
    line = np.maximum(np.abs(dv - centre) - 0.45, horizontal + 0.5)
    line *= pixels
    line = _coverage(line)
    line *= 0.7
    coverage = np.maximum(_coverage(inner), line)
    canvas.paint(window, coverage, identity["lip_colour"] * 0.35)
    if np.any(batch["mouth_open"] > 1.0):
        teeth = np.maximum(np.maximum(centre - opening - dv, dv - centre + 0.1 * opening), horizontal + 3.0)
        teeth *= pixels
        coverage = _coverage(teeth)
        coverage *= _column(batch["mouth_open"] > 1.0)
        canvas.paint(window, coverage, np.full_like(identity["skin"], 228.0))


def _render_eyes(canvas, identity, batch, geometry):
    ey = geometry["eye_y"]
    width = identity["eye_w"]
    height = np.maximum(identity["eye_h"] * batch["eye_open"], 0.3)
    white = np.full_like(identity["skin"], 236.0)
    black = np.full_like(identity["skin"], 18.0)
    for side, ex in ((-1.0, geometry["eye_left_x"]), (1.0, geometry["eye_right_x"])):
        window = canvas.window(ex - width - 1.0, ex + width + 1.0, ey - identity["eye_h"] - 2.0, ey + identity["eye_h"] + 2.0)
        if window is None:
            continue
        du, dv = canvas.offsets(window, ex, ey)
        du, dv = _rotate(du, dv, -side * identity["eye_tilt"])
        sclera = _ellipse_distance(du, dv, width, height, canvas.pixels)
        # Iris and pupil are clipped to the opening.
        outside = np.maximum(sclera, 0.0)
        lash = np.maximum(np.abs(sclera + 0.2) - 0.55, dv * _column(canvas.pixels))
        canvas.paint(window, _coverage(sclera), white)
        iris_du = du - _column(batch["gaze_x"])
        iris_dv = dv - _column(batch["gaze_y"])
        iris = np.maximum(_ellipse_distance(iris_du, iris_dv, identity["iris_r"], identity["iris_r"], canvas.pixels), outside)
        canvas.paint(window, _coverage(iris), identity["iris_colour"])
        pupil_r = identity["iris_r"] * 0.42
        pupil = np.maximum(_ellipse_distance(iris_du, iris_dv, pupil_r, pupil_r, canvas.pixels), outside)
        canvas.paint(window, _coverage(pupil), black)
        lash = _coverage(lash)
        lash *= 0.85
        canvas.paint(window, lash, identity["hair_colour"] * 0.5)


def _render_brows(canvas, identity, batch, geometry):
    for side, ex in ((-1.0, geometry["eye_left_x"]), (1.0, geometry["eye_right_x"])):
        bx = ex + side * identity["brow_dx"]
        by = geometry["eye_y"] - identity["brow_gap"] - batch["brow_raise"]
        half = identity["brow_half_length"]
        margin = 4.0 + identity["brow_thickness"]
        window = canvas.window(bx - half - 1.0, bx + half + 1.0, by - margin, by + margin)
        if window is None:
            continue
        du, dv = canvas.offsets(window, bx, by)
        # Mirrored local frame: positive `along` points to the temple.
        along = du * side
        t = along * _column(1.0 / half)
        centre = _column(identity["brow_arch"]) * t * t - _column(identity["brow_tilt"]) * along
        thickness = _column(identity["brow_thickness"] * 0.5) * (1.0 - 0.45 * np.clip(t, 0.0, 1.0) ** 2)
        distance = np.maximum(np.abs(dv - centre) - thickness, np.abs(along) - _column(half))
        distance *= _column(canvas.pixels)
        coverage = _coverage(distance)
        coverage *= 0.92
        canvas.paint(window, coverage, identity["hair_colour"] * identity["brow_darkness"][:, None])


def _render_hair_cap(canvas, identity, batch, geometry):
    has_cap = identity["bald"] <= 0
    if not np.any(has_cap):
        return
    cx, cy = geometry["face_cx"], geometry["face_cy"]
    volume = identity["hair_volume"] + batch["hair_volume_jitter"] * 0.5
    rx = identity["face_rx"] + volume
    ry = identity["face_ry_top"] + volume
    hairline = identity["hairline"] + batch["hairline_jitter"]
    # The hairline may come down the temples, never below the face centre.
    window = canvas.window(cx - rx, cx + rx, cy - ry, cy + 1.0)
    if window is None:
        return
    du, dv = canvas.offsets(window, cx, cy)
    outer = _ellipse_distance(du, dv, rx, ry, canvas.pixels)
    offset = (du - _column(identity["hair_part"])) * (1.0 / 30.0)
    # Hairline height (canonical y) along the forehead: curved, tilted, parted.
    line = _column(hairline - cy) + _column(identity["hairline_curve"]) * offset * offset - _column(identity["hairline_tilt"] * 2.0) * du
    np.minimum(line, 0.0, out=line)
    np.subtract(dv, line, out=line)
    line *= _column(canvas.pixels)
    np.maximum(outer, line, out=outer)
    coverage = _coverage(outer)
    coverage *= _column(has_cap)
    canvas.paint(window, coverage, identity["hair_colour"])


def _render_glasses(canvas, identity, batch, geometry):
    wearing = (identity["glasses"] > 0) & (batch["glasses_off"] <= 0)
    if not np.any(wearing):
        return
    index = np.nonzero(wearing)[0]
    ey = geometry["eye_y"] + 0.5
    width, height = identity["glasses_w"], identity["glasses_h"]
    rim = identity["glasses_rim"]
    square = _column(identity["glasses_square"])
    left, right = geometry["eye_left_x"], geometry["eye_right_x"]
    reach = identity["face_rx"] + 1.0
    window = canvas.window(
        (geometry["face_cx"] - reach)[index], (geometry["face_cx"] + reach)[index], (ey - height - 2.0)[index], (ey + height + 2.0)[index], index
    )
    if window is None:
        return
    rows, cols = window
    u = canvas.u[:, rows, cols]
    dv = canvas.v[:, rows, cols] - _column(ey)
    pixels = _column(canvas.pixels)
    abs_dv = np.abs(dv) * _column(1.0 / height)
    frame = None
    lens = None
    for ex in (left, right):
        nx = np.abs(u - _column(ex)) * _column(1.0 / width)
        # Between a round (square = 0) and a rectangular (square = 1) rim.
        radius = (1.0 - square) * np.sqrt(nx * nx + abs_dv * abs_dv) + square * np.maximum(nx, abs_dv)
        distance = (radius - 1.0) * _column(np.minimum(width, height))
        ring = np.abs(distance) - _column(rim * 0.5)
        frame = ring if frame is None else np.minimum(frame, ring)
        lens = distance if lens is None else np.minimum(lens, distance)
    middle = _column((left + right) / 2)
    from_centre = np.abs(u - _column(geometry["face_cx"]))
    bridge = np.maximum(np.abs(dv + 1.5) - _column(rim * 0.5), np.abs(u - middle) - _column((right - left) / 2 - width + 0.5))
    temples = np.maximum(
        np.abs(dv + 1.0) - _column(rim * 0.45),
        np.maximum(_column((right - left) / 2 + width - 1.0) - from_centre, from_centre - _column(reach)),
    )
    frame = np.minimum(np.minimum(frame, bridge), temples)
    lens *= pixels
    frame *= pixels
    show = _column(wearing)
    coverage = _coverage(lens)
    coverage *= show * _column(identity["glasses_tint"])
    canvas.paint(window, coverage, np.full_like(identity["skin"], 25.0))
    coverage = _coverage(frame)
    coverage *= show
    canvas.paint(window, coverage, identity["glasses_colour"])


def _apply_lighting(canvas, identity, batch, geometry):
    """Directional shading on the head, then exposure, colour cast and contrast."""
    # Linear in the canonical coordinates across the head: 1 + l . (u - c) / r.
    strength = batch["light_strength"]
    lx = np.cos(batch["light_azimuth"]) * strength / (identity["face_rx"] * 1.15)
    ly = np.sin(batch["light_azimuth"]) * strength / (identity["face_ry_top"] * 1.15)
    offset = -(lx * geometry["face_cx"] + ly * geometry["face_cy"])
    shade = canvas.u * _column(lx)
    shade += canvas.v * _column(ly)
    shade += _column(offset)
    np.clip(shade, -0.6, 0.6, out=shade)
    shade *= canvas.foreground
    shade += 1.0
    gain = batch["colour_gain"] * batch["exposure"][:, None] * batch["contrast"][:, None]
    contrast_offset = 128.0 * (1.0 - batch["contrast"])
    for channel in range(3):
        plane = canvas.image[channel]
        plane *= shade
        plane *= _column(gain[:, channel])
        plane += _column(contrast_offset)
    np.clip(canvas.image, 0.0, 255.0, out=canvas.image)


def _render_occlusion(canvas, identity, batch, geometry):
    kind = batch["occlusion"]
    if not np.any(kind > 0):
        return
    index = np.nonzero(kind > 0)[0]
    sub = _rows(batch, index)
    sub_identity = _rows(identity, index)
    sub_geometry = _rows(geometry, index)
    pixels = canvas.pixels[index]
    cx = sub_geometry["face_cx"] + sub["occlusion_u"]
    cy = sub_geometry["face_cy"] + sub["occlusion_v"]
    u = canvas.u[index]
    v = canvas.v[index]
    along, across = _rotate(u - _column(cx), v - _column(cy), sub["occlusion_angle"])
    bar = np.maximum(np.abs(along) - _column(sub["occlusion_length"]), np.abs(across) - _column(sub["occlusion_width"]))
    bar *= _column(pixels)
    blob = _ellipse_distance(along, across, sub["occlusion_length"] * 0.4 + 4.0, sub["occlusion_width"] * 1.6 + 3.0, pixels)
    mask_face = _face_distance(u - _column(sub_geometry["face_cx"]), v - _column(sub_geometry["face_cy"]), sub_identity, pixels)
    mask_face -= 1.5
    mask = np.maximum(mask_face, (_column(sub_geometry["nose_y"] - 5.0 + sub["mask_top"]) - v) * _column(pixels))
    distance = np.where(_column(sub["occlusion"] == 1), mask, np.where(_column(sub["occlusion"] == 2), bar, blob))
    coverage = _coverage(distance)
    for channel in range(3):
        region = canvas.image[channel, index]
        region += coverage * (_column(sub["occlusion_colour"][:, channel]) - region)
        canvas.image[channel, index] = region


def _landmarks(canvas, identity, batch, geometry):
    """The five landmarks (eyes, nose tip, mouth corners) in output pixels, (B, 5, 2)."""
    half_width = identity["mouth_w"] * (1.0 + 0.06 * batch["smile"])
    corner_y = geometry["mouth_y"] - 2.6 * batch["smile"]
    points_u = np.stack(
        [geometry["eye_left_x"], geometry["eye_right_x"], geometry["nose_x"], geometry["mouth_x"] - half_width, geometry["mouth_x"] + half_width],
        axis=1,
    )
    points_v = np.stack([geometry["eye_y"], geometry["eye_y"], geometry["nose_y"], corner_y, corner_y], axis=1)
    x, y = canvas.to_pixels(points_u, points_v)
    return np.stack([x, y], axis=-1).astype(np.float32)


# Degradation model, as a function of q.
def _low_resolution(quality, size):
    """Side of the low-resolution capture: full size at q = 0, a quarter at q = 1 (steps of 4 px)."""
    target = size / (1.0 + 3.0 * quality)
    return np.clip(np.round(target / 4.0) * 4.0, 4.0, size).astype(np.int64)


def _blur_sigma(quality):
    """Optical blur (output pixels at 112 px) before sampling."""
    return (1.6 * quality).astype(np.float32)


def _noise_std(quality):
    return (10.0 * quality**1.5).astype(np.float32)


def _jpeg_quality(quality):
    return np.clip(np.round(95.0 - 75.0 * quality), 5, 95).astype(np.int64)


@functools.lru_cache(maxsize=4096)
def _sampling_matrix(size, low_size, sigma):
    """(low_size, size) Gaussian-prefiltered resampling (rows sum to 1, edges renormalised).

    Only the taps within 4 sigma of each sample are evaluated (the rest are zero). Cached
    and read-only: callers round `sigma` to 0.01 px.
    """
    sigma = max(float(sigma), 1e-3)
    centres = (np.arange(low_size, dtype=np.float64) + 0.5) * (size / low_size) - 0.5
    radius = int(math.ceil(4.0 * sigma)) + 1
    first = np.floor(centres).astype(np.int64) - radius
    taps = first[:, None] + np.arange(2 * radius + 2)[None, :]
    valid = (taps >= 0) & (taps < size)
    weights = np.exp(-0.5 * ((taps - centres[:, None]) / sigma) ** 2) * valid
    weights /= weights.sum(axis=1, keepdims=True)
    matrix = np.zeros((low_size, size), dtype=np.float32)
    rows = np.broadcast_to(np.arange(low_size)[:, None], taps.shape)
    matrix[rows[valid], taps[valid]] = weights[valid]
    matrix.flags.writeable = False
    return matrix


@functools.lru_cache(maxsize=256)
def _upsampling_matrix(low_size, size):
    """(size, low_size) bilinear interpolation with half-pixel centres (edge clamped).

    Cached and read-only.
    """
    positions = (np.arange(size, dtype=np.float64) + 0.5) * (low_size / size) - 0.5
    positions = np.clip(positions, 0.0, low_size - 1)
    left = np.floor(positions).astype(np.int64)
    right = np.minimum(left + 1, low_size - 1)
    fraction = positions - left
    matrix = np.zeros((size, low_size), dtype=np.float64)
    rows = np.arange(size)
    np.add.at(matrix, (rows, left), 1.0 - fraction)
    np.add.at(matrix, (rows, right), fraction)
    matrix = matrix.astype(np.float32)
    matrix.flags.writeable = False
    return matrix


_NOISE_BANK_SIZE = 384


@functools.lru_cache(maxsize=1)
def _noise_bank():
    """A fixed field of unit Gaussian noise; images take seeded crops of it (fast)."""
    bank = np.random.default_rng(20240229).standard_normal((_NOISE_BANK_SIZE, _NOISE_BANK_SIZE, 3), dtype=np.float32)
    bank.flags.writeable = False
    return bank


def _noise_patch(seed, shape):
    """A `(h, w, 3)` crop of the noise bank at an offset drawn from `seed` (flipped by it too)."""
    height, width, _ = shape
    bank = _noise_bank()
    state = np.random.SeedSequence(seed).generate_state(3)
    top = int(state[0] % (_NOISE_BANK_SIZE - height + 1))
    left = int(state[1] % (_NOISE_BANK_SIZE - width + 1))
    patch = bank[top : top + height, left : left + width]
    if state[2] & 1:
        patch = patch[::-1]
    if state[2] & 2:
        patch = patch[:, ::-1]
    if state[2] & 4:
        patch = patch[:, :, ::-1]
    return patch


def _jpeg(image, quality):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def _degrade(images, quality, noise_seeds, jpeg):
    """Blur, down-scale, add noise, JPEG-compress and up-scale each image by its q.

    Args:
        images: float32 planar (3, B, H, W) in [0, 255].
        quality: float32 (B,).
        noise_seeds: list of seed sequences, one per image.
        jpeg: bool. Apply JPEG compression (where q >= 0.2).

    Returns:
        uint8 (B, H, W, 3).
    """
    _, batch, height, width = images.shape
    output = np.empty((batch, height, width, 3), dtype=np.uint8)
    clean = quality <= 0.0
    if np.all(clean):
        # Already clipped to [0, 255] by the lighting step; rounded half up.
        for channel in range(3):
            plane = images[channel]
            plane += 0.5
            output[..., channel] = plane
        return output
    if np.any(clean):
        output[clean] = (images[:, clean] + 0.5).astype(np.uint8).transpose(1, 2, 3, 0)
    degraded = np.nonzero(~clean)[0]
    if degraded.size == 0:
        return output
    scale = height / CANVAS_SIZE
    low_heights = _low_resolution(quality, height)
    for member in degraded.tolist():
        q = float(quality[member])
        low_h = int(low_heights[member])
        low_w = int(np.clip(round(low_h * width / height), 4, width))
        # Prefilter: optical blur plus the anti-aliasing of the down-scaling.
        factor = height / low_h
        sigma = math.sqrt((float(_blur_sigma(np.float32(q))) * scale) ** 2 + (0.5 * factor if factor > 1.0 else 0.0) ** 2 + 0.05)
        rows = _sampling_matrix(height, low_h, round(sigma, 2))
        cols = _sampling_matrix(width, low_w, round(sigma * width / height, 2))
        # Two plain 2-D products per image (BLAS), channels kept side by side.
        planes = images[:, member].reshape(3 * height, width) @ cols.T  # (3H, w)
        planes = planes.reshape(3, height, low_w).transpose(1, 0, 2).reshape(height, 3 * low_w)
        low = (rows @ planes).reshape(low_h, 3, low_w).transpose(0, 2, 1)  # (h, w, 3)
        noise = float(_noise_std(np.float32(q)))
        if noise > 0.25:
            low = low + noise * _noise_patch(noise_seeds[member], low.shape)
        low = np.clip(np.rint(low), 0.0, 255.0).astype(np.uint8)
        if jpeg and q >= 0.2:
            low = _jpeg(low, int(_jpeg_quality(np.float32(q))))
        if low_h == height and low_w == width:
            output[member] = low
            continue
        up_rows = _upsampling_matrix(low_h, height)
        up_cols = _upsampling_matrix(low_w, width)
        restored = up_rows @ low.astype(np.float32).reshape(low_h, low_w * 3)  # (H, w*3)
        restored = restored.reshape(height, low_w, 3).transpose(0, 2, 1).reshape(height * 3, low_w) @ up_cols.T
        restored = restored.reshape(height, 3, width).transpose(0, 2, 1)
        output[member] = np.clip(np.rint(restored), 0, 255).astype(np.uint8)
    return output


def render_faces(identity_parameters, image_parameters, quality, image_size=112, noise_seeds=None, jpeg=True):
    """Render images from per-image identity and nuisance parameters.

    Args:
        identity_parameters: dict of arrays with one row per image (an identity's row
            of `sample_identity_parameters` repeated for each of its images).
        image_parameters: dict of arrays from `sample_image_parameters`, one row per image.
        quality: float array `(B,)` of quality levels in [0, 1].
        image_size: int or `(height, width)`. Defaults to `112`.
        noise_seeds: list of `B` seeds (ints or sequences) for the sensor noise.
            Defaults to `None` (seeds `0 .. B-1`).
        jpeg: bool. JPEG-compress images with `q >= 0.2` at quality `95 - 75 q`.
            Defaults to `True`.

    Returns:
        `(images, landmarks)`: uint8 `(B, H, W, 3)` and float32 `(B, 5, 2)` (x, y).

    Example:
        ```python
        faces = keras_face.data.synthetic_faces(1, 1)
        images, landmarks = keras_face.data.synthetic.render_faces(
            faces.image_identity_parameters(), faces.image_parameters, [0.5])
        ```
    """
    height, width = _image_size(image_size)
    quality = np.asarray(quality, dtype=np.float32).reshape(-1)
    batch = quality.size
    if noise_seeds is None:
        noise_seeds = list(range(batch))
    identity = {name: np.asarray(value) for name, value in identity_parameters.items()}
    nuisance = {name: np.asarray(value) for name, value in image_parameters.items()}
    canvas = _Canvas(nuisance, height, width)
    geometry = _face_geometry(identity, nuisance)
    _render_background(canvas, nuisance)
    _render_hair_back(canvas, identity, nuisance, geometry)
    _render_body(canvas, identity, nuisance, geometry)
    _render_ears(canvas, identity, nuisance, geometry)
    _render_face(canvas, identity, nuisance, geometry)
    _render_mole(canvas, identity, nuisance, geometry)
    _render_beard(canvas, identity, nuisance, geometry)
    _render_nose(canvas, identity, nuisance, geometry)
    _render_mouth(canvas, identity, nuisance, geometry)
    _render_eyes(canvas, identity, nuisance, geometry)
    _render_brows(canvas, identity, nuisance, geometry)
    _render_hair_cap(canvas, identity, nuisance, geometry)
    _render_glasses(canvas, identity, nuisance, geometry)
    _render_occlusion(canvas, identity, nuisance, geometry)
    _apply_lighting(canvas, identity, nuisance, geometry)
    landmarks = _landmarks(canvas, identity, nuisance, geometry)
    images = _degrade(canvas.image, quality, noise_seeds, jpeg)
    return images, landmarks


def _blas_single_thread():
    """A context manager limiting BLAS to one thread (`threadpoolctl`), or None if unavailable."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return lambda: threadpool_limits(limits=1, user_api="blas")


def _render_in_batches(identity_parameters, labels, image_parameters, quality, size, noise_seeds, jpeg, batch_size, num_workers, verbose):
    """Render every image in batches, on `num_workers` threads (NumPy releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    height, width = size
    total = int(quality.shape[0])
    images = np.empty((total, height, width, 3), dtype=np.uint8)
    landmarks = np.empty((total, 5, 2), dtype=np.float32)
    batch_size = max(int(batch_size), 1)
    limit_blas = _blas_single_thread()
    if num_workers is None:
        # Threads only where BLAS can be kept single-threaded: its own worker threads,
        # spinning next to ours on small products, would be slower than one thread.
        num_workers = min(os.cpu_count() or 1, 8) if limit_blas is not None else 1
    num_workers = max(int(num_workers), 1)

    def render(start):
        stop = min(start + batch_size, total)
        identity = {name: value[labels[start:stop]] for name, value in identity_parameters.items()}
        nuisance = {name: value[start:stop] for name, value in image_parameters.items()}
        images[start:stop], landmarks[start:stop] = render_faces(
            identity, nuisance, quality[start:stop], (height, width), noise_seeds[start:stop], jpeg
        )
        return stop - start

    starts = range(0, total, batch_size)
    blas_context = limit_blas() if limit_blas is not None else contextlib.nullcontext()
    with blas_context, tqdm(total=total, desc="rendering faces", unit="img", disable=not verbose) as progress:
        if num_workers == 1 or len(starts) == 1:
            for start in starts:
                progress.update(render(start))
        else:
            with ThreadPoolExecutor(max_workers=num_workers) as pool:
                for count in pool.map(render, starts):
                    progress.update(count)
    return images, landmarks


def _image_size(image_size):
    if isinstance(image_size, (int, np.integer)):
        height = width = int(image_size)
    else:
        try:
            height, width = (int(value) for value in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"`image_size` must be an int or (height, width). Received: image_size={image_size!r}") from None
    if height < 16 or width < 16:
        raise ValueError(f"`image_size` must be at least 16 pixels. Received: image_size={image_size!r}")
    return height, width


@dataclasses.dataclass
class SyntheticFaces:
    """Images of synthetic identities with their labels, quality levels and parameters.

    Attributes:
        images: uint8 array `(N, H, W, 3)`, RGB, identity-major order.
        labels: int32 array `(N,)`, identity index in `[0, num_identities)`.
        quality: float32 array `(N,)`, degradation level in [0, 1] (0 is pristine).
        identities: int64 array `(N,)`, global identity id (`identity_offset + label`).
        landmarks: float32 array `(N, 5, 2)`, the five landmarks (x, y) in pixels.
        identity_parameters: dict of arrays, one row per identity (see
            `sample_identity_parameters`).
        image_parameters: dict of arrays, one row per image (see
            `sample_image_parameters`).
        seed: int. The seed used.
        jpeg: bool. Whether JPEG compression was applied.

    Example:
        ```python
        faces = keras_face.data.synthetic_faces(num_identities=100, images_per_identity=20)
        faces.to_folder("synthetic_train")
        ```
    """

    images: np.ndarray
    labels: np.ndarray
    quality: np.ndarray
    identities: np.ndarray
    landmarks: np.ndarray
    identity_parameters: dict
    image_parameters: dict
    seed: int = 0
    jpeg: bool = True

    def __len__(self):
        return int(self.images.shape[0])

    @property
    def num_identities(self):
        """Number of distinct identities."""
        return int(self.identity_parameters["face_rx"].shape[0])

    def image_identity_parameters(self):
        """Identity parameters repeated per image (rows aligned with `images`)."""
        return {name: value[self.labels] for name, value in self.identity_parameters.items()}

    def noise_seeds(self):
        """The per-image seeds of the sensor noise."""
        counts = np.zeros(self.num_identities, dtype=np.int64)
        seeds = []
        for label, identity in zip(self.labels.tolist(), self.identities.tolist()):
            seeds.append([int(self.seed), int(identity), 3, int(counts[label])])
            counts[label] += 1
        return seeds

    def with_quality(self, quality, indices=None):
        """Re-render images with other quality levels and everything else unchanged.

        Args:
            quality: float or float array, one level per selected image.
            indices: int array of the images to re-render (repeats allowed).
                Defaults to all images.

        Returns:
            A new `SyntheticFaces` holding the selected images.

        Example:
            ```python
            faces = keras_face.data.synthetic_faces(1, 1)
            ladder = faces.with_quality(np.linspace(0, 1, 6), indices=[0] * 6)
            ```
        """
        indices = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        quality = np.broadcast_to(np.asarray(quality, dtype=np.float32), indices.shape).copy()
        if np.any(quality < 0.0) or np.any(quality > 1.0):
            raise ValueError(f"Quality levels must lie in [0, 1]. Received: min={quality.min()}, max={quality.max()}")
        nuisance = {name: value[indices] for name, value in self.image_parameters.items()}
        seeds = self.noise_seeds()
        images, landmarks = _render_in_batches(
            self.identity_parameters,
            self.labels[indices],
            nuisance,
            quality,
            self.images.shape[1:3],
            [seeds[i] for i in indices],
            self.jpeg,
            batch_size=32,
            num_workers=None,
            verbose=False,
        )
        return SyntheticFaces(
            images=images,
            labels=self.labels[indices].copy(),
            quality=quality,
            identities=self.identities[indices].copy(),
            landmarks=landmarks,
            identity_parameters=self.identity_parameters,
            image_parameters=nuisance,
            seed=self.seed,
            jpeg=self.jpeg,
        )

    def to_folder(self, root, image_format="png", progress=True):
        """Write one sub-folder per identity (`root/00000/...`) with `write_image_folder`.

        Args:
            root: str. Output folder (created).
            image_format: str. `"png"` (lossless) or `"jpeg"`. Defaults to `"png"`.
            progress: bool. Show a progress bar. Defaults to `True`.

        Returns:
            list of the written file paths, in image order.

        Example:
            ```python
            keras_face.data.synthetic_faces(10, 5).to_folder("synthetic_folder")
            ```
        """
        from keras_face.data import write_image_folder

        return write_image_folder(root, self.images, self.labels, image_format=image_format, progress=progress)

    def to_recordio(self, path, **kwargs):
        """Write an insightface RecordIO pack (`.rec`, `.idx`, `property`) with `write_recordio`.

        Args:
            path: str. The `.rec` path (the `.idx` and `property` go beside it).
            **kwargs: passed to `keras_face.data.write_recordio` (`image_format`,
                `quality`, `progress`, ...).

        Returns:
            The dict returned by `write_recordio`.

        Example:
            ```python
            keras_face.data.synthetic_faces(10, 5).to_recordio("synthetic/train.rec")
            ```
        """
        from keras_face.data import write_recordio

        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
        return write_recordio(path, zip(self.images, self.labels.tolist()), total=len(self), **kwargs)

    def to_bin(self, path, num_pairs, seed=0, **kwargs):
        """Write a verification `.bin` of pairs drawn from these images (`synthetic_pairs`).

        Args:
            path: str. The `.bin` path.
            num_pairs: int. Number of pairs (half genuine).
            seed: int. Seed of the pair sampling. Defaults to `0`.
            **kwargs: passed to `keras_face.data.write_bin` (`image_format`, `quality`, ...).

        Returns:
            str. `path`.

        Example:
            ```python
            keras_face.data.synthetic_faces(50, 6, identity_offset=10**6).to_bin("val.bin", 600)
            ```
        """
        from keras_face.data import write_bin

        images, issame = synthetic_pairs(self, num_pairs, seed=seed)
        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
        return write_bin(path, images, issame, **kwargs)


def synthetic_faces(
    num_identities,
    images_per_identity,
    seed=0,
    image_size=112,
    quality="realistic",
    identity_offset=0,
    nuisance=1.0,
    jpeg=True,
    batch_size=32,
    num_workers=None,
    verbose=False,
):
    """Render a set of synthetic face identities on the ArcFace 112x112 template.

    Args:
        num_identities: int. Number of identities.
        images_per_identity: int. Images of each identity.
        seed: int. Global seed; the same arguments always give the same images.
            Defaults to `0`.
        image_size: int or `(height, width)`. Output size; faces keep the template's
            relative geometry. Defaults to `112`.
        quality: quality levels: `"realistic"` (Beta(1.2, 3)), `"uniform"`, `None`
            (pristine), a float, a `(low, high)` range or an array with one value per
            image (see `sample_quality`). Defaults to `"realistic"`.
        identity_offset: int. Global id of the first identity; use a disjoint range
            (e.g. `10**6`) for held-out identities. Defaults to `0`.
        nuisance: float. Scale of the per-image variation (pose, expression, lighting,
            colour cast, occlusion). Defaults to `1.0`.
        jpeg: bool. JPEG artefacts for `q >= 0.2` (the slowest step). Defaults to `True`.
        batch_size: int. Images rendered at once (32 keeps the working set in cache).
            Defaults to `32`.
        num_workers: int. Rendering threads (the result does not depend on it).
            Defaults to `None`: the number of CPUs (at most 8) when `threadpoolctl`
            is installed to keep BLAS single-threaded meanwhile, else 1.
        verbose: bool. Show a progress bar. Defaults to `False`.

    Returns:
        A `keras_face.data.SyntheticFaces`.

    Example:
        ```python
        train = keras_face.data.synthetic_faces(200, 30, seed=0)
        test = keras_face.data.synthetic_faces(100, 10, seed=0, identity_offset=10**6)
        pairs, issame = keras_face.data.synthetic_pairs(test, num_pairs=1000, seed=1)
        ```
    """
    num_identities = int(num_identities)
    images_per_identity = int(images_per_identity)
    if num_identities < 1:
        raise ValueError(f"`num_identities` must be at least 1. Received: num_identities={num_identities}")
    if images_per_identity < 1:
        raise ValueError(f"`images_per_identity` must be at least 1. Received: images_per_identity={images_per_identity}")
    if nuisance < 0:
        raise ValueError(f"`nuisance` must be non-negative. Received: nuisance={nuisance}")
    height, width = _image_size(image_size)
    identities = np.arange(num_identities, dtype=np.int64) + int(identity_offset)
    identity_parameters = sample_identity_parameters(identities, seed)
    image_parameters = sample_image_parameters(identities, images_per_identity, seed, nuisance)
    quality_levels = sample_quality(identities, images_per_identity, seed, quality)
    labels = np.repeat(np.arange(num_identities, dtype=np.int32), images_per_identity)
    image_identities = identities[labels]
    positions = np.tile(np.arange(images_per_identity), num_identities)
    noise_seeds = [[int(seed), int(identity), 3, int(position)] for identity, position in zip(image_identities, positions)]
    images, landmarks = _render_in_batches(
        identity_parameters,
        labels,
        image_parameters,
        quality_levels,
        (height, width),
        noise_seeds,
        jpeg,
        batch_size,
        num_workers,
        verbose,
    )
    return SyntheticFaces(
        images=images,
        labels=labels,
        quality=quality_levels,
        identities=image_identities,
        landmarks=landmarks,
        identity_parameters=identity_parameters,
        image_parameters=image_parameters,
        seed=int(seed),
        jpeg=bool(jpeg),
    )


def _fold_sizes(num_pairs, n_folds):
    sizes = np.full(n_folds, num_pairs // n_folds, dtype=np.int64)
    sizes[: num_pairs % n_folds] += 1
    return sizes


def synthetic_pairs(faces, num_pairs, seed=0, n_folds=10, images_per_identity=10, identity_offset=10**6, **kwargs):
    """Verification pairs in insightface `.bin` order: `(images (2P, H, W, 3), issame (P,))`.

    As in LFW, the pairs come in `n_folds` contiguous blocks, each with its genuine pairs
    first and then its impostor pairs (half and half), so every fold of `verify` holds
    both kinds. A genuine pair is two different images of one identity, an impostor pair
    two images of two identities, drawn uniformly.

    Args:
        faces: a `SyntheticFaces` (e.g. of held-out identities), or an int: the number of
            identities to render first with `synthetic_faces(faces, images_per_identity,
            seed=seed, identity_offset=identity_offset, **kwargs)`.
        num_pairs: int. Number of pairs.
        seed: int. Seed of the sampling. Defaults to `0`.
        n_folds: int. Number of blocks. Defaults to `10`.
        images_per_identity: int. Images per identity when `faces` is an int.
            Defaults to `10`.
        identity_offset: int. First identity id when `faces` is an int (held out from
            training identities `0 ..`). Defaults to `1000000`.
        **kwargs: other arguments of `synthetic_faces` when `faces` is an int.

    Returns:
        `(images, issame)`: uint8 `(2P, H, W, 3)` in pair order and bool `(P,)`.

    Example:
        ```python
        images, issame = keras_face.data.synthetic_pairs(100, num_pairs=600, seed=1)
        result = keras_face.evaluation.verify(
            keras_face.evaluation.extract_embeddings(backbone, images), issame)
        ```
    """
    if isinstance(faces, (int, np.integer)):
        faces = synthetic_faces(int(faces), images_per_identity, seed=seed, identity_offset=identity_offset, **kwargs)
    if not isinstance(faces, SyntheticFaces):
        raise ValueError(f"`faces` must be a SyntheticFaces or an int. Received: faces={type(faces).__name__}")
    num_pairs = int(num_pairs)
    if num_pairs < 1:
        raise ValueError(f"`num_pairs` must be at least 1. Received: num_pairs={num_pairs}")
    by_label = {}
    for index, label in enumerate(faces.labels.tolist()):
        by_label.setdefault(label, []).append(index)
    labels = np.array(sorted(by_label))
    repeated = np.array([label for label in labels if len(by_label[label]) >= 2])
    if repeated.size == 0:
        raise ValueError("Genuine pairs need an identity with at least 2 images. Received: 1 image per identity")
    if labels.size < 2:
        raise ValueError(f"Impostor pairs need at least 2 identities. Received: {labels.size} identity")
    rng = np.random.default_rng([int(seed), 4])
    first = np.empty(num_pairs, dtype=np.int64)
    second = np.empty(num_pairs, dtype=np.int64)
    issame = np.zeros(num_pairs, dtype=bool)
    start = 0
    for size in _fold_sizes(num_pairs, max(min(int(n_folds), num_pairs), 1)):
        genuine = (int(size) + 1) // 2
        issame[start : start + genuine] = True
        start += int(size)
    for pair in range(num_pairs):
        if issame[pair]:
            label = repeated[rng.integers(repeated.size)]
            a, b = rng.choice(len(by_label[label]), 2, replace=False)
            first[pair] = by_label[label][a]
            second[pair] = by_label[label][b]
        else:
            a, b = rng.choice(labels.size, 2, replace=False)
            first[pair] = by_label[labels[a]][rng.integers(len(by_label[labels[a]]))]
            second[pair] = by_label[labels[b]][rng.integers(len(by_label[labels[b]]))]
    order = np.empty(2 * num_pairs, dtype=np.int64)
    order[0::2] = first
    order[1::2] = second
    return faces.images[order], issame
