"""MultiTaskModel: a functional Keras model with one named head per task."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_mtl import balancing as balancing_lib
from keras_mtl import distribute as distribute_lib
from keras_mtl import metrics as metrics_lib
from keras_mtl import sharing as sharing_lib
from keras_mtl.heads import (
    FusedTaskLoss,
    HeadLayout,
    TaskHeads,
    TaskOutput,
    stack_groups,
    stack_labels,
    stack_weights,
)
from keras_mtl.losses import check_normalize
from keras_mtl.tasks import Task, check_tasks

__all__ = ["MultiTaskModel"]

HEADS_LAYER = "heads"
SHARING_LAYER = "sharing"
# Up to this many tasks, training logs every task's loss and metrics.
LOG_EVERY_TASK_UP_TO = 16


class _Views:
    """Second entry points into the same graph, kept out of Keras tracking.

    ``logits`` maps inputs to the fused logits of every head; it shares all
    layers (and so all weights) with the model. Holding it in a plain
    object keeps Keras from saving those weights twice.
    """

    def __init__(self, logits: keras.Model):
        self.logits = logits


class _Compiled:
    """What ``compile`` derived from the tasks: loss, weights, metrics."""

    def __init__(self, loss, weights, metrics, log_every_task, balancer):
        self.loss = loss
        self.weights = weights
        self.metrics = metrics
        self.log_every_task = log_every_task
        self.balancer = balancer
        # Too many tasks to log weights every step: keep the last ones for the epoch's logs.
        self.last_weights = None
        if balancer.adaptive and not log_every_task:
            self.last_weights = keras.Variable(weights, trainable=False, name="last_task_weights",
                                               aggregation="only_first_replica")


class _Step:
    """One forward pass: labels, logits, per-task losses and the total."""

    def __init__(self, y, stacked, logits, task_losses, present, weights, total):
        self.y, self.stacked, self.logits, self.task_losses = y, stacked, logits, task_losses
        self.present, self.weights, self.total = present, weights, total


class _BalancerEpochs(keras.callbacks.Callback):
    """Calls the balancing strategy's epoch hook (first, so checkpoints see it).

    With more tasks than are logged every step, it also adds each task's
    last weight to the epoch's logs (``weight_<task>``), before ``History``
    records them.
    """

    def __init__(self, compiled: _Compiled, task_names):
        super().__init__()
        self.compiled = compiled
        self.task_names = list(task_names)

    def on_epoch_end(self, epoch, logs=None):
        if self.compiled.last_weights is not None and logs is not None:
            weights = ops.convert_to_numpy(self.compiled.last_weights)
            logs.update({f"weight_{name}": float(w) for name, w in zip(self.task_names, weights)})
        self.compiled.balancer.end_epoch()


class _TaskMetrics:
    """The metrics of every task, updated from the fused outputs.

    Tasks left on their default metrics share fused metric objects (one for
    all sigmoid tasks, one for all regression tasks); tasks given their own
    metrics get one :class:`keras_mtl.metrics.MaskedMetric` each.
    """

    def __init__(self, layout: HeadLayout, chosen: dict):
        self.layout = layout
        self.task_losses = metrics_lib.TaskLossMeans([t.name for t in layout.tasks])
        default = {t.name for t in layout.tasks if chosen[t.name] is None}
        self.sigmoid = [t for t in layout.sigmoid if t.name in default]
        self.regression = [t for t in layout.regression if t.name in default]
        self.per_task = {t.name: t.build_metrics(chosen[t.name])
                         for t in layout.tasks
                         if t.name not in default or t.kind == "categorical"}
        self.sigmoid_metric = self.sigmoid_columns = None
        if self.sigmoid:
            self.sigmoid_metric = metrics_lib.SigmoidTaskMetrics(
                [t.name for t in self.sigmoid], [t.units for t in self.sigmoid])
            self.sigmoid_columns = np.concatenate(
                [np.arange(layout.block(t.name).start, layout.block(t.name).stop) for t in self.sigmoid])
        self.regression_metric = self.regression_columns = None
        if self.regression:
            self.regression_metric = metrics_lib.RegressionTaskMetrics([t.name for t in self.regression])
            self.regression_columns = np.array([layout.block(t.name).start for t in self.regression])

    def task_means(self) -> dict:
        """``{"mean_task_loss": …, "mean_<metric>": …}``: each per-task figure averaged over tasks.

        Computed from the fused metrics' vectors, without one scalar per task.
        """
        groups: dict[str, list] = {}
        fused = [m for m in (self.task_losses, self.sigmoid_metric, self.regression_metric) if m is not None]
        for metric in fused:
            for suffix, vector in metric.vectors().items():
                groups.setdefault(suffix, []).append(vector)
        for name, task_metrics in self.per_task.items():
            for metric in task_metrics:
                for key, value in _as_dict(metric.name, metric.result()).items():
                    groups.setdefault(key[len(name) + 1:], []).append(ops.reshape(value, (1,)))
        return {"mean_task_loss" if suffix == "loss" else f"mean_{suffix}": ops.mean(ops.concatenate(parts))
                for suffix, parts in groups.items()}

    @property
    def all(self) -> list:
        found = [self.task_losses]
        found += [m for m in (self.sigmoid_metric, self.regression_metric) if m is not None]
        for task_metrics in self.per_task.values():
            found.extend(task_metrics)
        return found

    def update(self, y, stacked, logits, task_losses, sample_weight, batch_size):
        self.task_losses.update_state(task_losses, sample_weight=batch_size)
        logits = ops.cast(logits, "float32")
        for group, tasks, metric, columns, activation in (
                ("sigmoid", self.sigmoid, self.sigmoid_metric, self.sigmoid_columns, ops.sigmoid),
                ("regression", self.regression, self.regression_metric, self.regression_columns, None)):
            if metric is None:
                continue
            weights = None if sample_weight is None else stack_weights(sample_weight, tasks, batch_size)
            if len(tasks) == len(getattr(self.layout, group)):  # every task of the group: reuse its matrix
                labels, values = stacked[group], logits[:, columns[0]:columns[-1] + 1]
            else:
                labels, values = stack_labels(y, tasks, batch_size), ops.take(logits, columns, axis=1)
            metric.update_state(labels, values if activation is None else activation(values), weights)
        if self.per_task:
            predictions = FusedTaskLoss(self.layout).predictions(logits)
            for name, task_metrics in self.per_task.items():
                weight = sample_weight.get(name) if isinstance(sample_weight, dict) else sample_weight
                for metric in task_metrics:
                    metric.update_state(y[name], predictions[name], sample_weight=weight)


@keras.saving.register_keras_serializable(package="keras_mtl")
class MultiTaskModel(keras.Model):
    """A functional model: the user's trunk, then one named head per task.

    ``model(x)`` and ``model.predict(x)`` return ``{task name: output}`` in
    user units: probabilities for binary, multilabel and categorical tasks,
    values for regression. Internally all heads share one fused kernel and
    training computes every task's masked loss from the fused logits.

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

    Example:
        >>> import keras, keras_mtl as kmtl
        >>> inputs = keras.Input((8,), name="x")
        >>> features = keras.layers.Dense(16, activation="relu")(inputs)
        >>> model = kmtl.MultiTaskModel(inputs, features, [kmtl.Task("car"), kmtl.Task("bike")])
        >>> sorted(model.output_names)
        ['bike', 'car']
    """

    def __init__(self, inputs, features, tasks, sharing=None, name=None, **kwargs):
        tasks = check_tasks(tasks)
        if not isinstance(features, keras.KerasTensor):
            raise TypeError(
                "features must be the output tensor of the trunk, e.g. "
                "features = keras.layers.Dense(64)(inputs); got "
                f"{type(features).__name__}."
            )
        _check_layer_names(inputs, features, tasks)
        if len(features.shape) > 2:
            features = keras.layers.Flatten(name="features")(features)
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
        outputs = {}
        for task in tasks:
            block = layout.block(task.name)
            outputs[task.name] = TaskOutput(block.start, block.stop, task.activation,
                                            name=task.name)(logits)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self._setup(tasks)

    def _setup(self, tasks):
        self._tasks = list(tasks)
        self._layout = HeadLayout(self._tasks)
        heads = self.get_layer(HEADS_LAYER)
        logits = heads._inbound_nodes[0].output_tensors[0]
        self._views = _Views(keras.Model(self._inputs_struct, logits, name=f"{self.name}_logits"))
        self._compiled = None

    # -- tasks ----------------------------------------------------------------

    @property
    def tasks(self) -> list[Task]:
        """The model's tasks, in order."""
        return list(self._tasks)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self._tasks]

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
        try:
            return self.get_layer(SHARING_LAYER)
        except ValueError:
            return None

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
            features = keras.Model(self._inputs_struct, layer._inbound_nodes[0].input_tensors[0])
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
                ``mean_auc``, …) while ``evaluate`` and validation still
                report every task.
            loss: not accepted — the losses follow from the tasks' kinds.
            **kwargs: passed to ``keras.Model.compile`` (``jit_compile``,
                ``steps_per_execution``, ``run_eagerly``, …).
        """
        if loss is not None:
            raise ValueError(
                "MultiTaskModel builds the masked loss of each task from its kind; do "
                "not pass loss=. Change a task's loss through kmtl.Task(kind=...), "
                "loss_weights={...} or normalize=..."
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
        if balancer.distributed_error and self.distribute_strategy.num_replicas_in_sync > 1:
            raise ValueError(balancer.distributed_error)
        balancer.setup(self.task_names, weights)
        super().compile(optimizer=optimizer, **kwargs)
        self._compiled = _Compiled(
            loss=FusedTaskLoss(self._layout, normalize),
            weights=ops.convert_to_tensor(weights, "float32"),
            metrics=_TaskMetrics(self._layout, chosen),
            log_every_task=bool(log_every_task),
            balancer=balancer,
        )
        self._mtl_compile_config = {
            "optimizer": optimizer,
            "loss_weights": loss_weights,
            "normalize": normalize,
            "metrics": metrics,
            "log_every_task": log_every_task,
            **kwargs,
        }
        if balancer.trainable_variables and not self.optimizer.built:
            # Keras code that builds an unbuilt optimizer itself (BackupAndRestore
            # before restoring, fit under a distribution strategy) passes
            # model.trainable_variables, which lack the strategy's variables.
            self.optimizer.build(self._optimized_variables())

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

    @property
    def metrics(self):
        if self._compiled is None or not self.compiled:
            return super().metrics
        return [self._loss_tracker] + self._compiled.metrics.all

    def get_compile_config(self):
        if not self.compiled or self._compiled is None:
            return {}
        config = dict(self._mtl_compile_config)
        config["optimizer"] = keras.optimizers.serialize(self.optimizer)
        if config.get("metrics") is not None:
            config["metrics"] = keras.saving.serialize_keras_object(config["metrics"])
        config["balancing"] = keras.saving.serialize_keras_object(self._compiled.balancer)
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
            self.optimizer.build(self._optimized_variables())

    @property
    def balancing(self):
        """The compiled task-balancing strategy (``None`` before compile).

        Keras saves the strategy's variables through this attribute, in
        ``.keras`` files and ``BackupAndRestore`` checkpoints alike.
        """
        return None if self._compiled is None else self._compiled.balancer

    def _optimized_variables(self):
        """Model variables plus the strategy's trainable ones, in a fixed order."""
        extra = list(self._compiled.balancer.trainable_variables) if self._compiled else []
        return list(self.trainable_variables) + extra

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

    def _forward(self, x, y, sample_weight, training) -> _Step:
        y = self._labels_by_task(y)
        logits = self._views.logits(x, training=training)
        stacked = stack_groups(y, self._layout, ops.shape(logits)[0])
        task_losses, counts = self._compiled.loss(y, logits, sample_weight, return_counts=True, stacked=stacked)
        present = counts > 0
        weights, extra = self._compiled.balancer.combine(task_losses, present, training=training)
        # Under tf.distribute the task losses are this replica's shares; terms every
        # replica computes in full are divided by the replicas (keras_mtl.distribute).
        total = ops.sum(task_losses * weights) + distribute_lib.replica_share(extra)
        if self.losses:
            total = total + distribute_lib.replica_share(
                ops.sum(ops.stack([ops.cast(v, "float32") for v in self.losses])))
        return _Step(y, stacked, logits, task_losses, present, weights, total)

    def _update_metrics(self, step: _Step, sample_weight, training):
        batch_size = ops.shape(step.logits)[0]
        total, task_losses = distribute_lib.replica_estimate((step.total, step.task_losses), batch_size)
        self._loss_tracker.update_state(total, sample_weight=batch_size)
        self._compiled.metrics.update(step.y, step.stacked, step.logits, task_losses, sample_weight,
                                      batch_size)
        if training and not self._compiled.log_every_task:
            return {"loss": self._loss_tracker.result(), **self._compiled.metrics.task_means()}
        results = self.get_metrics_result()
        if training and self._compiled.balancer.adaptive:
            for i, name in enumerate(self.task_names):
                results[f"weight_{name}"] = step.weights[i]
        return results

    def _shared_variables(self, scope):
        """Variables whose per-task gradients a gradient-based strategy needs."""
        heads = {id(v) for v in self.get_layer(HEADS_LAYER).trainable_variables}
        shared = [v for v in self.trainable_variables if id(v) not in heads]
        if scope == "last_shared":
            sharing = self.sharing
            reached = [v for v in sharing.shared_kernels() if v.trainable] if sharing is not None else []
            if not reached:
                # The trunk's last kernel; a sharing layer's stacked per-task
                # weights are not reached by every task.
                own = set() if sharing is None else {id(v) for v in sharing.trainable_variables}
                reached = [v for v in shared if len(v.shape) >= 2 and id(v) not in own]
            shared = reached[-1:]
        if not shared:
            raise ValueError(
                f"{type(self._compiled.balancer).__name__} needs shared trainable parameters "
                "in the trunk, and this model has none."
            )
        return shared

    def train_step(self, data):
        self._require_compiled()
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        balancer = self._compiled.balancer
        scope = balancer.gradient_scope
        with tf.GradientTape(persistent=scope is not None) as tape:
            step = self._forward(x, y, sample_weight, True)
            scaled = self.optimizer.scale_loss(step.total)
            weighted = step.task_losses * step.weights
            # What a gradient strategy does not see: regularisers and its own terms.
            rest_loss = self.optimizer.scale_loss(step.total - ops.sum(weighted))
        variables = self._optimized_variables()
        gradients = tape.gradient(scaled, variables)
        if scope is not None:
            shared = self._shared_variables(scope)
            # One batched backward pass for all tasks (vectorised Jacobian).
            task_gradients = tape.jacobian(weighted, shared)
            task_gradients = [tf.zeros((len(self._tasks),) + tuple(v.shape)) if g is None else g
                              for g, v in zip(task_gradients, shared)]
            # Global per-task gradients and losses, identical on every replica.
            task_gradients = distribute_lib.cross_replica_sum(task_gradients)
            global_losses = distribute_lib.cross_replica_sum(step.task_losses)
            balancer.observe_gradients(task_gradients, global_losses, step.weights, step.present)
            if scope == "shared":
                combined = balancer.aggregate(task_gradients, step.weights, step.present)
                # Same scale as the other gradients (mixed-precision loss scaling).
                # Divided by the replicas: the optimizer sums every replica's copy.
                combined = [distribute_lib.replica_share(self.optimizer.scale_loss(g)) for g in combined]
                unweighted = dict(zip((id(v) for v in shared), combined))
                rest = tape.gradient(rest_loss, shared)
                for v, r in zip(shared, rest):
                    if r is not None:
                        unweighted[id(v)] = unweighted[id(v)] + r
                gradients = [unweighted.get(id(v), g) for v, g in zip(variables, gradients)]
            del tape
        self.optimizer.apply_gradients(zip(gradients, variables))
        balancer.observe_losses(distribute_lib.cross_replica_sum(step.task_losses), step.present)
        if self._compiled.last_weights is not None:
            self._compiled.last_weights.assign(step.weights)
        return distribute_lib.logs_for_reduction(self._update_metrics(step, sample_weight, training=True),
                                                 self.distribute_strategy)

    def test_step(self, data):
        self._require_compiled()
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        step = self._forward(x, y, sample_weight, False)
        return distribute_lib.logs_for_reduction(self._update_metrics(step, sample_weight, training=False),
                                                 self.distribute_strategy)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 cannot reduce a PerReplica batch across workers here; see
        # keras_mtl.distribute.local_build_batch (remove once Keras is fixed).
        if iterator is not None and distribute_lib.in_multi_worker_mode(self.distribute_strategy):
            iterator, data_batch = None, distribute_lib.local_build_batch(self.distribute_strategy, iterator)
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def fit(self, *args, callbacks=None, **kwargs):
        data = args[0] if args else kwargs.get("x")
        if isinstance(data, tf.data.Dataset):
            # Pipelines shuffle themselves (kmtl.data ... shuffle=True); Keras's
            # default shuffle=True would only warn that it ignores it.
            kwargs.setdefault("shuffle", False)
        if self._compiled is not None:
            callbacks = [_BalancerEpochs(self._compiled, self.task_names), *(callbacks or [])]
        return super().fit(*args, callbacks=callbacks, **kwargs)

    # -- serialisation --------------------------------------------------------

    def get_config(self):
        graph = keras.Model(self._inputs_struct, self._outputs_struct, name=self.name)
        config = graph.get_config()
        config["tasks"] = [task.get_config() for task in self._tasks]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        tasks = [Task.from_config(c) for c in config.pop("tasks")]
        graph = keras.Model.from_config(config, custom_objects=custom_objects)
        model = cls.__new__(cls)
        # super(), not keras.Model.__init__: once Keras has injected
        # Functional into the class's bases, a second injection would cycle.
        super(MultiTaskModel, model).__init__(
            inputs=graph._inputs_struct, outputs=graph._outputs_struct, name=config.get("name"))
        model._setup(tasks)
        return model


def _check_layer_names(inputs, features, tasks):
    """Task names become layer names: they must not clash with the trunk's."""
    trunk = keras.Model(inputs, features)
    taken = {layer.name for layer in trunk.layers} | {HEADS_LAYER, SHARING_LAYER, "features"}
    clashes = sorted(taken & {t.name for t in tasks})
    if clashes:
        raise ValueError(
            f"Task name(s) {clashes} are already used by layers of the trunk (or by "
            f"keras_mtl: {HEADS_LAYER!r}, {SHARING_LAYER!r}, 'features'). Rename the task or the layer "
            "(layers take name=...)."
        )


def _as_dict(name: str, result) -> dict:
    """A metric's result as ``{key: value}`` (Keras's rule for scalar results)."""
    return dict(result) if isinstance(result, dict) else {name: result}
