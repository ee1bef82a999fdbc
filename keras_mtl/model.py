"""MultiTaskModel: a functional Keras model with one named head per task."""

from __future__ import annotations

import functools
import warnings

import keras
import numpy as np
from keras import ops

from keras_mtl import backend as backend_lib
from keras_mtl import balancing as balancing_lib
from keras_mtl import data as data_lib
from keras_mtl import distribute as distribute_lib
from keras_mtl import metrics as metrics_lib
from keras_mtl import sharing as sharing_lib
from keras_mtl.heads import (
    FUSED_LOGITS,
    FusedTaskLoss,
    HeadLayout,
    TaskHeads,
    TaskMetrics,
    TaskOutputs,
    forward_outputs,
    stack_groups,
)
from keras_mtl.losses import check_normalize
from keras_mtl.tasks import Task, check_tasks

__all__ = ["LossTerms", "MultiTaskModel"]

# keras_mtl's own layers: names a user's trunk would not pick (a clash raises a clear error).
HEADS_LAYER = "kmtl_heads"
SHARING_LAYER = "kmtl_sharing"
OUTPUTS_LAYER = "kmtl_outputs"
FLATTEN_LAYER = "kmtl_flatten"
OWN_LAYERS = (HEADS_LAYER, SHARING_LAYER, OUTPUTS_LAYER, FLATTEN_LAYER)
# Up to this many tasks, training logs every task's loss and metrics (a display choice:
# evaluate and validation always report every task).
LOG_EVERY_TASK_UP_TO = 16


class _LogitsPath:
    """The model's graph up to the fused logits, and its output layer; the model's own layers.

    Held outside Keras's tracking, as :class:`_RepresentationSplit`.
    """

    def __init__(self, model):
        self.model = keras.Model(model.input, model.output[FUSED_LOGITS])
        self.outputs = model.task_outputs


class _RepresentationSplit:
    """The model's graph cut at the shared representation, sharing the model's layers.

    ``trunk``: inputs → representation; ``head``: representation → the
    forward pass's outputs. Held outside Keras's tracking (no second copy
    of the layers in ``summary()``, saved files or checkpoints).
    """

    def __init__(self, model, representation):
        self.trunk = keras.Model(model.input, representation)
        self.head = keras.Model(representation, model.output)


class _Compiled:
    """What ``compile`` derived from the tasks (plain Python, untracked)."""

    def __init__(self, loss, weights, log_every_task, step_reads_logits_only=False):
        self.loss = loss
        self.weights = weights
        self.log_every_task = log_every_task
        # Whether a training step needs nothing of the forward pass but the fused logits.
        self.step_reads_logits_only = step_reads_logits_only


class LossTerms:
    """One step's loss, in the parts a gradient-based strategy needs.

    Attributes:
        task_losses: per-task losses ``(T,)`` (this replica's shares under
            ``tf.distribute``).
        present: ``(T,)`` bool, whether the batch labels each task.
        weights: the loss weights of this step ``(T,)``.
        rest: the strategy's own terms and every regulariser, a scalar, or
            ``None`` when there are none.
        total: the scalar loss that trains: ``Σ w_i L_i`` plus the rest.
    """

    def __init__(self, task_losses, present, weights, rest=None):
        self.task_losses, self.present, self.weights, self.rest = task_losses, present, weights, rest
        self._weighted = task_losses * weights
        total = ops.sum(self._weighted)
        self.total = total if rest is None else total + rest

    @functools.cached_property
    def rows(self):
        """``(T + 1,)``: ``w_i L_i`` for each task, then the rest; they sum to ``total``.

        Built when first read: only the steps of gradient-based strategies
        read them (TensorFlow's under its tape), Keras's own step never.
        """
        rest = ops.zeros((1,), self._weighted.dtype) if self.rest is None else ops.reshape(self.rest, (1,))
        return ops.concatenate([self._weighted, rest])


class _EpochLogs(keras.callbacks.Callback):
    """Completes each training epoch's logs, then calls the strategy's epoch hook.

    First in the callback list, so ``History``, the progress bar and
    checkpoints see what it does. Where training logs only the task means
    (many tasks) it adds each task's last loss weight (``weight_<task>``,
    for adaptive strategies) and recomputes the means from the metrics at
    the epoch's end — read across replicas, where the step's own logs hold
    one replica's values under ``tf.distribute``, and with ``mean_auc``,
    which the steps leave out. The weights are the
    training's state, not a validation figure: ``val_weight_<task>`` is
    dropped.
    """

    # Keras's CallbackList runs batch-end hooks off the training loop (JAX, PyTorch) only when
    # every callback with such a hook declares it safe; this one only reads the logs it is given.
    async_safe = True

    def __init__(self, model):
        super().__init__()
        self.mtl_model = model
        self.checked_scales = False

    def on_train_batch_end(self, batch, logs=None):
        # The step's logs hold every task's loss unless the model logs task means only;
        # then the check waits for the epoch's end, where every backend has synced the metrics.
        if self.checked_scales:
            return  # once: no look-up of every task's key at each later step
        losses = _task_losses_in(logs or {}, self.mtl_model.task_names)
        if losses is not None:
            self.checked_scales = True
            _warn_if_one_task_dominates(self.mtl_model, losses, "first batch")

    def on_epoch_end(self, epoch, logs=None):
        model = self.mtl_model
        if not self.checked_scales:
            self.checked_scales = True
            losses = ops.convert_to_numpy(model._metric(metrics_lib.TaskLossMeans).vectors()["loss"])
            _warn_if_one_task_dominates(model, losses, "first epoch")
        if logs is not None:
            for key in [k for k in logs if k.startswith("val_weight_")]:
                del logs[key]
            weights = model._metric(metrics_lib.TaskWeights)
            if weights is not None:
                logs.update(_floats(weights.result()))
            if not model._compiled.log_every_task:
                means = model._metric(TaskMetrics).task_means(model._metric(metrics_lib.TaskLossMeans))
                logs.update(_floats({"loss": model.loss_metric.result(), **means}))
        model.balancing.end_epoch()


# A task whose weighted loss is this many times the median of the other tasks' gets a warning.
DOMINANT_LOSS_RATIO = 100.0


def _other_terms(extra, extra_losses):
    """The strategy's own term plus the regularisers, as each replica's share; ``None`` when both are absent."""
    no_extra = isinstance(extra, (int, float)) and extra == 0
    if no_extra and not extra_losses:
        return None
    rest = ops.convert_to_tensor(extra, "float32")
    if extra_losses:
        rest = rest + ops.sum(ops.stack([ops.cast(ops.sum(v), "float32") for v in extra_losses]))
    return distribute_lib.replica_share(rest)


def _task_losses_in(logs: dict, names) -> np.ndarray | None:
    keys = [f"{name}_loss" for name in names]
    return np.array([float(logs[key]) for key in keys]) if all(key in logs for key in keys) else None


def _warn_if_one_task_dominates(model, losses, when: str):
    """Warns, at the start of training, of a task whose weighted loss dwarfs the others'.

    Typically a regression target in large raw units (grams, dollars): its
    gradient swamps the shared layers and the other tasks learn little.

    Args:
        model: the model being trained.
        losses: every task's loss ``(T,)``, from the first step's logs, or
            the first epoch's mean where the steps log task means only.
        when: ``"first batch"`` or ``"first epoch"``, for the message.
    """
    weighted = losses * ops.convert_to_numpy(model._compiled.weights)
    worst = int(np.argmax(weighted))
    others = np.delete(weighted, worst)
    others = others[others > 0]  # a task the batch did not label has no loss
    if len(others) == 0:
        return
    median = float(np.median(others))
    ratio = float(weighted[worst]) / median
    if ratio >= DOMINANT_LOSS_RATIO:
        name = model.task_names[worst]
        warnings.warn(
            f"Task {name!r}: its weighted loss on the {when} ({weighted[worst]:.4g}) is "
            f"{ratio:.0f}x the median of the other tasks' ({median:.4g}); it will dominate the shared layers "
            f"and the other tasks will learn little. If {name!r} is a regression target in large "
            "units, let the model standardise it (kmtl.Task(..., standardize=True), the default, "
            "and standardize_targets=True), or standardise it yourself; or lower its weight, e.g. "
            f"compile(loss_weights={{{name!r}: {1.0 / ratio:.2g}}}).",
            stacklevel=2,
        )


def _floats(values: dict) -> dict:
    return {k: float(ops.convert_to_numpy(v)) for k, v in values.items()}


@keras.saving.register_keras_serializable(package="keras_mtl")
class MultiTaskModel(keras.Model):
    """A functional model: the user's trunk, then one named head per task.

    ``model.predict(x)`` returns ``{task name: output}`` in user units:
    probabilities for binary, multilabel and categorical tasks, values for
    regression. All heads share one fused kernel, and ``model(x)`` — the
    forward pass that ``fit`` and ``evaluate`` run — returns the same outputs
    plus the fused logits under ``kmtl.heads.FUSED_LOGITS``: the loss
    (:meth:`compute_loss`) and the metrics (:meth:`compute_metrics`) read
    them there, so every task's loss is computed exactly, from logits.

    Args:
        inputs: the model's ``keras.Input`` tensor(s) (a tensor, list or
            dict, as for ``keras.Model``).
        features: the trunk's output tensor, shape ``(batch, d)``. Features
            of higher rank are flattened.
        tasks: a list of :class:`keras_mtl.Task`.
        sharing: optional sharing architecture from :mod:`keras_mtl.sharing`
            (``SoftSharing``, ``CrossStitch``, ``MMoE``, ``PLE``) turning the
            features into per-task features; ``None`` is hard sharing.
        name: model name.
        standardize_targets: ``False`` learns every regression target in
            the user's units; by default each regression task learns its
            targets standardised (``kmtl.Task(..., standardize=...)``), with
            statistics that the first ``fit`` sets (:meth:`adapt_targets`).

    Example:
        >>> import keras, keras_mtl as kmtl
        >>> inputs = keras.Input((8,), name="x")
        >>> features = keras.layers.Dense(16, activation="relu")(inputs)
        >>> model = kmtl.MultiTaskModel(inputs, features, [kmtl.Task("car"), kmtl.Task("bike")])
        >>> model.task_names, sorted(model(keras.ops.zeros((2, 8))))
        (['car', 'bike'], ['bike', 'car', 'kmtl:fused_logits'])
    """

    def __init__(self, inputs, features, tasks, sharing=None, name=None, *, standardize_targets=True, **kwargs):
        tasks = check_tasks(tasks)
        if not isinstance(features, keras.KerasTensor):
            raise TypeError(
                "features must be the output tensor of the trunk, e.g. "
                "features = keras.layers.Dense(64)(inputs); got "
                f"{type(features).__name__}."
            )
        _check_layer_names(inputs, features, [HEADS_LAYER, OUTPUTS_LAYER]
                           + ([FLATTEN_LAYER] if len(features.shape) > 2 else [])
                           + ([SHARING_LAYER] if sharing is not None else []))
        if len(features.shape) > 2:
            features = keras.layers.Flatten(name=FLATTEN_LAYER)(features)
        layout = HeadLayout(tasks)
        if sharing is None:
            logits = TaskHeads(layout.units, name=HEADS_LAYER)(features)
        else:
            if not isinstance(sharing, sharing_lib.SharingLayer):
                raise TypeError(
                    f"sharing={sharing!r} is not a sharing layer; pass e.g. kmtl.sharing.MMoE()."
                )
            if sharing.num_tasks not in (None, len(tasks)):
                raise ValueError(f"This sharing layer was built for {sharing.num_tasks} tasks, "
                                 f"not {len(tasks)}; create a new one.")
            sharing.num_tasks = len(tasks)
            sharing.name = SHARING_LAYER
            per_task = sharing(features)
            logits = TaskHeads(layout.units, task_units=[t.units for t in tasks],
                               column_tasks=layout.column_tasks, name=HEADS_LAYER)(per_task)
        outputs = forward_outputs(logits, layout, name=OUTPUTS_LAYER, standardize=standardize_targets)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self._setup(tasks)

    def _setup(self, tasks):
        self._tasks = list(tasks)
        self._task_names = tuple(t.name for t in self._tasks)  # read at every step
        self._layout = HeadLayout(self._tasks)
        # Tracked Keras state, replaced on every compile: the strategy (its
        # variables train, save and restore with the model's) and the metrics.
        self._strategy_slot = []
        self._metric_slot = []
        self._compiled = None
        self._split = None  # built when a strategy first needs it
        self._logits_path = _LogitsPath(self)

    # -- tasks ----------------------------------------------------------------

    @property
    def tasks(self) -> list[Task]:
        """The model's tasks, in order."""
        return list(self._tasks)

    @property
    def task_names(self) -> list[str]:
        return list(self._task_names)

    def get_task(self, name: str) -> Task:
        """The task called ``name``; raises a ``ValueError`` listing the tasks."""
        for task in self._tasks:
            if task.name == name:
                return task
        raise ValueError(f"Unknown task {name!r}; the model's tasks are {self.task_names}.")

    @property
    def loss_weights(self) -> dict[str, float]:
        """Loss weight of each task in the compiled model (else the tasks')."""
        if self._compiled is None:
            return {t.name: t.loss_weight for t in self._tasks}
        return dict(zip(self.task_names, (float(w) for w in self._compiled.weights)))

    @property
    def sharing(self):
        """The sharing layer (``None`` for hard sharing)."""
        return _last_layer_of_type(self, sharing_lib.SharingLayer)

    @property
    def task_heads(self) -> TaskHeads:
        """The fused head layer: shared representation (or per-task features) → fused logits."""
        return _last_layer_of_type(self, TaskHeads)

    @property
    def task_outputs(self) -> TaskOutputs:
        """The output layer: fused logits → every task's output in user units."""
        return _last_layer_of_type(self, TaskOutputs)

    def target_statistics(self) -> dict[str, tuple[float, float]]:
        """``{task: (mean, std)}`` of each standardised regression task (user units)."""
        layer = self.task_outputs
        mean, scale = (ops.convert_to_numpy(v) for v in (layer.target_mean, layer.target_scale))
        return {name: (float(mean[self._layout.block(name).start]), float(scale[self._layout.block(name).start]))
                for name in layer.standardized}

    def adapt_targets(self, y) -> dict[str, tuple[float, float]]:
        """Sets each standardised regression task's mean and standard deviation from labels.

        ``fit`` calls it on its training data the first time (while the
        statistics are still 0 and 1); call it yourself to set them from
        other data, e.g. before training on a generator. Only labelled
        entries count; a task with no labelled entry, or one value only,
        keeps mean 0 or std 1.

        Args:
            y: ``{task: labels}`` in user units (missing as ``NaN``, ``None``
                or ``"?"``), a ``DataFrame`` with a column per task, or a
                ``tf.data.Dataset`` of ``(x, y[, sample_weight])`` (read once).

        Returns:
            :meth:`target_statistics` after the update.
        """
        layer = self.task_outputs
        names = layer.standardized
        if not names:
            return {}
        columns = _target_columns(y, [self.get_task(n) for n in names], self._tasks)
        mean = ops.convert_to_numpy(layer.target_mean).copy()
        scale = ops.convert_to_numpy(layer.target_scale).copy()
        for name, values in columns.items():
            block = self._layout.block(name)
            values = values.reshape(len(values), -1)
            for unit in range(block.stop - block.start):
                labelled = values[:, unit][np.isfinite(values[:, unit])]
                mean[block.start + unit] = labelled.mean() if len(labelled) else 0.0
                std = labelled.std() if len(labelled) > 1 else 0.0
                scale[block.start + unit] = std if std > 1e-12 * max(1.0, abs(mean[block.start + unit])) else 1.0
        layer.target_mean.assign(mean)
        layer.target_scale.assign(scale)
        return self.target_statistics()

    def _targets(self):
        """``(mean, scale)`` of the output layer, which standardise the labels for the loss (or ``None``)."""
        layer = self.task_outputs
        return (layer.target_mean, layer.target_scale) if layer.standardized else None

    @property
    def representation_layer(self) -> keras.layers.Layer:
        """The layer that reads the shared representation: the sharing layer, else the heads.

        The shared representation (the trunk's output, flattened) is its
        ``input``.
        """
        sharing = self.sharing
        return self.task_heads if sharing is None else sharing

    def split_at_representation(self) -> tuple[keras.Model, keras.Model]:
        """``(trunk, head)``: the model cut at the shared representation.

        ``trunk(x)`` is the representation; ``head(representation)`` returns
        what ``model(x)`` returns. Both share the model's layers and
        variables; the training steps that need gradients with respect to
        the representation call them one after the other.
        """
        if self._split is None:
            self._split = _RepresentationSplit(self, self.representation_layer.input)
        return self._split.trunk, self._split.head

    def call(self, inputs, training=None, mask=None):
        """The forward pass: ``{task: output, FUSED_LOGITS: logits}``, as the functional graph.

        Runs the graph up to the fused logits, then the output layer
        itself: the same outputs, without Keras flattening and repacking
        every task's output at each call (at 1,000 tasks a few milliseconds
        per step on PyTorch, which runs eagerly; ``tests/test_model.py``
        checks both give the same numbers).
        """
        fused = self.fused_forward(inputs, training=training, mask=mask)
        return {**self._logits_path.outputs(fused[FUSED_LOGITS]), **fused}

    def fused_forward(self, inputs, training=None, mask=None):
        """``{FUSED_LOGITS: logits}``: the forward pass without the per-task outputs.

        What a training step needs when neither the loss nor the metrics
        read the per-task outputs (:meth:`step_reads_logits_only`).
        """
        return {FUSED_LOGITS: self._logits_path.model(inputs, training=training, mask=mask)}

    def step_reads_logits_only(self) -> bool:
        """Whether a training step's loss and metrics read nothing of the forward pass but the fused logits.

        True when the model was compiled with metrics that read the logits
        (the fused defaults, or none; not a task's own metrics nor those of
        standardised targets, which read the outputs in user units) and the
        step's hooks are keras_mtl's own (a subclass that overrides one may
        read the outputs).
        """
        return self._compiled is not None and self._compiled.step_reads_logits_only

    @staticmethod
    def fused_logits(y_pred):
        """The fused logits ``(batch, units)`` among the outputs of the model's forward pass.

        Raises:
            ValueError: if ``y_pred`` is not what ``model(x)`` returned.
        """
        if not isinstance(y_pred, dict) or FUSED_LOGITS not in y_pred:
            found = sorted(y_pred) if isinstance(y_pred, dict) else type(y_pred).__name__
            raise ValueError(
                f"The loss and the metrics read the fused logits that model(x) returns under "
                f"{FUSED_LOGITS!r}; got {found}. Pass the outputs of the model's own forward pass "
                "(y_pred = model(x)), not predictions in user units such as model.predict's."
            )
        return y_pred[FUSED_LOGITS]

    def sharing_weights(self, x=None, batch_size: int = 256) -> dict:
        """What the sharing architecture learned, as NumPy arrays.

        Args:
            x: inputs; needed for gate weights (MMoE, PLE), which depend on
                the example.
            batch_size: batch size for computing gates.

        Returns:
            ``{"gates": (T, E) mean gate weight of each task on each expert}``
            for MMoE/PLE (given ``x``), ``{"cross_stitch": [α per layer,
            (T, T)]}`` for CrossStitch, ``{"penalty": Ω}`` for SoftSharing;
            ``{}`` for hard sharing.
        """
        layer = self.sharing
        if layer is None:
            return {}
        found = {}
        if hasattr(layer, "stitches"):
            found["cross_stitch"] = [ops.convert_to_numpy(a) for a in layer.stitches]
        if hasattr(layer, "penalty"):
            found["penalty"] = float(ops.convert_to_numpy(layer.penalty()))
        if hasattr(layer, "gates") and x is not None:
            features = keras.Model(self.input, layer.input)
            computed = features.predict(x, batch_size=batch_size, verbose=0)
            gates = ops.convert_to_numpy(layer.gates(ops.convert_to_tensor(computed)))
            found["gates"] = gates.mean(axis=0)
        return found

    # -- compile --------------------------------------------------------------

    def compile(self, optimizer="adam", loss_weights=None, normalize="batch", metrics=None,
                balancing=None, log_every_task=None, loss=None, **kwargs):
        """Configures training with the masked loss and metrics of every task.

        Args:
            optimizer: optimizer name or instance.
            loss_weights: optional ``{task: weight}`` overriding the tasks'
                ``loss_weight`` (tasks not named keep theirs).
            normalize: ``"batch"`` (divide each task's summed loss by the
                batch size, the default) or ``"labeled"`` (mean over labelled
                entries).
            metrics: optional ``{task: [metrics]}`` overriding the tasks'
                metrics; a list applies to every task. Tasks left on their
                defaults (AUC and accuracy for binary/multilabel, accuracy
                for categorical, MAE for regression) share fused metrics.
            balancing: a task-balancing strategy from
                :mod:`keras_mtl.balancing` (e.g. ``UncertaintyWeighting()``);
                ``None`` keeps the fixed loss weights. Adaptive strategies log
                each task's current weight as ``weight_<task>``.
            log_every_task: whether ``fit`` logs every task's loss and
                metrics each step (``<task>_loss``, ``<task>_auc``, …).
                ``None``: only for up to 16 tasks; with more, training logs
                ``loss`` and the task means (``mean_task_loss``,
                ``mean_accuracy``, …; ``mean_auc`` at each epoch's end
                only) while ``evaluate`` and validation still report every
                task.
            loss: not accepted — the losses follow from the tasks (their
                kinds, or ``kmtl.Task(..., loss=...)``).
            **kwargs: passed to ``keras.Model.compile`` (``jit_compile``,
                ``steps_per_execution``, ``run_eagerly``, …).
        """
        if loss is not None:
            raise ValueError(
                "MultiTaskModel builds the masked loss of each task from the task; do "
                "not pass loss=. Give a task its own loss with kmtl.Task(name, loss=...), "
                "or change kind=..., loss_weights={...} or normalize=..."
            )
        if kwargs.pop("weighted_metrics", None) is not None:
            raise ValueError(
                "weighted_metrics= is not supported: every metric already counts "
                "labelled entries only; pass metrics={task: [...]}."
            )
        normalize = check_normalize(normalize)
        weights = self._resolve_loss_weights(loss_weights)
        chosen = self._resolve_metrics(metrics)
        if log_every_task is None:
            log_every_task = len(self._tasks) <= LOG_EVERY_TASK_UP_TO
        balancer = balancing_lib.get(balancing)
        if balancer.distributed_error and distribute_lib.num_replicas() > 1:
            raise ValueError(balancer.distributed_error)
        balancer.setup(self.task_names, weights)
        super().compile(optimizer=optimizer, **kwargs)
        self._strategy_slot.clear()
        self._strategy_slot.append(balancer)
        if _wrt_representation(balancer):
            self.representation_split()  # raises for a trunk without trainable variables
        task_metrics = TaskMetrics(self._layout, chosen, standardized=self.task_outputs.standardized)
        task_losses = metrics_lib.TaskLossMeans(self.task_names)
        weights_metric = metrics_lib.TaskWeights(self.task_names) if balancer.adaptive else None
        self._metric_slot.clear()
        self._metric_slot.extend(m for m in (task_losses, task_metrics, weights_metric) if m is not None)
        self._compiled = _Compiled(
            loss=FusedTaskLoss(self._layout, normalize),
            weights=ops.convert_to_tensor(weights, "float32"),
            log_every_task=bool(log_every_task),
            # Decided once: the metrics are fixed until the next compile, the step's hooks by the class.
            step_reads_logits_only=task_metrics.reads_logits_only and _keeps_step_hooks(type(self)),
        )
        self._mtl_compile_config = {
            "optimizer": optimizer,
            "loss_weights": loss_weights,
            "normalize": normalize,
            "metrics": metrics,
            "log_every_task": log_every_task,
            **kwargs,
        }

    def _resolve_loss_weights(self, loss_weights):
        weights = {t.name: t.loss_weight for t in self._tasks}
        if loss_weights is None:
            return [weights[n] for n in self.task_names]
        if not isinstance(loss_weights, dict):
            raise ValueError(
                "loss_weights must be a dict {task name: weight}, e.g. "
                f"{{{self.task_names[0]!r}: 2.0}}; got {type(loss_weights).__name__}."
            )
        for name, weight in loss_weights.items():
            if name not in weights:
                raise ValueError(
                    f"loss_weights names unknown task {name!r}; the model's tasks are "
                    f"{self.task_names}."
                )
            weights[name] = Task._check_weight(weight, name)
        return [weights[n] for n in self.task_names]

    def _resolve_metrics(self, metrics) -> dict:
        """``{task: metrics or None}``; ``None`` means the task's defaults."""
        if metrics is None:
            return {t.name: t.metrics for t in self._tasks}
        if isinstance(metrics, (list, tuple, str)):
            return {t.name: metrics for t in self._tasks}
        if not isinstance(metrics, dict):
            raise ValueError("metrics must be a dict {task name: [metrics]} or a list for every task.")
        for name in metrics:
            self.get_task(name)
        chosen = {t.name: metrics.get(t.name, t.metrics) for t in self._tasks}
        for task in self._tasks:
            if chosen[task.name] is not None:
                task.build_metrics(chosen[task.name])  # fail now on a bad metric
        return chosen

    def get_compile_config(self):
        if not self.compiled or self._compiled is None:
            return {}
        config = dict(self._mtl_compile_config)
        config["optimizer"] = keras.optimizers.serialize(self.optimizer)
        if config.get("metrics") is not None:
            config["metrics"] = keras.saving.serialize_keras_object(config["metrics"])
        config["balancing"] = keras.saving.serialize_keras_object(self.balancing)
        return config

    def compile_from_config(self, config):
        config = dict(config)
        config["optimizer"] = keras.optimizers.deserialize(config["optimizer"])
        if config.get("metrics") is not None:
            config["metrics"] = keras.saving.deserialize_keras_object(config["metrics"])
        if config.get("balancing") is not None:
            config["balancing"] = keras.saving.deserialize_keras_object(config["balancing"])
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def balancing(self):
        """The compiled task-balancing strategy (``None`` before compile).

        A tracked layer of the model: its variables are among
        ``model.variables``, train with the model's (``trainable_variables``)
        and are saved in ``.keras`` files and ``BackupAndRestore``
        checkpoints.
        """
        return self._strategy_slot[0] if self._strategy_slot else None

    @property
    def loss_metric(self):
        """Keras's running mean of the total loss (the ``loss`` of the logs), found by its public name."""
        return next(m for m in self.metrics if m.name == "loss")

    def _metric(self, cls):
        return next((m for m in self._metric_slot if isinstance(m, cls)), None)

    # -- training -------------------------------------------------------------

    def _labels_by_task(self, y):
        """Checks that ``y`` holds one entry per task; returns it as a dict."""
        names = self.task_names
        if not isinstance(y, dict):
            if y is None:
                raise ValueError(
                    f"No labels: the dataset must yield (x, {{task: labels}}) for tasks {names}."
                )
            if len(names) == 1 and not isinstance(y, (list, tuple)):
                return {names[0]: y}
            if isinstance(y, (list, tuple)) and len(y) == len(names):
                return dict(zip(names, y))
            raise ValueError(
                f"Labels must be a dict keyed by task name {names}; got {type(y).__name__}."
            )
        packed = [k for k in y if k.startswith("labels:")]
        if packed:
            expected = [g.key for g in self._layout.groups]
            if sorted(packed) != sorted(expected) or len(packed) != len(y):
                raise ValueError(
                    f"The batch's packed labels {sorted(y)} are not this model's label groups "
                    f"{expected}: the pipeline was built for other tasks. Build it with "
                    "kmtl.data.from_arrays(x, labels, model.tasks, ...)."
                )
            return y
        unknown = sorted(set(y) - set(names))
        absent = [n for n in names if n not in y]
        if unknown or absent:
            raise ValueError(
                f"Labels do not match the model's tasks {names}: "
                + (f"unknown {unknown} " if unknown else "")
                + (f"absent {absent} " if absent else "")
                + "— give one entry per task; write missing labels as NaN, None, '?' "
                "or kmtl.MISSING (see kmtl.data.from_arrays)."
            )
        return y

    def _require_compiled(self):
        if self._compiled is None:
            raise RuntimeError("Call model.compile(optimizer=...) before fit/evaluate.")

    def loss_terms(self, y, y_pred, sample_weight=None, training=True, extra_losses=None) -> LossTerms:
        """The masked loss of a batch, per task, and the strategy's weights.

        What :meth:`compute_loss` returns as one scalar, in parts; it also
        updates the task-loss metrics and (when training) the strategy's
        per-step state, as Keras's own loss does. The per-backend training
        steps of gradient-based strategies (``keras_mtl.backend``) call it.

        Args:
            y: labels ``{task: array}`` (encoded, as the ``kmtl.data``
                pipelines give them).
            y_pred: the model's outputs ``{task: array}``.
            sample_weight: optional per-example weights, or a dict per task.
            training: whether this is a training step.
            extra_losses: the forward pass's own losses (regularisers,
                ``add_loss``); default ``self.losses``.

        Returns:
            A :class:`LossTerms`.
        """
        self._require_compiled()
        y = self._labels_by_task(y)
        logits = self.fused_logits(y_pred)
        stacked = stack_groups(y, self._layout, ops.shape(logits)[0])
        task_losses, counts = self._compiled.loss(y, logits, sample_weight, return_counts=True,
                                                  stacked=stacked, targets=self._targets())
        present = counts > 0
        balancer = self.balancing
        weights, extra = balancer.combine(task_losses, present, training=training)
        # Under tf.distribute the task losses are this replica's shares; terms every
        # replica computes in full are divided by the replicas (keras_mtl.distribute).
        terms = LossTerms(task_losses, present, weights,
                          _other_terms(extra, self.losses if extra_losses is None else extra_losses))
        batch_size = ops.shape(logits)[0]
        self._metric(metrics_lib.TaskLossMeans).update_state(
            distribute_lib.replica_estimate(task_losses, batch_size), sample_weight=batch_size)
        if training:
            balancer.observe_losses(distribute_lib.cross_replica_sum(task_losses), present)
            weights_metric = self._metric(metrics_lib.TaskWeights)
            if weights_metric is not None:
                weights_metric.update_state(weights)
        return terms

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """``Σ_tasks w_i · L_i`` (masked, normalised) plus regularisers.

        Keras's extension point: Keras's own train and test steps call it on
        every backend. The task losses come from the fused logits of the
        forward pass that produced ``y_pred``.
        """
        del x
        return self.loss_terms(y, y_pred, sample_weight, training).total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates every task's masked metrics and returns the step's logs.

        Every task's loss and metrics, and an adaptive strategy's current
        weights (``weight_<task>``) — or, when the model was compiled with
        ``log_every_task=False`` (the default beyond 16 tasks), ``loss`` and
        the task means only, in training and evaluation steps alike, and
        without ``mean_auc``: every task's AUC sums over every threshold, so
        the AUCs are computed when read, at the epoch's end (where ``fit``
        logs ``mean_auc``); :meth:`evaluate` (and so ``fit``'s validation)
        still returns every task's figures, read from the metrics at its end.
        """
        del x
        self._require_compiled()
        y = self._labels_by_task(y)
        task_metrics = self._metric(TaskMetrics)
        task_metrics.update_state(y, y_pred, sample_weight, logits=self.fused_logits(y_pred))
        if self._compiled.log_every_task:
            # Exactly the keys of get_metrics_result() (the strategy's weights included):
            # Keras then reports the epoch from the metrics, read across replicas,
            # rather than from the last step's logs.
            logs = self.get_metrics_result()
        else:
            means = task_metrics.task_means(self._metric(metrics_lib.TaskLossMeans), every_step=True)
            logs = {"loss": self.loss_metric.result(), **means}
        return distribute_lib.logs_for_reduction(logs)

    def per_task_variables(self):
        """The shared variables whose per-task gradients the strategy needs.

        Every shared trainable variable (``gradient_scope="shared"``), or the
        last kernel every task's loss reaches (``"last_shared"``).
        """
        scope = self.balancing.gradient_scope
        heads_or_own = _keys(self.task_heads.trainable_variables + self.balancing.trainable_variables)
        shared = [v for v in self.trainable_variables if _key(v) not in heads_or_own]
        if scope == "last_shared":
            sharing = self.sharing
            reached = [v for v in sharing.shared_kernels() if v.trainable] if sharing is not None else []
            if not reached:
                # The trunk's last kernel; a sharing layer's stacked per-task
                # weights are not reached by every task.
                tower = set() if sharing is None else _keys(sharing.trainable_variables)
                reached = [v for v in shared if len(v.shape) >= 2 and _key(v) not in tower]
            shared = reached[-1:]
        if not shared:
            raise ValueError(
                f"{type(self.balancing).__name__} needs shared trainable parameters "
                "in the trunk, and this model has none."
            )
        return shared

    def combine_gradients(self, gradients, task_jacobians, terms: LossTerms):
        """The update of every trainable variable under a gradient-based strategy.

        The per-backend training steps (``keras_mtl.backend``) compute the
        gradients; the strategy decides what to apply
        (:meth:`keras_mtl.balancing.Balancer.combine_gradients`), and this
        scales it like the loss (mixed precision).

        Args:
            gradients: gradients of ``terms.total`` for each of
                ``self.trainable_variables`` (``None`` where unused).
            task_jacobians: for each of :meth:`per_task_variables`, the
                gradient of every entry of ``terms.rows``: ``(T + 1, *shape)``.
            terms: the step's :class:`LossTerms`.

        Returns:
            The gradients to apply, in the order of ``self.trainable_variables``.
        """
        return self._loss_scaled(self.balancing.combine_gradients(
            gradients, task_jacobians, terms, self.trainable_variables, self.per_task_variables()))

    # -- gradients with respect to the shared representation -------------------------------------

    def representation_split(self):
        """``(trunk, rest)``: the trainable variables before the shared representation, and the others.

        The shared representation is the trunk's output, the input of the
        sharing layer (or of the heads). Aggregators with
        ``wrt="representation"`` give the trunk's variables ``∇ Σ α_i L_i``;
        the others (sharing layer, heads, the strategy's own) keep the
        gradients of the total loss.
        """
        after = _keys(self.representation_layer.trainable_variables)
        trunk = [v for v in self.per_task_variables() if _key(v) not in after]
        if not trunk:
            raise ValueError(
                f"{type(self.balancing).__name__}(wrt='representation') needs trainable variables "
                "in the trunk, before the shared representation, and this model has none; "
                "use wrt='parameters'."
            )
        in_trunk = _keys(trunk)
        return trunk, [v for v in self.trainable_variables if _key(v) not in in_trunk]

    def representation_cotangent(self, representation_rows, terms: LossTerms):
        """The weights ``(α, 1)`` of ``terms.rows`` whose gradient the trunk's variables get.

        The strategy's rule (:meth:`keras_mtl.balancing.GradientAggregator.representation_cotangent`)
        on the per-task gradients of the representation
        ``representation_rows`` ``(T + 1, batch, ...)``; returns ``(T + 1,)`` float32.
        """
        return self.balancing.representation_cotangent(representation_rows, terms)

    def representation_update(self, trunk_gradients, other_gradients):
        """Every trainable variable's gradient, from the two parts of :meth:`representation_split`."""
        trunk, other = self.representation_split()
        found = {_key(v): g for v, g in zip([*trunk, *other], [*trunk_gradients, *other_gradients])}
        gradients = [found[_key(v)] for v in self.trainable_variables]
        return self._loss_scaled([ops.zeros(v.shape, "float32") if g is None else g
                                  for v, g in zip(self.trainable_variables, gradients)])

    def _loss_scaled(self, gradients):
        scale = self.optimizer.scale_loss(ops.convert_to_tensor(1.0, "float32"))
        return [g * ops.cast(scale, g.dtype) for g in gradients]

    def train_step(self, *args):
        # Keras's own step (through compute_loss), except for strategies that
        # need per-task gradients: the step of keras_mtl.backend for this backend.
        self._require_compiled()
        if self.balancing.gradient_scope is None:
            return backend_lib.loss_train_step(self, super().train_step, *args)
        if _wrt_representation(self.balancing):
            return backend_lib.representation_train_step(self, *args)
        return backend_lib.train_step(self, *args)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 cannot reduce a PerReplica batch across workers here; see
        # keras_mtl.distribute.local_build_batch (remove once Keras is fixed).
        if iterator is not None and distribute_lib.in_multi_worker_mode(self.distribute_strategy):
            iterator, data_batch = None, distribute_lib.local_build_batch(self.distribute_strategy, iterator)
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def fit(self, x=None, y=None, *args, callbacks=None, validation_data=None, **kwargs):
        """Keras's ``fit``, taking what a Keras user passes.

        ``x``: a ``kmtl.data`` pipeline (or any ``tf.data.Dataset``) of
        ``(x, {task: labels})``, or features — NumPy arrays, a dict of them,
        a pandas ``DataFrame`` — with ``y`` as ``{task: labels}`` or a
        ``DataFrame`` with a column per task. Labels may hold ``"?"``,
        ``NaN`` or ``None``; they go through the checks and the encoding of
        :func:`keras_mtl.data.encode_arrays`, as do the arrays of
        ``validation_data=(x, y)``. Every other argument is Keras's.
        """
        if data_lib.is_dataset(x):
            # Pipelines shuffle themselves (kmtl.data ... shuffle=True); Keras's
            # default shuffle=True would only warn that it ignores it.
            kwargs.setdefault("shuffle", False)
        else:
            x, y = self._arrays(x, y, "fit")
        self._adapt_targets_once(x if y is None else y)
        if isinstance(validation_data, tuple) and len(validation_data) >= 2 \
                and not data_lib.is_dataset(validation_data[0]):
            validation_data = (*self._arrays(*validation_data[:2], "fit"), *validation_data[2:])
        if self._compiled is not None:
            callbacks = [_EpochLogs(self), *(callbacks or [])]
        return super().fit(x, y, *args, callbacks=callbacks, validation_data=validation_data, **kwargs)

    def _adapt_targets_once(self, y):
        """Sets the target statistics from the training labels while they are still 0 and 1."""
        layer = self.task_outputs
        if not layer.standardized:
            return
        unset = all(stats == (0.0, 1.0) for stats in self.target_statistics().values())
        if not unset:
            return
        if data_lib.is_dataset(y) or isinstance(y, dict) or hasattr(y, "columns"):
            self.adapt_targets(y)
        else:
            warnings.warn(
                f"Tasks {layer.standardized} learn standardised targets, but fit cannot read their "
                f"statistics from a {type(y).__name__}; they train in raw units. Call "
                "model.adapt_targets({task: labels}) before fit, or pass standardize=False.",
                stacklevel=3,
            )

    def _arrays(self, x, y, method):
        """``(x, y)`` of NumPy or pandas, checked and encoded (:func:`keras_mtl.data.encode_arrays`)."""
        if y is None and hasattr(x, "columns"):
            raise ValueError(
                f"model.{method}(frame) got a DataFrame without labels. Pass the labels too, "
                f"model.{method}(frame[features], frame[{self.task_names[:2]}]), or build a "
                "pipeline: kmtl.data.from_dataframe(frame, model.tasks, features=[...])."
            )
        return data_lib.encode_arrays(x, y, self._tasks)

    def evaluate(self, x=None, y=None, *args, return_dict=False, **kwargs):
        """Keras's ``evaluate``, returning every task's loss and metrics.

        ``x`` and ``y`` as for :meth:`fit`. Whatever the progress bar
        showed (with ``log_every_task=False`` the steps log task means only),
        the result holds every figure of the model's metrics at the end of
        the evaluation: ``loss``, ``<task>_loss``, ``<task>_<metric>`` and,
        for adaptive strategies, ``weight_<task>``. As a list
        (``return_dict=False``): ``loss`` first, then the other figures by
        name.
        """
        if not data_lib.is_dataset(x):
            x, y = self._arrays(x, y, "evaluate")
        logs = super().evaluate(x, y, *args, return_dict=True, **kwargs)
        if self._compiled is not None and not self._compiled.log_every_task:
            logs = _floats(self.get_metrics_result())
        if return_dict:
            return logs
        return [logs["loss"], *(logs[k] for k in sorted(logs) if k != "loss")]

    def predict(self, x, *args, **kwargs):
        """``{task name: output}`` in task order, in user units.

        What ``model(x)`` returns, without the fused logits (and in task
        order: JAX's tree utilities sort dict keys). ``x`` may be a pandas
        ``DataFrame`` of numeric feature columns.
        """
        if not data_lib.is_dataset(x):
            x, _ = data_lib.encode_arrays(x, None, self._tasks)
        outputs = super().predict(x, *args, **kwargs)
        return {name: outputs[name] for name in self.task_names}

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Keras's ``export`` of the tasks' outputs: one named output per task.

        The forward pass also returns the fused logits that the loss reads
        (:data:`keras_mtl.heads.FUSED_LOGITS`); the file holds every task's
        output only, named after the task, as ``predict`` returns them. The
        input signature comes from the model's ``keras.Input`` layers, so the
        model need not have been called first (Keras's ONNX export otherwise
        asks for it). For TF Serving, :func:`keras_mtl.export_saved_model`
        adds class outputs, a ``tf.train.Example`` signature and the task list.

        Args:
            filepath: where to write (``.tflite`` for ``format="litert"``).
            format: Keras's formats: ``"tf_saved_model"``, ``"onnx"``,
                ``"litert"``, …
            verbose, input_signature, **kwargs: as for ``keras.Model.export``.
        """
        tasks_only = keras.Model(self.input, {name: self.output[name] for name in self.task_names},
                                 name=self.name)
        if input_signature is None:
            input_signature = [keras.tree.map_structure(
                lambda t: keras.InputSpec(shape=(None, *t.shape[1:]), dtype=t.dtype, name=t.name), self.input)]
        return tasks_only.export(filepath, format=format, verbose=verbose, input_signature=input_signature,
                                 **kwargs)

    def predict_labels(self, x, threshold: float = 0.5, **kwargs) -> dict:
        """``{task: predicted labels}``, written as the labels are: classes, 0/1, values.

        A categorical task gives its most probable class — its name when the
        task has ``class_names``, else its index; a binary task 0 or 1 (its
        probability against ``threshold``), a multilabel task a 0/1 row;
        regression and count tasks their predicted values.

        Args:
            x: inputs, as for :meth:`predict`.
            threshold: probability from which a sigmoid unit says 1.
            **kwargs: passed to :meth:`predict` (``batch_size``, ``verbose``).
        """
        outputs = self.predict(x, **kwargs)
        found = {}
        for task in self._tasks:
            value = np.asarray(outputs[task.name])
            if task.kind.class_output:
                index = np.argmax(value, axis=-1)
                found[task.name] = np.asarray(task.class_names)[index] if task.class_names else index
            elif task.kind.class_labels:
                found[task.name] = (value >= threshold).astype("int32")
            else:
                found[task.name] = value
            if task.units == 1 and found[task.name].ndim == 2:
                found[task.name] = found[task.name][:, 0]
        return found

    # -- serialisation --------------------------------------------------------

    def get_config(self):
        graph = keras.Model(self.input, self.output, name=self.name)
        config = graph.get_config()
        config["tasks"] = [task.get_config() for task in self._tasks]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        tasks = [Task.from_config(c) for c in config.pop("tasks")]
        graph = keras.Model.from_config(config, custom_objects=custom_objects)
        outputs = graph.output
        if not isinstance(outputs, dict) or FUSED_LOGITS not in outputs:
            # A file of keras_mtl 0.1.0: its outputs lack the fused logits (and up to 16
            # tasks had an output layer each); the heads' weights are the same.
            outputs = forward_outputs(_last_layer_of_type(graph, TaskHeads).output, HeadLayout(tasks),
                                      name=OUTPUTS_LAYER)
        model = cls.__new__(cls)
        # super(), not keras.Model.__init__: once Keras has injected
        # Functional into the class's bases, a second injection would cycle.
        super(MultiTaskModel, model).__init__(inputs=graph.input, outputs=outputs, name=config.get("name"))
        model._setup(tasks)
        return model


def _keeps_step_hooks(cls) -> bool:
    """Whether ``cls`` keeps keras_mtl's forward pass, loss and metrics (a subclass's own may read the outputs)."""
    return all(getattr(cls, hook) is getattr(MultiTaskModel, hook)
               for hook in ("call", "compute_loss", "compute_metrics", "loss_terms"))


def _last_layer_of_type(model, cls):
    """The model's last layer of class ``cls``, or ``None`` (found by type: files of
    keras_mtl 0.1.0 name keras_mtl's layers differently)."""
    found = [layer for layer in model.layers if isinstance(layer, cls)]
    return found[-1] if found else None


def _target_columns(y, tasks, all_tasks) -> dict:
    """``{task: float array}`` of ``tasks``' labels from a dict, a DataFrame or a dataset (NaN: missing)."""
    if data_lib.is_dataset(y):
        parts = {t.name: [] for t in tasks}
        for element in y:
            labels = data_lib.unpack_labels(element[1], all_tasks)
            for task in tasks:
                parts[task.name].append(ops.convert_to_numpy(labels[task.name]))
        return {name: np.concatenate(values).astype("float64") for name, values in parts.items()}
    found = {}
    for task in tasks:
        if task.name not in y:
            raise ValueError(f"adapt_targets: the labels hold no entry for task {task.name!r}; "
                             f"give {{{task.name!r}: values}} (user units, NaN where missing).")
        values = y[task.name]
        encoded = data_lib.encode_arrays(np.zeros((len(values), 1), "float32"), {task.name: values}, [task])[1]
        found[task.name] = encoded[task.name].astype("float64")
    return found


def _key(variable) -> int:
    # Variables are told apart as Keras's optimizer tells them apart, by identity:
    # paths repeat when a trunk nests two functional models with same-named layers.
    return id(variable)


def _keys(variables) -> set:
    return {_key(v) for v in variables}


def _wrt_representation(balancer) -> bool:
    return getattr(balancer, "wrt", "parameters") == "representation"


def _check_layer_names(inputs, features, added):
    """The names of the layers keras_mtl adds must not be the trunk's (any other name is the user's).

    A trunk reused from another multi-task model (:mod:`keras_mtl.transfer`)
    may hold that model's flatten layer: only the names added now count.
    """
    ours = sorted({layer.name for layer in keras.Model(inputs, features).layers} & set(added))
    if ours:
        raise ValueError(
            f"Layer name(s) {ours} of the trunk are keras_mtl's own (it names its layers "
            f"{list(OWN_LAYERS)}); rename those layers of the trunk (layers take name=...)."
        )
