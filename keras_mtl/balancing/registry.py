"""The built-in strategies by name, and :func:`get`: what ``compile(balancing=...)`` accepts.

It sits above every strategy module (it names them all), so that none of
them, nor :mod:`keras_mtl.balancing.base`, imports another strategy.
"""

from __future__ import annotations

import keras

from keras_mtl.balancing.aligned_mtl import AlignedMTL
from keras_mtl.balancing.base import Balancer
from keras_mtl.balancing.cagrad import CAGrad
from keras_mtl.balancing.config import ConFIG
from keras_mtl.balancing.cosmos import COSMOS
from keras_mtl.balancing.crmogm import CRMOGM
from keras_mtl.balancing.dbmtl import DBMTL
from keras_mtl.balancing.dualproj import DualProj
from keras_mtl.balancing.dwa import DWA
from keras_mtl.balancing.excess_mtl import ExcessMTL
from keras_mtl.balancing.fairgrad import FairGrad
from keras_mtl.balancing.famo import FAMO
from keras_mtl.balancing.fixed_weights import FixedWeights
from keras_mtl.balancing.gls import GLS
from keras_mtl.balancing.go4align import GO4Align
from keras_mtl.balancing.graddrop import GradDrop
from keras_mtl.balancing.gradnorm import GradNorm
from keras_mtl.balancing.gradvac import GradVac
from keras_mtl.balancing.imtl import IMTL
from keras_mtl.balancing.imtlg import IMTLG
from keras_mtl.balancing.krum import Krum
from keras_mtl.balancing.mgda import MGDA
from keras_mtl.balancing.moco import MoCo
from keras_mtl.balancing.modo import MoDo
from keras_mtl.balancing.nash_mtl import NashMTL
from keras_mtl.balancing.pbi import PBI
from keras_mtl.balancing.pcgrad import PCGrad
from keras_mtl.balancing.random_loss_weighting import RandomLossWeighting
from keras_mtl.balancing.scale_invariant import ScaleInvariant
from keras_mtl.balancing.sdmgrad import SDMGrad
from keras_mtl.balancing.stch import STCH
from keras_mtl.balancing.trimmed_mean import TrimmedMean
from keras_mtl.balancing.uncertainty_weighting import UncertaintyWeighting
from keras_mtl.balancing.upgrad import UPGrad

__all__ = ["get"]

# Every built-in strategy, by class name, in the order the benchmarks and the tests visit them.
_STRATEGIES = {cls.__name__: cls for cls in
               (FixedWeights, UncertaintyWeighting, DWA, GradNorm, PCGrad, RandomLossWeighting,
                ScaleInvariant, FAMO, MGDA, CAGrad, IMTLG, AlignedMTL, NashMTL, UPGrad, DBMTL,
                # loss weightings, then gradient aggregators, from LibMTL's and torchjd's lists
                GLS, STCH, ExcessMTL, GO4Align, GradDrop, GradVac, DualProj, ConFIG, FairGrad, IMTL,
                MoCo, SDMGrad, MoDo, Krum, TrimmedMean,
                # torchjd's preference scalarisations and its weight smoothing
                COSMOS, PBI, CRMOGM)}


def get(strategy) -> Balancer:
    """A strategy instance from an instance, a class, a serialised config, or ``None`` (fixed weights).

    Example:
        >>> type(get(None)).__name__, type(get(UPGrad)).__name__
        ('FixedWeights', 'UPGrad')
        >>> get("UPGrad")
        Traceback (most recent call last):
        ...
        ValueError: balancing='UPGrad' is not a strategy object; pass e.g. kmtl.balancing.UncertaintyWeighting(). ...
    """
    if strategy is None:
        return FixedWeights()
    if isinstance(strategy, type) and issubclass(strategy, Balancer):
        return strategy()
    if isinstance(strategy, dict):
        strategy = keras.saving.deserialize_keras_object(strategy)
    if not isinstance(strategy, Balancer):
        raise ValueError(
            f"balancing={strategy!r} is not a strategy object; pass e.g. "
            f"kmtl.balancing.UncertaintyWeighting(). Available: {sorted(_STRATEGIES)}."
        )
    return strategy
