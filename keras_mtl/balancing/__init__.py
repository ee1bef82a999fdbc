"""Task balancing: how the per-task losses (or gradients) become one update.

A strategy is an object handed to ``model.compile(balancing=...)``. Each
strategy owns its logic; the model only asks it, at every training step, for

* :meth:`Balancer.combine` — the weights of the per-task losses, from which
  the model forms the total loss ``Σ w_i L_i`` (plus the strategy's own
  regulariser, if any);
* :meth:`Balancer.aggregate` — for strategies that look at per-task
  gradients (``gradient_scope != None``), the update of the shared
  parameters from the per-task gradients;
* :meth:`Balancer.end_epoch` — an epoch-level hook (e.g. DWA).

Weights that depend on the losses (``1 / L_i``) are returned under
``stop_gradient``: the gradient treats them as constants.

Every strategy receives ``present``, a boolean per task that is ``False``
when the batch holds no labelled entry of that task: such a task contributes
no gradient, and the strategy makes no weight update for it from that batch.

Strategies keep their state in Keras variables, which the model saves with
its weights, so they survive ``.keras`` files and ``BackupAndRestore``.

Under ``tf.distribute`` the model hands the hooks global values (per-task
losses and gradients summed over replicas), so every replica computes the
same state; state variables are created with
``aggregation="only_first_replica"`` to be assignable from each replica. A
strategy that cannot give every replica the same numbers sets
``distributed_error``, and ``compile`` raises it under a strategy with more
than one replica.

Layout (one file per strategy, as torchjd and LibMTL keep them; every name
is importable from ``keras_mtl.balancing``):

* :mod:`~keras_mtl.balancing.base` — :class:`Balancer` and :func:`log_loss_weights`;
* the loss weightings, one module each: ``fixed_weights``,
  ``uncertainty_weighting``, ``dwa``, ``gradnorm``,
  ``random_loss_weighting``, ``scale_invariant``, ``famo``, ``gls``,
  ``stch``, ``excess_mtl``, ``go4align``, and torchjd's preference
  scalarisations ``cosmos`` and ``pbi``;
* :mod:`~keras_mtl.balancing.aggregator` — :class:`GradientAggregator`, the
  base of the gradient aggregators, one module each: ``pcgrad``, ``mgda``,
  ``cagrad``, ``imtlg``, ``aligned_mtl``, ``nash_mtl``, ``upgrad``, ``dbmtl``,
  ``graddrop``, ``gradvac``, ``dualproj``, ``config`` (ConFIG), ``fairgrad``,
  ``imtl`` (IMTL-L with IMTL-G), and the stochastic ones ``moco``,
  ``sdmgrad`` and ``modo`` (their weights kept on the simplex by
  :mod:`~keras_mtl.balancing.simplex_state`), and torchjd's robust
  ``krum`` and ``trimmed_mean``; ``crmogm`` smooths another aggregator's
  weights over steps;
* :mod:`~keras_mtl.balancing.solvers` — the in-graph solvers they share
  (:func:`project_to_simplex`, the quadratic minimiser, the normalised Gram matrix);
* :mod:`~keras_mtl.balancing.registry` — :func:`get` and the built-in
  strategies by name.

Example:
    >>> type(get(None)).__name__  # compile's default: the fixed loss weights
    'FixedWeights'
    >>> UncertaintyWeighting().gradient_scope, GradNorm().gradient_scope, UPGrad().gradient_scope
    (None, 'last_shared', 'shared')
"""

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.aligned_mtl import AlignedMTL
from keras_mtl.balancing.base import Balancer, log_loss_weights
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
from keras_mtl.balancing.registry import _STRATEGIES as _STRATEGIES  # the built-ins by name
from keras_mtl.balancing.registry import get
from keras_mtl.balancing.scale_invariant import ScaleInvariant
from keras_mtl.balancing.sdmgrad import SDMGrad
from keras_mtl.balancing.solvers import project_to_simplex
from keras_mtl.balancing.stch import STCH
from keras_mtl.balancing.trimmed_mean import TrimmedMean
from keras_mtl.balancing.uncertainty_weighting import UncertaintyWeighting
from keras_mtl.balancing.upgrad import UPGrad

__all__ = [
    "AlignedMTL",
    "Balancer",
    "CAGrad",
    "COSMOS",
    "CRMOGM",
    "ConFIG",
    "DBMTL",
    "DWA",
    "DualProj",
    "ExcessMTL",
    "FAMO",
    "FairGrad",
    "FixedWeights",
    "GLS",
    "GO4Align",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "GradientAggregator",
    "IMTL",
    "IMTLG",
    "Krum",
    "MGDA",
    "MoCo",
    "MoDo",
    "NashMTL",
    "PBI",
    "PCGrad",
    "RandomLossWeighting",
    "SDMGrad",
    "STCH",
    "ScaleInvariant",
    "TrimmedMean",
    "UPGrad",
    "UncertaintyWeighting",
    "get",
    "log_loss_weights",
    "project_to_simplex",
]
