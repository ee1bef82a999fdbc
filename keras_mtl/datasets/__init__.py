"""Datasets for multi-task learning.

Importing this package registers the ``street_scenes`` TFDS builder, so that
``tfds.load("street_scenes/<config>")`` works afterwards.
"""

from keras_mtl.datasets.street_scenes import (
    OBJECT_TASKS,
    StreetScenes,
    generate_street_scenes,
    load_street_scenes,
)

__all__ = [
    "OBJECT_TASKS",
    "StreetScenes",
    "generate_street_scenes",
    "load_street_scenes",
]
