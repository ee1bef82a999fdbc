"""Every sharing architecture with every balancing strategy trains, saves and reloads."""

import inspect

import keras
import numpy as np
import pytest

import keras_mtl as kmtl

pytestmark = pytest.mark.portable

ARCHITECTURES = {
    "hard": lambda: None,
    "soft": lambda: kmtl.sharing.SoftSharing((8,)),
    "cross_stitch": lambda: kmtl.sharing.CrossStitch((8, 8)),
    "mmoe": lambda: kmtl.sharing.MMoE(2, (8,)),
    "ple": lambda: kmtl.sharing.PLE(units=8),
}
# Every registered strategy: one added to the registry is covered here too.
STRATEGIES = list(kmtl.balancing._STRATEGIES.values())


def _make(strategy):
    """A fresh strategy, seeded where it draws random numbers."""
    seeded = "seed" in inspect.signature(strategy.__init__).parameters
    return strategy(seed=0) if seeded else strategy()


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    labels = {"a": (x[:, 0] > 0).astype("float32"), "b": (x[:, 1] + x[:, 0] > 0).astype("float32"),
              "r": x[:, 2].copy()}
    for y in labels.values():
        y[rng.random(64) < 0.3] = np.nan
    return x, labels



def _grid():
    """Every strategy with hard sharing and with one other architecture (in turn), and every architecture
    with one strategy of each training path: a loss weighting, GradNorm's last shared kernel, two gradient
    aggregators. The training step depends on the architecture only through the path (which variables are
    shared, which get per-task gradients), so every (architecture, path) pair and every strategy is trained
    without the full product, whose cost grows with every strategy added. On the other backends (they differ
    only in the per-task-gradient training step, keras_mtl/backend/) the second architecture is left out."""
    across = {kmtl.balancing.UncertaintyWeighting, kmtl.balancing.GradNorm, kmtl.balancing.PCGrad,
              kmtl.balancing.UPGrad}
    others = [a for a in ARCHITECTURES if a != "hard"]
    chosen = {("hard", s) for s in STRATEGIES} | {(a, s) for a in others for s in across}
    if keras.backend.backend() == "tensorflow":
        chosen |= {(others[i % len(others)], s) for i, s in enumerate(STRATEGIES)}
    pairs = [(a, s) for a in ARCHITECTURES for s in STRATEGIES if (a, s) in chosen]
    return [pytest.param(a, s, id=f"{a}-{s.__name__}") for a, s in pairs]


@pytest.mark.parametrize(("architecture", "strategy"), _grid())
def test_trains_saves_and_reloads(architecture, strategy, tmp_path):
    x, labels = _data()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), name="x")
    features = keras.layers.Dense(8, activation="relu")(inputs)
    tasks = [kmtl.Task("a"), kmtl.Task("b"), kmtl.Task("r", kind="regression")]
    model = kmtl.MultiTaskModel(inputs, features, tasks, sharing=ARCHITECTURES[architecture]())
    model.compile(optimizer=keras.optimizers.Adam(0.02), balancing=_make(strategy))
    encoded = {k: keras.ops.convert_to_numpy(v) for k, v in
               kmtl.data.encode_labels(kmtl.data.validate_labels(labels, model), model).items()}

    def loss():  # eager, at evaluation weights (a random strategy's training loss is random)
        return float(keras.ops.convert_to_numpy(model.loss_terms(encoded, model(x), training=False).total))

    before = loss()
    history = model.fit(x, labels, epochs=3, batch_size=16, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert loss() < before
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    predictions, again = model(x), reloaded(x)
    for name in model.task_names:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(again[name]),
                                   keras.ops.convert_to_numpy(predictions[name]), atol=1e-6)
    state = [keras.ops.convert_to_numpy(v) for v in model.balancing.variables]
    restored = [keras.ops.convert_to_numpy(v) for v in reloaded.balancing.variables]
    for saved, loaded in zip(state, restored):
        np.testing.assert_array_equal(loaded, saved)
