"""keras_mtl: multi-task learning for Keras 3 with missing labels."""

from keras_mtl import balancing, data, distribute, kinds, losses, metrics, missing, sharing, transfer
from keras_mtl.comparison import CompareResult, compare
from keras_mtl.export import export_saved_model
from keras_mtl.missing import MISSING, MISSING_REGRESSION
from keras_mtl.model import MultiTaskModel
from keras_mtl.tasks import Task

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "MISSING_REGRESSION",
    "CompareResult",
    "MultiTaskModel",
    "Task",
    "__version__",
    "balancing",
    "compare",
    "data",
    "distribute",
    "export_saved_model",
    "kinds",
    "losses",
    "metrics",
    "missing",
    "sharing",
    "transfer",
]
