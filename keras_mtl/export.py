"""SavedModel export for TF Serving, with named inputs, outputs and tasks.

An exported version directory holds:

* ``serving_default`` — inputs named after the model's ``keras.Input``
  layers (batch dimension ``-1``); one output per task named after it, in
  user units (probabilities, or values for regression), plus
  ``<task>_class`` (arg-max, int64) for categorical tasks, and
  ``<task>_class_name`` (that class's name, string) for those given
  ``class_names``;
* ``serving_tf_example`` — the same outputs from serialized
  ``tf.train.Example`` protos (input ``examples``), one feature per model
  input: a ``float_list`` for floating inputs, an ``int64_list`` for integer
  and boolean inputs, a ``bytes_list`` for string inputs, each holding the
  input's values flattened in row-major order;
* ``assets.extra/keras_mtl_tasks.json`` — the task list (name, kind,
  label/class names) and the inputs, plain JSON readable without keras_mtl.

TF Serving loads ``<model base path>/<integer version>`` directories. The
version directory is written beside its final place (a hidden staging
directory in the same parent) and renamed into it, so a version appears
whole or not at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import keras
import tensorflow as tf

from keras_mtl.model import MultiTaskModel

__all__ = [
    "EXAMPLE_INPUT",
    "TASKS_FILE",
    "export_saved_model",
    "latest_version_dir",
    "next_version_dir",
    "read_tasks",
    "serving_signature",
    "version_dirs",
]

TASKS_FILE = os.path.join("assets.extra", "keras_mtl_tasks.json")
EXAMPLE_INPUT = "examples"
METADATA_FORMAT = "keras_mtl.tasks/1"
_VERSION = re.compile(r"^[0-9]+$")


# -- signatures ----------------------------------------------------------------

def _input_specs(model) -> list[tf.TensorSpec]:
    """One ``TensorSpec`` per model input, named after its ``keras.Input``."""
    specs = []
    for tensor in model.inputs:
        shape = (None,) + tuple(tensor.shape[1:])
        if any(d is None for d in shape[1:]):
            shown = "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
            raise ValueError(
                f"Input {tensor.name!r} has shape {shown}: only the batch dimension may be "
                "unknown in an exported model (tf.train.Example features need a fixed size). "
                "Give every other dimension a size in keras.Input(shape=...), e.g. "
                "pad or resize the data to a fixed length."
            )
        specs.append(tf.TensorSpec(shape, tf.as_dtype(tensor.dtype), name=tensor.name))
    return specs


def _class_outputs(task) -> dict[str, dict]:
    """A task's serving outputs beside its own: the arg-max class, and its name where named."""
    if not task.kind.class_output:
        return {}
    outputs = {f"{task.name}_class": {"shape": [-1], "dtype": "int64"}}
    if task.class_names is not None:
        outputs[f"{task.name}_class_name"] = {"shape": [-1], "dtype": "string"}
    return outputs


def _output_names(model) -> list[str]:
    """Serving output names; raises if two of them coincide."""
    names = []
    for task in model.tasks:
        names += [task.name, *_class_outputs(task)]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(
            f"Serving output name(s) {clashes} are used twice: a categorical task "
            "'<name>' also outputs '<name>_class' (and '<name>_class_name' with class names). "
            "Rename the task that is called like one of those."
        )
    return names


def _model_outputs(model, flat_inputs) -> dict:
    """The model's outputs in user units, in ``keras.ops`` (traced by the model's backend)."""
    inputs = keras.tree.pack_sequence_as(model.input, list(flat_inputs))
    outputs = model(inputs, training=False)
    return {task.name: keras.ops.cast(outputs[task.name], "float32") for task in model.tasks}


def _user_outputs(model, outputs: dict) -> dict[str, tf.Tensor]:
    """Serving outputs from the model's: plus the arg-max of categorical tasks (int64) and its name."""
    named = {}
    for task in model.tasks:
        named[task.name] = outputs[task.name]
        if task.kind.class_output:
            index = tf.argmax(outputs[task.name], axis=-1, output_type=tf.int64)
            named[f"{task.name}_class"] = index
            if task.class_names is not None:
                named[f"{task.name}_class_name"] = tf.gather(tf.constant(list(task.class_names)), index)
    return named


def _example_dtype(dtype: tf.DType) -> tf.DType:
    """The dtype a ``tf.train.Example`` carries values of ``dtype`` in."""
    if dtype.is_floating:
        return tf.float32
    if dtype == tf.string:
        return tf.string
    if dtype.is_integer or dtype == tf.bool:
        return tf.int64
    raise ValueError(f"Inputs of dtype {dtype.name} cannot be carried by a tf.train.Example.")


def _example_spec(specs) -> dict[str, tf.io.FixedLenFeature]:
    """The ``tf.io.parse_example`` feature spec of the model's inputs."""
    return {s.name: tf.io.FixedLenFeature(s.shape[1:], _example_dtype(s.dtype)) for s in specs}


def _example_list(dtype: tf.DType) -> str:
    return {tf.float32: "float_list", tf.int64: "int64_list", tf.string: "bytes_list"}[
        _example_dtype(dtype)]


def serving_signature(model) -> dict:
    """Describes the ``serving_default`` inputs and outputs of ``model``.

    Args:
        model: a :class:`keras_mtl.MultiTaskModel`.

    Returns:
        ``{"inputs": {name: {"shape", "dtype"}}, "outputs": {...}}`` with
        ``-1`` for the batch dimension.

    Example:
        >>> import keras, keras_mtl as kmtl
        >>> inputs = keras.Input((3,), name="x")
        >>> model = kmtl.MultiTaskModel(inputs, keras.layers.Dense(4)(inputs),
        ...                             [kmtl.Task("weather", kind="categorical", num_classes=3)])
        >>> signature = serving_signature(model)
        >>> signature["inputs"]
        {'x': {'shape': [-1, 3], 'dtype': 'float32'}}
        >>> signature["outputs"]["weather_class"]
        {'shape': [-1], 'dtype': 'int64'}
    """
    _check_model(model)
    outputs = {}
    for task in model.tasks:
        outputs[task.name] = {"shape": [-1, task.units], "dtype": "float32"}
        outputs.update(_class_outputs(task))
    return {
        "inputs": {s.name: {"shape": [-1] + list(s.shape[1:]), "dtype": s.dtype.name}
                   for s in _input_specs(model)},
        "outputs": outputs,
    }


def _tasks_metadata(model, specs) -> dict:
    """The JSON stored with the export: tasks, outputs and inputs."""
    tasks = []
    for task in model.tasks:
        entry = {"name": task.name, "kind": task.kind.name, "units": task.units,
                 "output": task.name, "unit_names": task.output_names,
                 "loss_weight": task.loss_weight}
        if task.labels is not None:
            entry["labels"] = list(task.labels)
        if task.num_classes is not None:
            entry["num_classes"] = task.num_classes
            entry["class_names"] = task.output_names
        if task.kind.class_output:
            entry["class_output"] = f"{task.name}_class"
        if f"{task.name}_class_name" in _class_outputs(task):
            entry["class_name_output"] = f"{task.name}_class_name"
        tasks.append(entry)
    inputs = [{"name": s.name, "dtype": s.dtype.name, "shape": [-1] + list(s.shape[1:]),
               "example_feature": _example_list(s.dtype)} for s in specs]
    return {
        "format": METADATA_FORMAT,
        "model": model.name,
        "tasks": tasks,
        "inputs": inputs,
        "signatures": {
            "serving_default": {"inputs": [s.name for s in specs], "outputs": _output_names(model)},
            "serving_tf_example": {"inputs": [EXAMPLE_INPUT], "outputs": _output_names(model)},
        },
    }


def _check_model(model):
    if not isinstance(model, MultiTaskModel):
        raise TypeError(
            f"export_saved_model expects a keras_mtl.MultiTaskModel; got "
            f"{type(model).__name__}. Build the model with kmtl.MultiTaskModel(inputs, "
            "features, tasks), or export a plain Keras model with model.export(path)."
        )


class _Serving(tf.Module):
    """What the SavedModel holds: the model as a TensorFlow function, and its signatures.

    Keras's ``ExportArchive`` turns the model's forward pass into a
    TensorFlow function on the TensorFlow and JAX backends (on JAX through
    ``jax2tf``); the signatures around it (``tf.train.Example`` parsing,
    arg-max classes) are plain TensorFlow, the same on both.
    """

    def __init__(self, model, specs):
        super().__init__()
        archive = keras.export.ExportArchive()
        try:
            archive.track(model)
        except NotImplementedError as error:  # Keras exports SavedModels from TensorFlow and JAX only
            raise NotImplementedError(
                f"The {keras.backend.backend()!r} backend cannot export a SavedModel. Save the model "
                "(model.save('model.keras')) and export that file under TensorFlow: KERAS_BACKEND=tensorflow "
                "python -c \"import keras, keras_mtl as kmtl; kmtl.export_saved_model("
                "keras.saving.load_model('model.keras'), 'serving/model/1')\"") from error
        self.forward = archive.add_endpoint("forward", lambda *flat: _model_outputs(model, flat),
                                            input_signature=specs)
        # Saved with the module: the variables the forward function reads.
        self.model_variables = list(self.forward.get_concrete_function().variables)
        example_spec = _example_spec(specs)

        @tf.function(input_signature=specs, autograph=False)
        def serve(*flat):
            return _user_outputs(model, self.forward(*flat))

        @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name=EXAMPLE_INPUT)], autograph=False)
        def serve_examples(examples):
            parsed = tf.io.parse_example(examples, example_spec)
            return _user_outputs(model, self.forward(*[tf.cast(parsed[s.name], s.dtype) for s in specs]))

        self.serve, self.serve_examples = serve, serve_examples

    def write_out(self, path: str):
        tf.saved_model.save(self, path, signatures={"serving_default": self.serve,
                                                    "serving_tf_example": self.serve_examples})


# -- writing -------------------------------------------------------------------

def _fsync_tree(root: Path):
    """Flushes every file below ``root`` to disk (best effort)."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(folder: Path):
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. directories cannot be opened on this platform
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _write_staging(model, archive, specs, staging: Path):
    """Writes the whole version directory at ``staging``."""
    archive.write_out(str(staging))
    metadata = staging / TASKS_FILE
    metadata.parent.mkdir(parents=True, exist_ok=True)
    metadata.write_text(json.dumps(_tasks_metadata(model, specs), indent=2))
    _fsync_tree(staging)


def _missing_parents(path: Path) -> list[Path]:
    """The ancestors of ``path`` that do not exist yet, deepest first."""
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


def export_saved_model(model, path, *, overwrite: bool = False, verbose: bool = False) -> Path:
    """Writes ``model`` as a TF-Serving-ready SavedModel version directory.

    The signatures are described in the module docstring. The directory is
    written under a hidden staging name beside ``path`` and renamed into
    place: ``path`` appears whole or not at all, a failure leaves neither
    ``path`` nor the staging directory behind (nor parent directories this
    call created), and with ``overwrite=True`` the previous version stays in
    place until the new one is complete (then two renames swap them, and
    the previous one is deleted; if the second rename fails, the previous
    version is renamed back).

    Args:
        model: a :class:`keras_mtl.MultiTaskModel`.
        path: the version directory to create, e.g. ``"serving/street/1"``.
            TF Serving loads ``<model base path>/<integer version>``; use
            :func:`next_version_dir` to pick the next free version. Missing
            parent directories are created.
        overwrite: replace an existing directory at ``path``.
        verbose: once ``path`` is in place, print it with its signatures
            and metadata file.

    Returns:
        The ``Path`` written.

    Raises:
        TypeError: ``model`` is not a ``MultiTaskModel``.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: an input has an unknown non-batch dimension, two
            serving outputs would share a name, or ``path`` names no
            directory.

    Example:
        >>> import json, tempfile, keras, keras_mtl as kmtl
        >>> inputs = keras.Input((3,), name="x")
        >>> model = kmtl.MultiTaskModel(inputs, keras.layers.Dense(4)(inputs), [kmtl.Task("car")])
        >>> base = tempfile.mkdtemp()
        >>> path = kmtl.export_saved_model(model, f"{base}/car/1")
        >>> sorted(p.name for p in path.iterdir())
        ['assets', 'assets.extra', 'fingerprint.pb', 'saved_model.pb', 'variables']
        >>> [t["name"] for t in read_tasks(path)["tasks"]]
        ['car']
        >>> next_version_dir(f"{base}/car").name
        '2'
    """
    _check_model(model)
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ValueError(f"path={str(path)!r} must name the version directory, e.g. 'serving/street/1'.")

    def refuse():
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it or export to "
            f"a new version, e.g. {next_version_dir(path.parent)}."
        )

    if path.exists() and not overwrite:
        refuse()
    specs = _input_specs(model)
    _output_names(model)
    archive = _Serving(model, specs)

    created = _missing_parents(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    done = False
    try:
        _write_staging(model, archive, specs, staging)
        if path.exists():
            if not overwrite:  # appeared while we were writing
                refuse()
            retired = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, retired)
            try:
                os.rename(staging, path)
            except BaseException:
                os.rename(retired, path)
                raise
            if retired.is_dir():
                shutil.rmtree(retired, ignore_errors=True)
            else:
                retired.unlink()
        else:
            os.rename(staging, path)
        _fsync_dir(path.parent)
        done = True
        if verbose:
            print(f"Exported {path}: signatures serving_default, serving_tf_example; {TASKS_FILE}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            for parent in created:  # deepest first; only if still empty
                try:
                    parent.rmdir()
                except OSError:
                    break
    return path


# -- reading -------------------------------------------------------------------

def read_tasks(path) -> dict:
    """Reads the task metadata of an exported version directory.

    The file is plain JSON: clients may read
    ``<version>/assets.extra/keras_mtl_tasks.json`` without keras_mtl.

    Args:
        path: a version directory written by :func:`export_saved_model`.

    Returns:
        The metadata dict: ``tasks`` (each with ``name``, ``kind``,
        ``units``, ``output``, ``unit_names``, plus ``labels`` for
        multilabel and ``class_names``/``class_output`` (and
        ``class_name_output`` where the task names its classes) for categorical
        tasks) and ``inputs`` (``name``, ``dtype``, ``shape``,
        ``example_feature``).

    Raises:
        FileNotFoundError: ``path`` holds no keras_mtl metadata.
    """
    file = Path(path) / TASKS_FILE
    if not file.exists():
        raise FileNotFoundError(f"{file} not found: {path} was not exported by keras_mtl.")
    return json.loads(file.read_text())


def version_dirs(base) -> list[Path]:
    """The integer-named version directories below ``base``, lowest first.

    Hidden staging directories, files and other names are ignored, as TF
    Serving ignores them.

    Args:
        base: a model base directory (it need not exist).

    Returns:
        A list of paths sorted by version number.
    """
    base = Path(base)
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if _VERSION.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name))


def latest_version_dir(base) -> Path | None:
    """The highest version directory below ``base`` holding a SavedModel, or ``None``."""
    for version in reversed(version_dirs(base)):
        if (version / "saved_model.pb").exists():
            return version
    return None


def next_version_dir(base) -> Path:
    """``base/<n>`` with ``n`` one above the highest integer version present.

    Args:
        base: a model base directory (it need not exist).

    Returns:
        ``base/1`` for an empty or missing ``base``, else the next version.

    Example:
        >>> import tempfile
        >>> base = Path(tempfile.mkdtemp())
        >>> next_version_dir(base).name
        '1'
        >>> for name in ("1", "7", ".8.partial-0a1b2c3d", "notes"):
        ...     (base / name).mkdir()
        >>> next_version_dir(base).name
        '8'
    """
    versions = version_dirs(base)
    return Path(base) / str(int(versions[-1].name) + 1 if versions else 1)
