"""Procedurally generated street scenes for multi-task learning.

Every image shows a road under one of three lightings (day, dusk, night). Four
kinds of object may appear, independently of each other: a pedestrian, cars
(0 to 3), a stop sign and a traffic light. Each one is a binary task, so one
image answers four questions at once; the tasks share low-level features
(poles, red paint, round shapes, dark night pixels), which is what makes them a
good example for multi-task learning. Look-alike distractors (round and
triangular red signs, poles with boxes or a pedestrian signal, trailers, trees,
coloured blobs, some glowing at night) keep every task from being trivial.

Labellers rarely mark every object. `generate_street_scenes` can hide labels
with two patterns, and the TFDS builder `StreetScenes` (registered as
``street_scenes``) stores several fixed configurations on disk::

    import keras_mtl.datasets  # registers "street_scenes" with TFDS
    ds = tfds.load("street_scenes/small", split="train")

In TFDS records every label is an int64 and a missing label is ``-1``, which is
keras_mtl's ``MISSING`` sentinel.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

OBJECT_TASKS = ("pedestrian", "car", "stop_sign", "traffic_light")
"""Names of the four binary object-presence tasks."""

EXTRA_TASKS = ("num_cars", "time_of_day")
"""Names of the two integer-valued extra tasks."""

TIME_OF_DAY_NAMES = ("day", "dusk", "night")
"""Class names of the ``time_of_day`` task, indexed by class id."""

MISSING_PATTERNS = ("none", "uniform", "annotator")
"""Valid values of the ``missing`` argument of `generate_street_scenes`."""

MAX_CARS = 3

# keras_mtl's MISSING sentinel (keras_mtl.missing.MISSING); written as a literal
# so this subpackage stays importable on its own.
_MISSING = -1

_MIN_IMAGE_SIZE = 32
# Pixels per chunk: 256 images at 64x64. Bounds the float32 working set to
# roughly 50 MB whatever the image size.
_CHUNK_PIXELS = 256 * 64 * 64

# ---------------------------------------------------------------------------
# Palette ids. Every pixel of a chunk is first rendered as a uint16 key
# ``(depth << 6) | palette_id`` and coloured once at the end; np.maximum over
# keys is a z-buffer in which nearer objects win and, within one object, parts
# with larger ids (drawn later) win.
# ---------------------------------------------------------------------------
_ID_BITS = 6
_SKY_BANDS = 8  # ids 0-7: sky gradient, top to horizon
_GROUND = 8
_ROAD = 9
_LANE = 10
_BUILDINGS = (11, 12, 13)
_TREE_TRUNK, _TREE_CANOPY = 14, 15
_POLE, _POLE_HEAD, _POLE_BOX_LAMPS, _POLE_BOX_LIT = 16, 17, 18, 19
_NOENTRY_POLE, _NOENTRY_RIM, _NOENTRY_DISC, _NOENTRY_BAR = 20, 21, 22, 23
_YIELD_POLE, _YIELD_OUTER, _YIELD_INNER = 24, 25, 26
_BLOBS = (27, 28)
_TRAILER_BODY, _TRAILER_WHEELS = 29, 30
_PED_LEGS, _PED_TORSO, _PED_HEAD = 31, 32, 33
_CAR_BASE = 34  # car c uses ids 34+4c .. 37+4c: body, windows, wheels, lights
_STOP_POLE, _STOP_RIM, _STOP_FACE, _STOP_TEXT = 46, 47, 48, 49
_TL_POLE, _TL_HOUSING, _TL_LAMPS, _TL_LIT = 50, 51, 52, 53
_NUM_IDS = 54

# Depth layers: each standing object gets a rank by how low its base is in the
# picture (lower means nearer the camera). Background layers have depth 0.
_LAYERS = (
    "tree", "pole", "noentry", "yield", "blob0", "blob1", "trailer",
    "pedestrian", "car0", "car1", "car2", "stop_sign", "traffic_light",
)  # fmt: skip

# An object hidden by more than this share of its pixels is labelled absent:
# the label describes what can be seen.
_MIN_VISIBLE_FRACTION = 0.3

_SKY = np.array(
    [  # (top colour, horizon colour) per time of day
        [[95, 150, 225], [185, 210, 240]],
        [[60, 55, 115], [235, 135, 80]],
        [[8, 10, 28], [30, 32, 60]],
    ],
    dtype=np.float32,
)
_LIGHT_TINT = np.array([[1.0, 1.0, 1.0], [1.1, 0.85, 0.7], [0.75, 0.85, 1.15]], dtype=np.float32)
_LIGHT_LEVEL = np.array([[0.85, 1.15], [0.65, 0.85], [0.42, 0.58]], dtype=np.float32)
_NOISE_LEVEL = np.array([[3.0, 8.0], [5.0, 10.0], [6.0, 14.0]], dtype=np.float32)
_GROUND_COLOURS = np.array(
    [[150, 145, 135], [95, 140, 60], [170, 160, 140], [120, 110, 95]],
    dtype=np.float32,
)
_SKIN = np.array(
    [[245, 205, 170], [225, 175, 135], [190, 135, 95], [140, 95, 65], [95, 65, 45]],
    dtype=np.float32,
)
_TROUSERS = np.array(
    [[30, 30, 40], [40, 50, 95], [95, 70, 50], [165, 150, 120], [70, 70, 70]],
    dtype=np.float32,
)
_CLOTHES = np.array(
    [[220, 40, 40], [40, 90, 220], [250, 200, 30], [30, 170, 80], [240, 120, 20], [170, 50, 190]],
    dtype=np.float32,
)
_CAR_COLOURS = np.array(
    [
        [185, 25, 30], [35, 65, 165], [230, 230, 230], [28, 28, 30],
        [160, 165, 172], [225, 190, 35], [35, 115, 55], [120, 30, 35],
    ],
    dtype=np.float32,
)  # fmt: skip
_SIGN_RED = np.array([205, 25, 30], dtype=np.float32)
_WHITE = np.array([235, 235, 235], dtype=np.float32)
_LAMP_COLOURS = np.array(  # red (top), amber (middle), green (bottom)
    [[255, 45, 35], [255, 175, 10], [45, 235, 105]], dtype=np.float32
)

# Nominal object sizes in pixels of a 64x64 image at scale 1.
_HEIGHT = {
    "tree": 21.0, "pole": 22.0, "noentry": 23.0, "yield": 24.0, "trailer": 9.0,
    "pedestrian": 23.0, "car": 14.5, "stop_sign": 23.0, "traffic_light": 28.0,
}  # fmt: skip
_HALF_WIDTH = {
    "tree": 5.0, "pole": 2.7, "noentry": 4.3, "yield": 5.0, "trailer": 7.5,
    "pedestrian": 3.5, "car": 10.5, "stop_sign": 4.7, "traffic_light": 2.7,
}  # fmt: skip


# ---------------------------------------------------------------------------
# Vectorised drawing
# ---------------------------------------------------------------------------
def _col(v: np.ndarray) -> np.ndarray:
    """Reshapes a per-image vector (B,) to (B, 1, 1) for broadcasting."""
    return v[:, None, None]


class _Canvas:
    """Key buffer, palette and shape masks for one chunk of B images."""

    def __init__(self, batch: int, size: int):
        self.batch = batch
        self.size = size
        grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
        self.xx = grid[None, None, :]  # (1, 1, S)
        self.yy = grid[None, :, None]  # (1, S, 1)
        self.keys = np.zeros((batch, size, size), dtype=np.uint16)
        self.palette = np.zeros((batch, _NUM_IDS, 3), dtype=np.float32)
        # Emissive entries (sky, lit lamps, headlights at night) ignore lighting.
        self.emissive = np.zeros((batch, _NUM_IDS), dtype=bool)

    # Masks: parameters are (B,) arrays; per-axis terms are (B, 1, S) or
    # (B, S, 1), so only the final combination costs a full (B, S, S) pass.
    def rect(self, cx, cy, hw, hh) -> np.ndarray:
        in_x = np.abs(self.xx - _col(cx)) <= _col(hw)
        in_y = np.abs(self.yy - _col(cy)) <= _col(hh)
        return in_x & in_y

    def ellipse(self, cx, cy, rx, ry) -> np.ndarray:
        dx = ((self.xx - _col(cx)) / _col(rx)) ** 2
        dy = ((self.yy - _col(cy)) / _col(ry)) ** 2
        return (dx + dy) <= 1.0

    def octagon(self, cx, cy, apothem) -> np.ndarray:
        ax = np.abs(self.xx - _col(cx))
        ay = np.abs(self.yy - _col(cy))
        a = _col(apothem)
        return (ax <= a) & (ay <= a) & ((ax + ay) <= a * math.sqrt(2.0))

    def down_triangle(self, cx, top, half_width, height) -> np.ndarray:
        """Triangle with a flat top edge and its apex pointing down."""
        ax = np.abs(self.xx - _col(cx))
        below_top = self.yy >= _col(top)
        return (ax * _col(height / half_width) <= _col(top + height) - self.yy) & below_top

    def paint(self, mask, pid: int, depth, present=None) -> None:
        """Draws `mask` with palette id `pid` where nothing nearer is drawn."""
        key = (depth.astype(np.uint16) << _ID_BITS) | np.uint16(pid)
        if present is not None:
            key = np.where(present, key, np.uint16(0))  # key 0 never wins
        np.maximum(self.keys, mask * _col(key), out=self.keys)

    def set_colour(self, pid: int, colour, emissive=False) -> None:
        self.palette[:, pid] = colour
        self.emissive[:, pid] = emissive


def _jitter(rng: np.random.Generator, base, n: int, amount: float) -> np.ndarray:
    """Base colour(s) plus independent uniform noise per channel, clipped."""
    out = base + rng.uniform(-amount, amount, size=(n, 3)).astype(np.float32)
    return np.clip(out, 0.0, 255.0)


def _place(rng, n, size, u, scale, y_horizon, height, half_width, overhang=0.0):
    """Random base position (x, y_base) that keeps an object inside the image.

    Up to `overhang` of the object's half width may stick out at the sides.
    """
    hw = half_width * scale * u
    inset = hw * (1.0 - overhang)
    x = rng.uniform(0.0, 1.0, n) * (size - 2.0 * inset) + inset
    lo = np.maximum(y_horizon + 0.06 * size, height * scale * u + 1.0)
    y_base = lo + rng.uniform(0.0, 1.0, n) * np.maximum(size - 1.0 - lo, 0.0)
    return x.astype(np.float32), y_base.astype(np.float32)


def _draw_chunk(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draws `n` complete scenes; returns uint8 images and full labels."""
    cv = _Canvas(n, size)
    u = size / 64.0  # sizes below are in pixels of a 64x64 image
    uni = rng.uniform

    # -- Background: sky bands, ground, road, lane marks, buildings ---------
    tod = rng.integers(0, 3, n)
    y_h = (size * uni(0.33, 0.48, n)).astype(np.float32)
    x_v = (size * uni(0.3, 0.7, n)).astype(np.float32)
    band = np.clip(cv.yy * (_SKY_BANDS / _col(y_h)), 0, _SKY_BANDS - 1)
    cv.keys[...] = band.astype(np.uint16)  # depth 0, ids 0..7
    top = _jitter(rng, _SKY[tod, 0], n, 12)
    horizon = _jitter(rng, _SKY[tod, 1], n, 12)
    for b in range(_SKY_BANDS):
        t = (b + 0.5) / _SKY_BANDS
        cv.set_colour(b, (1 - t) * top + t * horizon, emissive=True)

    zero = np.zeros(n, dtype=np.int64)
    below = cv.yy >= _col(y_h)  # (B, S, 1)
    cv.paint(np.broadcast_to(below, cv.keys.shape), _GROUND, zero)
    cv.set_colour(_GROUND, _jitter(rng, _GROUND_COLOURS[rng.integers(0, 4, n)], n, 15))
    rise = np.maximum(cv.yy - _col(y_h), 0.0)  # (B, S, 1)
    off_centre = np.abs(cv.xx - _col(x_v))  # (B, 1, S)
    road = below & (off_centre <= rise * _col(uni(0.8, 1.6, n)) + 0.5)
    cv.paint(road, _ROAD, zero)
    cv.set_colour(_ROAD, _jitter(rng, np.full(3, 85.0), n, 20))
    dashes = (np.sqrt(rise) * _col(uni(1.2, 2.0, n))) % 2.0 < 1.0
    lane = road & dashes & (off_centre <= rise * 0.03 + 0.5 * u)
    cv.paint(lane, _LANE, zero, present=uni(size=n) < 0.8)
    lane_colour = np.where((uni(size=n) < 0.5)[:, None], [[240, 240, 235]], [[235, 200, 40]])
    cv.set_colour(_LANE, _jitter(rng, lane_colour, n, 10))
    for pid in _BUILDINGS:
        height = size * uni(0.05, 0.3, n)
        mask = cv.rect(uni(0, size, n), y_h - height / 2, size * uni(0.06, 0.16, n), height / 2)
        cv.paint(mask, pid, zero, present=uni(size=n) < 0.7)
        grey = uni(70, 170, (n, 1)) * uni(0.85, 1.1, (n, 3))
        cv.set_colour(pid, np.clip(grey, 0, 255))

    # -- Presence of every layer and its depth rank --------------------------
    present = {
        "tree": uni(size=n) < 0.35,
        "pole": uni(size=n) < 0.4,
        "noentry": uni(size=n) < 0.25,
        "yield": uni(size=n) < 0.25,
        "blob0": uni(size=n) < 0.5,
        "blob1": uni(size=n) < 0.35,
        "trailer": uni(size=n) < 0.4,
        "pedestrian": uni(size=n) < 0.5,
        "stop_sign": uni(size=n) < 0.5,
        "traffic_light": uni(size=n) < 0.5,
    }
    # P(0 cars) = 0.5, then 1, 2 or 3 cars with equal probability.
    cars_drawn = np.where(uni(size=n) < 0.5, 0, rng.integers(1, MAX_CARS + 1, n))
    for c in range(MAX_CARS):
        present[f"car{c}"] = cars_drawn > c

    scale, x, y_b = {}, {}, {}
    for layer in _LAYERS:
        kind = "car" if layer.startswith("car") else layer
        s = uni(0.6, 1.4, n).astype(np.float32)
        if kind.startswith("blob"):
            # Blobs float anywhere below the horizon; their base is their bottom.
            r = (s * 4.0 * u).astype(np.float32)
            x[layer] = uni(0, size, n).astype(np.float32)
            y_b[layer] = (y_h + uni(0.0, 1.0, n) * (size - y_h)).astype(np.float32)
            scale[layer] = r
            continue
        scale[layer] = s
        x[layer], y_b[layer] = _place(
            rng,
            n,
            size,
            u,
            s,
            y_h,
            _HEIGHT[kind],
            _HALF_WIDTH[kind],
            # Cars may be cut by the image border, as in street photos.
            overhang=0.6 if kind == "car" else 0.0,
        )
    bases = np.stack([y_b[layer] for layer in _LAYERS], axis=1)
    ranks = np.argsort(np.argsort(bases, axis=1), axis=1) + 1
    depth = {layer: ranks[:, i] for i, layer in enumerate(_LAYERS)}

    areas = {}  # unoccluded pixel count of the parts that identify an object

    # -- Distractors ---------------------------------------------------------
    s, cx, yb, d, p = (scale["tree"], x["tree"], y_b["tree"], depth["tree"], present["tree"])
    cv.paint(cv.rect(cx, yb - 5 * s * u, 1.2 * s * u, 5 * s * u), _TREE_TRUNK, d, p)
    cv.set_colour(_TREE_TRUNK, _jitter(rng, [[95, 65, 40]], n, 15))
    canopy = cv.ellipse(cx, yb - 14.5 * s * u, 5 * s * u, 6.5 * s * u)
    cv.paint(canopy, _TREE_CANOPY, d, p)
    cv.set_colour(_TREE_CANOPY, _jitter(rng, [[60, 125, 45]], n, 30))

    # Pole, bare or with a blue sign, a lamp head, a traffic light switched
    # off (three dark lamps) or a pedestrian signal (two lamps, one lit).
    s, cx, yb, d, p = (
        scale["pole"], x["pole"], y_b["pole"], depth["pole"], present["pole"]
    )  # fmt: skip
    cv.paint(cv.rect(cx, yb - 11 * s * u, 0.6 * s * u, 11 * s * u), _POLE, d, p)
    cv.set_colour(_POLE, _jitter(rng, [[115, 115, 120]], n, 20))
    variant = rng.integers(0, 5, n)
    head_hw = np.array([0.0, 2.5, 2.2, 2.7, 2.7])[variant] * s * u
    head_hh = np.array([0.0, 3.0, 0.9, 6.7, 4.6])[variant] * s * u
    head_y = yb - 22 * s * u + head_hh
    cv.paint(cv.rect(cx, head_y, head_hw, head_hh), _POLE_HEAD, d, p & (variant > 0))
    head_colour = np.array([[0, 0, 0], [40, 80, 175], [50, 50, 55], [35, 35, 38], [35, 35, 38]])
    cv.set_colour(_POLE_HEAD, _jitter(rng, head_colour[variant], n, 12))
    r, step = 1.7 * s * u, 4.2 * s * u
    three = cv.ellipse(cx, head_y - step, r, r) | cv.ellipse(cx, head_y, r, r)
    three |= cv.ellipse(cx, head_y + step, r, r)
    cv.paint(three, _POLE_BOX_LAMPS, d, p & (variant == 3))
    two_y = head_y + np.where(uni(size=n) < 0.5, -0.5, 0.5) * step
    cv.paint(cv.ellipse(cx, two_y, r, r * 3.5) & ~cv.ellipse(cx, two_y, r, r), _POLE_BOX_LAMPS, d, p & (variant == 4))
    cv.paint(cv.ellipse(cx, two_y, r, r), _POLE_BOX_LIT, d, p & (variant == 4))
    cv.set_colour(_POLE_BOX_LAMPS, _jitter(rng, [[58, 58, 58]], n, 8))
    walk = _LAMP_COLOURS[np.where(uni(size=n) < 0.5, 0, 2)]  # red or green
    cv.set_colour(_POLE_BOX_LIT, _jitter(rng, walk, n, 10), emissive=True)

    # Red "no entry" disc with a white bar: red and round, but not an octagon.
    s, cx, yb, d, p = (
        scale["noentry"], x["noentry"], y_b["noentry"],
        depth["noentry"], present["noentry"],
    )  # fmt: skip
    centre = yb - 18.5 * s * u
    cv.paint(cv.rect(cx, yb - 9 * s * u, 0.6 * s * u, 9 * s * u), _NOENTRY_POLE, d, p)
    # Half of them have a white rim like the stop sign's.
    rim = cv.ellipse(cx, centre, 4.6 * s * u, 4.6 * s * u)
    cv.paint(rim, _NOENTRY_RIM, d, p & (uni(size=n) < 0.5))
    cv.paint(cv.ellipse(cx, centre, 3.9 * s * u, 3.9 * s * u), _NOENTRY_DISC, d, p)
    cv.paint(cv.rect(cx, centre, 2.8 * s * u, 0.8 * s * u), _NOENTRY_BAR, d, p)
    cv.set_colour(_NOENTRY_POLE, _jitter(rng, [[115, 115, 120]], n, 20))
    cv.set_colour(_NOENTRY_RIM, _jitter(rng, _WHITE, n, 10))
    cv.set_colour(_NOENTRY_DISC, _jitter(rng, _SIGN_RED, n, 20))
    cv.set_colour(_NOENTRY_BAR, _jitter(rng, _WHITE, n, 10))

    # Red "yield" triangle with a white centre.
    s, cx, yb, d, p = (scale["yield"], x["yield"], y_b["yield"], depth["yield"], present["yield"])
    top = yb - 24 * s * u
    cv.paint(cv.rect(cx, yb - 9 * s * u, 0.6 * s * u, 9 * s * u), _YIELD_POLE, d, p)
    outer = cv.down_triangle(cx, top, 5 * s * u, 8.5 * s * u)
    cv.paint(outer, _YIELD_OUTER, d, p)
    inner = cv.down_triangle(cx, top + 1.6 * s * u, 2.6 * s * u, 4.4 * s * u)
    cv.paint(inner, _YIELD_INNER, d, p)
    cv.set_colour(_YIELD_POLE, _jitter(rng, [[115, 115, 120]], n, 20))
    cv.set_colour(_YIELD_OUTER, _jitter(rng, _SIGN_RED, n, 20))
    cv.set_colour(_YIELD_INNER, _jitter(rng, _WHITE, n, 10))

    # Coloured blobs (bins, bushes, lanterns); half use traffic-lamp colours
    # and some glow at night like a lamp.
    night = tod == 2
    for i, pid in enumerate(_BLOBS):
        layer = f"blob{i}"
        r = scale[layer]
        aspect = uni(0.6, 1.6, n).astype(np.float32)
        mask = cv.ellipse(x[layer], y_b[layer] - r * aspect, r, r * aspect)
        cv.paint(mask, pid, depth[layer], present[layer])
        signal = _LAMP_COLOURS[rng.integers(0, 3, n)]
        colour = np.where((uni(size=n) < 0.5)[:, None], signal, uni(20, 235, (n, 3)))
        glowing = night & (uni(size=n) < 0.4)
        cv.set_colour(pid, _jitter(rng, colour, n, 15), emissive=glowing)

    # Trailer: a car-coloured box on wheels, with no cabin or windows.
    s, cx, yb, d, p = (
        scale["trailer"], x["trailer"], y_b["trailer"],
        depth["trailer"], present["trailer"],
    )  # fmt: skip
    cv.paint(cv.rect(cx, yb - 6 * s * u, 7.5 * s * u, 3.5 * s * u), _TRAILER_BODY, d, p)
    wheels = cv.ellipse(cx - 4.5 * s * u, yb - 2.8 * s * u, 2.8 * s * u, 2.8 * s * u) | cv.ellipse(
        cx + 4.5 * s * u, yb - 2.8 * s * u, 2.8 * s * u, 2.8 * s * u
    )
    cv.paint(wheels, _TRAILER_WHEELS, d, p)
    cv.set_colour(_TRAILER_BODY, _jitter(rng, _CAR_COLOURS[rng.integers(0, 8, n)], n, 15))
    cv.set_colour(_TRAILER_WHEELS, _jitter(rng, [[22, 22, 24]], n, 6))

    # -- Pedestrian: legs, torso with arms, head ---------------------------------------
    s, cx, yb, d, p = (
        scale["pedestrian"], x["pedestrian"], y_b["pedestrian"],
        depth["pedestrian"], present["pedestrian"],
    )  # fmt: skip
    stride = uni(1.2, 2.0, n) * s * u  # legs apart by a random stride
    legs = cv.rect(cx - stride, yb - 4 * s * u, 1.4 * s * u, 4 * s * u) | cv.rect(
        cx + stride, yb - 4 * s * u, 1.4 * s * u, 4 * s * u
    )
    torso = cv.rect(cx, yb - 12.5 * s * u, 3 * s * u, 4.5 * s * u)
    arm_x = (3.0 + 0.8) * s * u
    torso |= cv.rect(cx - arm_x, yb - 12.3 * s * u, 0.8 * s * u, 4 * s * u)
    torso |= cv.rect(cx + arm_x, yb - 12.3 * s * u, 0.8 * s * u, 4 * s * u)
    head = cv.ellipse(cx, yb - 19.5 * s * u, 2.6 * s * u, 2.9 * s * u)
    cv.paint(legs, _PED_LEGS, d, p)
    cv.paint(torso, _PED_TORSO, d, p)
    cv.paint(head, _PED_HEAD, d, p)
    areas["pedestrian"] = _count(legs | torso | head)
    cv.set_colour(_PED_LEGS, _jitter(rng, _TROUSERS[rng.integers(0, 5, n)], n, 15))
    # Saturated clothing colours: a person stands out from sky, road and verge.
    cv.set_colour(_PED_TORSO, _jitter(rng, _CLOTHES[rng.integers(0, len(_CLOTHES), n)], n, 20))
    cv.set_colour(_PED_HEAD, _jitter(rng, _SKIN[rng.integers(0, 5, n)], n, 12))

    # -- Cars: body with cabin, two windows, two wheels, lights --------------
    for c in range(MAX_CARS):
        layer = f"car{c}"
        s, cx, yb, d, p = scale[layer], x[layer], y_b[layer], depth[layer], present[layer]
        body = cv.rect(cx, yb - 6 * s * u, 10 * s * u, 3.5 * s * u) | cv.rect(
            cx, yb - 11.75 * s * u, 6.5 * s * u, 2.25 * s * u
        )
        windows = cv.rect(cx - 3 * s * u, yb - 11.5 * s * u, 2.5 * s * u, 1.5 * s * u) | cv.rect(
            cx + 3 * s * u, yb - 11.5 * s * u, 2.5 * s * u, 1.5 * s * u
        )
        wheels = cv.ellipse(cx - 6.5 * s * u, yb - 2.8 * s * u, 2.8 * s * u, 2.8 * s * u) | cv.ellipse(
            cx + 6.5 * s * u, yb - 2.8 * s * u, 2.8 * s * u, 2.8 * s * u
        )
        lights = cv.rect(cx, yb - 7 * s * u, 10 * s * u, 0.8 * s * u) & ~cv.rect(
            cx, yb - 7 * s * u, 8.6 * s * u, 0.8 * s * u
        )
        base = _CAR_BASE + 4 * c
        for offset, mask in enumerate((body, windows, wheels, lights)):
            cv.paint(mask, base + offset, d, p)
        # Share of the body inside the image: a car cut by the border counts
        # by its whole size, not just the part in the picture.
        half = 10 * s * u
        inside = (np.minimum(cx + half, size) - np.maximum(cx - half, 0)) / (2 * half)
        areas[layer] = _count(body | wheels) / np.clip(inside, 1e-3, 1.0)
        cv.set_colour(base, _jitter(rng, _CAR_COLOURS[rng.integers(0, 8, n)], n, 15))
        cv.set_colour(base + 1, _jitter(rng, [[135, 165, 195]], n, 20))
        cv.set_colour(base + 2, _jitter(rng, [[22, 22, 24]], n, 6))
        # Parked cars have their lights off, also at night.
        lights_on = night & (uni(size=n) < 0.5)
        light = np.where(lights_on[:, None], [[255, 245, 200]], [[225, 215, 170]])
        cv.set_colour(base + 3, _jitter(rng, light, n, 10), emissive=lights_on)

    # -- Stop sign: pole, white rim, red octagon, white text bar -------------
    s, cx, yb, d, p = (
        scale["stop_sign"], x["stop_sign"], y_b["stop_sign"],
        depth["stop_sign"], present["stop_sign"],
    )  # fmt: skip
    centre = yb - 18.3 * s * u
    cv.paint(cv.rect(cx, yb - 9 * s * u, 0.6 * s * u, 9 * s * u), _STOP_POLE, d, p)
    rim = cv.octagon(cx, centre, 4.6 * s * u)
    cv.paint(rim, _STOP_RIM, d, p)
    cv.paint(cv.octagon(cx, centre, 3.9 * s * u), _STOP_FACE, d, p)
    cv.paint(cv.rect(cx, centre, 2.6 * s * u, 0.75 * s * u), _STOP_TEXT, d, p)
    areas["stop_sign"] = _count(rim)
    cv.set_colour(_STOP_POLE, _jitter(rng, [[115, 115, 120]], n, 20))
    cv.set_colour(_STOP_RIM, _jitter(rng, _WHITE, n, 10))
    cv.set_colour(_STOP_FACE, _jitter(rng, _SIGN_RED, n, 20))
    cv.set_colour(_STOP_TEXT, _jitter(rng, _WHITE, n, 10))

    # -- Traffic light: pole, housing, three lamps with exactly one lit ------
    s, cx, yb, d, p = (
        scale["traffic_light"], x["traffic_light"], y_b["traffic_light"],
        depth["traffic_light"], present["traffic_light"],
    )  # fmt: skip
    centre = yb - 21.3 * s * u
    cv.paint(cv.rect(cx, yb - 7.5 * s * u, 0.7 * s * u, 7.5 * s * u), _TL_POLE, d, p)
    housing = cv.rect(cx, centre, 2.7 * s * u, 6.7 * s * u)
    cv.paint(housing, _TL_HOUSING, d, p)
    r = 1.7 * s * u
    step = 4.2 * s * u
    lamps = cv.ellipse(cx, centre - step, r, r) | cv.ellipse(cx, centre, r, r) | cv.ellipse(cx, centre + step, r, r)
    cv.paint(lamps, _TL_LAMPS, d, p)
    lit = rng.integers(0, 3, n)
    lit_mask = cv.ellipse(cx, centre + (lit - 1) * step, r, r)
    cv.paint(lit_mask, _TL_LIT, d, p)
    areas["traffic_light"] = _count(housing)
    cv.set_colour(_TL_POLE, _jitter(rng, [[65, 65, 70]], n, 12))
    yellow = uni(size=n) < 0.2
    housing_colour = np.where(yellow[:, None], [[200, 170, 45]], [[35, 35, 38]])
    cv.set_colour(_TL_HOUSING, _jitter(rng, housing_colour, n, 10))
    cv.set_colour(_TL_LAMPS, _jitter(rng, [[58, 58, 58]], n, 8))
    cv.set_colour(_TL_LIT, _jitter(rng, _LAMP_COLOURS[lit], n, 10), emissive=True)

    # -- Colour, lighting and sensor noise -----------------------------------
    level = uni(_LIGHT_LEVEL[tod, 0], _LIGHT_LEVEL[tod, 1]).astype(np.float32)
    light = _LIGHT_TINT[tod] * level[:, None]  # (B, 3)
    palette = np.where(cv.emissive[..., None], cv.palette, cv.palette * light[:, None, :]).astype(np.float32)
    ids = (cv.keys & np.uint16((1 << _ID_BITS) - 1)).astype(np.intp)
    ids += _col(np.arange(n, dtype=np.intp) * _NUM_IDS)
    images = palette.reshape(-1, 3).take(ids, axis=0)  # (B, S, S, 3)
    sigma = uni(_NOISE_LEVEL[tod, 0], _NOISE_LEVEL[tod, 1]).astype(np.float32)
    # Uniform noise with standard deviation sigma: much cheaper than Gaussian.
    noise = rng.random(images.shape, dtype=np.float32) - np.float32(0.5)
    noise *= (sigma * np.float32(math.sqrt(12.0)))[:, None, None, None]
    images += noise
    np.clip(images, 0.0, 255.0, out=images)
    images = images.astype(np.uint8)

    # -- Labels from what is visible -----------------------------------------
    visible = np.bincount(ids.ravel(), minlength=n * _NUM_IDS).reshape(n, _NUM_IDS)

    def seen(layer: str, first: int, last: int) -> np.ndarray:
        pixels = visible[:, first : last + 1].sum(axis=1)
        area = areas[layer]
        return present[layer] & (pixels >= _MIN_VISIBLE_FRACTION * area) & (area > 0)

    num_cars = sum(seen(f"car{c}", _CAR_BASE + 4 * c, _CAR_BASE + 4 * c + 3).astype(np.int64) for c in range(MAX_CARS))
    labels = {
        "pedestrian": seen("pedestrian", _PED_LEGS, _PED_HEAD),
        "car": num_cars > 0,
        "stop_sign": seen("stop_sign", _STOP_RIM, _STOP_TEXT),
        "traffic_light": seen("traffic_light", _TL_HOUSING, _TL_LIT),
    }
    labels = {k: v.astype(np.float32) for k, v in labels.items()}
    labels["num_cars"] = np.asarray(num_cars, dtype=np.int64)
    labels["time_of_day"] = tod.astype(np.int64)
    return images, labels


def _count(mask: np.ndarray) -> np.ndarray:
    """Number of True pixels per image of a (B, S, S) mask."""
    return np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1)


# ---------------------------------------------------------------------------
# Missing labels
# ---------------------------------------------------------------------------
def _missing_masks(rng: np.random.Generator, n: int, missing: str, fraction: float) -> dict[str, np.ndarray]:
    """Boolean (n,) masks, True where a label is hidden."""
    if missing == "none" or fraction == 0.0:
        return {k: np.zeros(n, dtype=bool) for k in OBJECT_TASKS + EXTRA_TASKS}
    if missing == "uniform":
        masks = {k: rng.random(n) < fraction for k in OBJECT_TASKS}
    else:  # "annotator"
        # Each image's annotator skips m of the four objects, m being
        # floor(4f) or floor(4f) + 1 so that the expected share skipped is f.
        expected = len(OBJECT_TASKS) * fraction
        skipped = math.floor(expected) + (rng.random(n) < expected % 1.0)
        # Rank of each task in a random per-image order; the first m are skipped.
        order = np.argsort(rng.random((n, len(OBJECT_TASKS))), axis=1)
        position = np.argsort(order, axis=1)
        hidden = position < skipped[:, None]
        masks = {k: hidden[:, i] for i, k in enumerate(OBJECT_TASKS)}
    for k in EXTRA_TASKS:
        masks[k] = rng.random(n) < fraction
    return masks


def _validate(num_examples: int, image_size: int, seed: int, missing: str, fraction: float) -> None:
    if not isinstance(num_examples, (int, np.integer)) or num_examples < 1:
        raise ValueError(f"num_examples must be an integer >= 1, got {num_examples!r}.")
    if not isinstance(image_size, (int, np.integer)) or image_size < _MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {_MIN_IMAGE_SIZE}, got {image_size!r}.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if missing not in MISSING_PATTERNS:
        raise ValueError(f"missing must be one of {', '.join(map(repr, MISSING_PATTERNS))}; got {missing!r}.")
    if not isinstance(fraction, (int, float, np.floating)) or not (0.0 <= fraction < 1.0):
        raise ValueError(f"missing_fraction must be in [0, 1), got {fraction!r}.")


def _iter_chunks(
    num_examples: int, image_size: int, seed: int, missing: str, fraction: float
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Yields (images, full labels, missing masks) chunk by chunk."""
    chunk = max(1, _CHUNK_PIXELS // (image_size * image_size))
    for index, start in enumerate(range(0, num_examples, chunk)):
        n = min(chunk, num_examples - start)
        # Independent streams per chunk and purpose: the pictures do not change
        # with the missing-label pattern, only which labels are hidden.
        images, labels = _draw_chunk(np.random.default_rng([seed, index, 0]), n, image_size)
        masks = _missing_masks(np.random.default_rng([seed, index, 1]), n, missing, float(fraction))
        yield images, labels, masks


def generate_street_scenes(
    num_examples: int,
    *,
    image_size: int = 64,
    seed: int = 0,
    missing: str = "uniform",
    missing_fraction: float = 0.0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draws street scenes and their multi-task labels.

    Each image shows sky and road under day, dusk or night lighting. A
    pedestrian, a stop sign and a traffic light each appear with probability
    0.5, and half of the images hold 1 to 3 cars; all independently, at random
    positions and scales (0.6-1.4x), overlapping in depth order. An object
    hidden by more than 70 % behind nearer ones counts as absent. Drawing is
    vectorised over chunks of images.

    Missing labels: with ``missing="uniform"`` each (image, object) label is
    hidden independently with probability ``missing_fraction``. With
    ``missing="annotator"`` each image is labelled by one annotator who marks
    only a random subset of the four objects, ``floor(4 f)`` or
    ``floor(4 f) + 1`` of them skipped so that the expected share missing is
    ``f``. ``num_cars`` and ``time_of_day`` are hidden uniformly at the same
    fraction under either pattern. ``missing="none"`` (whatever the fraction)
    or ``missing_fraction=0`` hides nothing. The images themselves do not
    depend on the missing pattern or fraction.

    Args:
        num_examples: Number of images, at least 1.
        image_size: Height and width in pixels, at least 32.
        seed: Non-negative integer; the same arguments give identical arrays.
        missing: Missing-label pattern: ``"none"``, ``"uniform"`` or
            ``"annotator"``.
        missing_fraction: Expected share of hidden labels, in [0, 1).

    Returns:
        A tuple ``(images, labels)``: ``images`` is a uint8 array of shape
        (num_examples, image_size, image_size, 3); ``labels`` maps each name in
        `OBJECT_TASKS` to a float32 array (num_examples,) of 0.0/1.0 with NaN
        where missing, ``"num_cars"`` to an int64 array (num_examples,) in
        0..3 and ``"time_of_day"`` to an int64 array (num_examples,) in 0..2
        (see `TIME_OF_DAY_NAMES`), both with -1 where missing.

    Raises:
        ValueError: If an argument is out of range; the message names it.

    Example:
        >>> images, labels = generate_street_scenes(
        ...     100, missing="uniform", missing_fraction=0.5)
        >>> images.shape, images.dtype
        ((100, 64, 64, 3), dtype('uint8'))
        >>> sorted(labels)
        ['car', 'num_cars', 'pedestrian', 'stop_sign', 'time_of_day', 'traffic_light']
    """
    _validate(num_examples, image_size, seed, missing, missing_fraction)
    image_parts, label_parts = [], {k: [] for k in OBJECT_TASKS + EXTRA_TASKS}
    for images, labels, masks in _iter_chunks(int(num_examples), int(image_size), int(seed), missing, missing_fraction):
        image_parts.append(images)
        for k in OBJECT_TASKS:
            label_parts[k].append(np.where(masks[k], np.float32(np.nan), labels[k]))
        for k in EXTRA_TASKS:
            label_parts[k].append(np.where(masks[k], _MISSING, labels[k]))
    return np.concatenate(image_parts), {k: np.concatenate(v) for k, v in label_parts.items()}


# ---------------------------------------------------------------------------
# TFDS builder
# ---------------------------------------------------------------------------
_DESCRIPTION = """\
Procedurally generated street scenes for multi-task learning: images of roads
under day, dusk or night lighting, each holding any combination of a
pedestrian, cars (0 to 3), a stop sign and a traffic light, plus look-alike
distractors. Tasks: four binary presence labels (`pedestrian`, `car`,
`stop_sign`, `traffic_light`), the number of cars (`num_cars`, 0-3) and the
time of day (`time_of_day`: 0 day, 1 dusk, 2 night). Every label is an int64;
-1 marks a label the annotators did not give (keras_mtl's `MISSING`
sentinel). Missing labels follow the config's pattern in the train and
validation splits; the test split is fully labelled.

The data is generated by keras_mtl's own code, nothing is downloaded, and it is
released under the project's licence, Apache-2.0.
"""

# The repository has no public address yet: point at the dataset's notes there.
_HOMEPAGE = "keras_mtl repository: data/README.md"

# Distinct seeds per split so that no image is shared between splits.
_SPLIT_SEEDS = {"train": 1, "validation": 2, "test": 3}


class StreetScenesConfig(tfds.core.BuilderConfig):
    """Size and missing-label pattern of one `StreetScenes` configuration.

    Attributes:
        image_size: Height and width of the images in pixels.
        missing: Missing-label pattern of train and validation: ``"none"``,
            ``"uniform"`` or ``"annotator"``.
        missing_fraction: Expected share of missing labels, in [0, 1).
        num_train: Number of training examples.
        num_validation: Number of validation examples.
        num_test: Number of test examples (always fully labelled).
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        missing: str = "uniform",
        missing_fraction: float = 0.5,
        num_train: int = 8000,
        num_validation: int = 1000,
        num_test: int = 2000,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _validate(1, image_size, 0, missing, missing_fraction)
        for field, count in (
            ("num_train", num_train), ("num_validation", num_validation), ("num_test", num_test)
        ):  # fmt: skip
            if not isinstance(count, int) or count < 1:
                raise ValueError(f"{field} must be an integer >= 1, got {count!r}.")
        self.image_size = image_size
        self.missing = missing
        self.missing_fraction = missing_fraction
        self.num_train = num_train
        self.num_validation = num_validation
        self.num_test = num_test


class StreetScenes(tfds.core.GeneratorBasedBuilder):
    """TFDS builder of the generated street-scenes dataset (`street_scenes`).

    Example:
        >>> import keras_mtl.datasets  # registers the builder
        >>> ds = tfds.load("street_scenes/small", split="train")
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        StreetScenesConfig(
            name="small",
            description="64x64, 2,000/500/1,000 examples, 50% labels missing at random.",
            num_train=2000,
            num_validation=500,
            num_test=1000,
        ),
        StreetScenesConfig(
            name="default",
            description="64x64, 8,000/1,000/2,000 examples, 50% labels missing at random.",
        ),
        StreetScenesConfig(
            name="annotator",
            description=("As `default`, but each image's annotator labels only 2 of the 4 objects."),
            missing="annotator",
        ),
        StreetScenesConfig(
            name="full_labels",
            description="As `default`, with every label given.",
            missing="none",
            missing_fraction=0.0,
        ),
        StreetScenesConfig(
            name="tiny",
            description="64x64, 8/4/4 examples, 50% labels missing: for smoke tests.",
            num_train=8,
            num_validation=4,
            num_test=4,
        ),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "default"

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        missing_doc = f" ({_MISSING} = missing)"
        features = {"image": tfds.features.Image(shape=(size, size, 3), dtype=np.uint8, doc="RGB street scene.")}
        for task in OBJECT_TASKS:
            features[task] = tfds.features.Scalar(
                np.int64, doc=f"1 if a {task.replace('_', ' ')} is visible{missing_doc}."
            )
        features["num_cars"] = tfds.features.Scalar(np.int64, doc=f"Number of visible cars, 0-{MAX_CARS}{missing_doc}.")
        features["time_of_day"] = tfds.features.Scalar(np.int64, doc=f"0 day, 1 dusk, 2 night{missing_doc}.")
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=None,
            homepage=_HOMEPAGE,
            citation="",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Generated data: nothing to download.
        cfg = self.builder_config
        sizes = {
            "train": cfg.num_train,
            "validation": cfg.num_validation,
            "test": cfg.num_test,
        }
        return {
            split: self._generate_examples(
                seed=_SPLIT_SEEDS[split],
                num_examples=count,
                # The test split is fully labelled so evaluation uses it all.
                missing="none" if split == "test" else cfg.missing,
                missing_fraction=0.0 if split == "test" else cfg.missing_fraction,
            )
            for split, count in sizes.items()
        }

    def _generate_examples(self, seed: int, num_examples: int, missing: str, missing_fraction: float):
        size = self.builder_config.image_size
        index = 0
        for images, labels, masks in _iter_chunks(num_examples, size, seed, missing, missing_fraction):
            columns = {k: np.where(masks[k], _MISSING, labels[k].astype(np.int64)) for k in OBJECT_TASKS + EXTRA_TASKS}
            for i in range(len(images)):
                example = {k: int(v[i]) for k, v in columns.items()}
                example["image"] = images[i]
                yield index, example
                index += 1


def load_street_scenes(
    split: str = "train", *, config: str = "small", data_dir: str | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Loads one split of a `StreetScenes` configuration as NumPy arrays.

    Generates and stores the configuration on first use
    (``download_and_prepare``; nothing is downloaded). Unlike
    `generate_street_scenes`, every label, object tasks included, is an int64
    with -1 (keras_mtl's ``MISSING``) where missing, as stored in the TFDS
    records. Examples come in TFDS's deterministic on-disk order, not in
    generation order.

    Args:
        split: A TFDS split: ``"train"``, ``"validation"``, ``"test"``, or a
            slice such as ``"train[:10%]"``.
        config: Builder config name: ``"small"``, ``"default"``,
            ``"annotator"``, ``"full_labels"`` or ``"tiny"``.
        data_dir: TFDS data directory; None uses TFDS's default
            (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).

    Returns:
        A tuple ``(images, labels)``: ``images`` is a uint8 array
        (n, size, size, 3); ``labels`` maps each of `OBJECT_TASKS`,
        ``"num_cars"`` and ``"time_of_day"`` to an int64 array (n,) with -1
        where missing.

    Example:
        >>> images, labels = load_street_scenes("test", config="small")
        >>> images.shape
        (1000, 64, 64, 3)
    """
    builder = tfds.builder(f"street_scenes/{config}", data_dir=data_dir)
    builder.download_and_prepare()
    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    images = np.asarray(data["image"], dtype=np.uint8)
    labels = {k: np.asarray(data[k], dtype=np.int64) for k in OBJECT_TASKS + EXTRA_TASKS}
    return images, labels
