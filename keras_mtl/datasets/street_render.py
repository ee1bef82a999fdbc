"""The street-scene renderer: draws road scenes and reads their labels off the pixels.

`render_scenes` draws a batch of scenes with NumPy, vectorised over the batch:
a background (sky, ground, road, lane marks, buildings), look-alike distractors
(trees, poles with boxes or signals, red round and triangular signs, coloured
blobs, trailers) and the four objects of the tasks (a pedestrian, up to three
cars, a stop sign, a traffic light), overlapping in depth order; then lighting
(day, dusk, night) and sensor noise. An object's label says whether enough of
it is visible. `keras_mtl.datasets.street_scenes` builds labelled data sets on
top of it; `keras_mtl.datasets.street_scenes_tfds` stores them with TFDS.

**Relatedness.** With ``relatedness=r`` each object of the four tasks carries,
with probability ``r`` and independently of the others, a shared marking: a
one-pixel hi-vis (yellow-green, retro-reflective, so as bright at night) border
around its silhouette. Distractors never carry it. At ``r=0`` the four objects
share only what the drawing gives them (poles for signs and lights, red for
stop signs and some cars); at ``r=1`` every object also shares one low-level
feature that is useless for telling the objects apart but marks where one is.
The decisions come from their own random stream, so the rest of a scene does
not change with ``r``.
"""

from __future__ import annotations

import math

import numpy as np

OBJECT_TASKS = ("pedestrian", "car", "stop_sign", "traffic_light")
MAX_CARS = 3

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
_MARK = 54  # the shared marking of the relatedness setting (one id for every object)
_NUM_IDS = 55

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

_MARK_COLOUR = np.array([190, 250, 40], dtype=np.float32)  # hi-vis yellow-green

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



class _Scene:
    """The random choices of one chunk of scenes, shared by the drawing steps."""

    def __init__(self, rng: np.random.Generator, n: int, size: int):
        self.rng, self.n, self.size = rng, n, size
        self.cv = _Canvas(n, size)
        self.u = size / 64.0  # sizes are given in pixels of a 64x64 image
        self.areas: dict[str, np.ndarray] = {}  # unoccluded pixel count of an object's identifying parts
        self.masks: dict[str, np.ndarray] = {}  # silhouette of each task object (for the shared marking)

    def layer(self, name: str):
        """Scale, x, base y, depth and presence of one layer."""
        return self.scale[name], self.x[name], self.y_b[name], self.depth[name], self.present[name]


def render_scenes(rng: np.random.Generator, n: int, size: int, relatedness: float = 0.0,
                  mark_rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draws ``n`` complete scenes and labels them from what is visible.

    Args:
        rng: the random stream of the scenes.
        n: number of scenes.
        size: height and width in pixels.
        relatedness: probability in [0, 1] that each task object carries the
            shared marking (see the module docstring).
        mark_rng: the random stream of the marking decisions (needed when
            ``relatedness > 0``), kept apart so that the scenes do not change
            with ``relatedness``.

    Returns:
        ``(images, labels)``: uint8 images ``(n, size, size, 3)``; float32 0/1
        arrays for the four objects, int64 ``num_cars`` and ``time_of_day``.

    Example:
        >>> images, labels = render_scenes(np.random.default_rng(0), 4, 32)
        >>> images.shape, sorted(labels)[:2]
        ((4, 32, 32, 3), ['car', 'num_cars'])
    """
    sc = _Scene(rng, n, size)
    _draw_background(sc)
    _lay_out(sc)
    _draw_trees_poles_and_signs(sc)
    _draw_blobs_and_trailer(sc)
    _draw_pedestrian(sc)
    _draw_cars(sc)
    _draw_stop_sign(sc)
    _draw_traffic_light(sc)
    if relatedness > 0:
        _draw_marking(sc, relatedness, mark_rng)
    images, ids = _expose(sc)
    return images, _labels(sc, ids)


def _draw_background(sc: _Scene) -> None:
    """Sky bands, ground, road, lane marks and buildings; picks the time of day and horizon."""
    cv, rng, n, size, u, uni = sc.cv, sc.rng, sc.n, sc.size, sc.u, sc.rng.uniform
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
    sc.tod, sc.y_h, sc.night = tod, y_h, tod == 2


def _lay_out(sc: _Scene) -> None:
    """Which layers are present, their positions, scales and depth ranks."""
    rng, n, size, u, uni, y_h = sc.rng, sc.n, sc.size, sc.u, sc.rng.uniform, sc.y_h
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
        thing = "car" if layer.startswith("car") else layer
        s = uni(0.6, 1.4, n).astype(np.float32)
        if thing.startswith("blob"):
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
            _HEIGHT[thing],
            _HALF_WIDTH[thing],
            # Cars may be cut by the image border, as in street photos.
            overhang=0.6 if thing == "car" else 0.0,
        )
    bases = np.stack([y_b[layer] for layer in _LAYERS], axis=1)
    ranks = np.argsort(np.argsort(bases, axis=1), axis=1) + 1
    depth = {layer: ranks[:, i] for i, layer in enumerate(_LAYERS)}
    sc.present, sc.scale, sc.x, sc.y_b, sc.depth = present, scale, x, y_b, depth


def _draw_trees_poles_and_signs(sc: _Scene) -> None:
    """Distractors: a tree, a pole (bare, sign, lamp, dark traffic light, walk signal), red round and yield signs."""
    cv, rng, n, u, uni = sc.cv, sc.rng, sc.n, sc.u, sc.rng.uniform
    s, cx, yb, d, p = sc.layer("tree")
    cv.paint(cv.rect(cx, yb - 5 * s * u, 1.2 * s * u, 5 * s * u), _TREE_TRUNK, d, p)
    cv.set_colour(_TREE_TRUNK, _jitter(rng, [[95, 65, 40]], n, 15))
    canopy = cv.ellipse(cx, yb - 14.5 * s * u, 5 * s * u, 6.5 * s * u)
    cv.paint(canopy, _TREE_CANOPY, d, p)
    cv.set_colour(_TREE_CANOPY, _jitter(rng, [[60, 125, 45]], n, 30))

    # Pole, bare or with a blue sign, a lamp head, a traffic light switched
    # off (three dark lamps) or a pedestrian signal (two lamps, one lit).
    s, cx, yb, d, p = sc.layer("pole")
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
    s, cx, yb, d, p = sc.layer("noentry")
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
    s, cx, yb, d, p = sc.layer("yield")
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


def _draw_blobs_and_trailer(sc: _Scene) -> None:
    """Distractors: coloured blobs (some in lamp colours, some glowing at night) and a trailer."""
    cv, rng, n, u, uni, night = sc.cv, sc.rng, sc.n, sc.u, sc.rng.uniform, sc.night
    scale, x, y_b, depth, present = sc.scale, sc.x, sc.y_b, sc.depth, sc.present
    # Coloured blobs (bins, bushes, lanterns); half use traffic-lamp colours
    # and some glow at night like a lamp.
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
    s, cx, yb, d, p = sc.layer("trailer")
    cv.paint(cv.rect(cx, yb - 6 * s * u, 7.5 * s * u, 3.5 * s * u), _TRAILER_BODY, d, p)
    wheels = cv.ellipse(cx - 4.5 * s * u, yb - 2.8 * s * u, 2.8 * s * u, 2.8 * s * u) | cv.ellipse(
        cx + 4.5 * s * u, yb - 2.8 * s * u, 2.8 * s * u, 2.8 * s * u
    )
    cv.paint(wheels, _TRAILER_WHEELS, d, p)
    cv.set_colour(_TRAILER_BODY, _jitter(rng, _CAR_COLOURS[rng.integers(0, 8, n)], n, 15))
    cv.set_colour(_TRAILER_WHEELS, _jitter(rng, [[22, 22, 24]], n, 6))


def _draw_pedestrian(sc: _Scene) -> None:
    """Legs, torso with arms, head."""
    cv, rng, n, u, uni = sc.cv, sc.rng, sc.n, sc.u, sc.rng.uniform
    s, cx, yb, d, p = sc.layer("pedestrian")
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
    sc.areas["pedestrian"] = _count(legs | torso | head)
    sc.masks["pedestrian"] = legs | torso | head
    cv.set_colour(_PED_LEGS, _jitter(rng, _TROUSERS[rng.integers(0, 5, n)], n, 15))
    # Saturated clothing colours: a person stands out from sky, road and verge.
    cv.set_colour(_PED_TORSO, _jitter(rng, _CLOTHES[rng.integers(0, len(_CLOTHES), n)], n, 20))
    cv.set_colour(_PED_HEAD, _jitter(rng, _SKIN[rng.integers(0, 5, n)], n, 12))


def _draw_cars(sc: _Scene) -> None:
    """Up to three cars: body with cabin, two windows, two wheels, lights."""
    cv, rng, n, size, u, uni, night = sc.cv, sc.rng, sc.n, sc.size, sc.u, sc.rng.uniform, sc.night
    for c in range(MAX_CARS):
        layer = f"car{c}"
        s, cx, yb, d, p = sc.layer(layer)
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
        sc.areas[layer] = _count(body | wheels) / np.clip(inside, 1e-3, 1.0)
        sc.masks[layer] = body | wheels
        cv.set_colour(base, _jitter(rng, _CAR_COLOURS[rng.integers(0, 8, n)], n, 15))
        cv.set_colour(base + 1, _jitter(rng, [[135, 165, 195]], n, 20))
        cv.set_colour(base + 2, _jitter(rng, [[22, 22, 24]], n, 6))
        # Parked cars have their lights off, also at night.
        lights_on = night & (uni(size=n) < 0.5)
        light = np.where(lights_on[:, None], [[255, 245, 200]], [[225, 215, 170]])
        cv.set_colour(base + 3, _jitter(rng, light, n, 10), emissive=lights_on)


def _draw_stop_sign(sc: _Scene) -> None:
    """Pole, white rim, red octagon, white text bar."""
    cv, rng, n, u = sc.cv, sc.rng, sc.n, sc.u
    s, cx, yb, d, p = sc.layer("stop_sign")
    centre = yb - 18.3 * s * u
    pole = cv.rect(cx, yb - 9 * s * u, 0.6 * s * u, 9 * s * u)
    cv.paint(pole, _STOP_POLE, d, p)
    rim = cv.octagon(cx, centre, 4.6 * s * u)
    cv.paint(rim, _STOP_RIM, d, p)
    cv.paint(cv.octagon(cx, centre, 3.9 * s * u), _STOP_FACE, d, p)
    cv.paint(cv.rect(cx, centre, 2.6 * s * u, 0.75 * s * u), _STOP_TEXT, d, p)
    sc.areas["stop_sign"] = _count(rim)
    sc.masks["stop_sign"] = rim | pole
    cv.set_colour(_STOP_POLE, _jitter(rng, [[115, 115, 120]], n, 20))
    cv.set_colour(_STOP_RIM, _jitter(rng, _WHITE, n, 10))
    cv.set_colour(_STOP_FACE, _jitter(rng, _SIGN_RED, n, 20))
    cv.set_colour(_STOP_TEXT, _jitter(rng, _WHITE, n, 10))


def _draw_traffic_light(sc: _Scene) -> None:
    """Pole, housing, three lamps with exactly one lit."""
    cv, rng, n, u, uni = sc.cv, sc.rng, sc.n, sc.u, sc.rng.uniform
    s, cx, yb, d, p = sc.layer("traffic_light")
    centre = yb - 21.3 * s * u
    pole = cv.rect(cx, yb - 7.5 * s * u, 0.7 * s * u, 7.5 * s * u)
    cv.paint(pole, _TL_POLE, d, p)
    housing = cv.rect(cx, centre, 2.7 * s * u, 6.7 * s * u)
    cv.paint(housing, _TL_HOUSING, d, p)
    r = 1.7 * s * u
    step = 4.2 * s * u
    lamps = cv.ellipse(cx, centre - step, r, r) | cv.ellipse(cx, centre, r, r) | cv.ellipse(cx, centre + step, r, r)
    cv.paint(lamps, _TL_LAMPS, d, p)
    lit = rng.integers(0, 3, n)
    lit_mask = cv.ellipse(cx, centre + (lit - 1) * step, r, r)
    cv.paint(lit_mask, _TL_LIT, d, p)
    sc.areas["traffic_light"] = _count(housing)
    sc.masks["traffic_light"] = housing | pole
    cv.set_colour(_TL_POLE, _jitter(rng, [[65, 65, 70]], n, 12))
    yellow = uni(size=n) < 0.2
    housing_colour = np.where(yellow[:, None], [[200, 170, 45]], [[35, 35, 38]])
    cv.set_colour(_TL_HOUSING, _jitter(rng, housing_colour, n, 10))
    cv.set_colour(_TL_LAMPS, _jitter(rng, [[58, 58, 58]], n, 8))
    cv.set_colour(_TL_LIT, _jitter(rng, _LAMP_COLOURS[lit], n, 10), emissive=True)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """A (B, S, S) mask grown by one pixel in the four axis directions."""
    grown = mask.copy()
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    grown[:, :, 1:] |= mask[:, :, :-1]
    grown[:, :, :-1] |= mask[:, :, 1:]
    return grown


def _draw_marking(sc: _Scene, relatedness: float, mark_rng: np.random.Generator) -> None:
    """The shared marking: a one-pixel hi-vis border around each marked task object."""
    if mark_rng is None:
        raise ValueError("render_scenes: relatedness > 0 needs mark_rng, the marking's own random stream.")
    cv, n = sc.cv, sc.n
    for layer, silhouette in sc.masks.items():
        marked = sc.present[layer] & (mark_rng.random(n) < relatedness)
        cv.paint(_dilate(silhouette) & ~silhouette, _MARK, sc.depth[layer], marked)
    colour = np.clip(_MARK_COLOUR + mark_rng.uniform(-12, 12, (n, 3)), 0, 255).astype(np.float32)
    cv.set_colour(_MARK, colour, emissive=True)


def _expose(sc: _Scene) -> tuple[np.ndarray, np.ndarray]:
    """Colours, lighting and sensor noise; returns the uint8 images and each pixel's palette index."""
    cv, rng, n, uni, tod = sc.cv, sc.rng, sc.n, sc.rng.uniform, sc.tod
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
    return images, ids


def _labels(sc: _Scene, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Each object's label from the pixels in which it can be seen."""
    n, present, areas = sc.n, sc.present, sc.areas
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
    labels["time_of_day"] = sc.tod.astype(np.int64)
    return labels


def _count(mask: np.ndarray) -> np.ndarray:
    """Number of True pixels per image of a (B, S, S) mask."""
    return np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1)

