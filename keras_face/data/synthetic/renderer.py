"""The rasteriser: the synthetic faces' parameters to a clean RGB image and its landmarks.

Faces are drawn on the 112x112 ArcFace template (eyes, nose tip and mouth corners sit on
the five reference landmarks, up to the identity's geometry and the pose jitter), with
NumPy over batches of images. Each part (hair, body, ears, face, mole, beard, nose, mouth,
eyes, brows, hair cap, glasses, occluder) is a signed-distance shape in the canonical frame,
composited front to back with one-pixel anti-aliased edges, then lit (`_apply_lighting`).

This module owns the canonical frame (`CANVAS_SIZE`), the per-batch canvas and the order
of the parts (`rasterise`). It draws no random numbers: everything comes from the
parameter arrays of `appearance.py`. Its output is a planar float image in [0, 255], which
`degradation.py` turns into the stored uint8 image.
"""

import math

import numpy as np

from keras_face.data.alignment import ARCFACE_TEMPLATE

# The 112x112 ArcFace template (eyes, nose tip, mouth corners) is the canonical frame.
_TEMPLATE = ARCFACE_TEMPLATE.astype(np.float32)
# Canonical canvas (the template's frame) and the centre of the pose jitter in it.
CANVAS_SIZE = 112.0
_POSE_CENTRE = (56.0, 62.0)


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
        self.u = (cos[:, None] * x * inverse + cx)[:, None, :] + (sin[:, None] * y * inverse)[
            :, :, None
        ]
        self.v = (-sin[:, None] * x * inverse)[:, None, :] + (cos[:, None] * y * inverse + cy)[
            :, :, None
        ]
        # Output pixels per canonical pixel.
        self.pixels = (scale * (width / CANVAS_SIZE)).astype(np.float32)
        # Planar (3, B, H, W); the background fills every pixel first.
        self.image = np.empty((3, len(scale), height, width), dtype=np.float32)
        self.foreground = np.zeros((len(scale), height, width), dtype=np.float32)
        # The face outline's window and signed distance inside it, kept by the face pass
        # (`remember_face`) for the parts clipped to the face (the beard).
        self.face_window = None
        self.face_distance = None
        # The occluder's coverage (B, H, W), written by `_render_occlusion`.
        self.occlusion = np.zeros((len(scale), height, width), dtype=np.float32)

    def remember_face(self, window, distance):
        """Keep the face outline's signed distance (a copy) inside its window."""
        self.face_window = window
        self.face_distance = distance.copy()

    def to_pixels(self, points_u, points_v, index=None):
        """Canonical points `(B, K)` -> output pixel coordinates `(x, y)`, each `(B, K)`."""
        forward = self.forward if index is None else tuple(value[index] for value in self.forward)
        a, b, tx, ty = (value[:, None] for value in forward)
        cx, cy = _POSE_CENTRE
        du = points_u - cx
        dv = points_v - cy
        x = a * du - b * dv + cx + tx
        y = b * du + a * dv + cy + ty
        return (x + 0.5) * (self.width / CANVAS_SIZE) - 0.5, (y + 0.5) * (
            self.height / CANVAS_SIZE
        ) - 0.5

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
    rx = np.where(
        bald,
        identity["face_rx"] + 1.5,
        identity["face_rx"]
        + np.maximum(identity["hair_volume"] + 0.5 * batch["hair_volume_jitter"], 1.0),
    )
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
    shoulders = _ellipse_distance(
        du, dv, np.full_like(cx, 78.0), np.full_like(cx, 46.0), canvas.pixels
    )
    canvas.paint(window, _coverage(shoulders), batch["clothing"])
    neck = np.maximum(
        np.abs(du) - _column(identity["neck_w"]), _column(geometry["face_cy"] + 20.0 - 154.0) - dv
    )
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
    inverse_ry = np.where(
        lower, _column(1.0 / identity["face_ry_bottom"]), _column(1.0 / identity["face_ry_top"])
    )
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
    window = canvas.window(
        cx - rx, cx + rx, cy - identity["face_ry_top"], cy + identity["face_ry_bottom"]
    )
    du, dv = canvas.offsets(window, cx, cy)
    distance = _face_distance(du, dv, identity, canvas.pixels)
    # Kept (in output pixels, inside the window) for the beard.
    canvas.remember_face(window, distance)
    coverage = _coverage(distance)
    canvas.paint(window, coverage, identity["skin"])
    rows, cols = window
    np.maximum(canvas.foreground[:, rows, cols], coverage, out=canvas.foreground[:, rows, cols])


def _face_distance_in(canvas, window):
    """The stored face distance restricted to `window` (which must lie inside the face window)."""
    if canvas.face_window is None:
        raise RuntimeError("The face must be rendered before the parts clipped to it.")
    face_rows, face_cols = canvas.face_window
    rows, cols = window
    top = max(rows.start, face_rows.start)
    left = max(cols.start, face_cols.start)
    bottom = min(rows.stop, face_rows.stop)
    right = min(cols.stop, face_cols.stop)
    if bottom <= top or right <= left:
        return None, None
    inner = (slice(top, bottom), slice(left, right))
    local = (
        slice(top - face_rows.start, bottom - face_rows.start),
        slice(left - face_cols.start, right - face_cols.start),
    )
    return inner, canvas.face_distance[:, local[0], local[1]]


def _render_mole(canvas, identity, batch, geometry):
    index = np.nonzero(identity["mole"] > 0)[0]
    if index.size == 0:
        return
    cu = geometry["face_cx"] + identity["mole_u"] + 5.0 * batch["yaw"]
    cv = geometry["face_cy"] + identity["mole_v"]
    r = identity["mole_r"]
    window = canvas.window(
        cu[index] - r[index],
        cu[index] + r[index],
        cv[index] - r[index],
        cv[index] + r[index],
        index,
    )
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
    top_edge = np.minimum(
        geometry["mouth_y"] + identity["beard_top"] - 8.0 - 0.012 * reach * reach,
        geometry["mouth_y"] - 9.0,
    )
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
        np.maximum(
            np.abs(du) - _column(identity["mouth_w"] + 2.0),
            dv + _column(identity["lip_upper"]) - 1.0,
        ),
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
    window = canvas.window(
        nx - width - 4.0, nx + width + 4.0, ny - identity["nose_length"] - 1.0, ny + 5.0
    )
    if window is None:
        return
    du, dv = canvas.offsets(window, nx, ny)
    skin = identity["skin"]
    # Shadow along the bridge, on the side away from the light.
    side = (
        np.where(np.cos(batch["light_azimuth"]) > 0, -1.0, 1.0) * (batch["light_strength"] > 0.05)
    ).astype(np.float32)
    half_length = identity["nose_length"] * 0.5
    bridge = _ellipse_distance(
        du - _column(side * 2.2),
        dv + _column(half_length),
        np.full_like(width, 1.3),
        half_length,
        canvas.pixels,
    )
    coverage = _coverage(bridge)
    coverage *= _column(0.35 * np.abs(side))
    canvas.paint(window, coverage, skin * 0.72)
    bulb = _coverage(
        _ellipse_distance(du, dv + 0.5, width * 0.8, identity["nose_bulb"], canvas.pixels)
    )
    bulb *= 0.45
    canvas.paint(window, bulb, skin * 0.82)
    for direction in (-1.0, 1.0):
        nostril = _ellipse_distance(
            du - _column(direction * width * 0.55),
            dv - 1.3,
            identity["nostril_r"],
            identity["nostril_r"] * 0.6,
            canvas.pixels,
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
        teeth = np.maximum(
            np.maximum(centre - opening - dv, dv - centre + 0.1 * opening), horizontal + 3.0
        )
        teeth *= pixels
        coverage = _coverage(teeth)
        coverage *= _column(batch["mouth_open"] > 1.0)
        canvas.paint(window, coverage, np.full_like(identity["skin"], 228.0))


def _segment_distance(du, dv, start, stop):
    """Distance (canonical pixels) to per-image segments `start -> stop`, each `((B,), (B,))`."""
    ax, ay = (_column(value) for value in start)
    bx, by = (_column(value) for value in stop)
    ex, ey = bx - ax, by - ay
    length = np.maximum(ex * ex + ey * ey, 1e-6)
    t = np.clip(((du - ax) * ex + (dv - ay) * ey) / length, 0.0, 1.0)
    px = du - ax - t * ex
    py = dv - ay - t * ey
    return np.sqrt(px * px + py * py)


def _wrinkle_strokes(identity, geometry):
    """Segments `(start, stop)` of the wrinkles, relative to the face centre (canonical)."""
    cx, cy = geometry["face_cx"], geometry["face_cy"]
    strokes = []
    brow_top = geometry["eye_y"] - identity["brow_gap"] - 7.0
    for line in range(3):
        v = brow_top - 4.0 * line
        half = 13.0 - 2.0 * line
        # A shallow arc as three segments, bowing upwards in the middle.
        knots = [(-half, 1.2), (-half / 3, 0.0), (half / 3, 0.0), (half, 1.2)]
        for (u0, v0), (u1, v1) in zip(knots[:-1], knots[1:]):
            strokes.append(((geometry["face_cx"] + u0, v + v0), (geometry["face_cx"] + u1, v + v1)))
    for side, eye_x in ((-1.0, geometry["eye_left_x"]), (1.0, geometry["eye_right_x"])):
        corner = eye_x + side * (identity["eye_w"] + 2.0)
        for angle in (-0.45, 0.0, 0.45):
            start = (corner, geometry["eye_y"] + 2.0 * angle)
            stop = (
                corner + side * 4.5 * np.cos(angle),
                geometry["eye_y"] + 4.5 * np.sin(angle) + 2.0 * angle,
            )
            strokes.append((start, stop))
        wing = (geometry["nose_x"] + side * (identity["nose_w"] + 1.5), geometry["nose_y"] - 1.0)
        corner_mouth = (
            geometry["mouth_x"] + side * (identity["mouth_w"] + 1.5),
            geometry["mouth_y"] + 1.0,
        )
        middle = (
            (wing[0] + corner_mouth[0]) / 2 + side * 1.5,
            (wing[1] + corner_mouth[1]) / 2,
        )
        strokes.append((wing, middle))
        strokes.append((middle, corner_mouth))
    return [
        ((start[0] - cx, start[1] - cy), (stop[0] - cx, stop[1] - cy)) for start, stop in strokes
    ]


def _render_wrinkles(canvas, identity, batch, geometry, ageing):
    """Forehead lines, crow's feet, nasolabial folds and age spots (aged faces only)."""
    opacity = ageing["wrinkle"]
    spots = ageing["spots"]
    if not (np.any(opacity > 0) or np.any(spots > 0)):
        return
    cx, cy = geometry["face_cx"], geometry["face_cy"]
    window = canvas.window(cx - 40.0, cx + 40.0, cy - 50.0, cy + 40.0)
    if window is None:
        return
    du, dv = canvas.offsets(window, cx, cy)
    pixels = _column(canvas.pixels)
    distance = None
    for start, stop in _wrinkle_strokes(identity, geometry):
        stroke = _segment_distance(du, dv, start, stop)
        distance = stroke if distance is None else np.minimum(distance, stroke)
    distance -= 0.38  # strokes 0.6-0.9 canonical pixels wide
    distance *= pixels
    coverage = _coverage(distance)
    coverage *= _column(opacity * 0.85)
    canvas.paint(window, coverage, identity["skin"] * 0.72)
    if np.any(spots > 0):
        spot = None
        for index in range(ageing["spot_u"].shape[1]):
            shown = spots > index
            if not np.any(shown):
                continue
            d = _ellipse_distance(
                du - _column(ageing["spot_u"][:, index]),
                dv - _column(ageing["spot_v"][:, index]),
                1.3,
                1.1,
                canvas.pixels,
            )
            d = np.where(_column(shown), d, np.inf)
            spot = d if spot is None else np.minimum(spot, d)
        if spot is not None:
            coverage = _coverage(spot)
            coverage *= 0.6
            canvas.paint(window, coverage, identity["skin"] * 0.62)


def _render_eyes(canvas, identity, batch, geometry):
    ey = geometry["eye_y"]
    width = identity["eye_w"]
    height = np.maximum(identity["eye_h"] * batch["eye_open"], 0.3)
    white = np.full_like(identity["skin"], 236.0)
    black = np.full_like(identity["skin"], 18.0)
    for side, ex in ((-1.0, geometry["eye_left_x"]), (1.0, geometry["eye_right_x"])):
        window = canvas.window(
            ex - width - 1.0,
            ex + width + 1.0,
            ey - identity["eye_h"] - 2.0,
            ey + identity["eye_h"] + 2.0,
        )
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
        iris = np.maximum(
            _ellipse_distance(
                iris_du, iris_dv, identity["iris_r"], identity["iris_r"], canvas.pixels
            ),
            outside,
        )
        canvas.paint(window, _coverage(iris), identity["iris_colour"])
        pupil_r = identity["iris_r"] * 0.42
        pupil = np.maximum(
            _ellipse_distance(iris_du, iris_dv, pupil_r, pupil_r, canvas.pixels), outside
        )
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
        thickness = _column(identity["brow_thickness"] * 0.5) * (
            1.0 - 0.45 * np.clip(t, 0.0, 1.0) ** 2
        )
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
    line = (
        _column(hairline - cy)
        + _column(identity["hairline_curve"]) * offset * offset
        - _column(identity["hairline_tilt"] * 2.0) * du
    )
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
        (geometry["face_cx"] - reach)[index],
        (geometry["face_cx"] + reach)[index],
        (ey - height - 2.0)[index],
        (ey + height + 2.0)[index],
        index,
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
        radius = (1.0 - square) * np.sqrt(nx * nx + abs_dv * abs_dv) + square * np.maximum(
            nx, abs_dv
        )
        distance = (radius - 1.0) * _column(np.minimum(width, height))
        ring = np.abs(distance) - _column(rim * 0.5)
        frame = ring if frame is None else np.minimum(frame, ring)
        lens = distance if lens is None else np.minimum(lens, distance)
    middle = _column((left + right) / 2)
    from_centre = np.abs(u - _column(geometry["face_cx"]))
    bridge = np.maximum(
        np.abs(dv + 1.5) - _column(rim * 0.5),
        np.abs(u - middle) - _column((right - left) / 2 - width + 0.5),
    )
    temples = np.maximum(
        np.abs(dv + 1.0) - _column(rim * 0.45),
        np.maximum(
            _column((right - left) / 2 + width - 1.0) - from_centre, from_centre - _column(reach)
        ),
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
    bar = np.maximum(
        np.abs(along) - _column(sub["occlusion_length"]),
        np.abs(across) - _column(sub["occlusion_width"]),
    )
    bar *= _column(pixels)
    blob = _ellipse_distance(
        along,
        across,
        sub["occlusion_length"] * 0.4 + 4.0,
        sub["occlusion_width"] * 1.6 + 3.0,
        pixels,
    )
    mask_face = _face_distance(
        u - _column(sub_geometry["face_cx"]),
        v - _column(sub_geometry["face_cy"]),
        sub_identity,
        pixels,
    )
    mask_face -= 1.5
    mask = np.maximum(
        mask_face, (_column(sub_geometry["nose_y"] - 5.0 + sub["mask_top"]) - v) * _column(pixels)
    )
    distance = np.where(
        _column(sub["occlusion"] == 1), mask, np.where(_column(sub["occlusion"] == 2), bar, blob)
    )
    coverage = _coverage(distance)
    canvas.occlusion[index] = coverage
    for channel in range(3):
        region = canvas.image[channel, index]
        region += coverage * (_column(sub["occlusion_colour"][:, channel]) - region)
        canvas.image[channel, index] = region


def _landmarks(canvas, identity, batch, geometry):
    """The five landmarks (eyes, nose tip, mouth corners) in output pixels, (B, 5, 2)."""
    half_width = identity["mouth_w"] * (1.0 + 0.06 * batch["smile"])
    corner_y = geometry["mouth_y"] - 2.6 * batch["smile"]
    points_u = np.stack(
        [
            geometry["eye_left_x"],
            geometry["eye_right_x"],
            geometry["nose_x"],
            geometry["mouth_x"] - half_width,
            geometry["mouth_x"] + half_width,
        ],
        axis=1,
    )
    points_v = np.stack(
        [geometry["eye_y"], geometry["eye_y"], geometry["nose_y"], corner_y, corner_y], axis=1
    )
    x, y = canvas.to_pixels(points_u, points_v)
    return np.stack([x, y], axis=-1).astype(np.float32)


def rasterise(identity, nuisance, height, width, ageing=None, occlusion_mask=False):
    """Draw a batch of clean faces (before any degradation) and their five landmarks.

    Args:
        identity: dict of arrays with one row per image (the identity's row of
            `sample_identity_parameters` repeated for each of its images).
        nuisance: dict of arrays from `sample_image_parameters`, one row per image.
        height: int. Output height in pixels.
        width: int. Output width in pixels.
        ageing: dict of `ageing.wrinkle_parameters` arrays, one row per image, or `None`
            (no wrinkles or age spots: the images of the generator without ageing).
            Defaults to `None`.
        occlusion_mask: bool. Also return the occluder's coverage. Defaults to `False`.

    Returns:
        `(image, landmarks)`: the planar float32 image `(3, B, H, W)` in [0, 255] and
        the float32 landmarks `(B, 5, 2)` (x, y) in output pixels; with
        `occlusion_mask=True` a third item, the occluder's coverage `(B, H, W)` in
        [0, 1].

    Example:
        ```python
        from keras_face.data.synthetic import appearance, renderer

        identity = appearance.sample_identity_parameters([0])
        nuisance = appearance.sample_image_parameters([0], 1)
        image, landmarks = renderer.rasterise(identity, nuisance, 112, 112)
        ```
    """
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
    if ageing is not None:
        _render_wrinkles(canvas, identity, nuisance, geometry, ageing)
    _render_eyes(canvas, identity, nuisance, geometry)
    _render_brows(canvas, identity, nuisance, geometry)
    _render_hair_cap(canvas, identity, nuisance, geometry)
    _render_glasses(canvas, identity, nuisance, geometry)
    _render_occlusion(canvas, identity, nuisance, geometry)
    _apply_lighting(canvas, identity, nuisance, geometry)
    landmarks = _landmarks(canvas, identity, nuisance, geometry)
    if occlusion_mask:
        return canvas.image, landmarks, canvas.occlusion
    return canvas.image, landmarks
