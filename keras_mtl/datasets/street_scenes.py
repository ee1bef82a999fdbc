"""Procedurally generated street scenes for multi-task learning.

Every image shows a road under one of three lightings (day, dusk, night). Four
kinds of object may appear, independently of each other: a pedestrian, cars
(0 to 3), a stop sign and a traffic light. Each one is a binary task, so one
image answers four questions at once; the tasks share low-level features
(poles, red paint, round shapes, dark night pixels), which is what makes them a
good example for multi-task learning. Look-alike distractors (round and
triangular red signs, poles with boxes or a pedestrian signal, trailers, trees,
coloured blobs, some glowing at night) keep every task from being trivial.

How much the four objects share is a setting: ``relatedness`` (0 to 1) gives
each object, with that probability, a shared hi-vis border that distractors
never have (see `keras_mtl.datasets.street_render`), so the condition of the
multi-task claim — tasks that share low-level features — can be switched on
and off.

Labellers rarely mark every object. `generate_street_scenes` can hide labels
with two patterns, and the TFDS builder `StreetScenes` (registered as
``street_scenes``) stores several fixed configurations on disk::

    import keras_mtl.datasets  # registers "street_scenes" with TFDS
    ds = tfds.load("street_scenes/small", split="train")

The drawing lives in `keras_mtl.datasets.street_render`, the TFDS builder in
`keras_mtl.datasets.street_scenes_tfds`.

In TFDS records every label is an int64 and a missing label is ``-1``, which is
keras_mtl's ``MISSING`` sentinel.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from keras_mtl.datasets.street_render import MAX_CARS, OBJECT_TASKS, render_scenes

__all__ = ["EXTRA_TASKS", "MAX_CARS", "MISSING_PATTERNS", "OBJECT_TASKS", "TIME_OF_DAY_NAMES",
           "generate_street_scenes"]

EXTRA_TASKS = ("num_cars", "time_of_day")
"""Names of the two integer-valued extra tasks."""

TIME_OF_DAY_NAMES = ("day", "dusk", "night")
"""Class names of the ``time_of_day`` task, indexed by class id."""

MISSING_PATTERNS = ("none", "uniform", "annotator")
"""Valid values of the ``missing`` argument of `generate_street_scenes`."""

# keras_mtl's MISSING sentinel (keras_mtl.missing.MISSING); written as a literal
# so this subpackage stays importable on its own.
_MISSING = -1

_MIN_IMAGE_SIZE = 32
# Pixels per chunk: 256 images at 64x64. Bounds the float32 working set to
# roughly 50 MB whatever the image size.
_CHUNK_PIXELS = 256 * 64 * 64
# Threads drawing chunks at once: one per core, up to 4.
_DRAWING_THREADS = min(4, os.cpu_count() or 1)


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


def _validate(num_examples: int, image_size: int, seed: int, missing: str, fraction: float,
              relatedness: float = 0.0) -> None:
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
    if not isinstance(relatedness, (int, float, np.floating)) or not (0.0 <= relatedness <= 1.0):
        raise ValueError(f"relatedness must be in [0, 1] (0: objects share only what the drawing gives them, "
                         f"1: every object carries the shared marking), got {relatedness!r}.")


def _draw_chunk(index: int, n: int, image_size: int, seed: int, missing: str, fraction: float,
                relatedness: float) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(images, full labels, missing masks) of chunk ``index``, which holds ``n`` scenes."""
    # Independent streams per chunk and purpose: the pictures do not change
    # with the missing-label pattern, only which labels are hidden.
    images, labels = render_scenes(np.random.default_rng([seed, index, 0]), n, image_size,
                                   relatedness=float(relatedness),
                                   mark_rng=np.random.default_rng([seed, index, 2]))
    masks = _missing_masks(np.random.default_rng([seed, index, 1]), n, missing, float(fraction))
    return images, labels, masks


def _iter_chunks(
    num_examples: int, image_size: int, seed: int, missing: str, fraction: float, relatedness: float = 0.0
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Yields (images, full labels, missing masks) chunk by chunk, in order.

    Chunks are drawn by a few threads at once (NumPy releases the GIL inside
    its array operations); each has its own random streams, so the arrays do
    not depend on which thread drew them or when.
    """
    chunk = max(1, _CHUNK_PIXELS // (image_size * image_size))
    sizes = [min(chunk, num_examples - start) for start in range(0, num_examples, chunk)]
    workers = min(_DRAWING_THREADS, len(sizes))
    if workers < 2:
        for index, n in enumerate(sizes):
            yield _draw_chunk(index, n, image_size, seed, missing, fraction, relatedness)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending = deque()  # at most 2 chunks per thread in flight bounds the memory
        for index, n in enumerate(sizes):
            pending.append(pool.submit(_draw_chunk, index, n, image_size, seed, missing, fraction, relatedness))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def generate_street_scenes(
    num_examples: int,
    *,
    image_size: int = 64,
    seed: int = 0,
    missing: str = "uniform",
    missing_fraction: float = 0.0,
    relatedness: float = 0.0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draws street scenes and their multi-task labels.

    Each image shows sky and road under day, dusk or night lighting. A
    pedestrian, a stop sign and a traffic light each appear with probability
    0.5, and half of the images hold 1 to 3 cars; all independently, at random
    positions and scales (0.6-1.4x), overlapping in depth order. An object
    hidden by more than 70 % behind nearer ones counts as absent. Drawing is
    vectorised over chunks of images, several chunks at once on several cores.

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
        relatedness: How much the four objects share, in [0, 1]: the
            probability that each object carries the shared hi-vis border.
            0 (the default) draws the scenes as in dataset version 1.0.0; the
            rest of every scene is the same whatever the value.

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
    _validate(num_examples, image_size, seed, missing, missing_fraction, relatedness)
    image_parts, label_parts = [], {k: [] for k in OBJECT_TASKS + EXTRA_TASKS}
    for images, labels, masks in _iter_chunks(int(num_examples), int(image_size), int(seed), missing, missing_fraction,
                                             relatedness):
        image_parts.append(images)
        for k in OBJECT_TASKS:
            label_parts[k].append(np.where(masks[k], np.float32(np.nan), labels[k]))
        for k in EXTRA_TASKS:
            label_parts[k].append(np.where(masks[k], _MISSING, labels[k]))
    return np.concatenate(image_parts), {k: np.concatenate(v) for k, v in label_parts.items()}
