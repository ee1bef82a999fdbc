"""MultiTaskModel: a functional Keras model with one named head per task."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_mtl import metrics as metrics_lib
from keras_mtl.heads import FusedTaskLoss, HeadLayout, TaskHeads, TaskOutput
from keras_mtl.losses import check_normalize
from keras_mtl.tasks import Task, check_tasks

__all__ = ["MultiTaskModel"]

HEADS_LAYER = "heads"


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

    def __init__(self, loss, weights, task_losses, task_metrics):
        self.loss = loss
        self.weights = weights
        self.task_losses = task_losses
        self.task_metrics = task_metrics


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
        name: model name.

    Example:
        >>> import keras, keras_mtl as kmtl
        >>> inputs = keras.Input((8,), name="x")
        >>> features = keras.layers.Dense(16, activation="relu")(inputs)
        >>> model = kmtl.MultiTaskModel(inputs, features, [kmtl.Task("car"), kmtl.Task("bike")])
        >>> sorted(model.output_names)
        ['bike', 'car']
    """

    def __init__(self, inputs, features, tasks, name=None, **kwargs):
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
        logits = TaskHeads(layout.units, name=HEADS_LAYER)(features)
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

    # -- compile --------------------------------------------------------------

    def compile(self, optimizer="adam", loss_weights=None, normalize="batch", metrics=None,
                loss=None, **kwargs):
        """Configures training with the masked loss and metrics of every task.

        Args:
            optimizer: optimizer name or instance.
            loss_weights: optional ``{task: weight}`` overriding the tasks'
                ``loss_weight`` (tasks not named keep theirs).
            normalize: ``"batch"`` (divide each task's summed loss by the
                batch size, the default) or ``"labeled"`` (mean over labelled
                entries).
            metrics: optional ``{task: [metrics]}`` overriding the tasks'
                metrics; a list applies to every task.
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
        task_metrics = self._resolve_metrics(metrics)
        super().compile(optimizer=optimizer, **kwargs)
        self._compiled = _Compiled(
            loss=FusedTaskLoss(self._layout, normalize),
            weights=ops.convert_to_tensor(weights, "float32"),
            task_losses=metrics_lib.TaskLossMeans(self.task_names),
            task_metrics=task_metrics,
        )
        self._mtl_compile_config = {
            "optimizer": optimizer,
            "loss_weights": loss_weights,
            "normalize": normalize,
            "metrics": metrics,
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

    def _resolve_metrics(self, metrics):
        if metrics is None or isinstance(metrics, (list, tuple, str)):
            return {t.name: t.build_metrics(metrics) for t in self._tasks}
        if not isinstance(metrics, dict):
            raise ValueError("metrics must be a dict {task name: [metrics]} or a list for every task.")
        for name in metrics:
            self.get_task(name)
        return {t.name: t.build_metrics(metrics.get(t.name)) for t in self._tasks}

    @property
    def metrics(self):
        if self._compiled is None or not self.compiled:
            return super().metrics
        found = [self._loss_tracker, self._compiled.task_losses]
        for task_metrics in self._compiled.task_metrics.values():
            found.extend(task_metrics)
        return found

    def get_compile_config(self):
        if not self.compiled or self._compiled is None:
            return {}
        config = dict(self._mtl_compile_config)
        config["optimizer"] = keras.optimizers.serialize(self.optimizer)
        if config.get("metrics") is not None:
            config["metrics"] = keras.saving.serialize_keras_object(config["metrics"])
        return config

    def compile_from_config(self, config):
        config = dict(config)
        config["optimizer"] = keras.optimizers.deserialize(config["optimizer"])
        if config.get("metrics") is not None:
            config["metrics"] = keras.saving.deserialize_keras_object(config["metrics"])
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

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

    def _forward_losses(self, x, y, sample_weight, training):
        y = self._labels_by_task(y)
        logits = self._views.logits(x, training=training)
        task_losses = self._compiled.loss(y, logits, sample_weight)
        total = ops.sum(task_losses * self._compiled.weights)
        if self.losses:
            total = total + ops.sum(ops.stack([ops.cast(v, "float32") for v in self.losses]))
        return y, logits, task_losses, total

    def _update_metrics(self, x, y, logits, task_losses, total, sample_weight):
        batch_size = ops.shape(logits)[0]
        self._loss_tracker.update_state(total, sample_weight=batch_size)
        self._compiled.task_losses.update_state(task_losses, sample_weight=batch_size)
        predictions = self._compiled.loss.predictions(logits)
        for name, task_metrics in self._compiled.task_metrics.items():
            weight = sample_weight.get(name) if isinstance(sample_weight, dict) else sample_weight
            for metric in task_metrics:
                metric.update_state(y[name], predictions[name], sample_weight=weight)
        return self.get_metrics_result()

    def train_step(self, data):
        self._require_compiled()
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y, logits, task_losses, total = self._forward_losses(x, y, sample_weight, True)
            scaled = self.optimizer.scale_loss(total)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._update_metrics(x, y, logits, task_losses, total, sample_weight)

    def test_step(self, data):
        self._require_compiled()
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y, logits, task_losses, total = self._forward_losses(x, y, sample_weight, False)
        return self._update_metrics(x, y, logits, task_losses, total, sample_weight)

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
    taken = {layer.name for layer in trunk.layers} | {HEADS_LAYER, "features"}
    clashes = sorted(taken & {t.name for t in tasks})
    if clashes:
        raise ValueError(
            f"Task name(s) {clashes} are already used by layers of the trunk (or by "
            f"keras_mtl: {HEADS_LAYER!r}, 'features'). Rename the task or the layer "
            "(layers take name=...)."
        )
