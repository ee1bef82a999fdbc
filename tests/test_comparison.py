"""kmtl.compare: single-task vs multi-task networks over seeds."""

import keras
import numpy as np
import pytest

import keras_mtl as kmtl

pytestmark = pytest.mark.portable


def trunk():
    inputs = keras.Input((6,), name="x")
    return inputs, keras.layers.Dense(8, activation="relu")(inputs)


def test_compare_table_matches_per_seed_values(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype("float32")
    labels = {"a": (x[:, 0] > 0).astype("float32"), "r": x[:, 1].astype("float32")}
    labels["a"][::3] = np.nan
    tasks = [kmtl.Task("a"), kmtl.Task("r", kind="regression")]
    result = kmtl.compare(trunk, tasks, x[:200], {k: v[:200] for k, v in labels.items()},
                          x[200:], {k: v[200:] for k, v in labels.items()},
                          epochs=1, seeds=(0, 1), verbose=False)
    assert [r["task"] for r in result.rows] == ["a", "r"]
    assert [r["metric"] for r in result.rows] == ["auc", "mae"]
    for row in result.rows:
        single = np.array(result.per_seed[(row["task"], "single")])
        multi = np.array(result.per_seed[(row["task"], "multi")])
        assert len(single) == len(multi) == 2
        assert row["single"] == np.mean(single) and row["multi_std"] == np.std(multi)
        sign = -1 if row["metric"] == "mae" else 1
        np.testing.assert_allclose(row["relative_change"],
                                   sign * (multi.mean() - single.mean()) / abs(single.mean()))
    # Two single-task nets: 2 × (6·8+8) trunk + heads (9 + 9); one multi: 56 + 18.
    assert result.params == {"single": 2 * 56 + 9 + 9, "multi": 56 + 18}
    assert "parameters" in str(result)
    result.plot(tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 1000


def test_compare_scores_each_network_as_training_it_by_hand_does():
    """The per-seed figures are those of the same networks trained and scored without compare."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    x = rng.normal(size=(240, 6)).astype("float32")
    labels = {"a": (x[:, 0] + 0.3 * x[:, 2] > 0).astype("float32"), "r": (2 * x[:, 1]).astype("float32")}
    labels["a"][::4] = np.nan
    tasks = [kmtl.Task("a"), kmtl.Task("r", kind="regression")]
    train = {k: v[:160] for k, v in labels.items()}
    test = {k: v[160:] for k, v in labels.items()}
    result = kmtl.compare(trunk, tasks, x[:160], train, x[160:], test, epochs=2, batch_size=32,
                          seeds=(4,), verbose=False)
    # The multi-task network by hand: seed, trunk, model, Adam(1e-3), the seeded shuffled pipeline.
    keras.utils.set_random_seed(4)
    model = kmtl.MultiTaskModel(*trunk(), tasks)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(kmtl.data.from_arrays(x[:160], train, tasks, 32, shuffle=True, seed=4), epochs=2, verbose=0)
    predicted = model.predict(x[160:], verbose=0)
    labelled = ~np.isnan(test["a"])
    auc = roc_auc_score(test["a"][labelled], predicted["a"][labelled, 0])
    mae = np.mean(np.abs(predicted["r"][:, 0] - test["r"]))
    # keras.metrics.AUC uses 200 thresholds: close to the exact AUC, not equal.
    np.testing.assert_allclose(result.per_seed[("a", "multi")][0], auc, atol=5e-3)
    np.testing.assert_allclose(result.per_seed[("r", "multi")][0], mae, rtol=1e-5)
    # One convention, + = the multi-task network is better: AUC up, MAE down, directions by hand.
    better = {"a": 1.0, "r": -1.0}
    changes = {r["task"]: better[r["task"]] * (r["multi"] - r["single"]) / r["single"] for r in result.rows}
    for row in result.rows:
        np.testing.assert_allclose(row["relative_change"], changes[row["task"]], rtol=1e-9)
    expected = 100 * np.mean(list(changes.values()))
    np.testing.assert_allclose(result.mean_change, expected, rtol=1e-9)
    table = str(result)
    assert f"mean change = {expected:+.2f} %" in table
    for row in result.rows:      # each task's printed change carries the same sign as its row
        line = next(line for line in table.splitlines() if line.startswith(row["task"] + " "))
        assert line.endswith(f"{changes[row['task']]:+.1%}")
    assert "+ means the multi-task network is better" in table and "Δm" not in table
    # The literature's Δm (negative = better) is kept only as a deprecated figure and a function.
    with pytest.warns(DeprecationWarning, match="mean_change"):
        np.testing.assert_allclose(result.delta_m, -expected, rtol=1e-9)
    np.testing.assert_allclose(kmtl.comparison.delta_m(result.rows), -expected, rtol=1e-9)


def test_mean_change_is_positive_when_the_multi_task_network_wins():
    rows = [{"task": "car", "metric": "auc", "single": 0.80, "multi": 0.88, "single_std": 0.0,
             "multi_std": 0.0, "relative_change": 0.10, "seeds": 1},
            {"task": "price", "metric": "mae", "single": 2.0, "multi": 1.9, "single_std": 0.0,
             "multi_std": 0.0, "relative_change": 0.05, "seeds": 1}]
    result = kmtl.CompareResult(rows)
    assert result.mean_change > 0                               # both tasks improved
    np.testing.assert_allclose(result.mean_change, 7.5)
    lines = str(result).splitlines()
    assert lines[2].endswith("+10.0%") and lines[3].endswith("+5.0%")
    assert "mean change = +7.50 %" in lines[4]


def test_same_seed_gives_same_numbers():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 6)).astype("float32")
    labels = {"a": (x[:, 0] > 0).astype("float32")}
    run = lambda: kmtl.compare(trunk, [kmtl.Task("a")], x[:80], {"a": labels["a"][:80]},  # noqa: E731
                               x[80:], {"a": labels["a"][80:]}, epochs=1, seeds=(3,), verbose=False)
    assert run().per_seed == run().per_seed
