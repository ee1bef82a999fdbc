"""GLS, STCH, ExcessMTL, GO4Align, MoCo and SDMGrad, each against an independent NumPy computation.

The loss weightings' weights are checked as derivatives: a central finite
difference (float64 NumPy) of the total each one defines, at 2, 3 and 10
tasks with one task absent. The stateful ones are replayed step by step
against NumPy re-implementations of their documented updates; the
aggregators' inner problems are checked by their optimality conditions and
by grids over the simplex. Then one training step with an unlabelled task
checks, for every one of them, that the task's head and state stay and the
shared update is that of the other tasks. Training, saving, resuming and
replicas are covered for every registered strategy by test_balancing.py,
test_resume.py, test_distribute.py and test_combinations.py.
"""

import re

import keras
import numpy as np
import pytest
from keras import ops
from test_aggregators import CASES, aggregate, compiled, grid_on, numpy_projection, problem, set_up, task_losses
from test_balancing import build, flat, formula_gradients, regression, trunk

import keras_mtl as kmtl
from keras_mtl import balancing as B

pytestmark = pytest.mark.portable

NEW = [B.GLS, B.STCH, B.ExcessMTL, B.GO4Align, B.MoCo, B.SDMGrad]
SIZES = [2, 3, 10]


def losses_and_presence(num_tasks, seed=0):
    """Positive losses spread over two decades; task 1 absent (loss 0)."""
    rng = np.random.default_rng(seed + num_tasks)
    losses = np.exp(rng.uniform(-2.0, 2.0, size=num_tasks))
    present = np.ones(num_tasks, bool)
    present[1] = False
    losses[1] = 0.0
    return losses, present


def combine(strategy, losses, present):
    weights, extra = strategy.combine(ops.convert_to_tensor(np.asarray(losses, "float32")),
                                      ops.convert_to_tensor(present))
    return ops.convert_to_numpy(weights).astype(np.float64), float(ops.convert_to_numpy(extra))


def finite_difference(total, losses, present, step=1e-6):
    """∂ total / ∂ L_i over the present tasks (0 for the absent), central differences in float64."""
    gradient = np.zeros(len(losses))
    for i in np.flatnonzero(present):
        up, down = losses.copy(), losses.copy()
        up[i] += step * losses[i]
        down[i] -= step * losses[i]
        gradient[i] = (total(up) - total(down)) / (2 * step * losses[i])
    return gradient




def coefficients(strategy, grads, present):
    """``task_coefficients`` on the Gram matrix of ``grads``, compiled as a training step of a stateful strategy."""
    grads = np.asarray(grads, "float32")
    run = compiled(strategy.task_coefficients, stateful=True)
    found = run(ops.convert_to_tensor(grads @ grads.T), ops.convert_to_tensor(present))
    return ops.convert_to_numpy(found).astype(np.float64)


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", NEW, ids=lambda c: c.__name__)
def test_config_round_trip_registry_and_documentation(cls):
    strategy = cls()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strategy))
    assert type(restored) is cls and restored.get_config() == strategy.get_config()
    assert B._STRATEGIES[cls.__name__] is cls and cls.__name__ in B.__all__
    summary, _, references = cls.__doc__.partition("References:")
    assert re.search(r"\(\d{4}\)\.", references) and re.search(r"(ICML|ICLR|NeurIPS|CVPR)", references)
    assert re.search(r"[=←]", summary) and "Example:" in cls.__doc__


def test_non_default_arguments_survive_the_config_and_bad_ones_are_refused():
    for strategy in (B.GLS(epsilon=1e-3), B.STCH(mu=0.5, warmup_epochs=2, epsilon=1e-6),
                     B.ExcessMTL(step_size=0.1, epsilon=1e-5), B.GO4Align(num_groups=3, step_size=0.01, iterations=4),
                     B.MoCo(beta=0.3, beta_sigma=0.0, gamma=0.2, gamma_sigma=0.0, rho=0.1, wrt="representation"),
                     B.SDMGrad(lam=0.5, iterations=7)):
        config = strategy.get_config()
        assert type(strategy).from_config(config).get_config() == config
    for make, match in ((lambda: B.STCH(mu=0.0), "mu must be"), (lambda: B.STCH(warmup_epochs=-1), "warmup"),
                        (lambda: B.GO4Align(num_groups=0), "num_groups"), (lambda: B.SDMGrad(lam=-1.0), "lam must")):
        with pytest.raises(ValueError, match=match):
            make()


# -- GLS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_tasks", SIZES)
def test_gls_weights_are_the_derivatives_of_the_geometric_mean(num_tasks):
    losses, present = losses_and_presence(num_tasks)
    strategy = set_up(B.GLS, num_tasks=num_tasks, epsilon=0.0)
    weights, extra = combine(strategy, losses, present)

    def geometric_mean(values):
        return np.prod(values[present]) ** (1 / present.sum())

    np.testing.assert_allclose(weights, finite_difference(geometric_mean, losses, present), rtol=1e-5)
    assert weights[1] == 0.0
    assert extra + weights @ losses == pytest.approx(geometric_mean(losses), rel=1e-5)
    # Scale one task's loss by 10: the loss weights of the others scale by 10^{1/T}.
    scaled = losses.copy()
    scaled[0] *= 10
    again, _ = combine(strategy, scaled, present)
    np.testing.assert_allclose(again[2:], weights[2:] * 10 ** (1 / present.sum()), rtol=1e-5)


def test_gls_loss_weights_give_the_weighted_geometric_mean():
    strategy = B.GLS(epsilon=0.0)
    strategy.setup(["a", "b", "c"], [1.0, 3.0, 2.0])
    losses, present = np.array([0.5, 2.0, 4.0]), np.ones(3, bool)
    weights, extra = combine(strategy, losses, present)
    base = np.array([1.0, 3.0, 2.0])

    def weighted_mean(values):
        return np.exp(base @ np.log(values) / base.sum())

    np.testing.assert_allclose(weights, finite_difference(weighted_mean, losses, present), rtol=1e-5)
    assert extra + weights @ losses == pytest.approx(weighted_mean(losses), rel=1e-5)


# -- STCH ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_tasks", SIZES)
def test_stch_warms_up_on_log_losses_then_fixes_the_nadir_and_smooths_the_max(num_tasks):
    mu = 0.5
    strategy = set_up(B.STCH, num_tasks=num_tasks, mu=mu, warmup_epochs=2, epsilon=0.0)
    rng = np.random.default_rng(num_tasks)
    epochs = [rng.uniform(0.2, 3.0, size=(3, num_tasks)) for _ in range(2)]
    presence = rng.random((3, num_tasks)) > 0.3
    presence[:, 0] = True
    presence[:, 1] = False  # never labelled in the last warm-up epoch: n_1 = 1
    for epoch in epochs:
        for losses, present in zip(epoch, presence):
            weights, extra = combine(strategy, losses * present, present)
            np.testing.assert_allclose(weights, np.where(present, 1 / losses, 0), rtol=1e-5)  # Σ log L_i
            assert extra + weights @ (losses * present) == pytest.approx(np.log(losses[present]).sum(), rel=1e-4)
            strategy.observe_losses(ops.convert_to_tensor((losses * present).astype("float32")), present)
        strategy.end_epoch()
    counts = presence.sum(axis=0)
    nadir = np.where(counts > 0, (epochs[1] * presence).sum(axis=0) / np.maximum(counts, 1), 1.0)
    np.testing.assert_allclose(strategy.nadir.numpy(), nadir, rtol=1e-5)

    losses, present = losses_and_presence(num_tasks)
    weights, extra = combine(strategy, losses, present)

    def smooth_max(values):
        scaled = np.log(values[present] / nadir[present]) / mu
        return present.sum() * mu * (scaled.max() + np.log(np.exp(scaled - scaled.max()).sum()))

    np.testing.assert_allclose(weights, finite_difference(smooth_max, losses, present), rtol=1e-4)
    assert weights[1] == 0.0
    assert extra + weights @ losses == pytest.approx(smooth_max(losses), rel=1e-5)
    # μ → 0: the worst normalised task takes all the weight.
    sharp = set_up(B.STCH, num_tasks=num_tasks, mu=1e-3, warmup_epochs=0, epsilon=0.0)
    worst = np.argmax(np.where(present, losses, -np.inf))
    losses[worst] *= 1.1  # ahead of the next by more than 0.095 in log: e^{-95} of the weight is left
    sharp_weights, _ = combine(sharp, losses, present)
    assert sharp_weights[worst] * losses[worst] == pytest.approx(present.sum(), rel=1e-3)


# -- ExcessMTL ------------------------------------------------------------------------------------


def numpy_excess(gradient_steps, presence, step_size, epsilon=1e-7, diagonal=False):
    """ExcessMTL's weights (He et al. 2024; LibMTL's code) over several steps, in NumPy.

    ``diagonal=True``: the full diagonal AdaGrad preconditioner, as LibMTL; otherwise its mean.
    """
    num_tasks = gradient_steps.shape[1]
    lam = np.ones(num_tasks)
    accumulated = np.zeros(gradient_steps.shape[1:]) if diagonal else np.zeros(num_tasks)
    initial = np.zeros(num_tasks)
    for grads, present in zip(gradient_steps, presence):
        risks = np.zeros(num_tasks)
        for i in np.flatnonzero(present):
            if diagonal:
                accumulated[i] += grads[i] ** 2
                risks[i] = grads[i] @ (grads[i] / np.sqrt(accumulated[i] + epsilon))
            else:
                accumulated[i] += grads[i] @ grads[i]
                risks[i] = grads[i] @ grads[i] / np.sqrt(accumulated[i] + epsilon)
        first = present & (initial <= 0)
        grow = present & ~first
        new = lam.copy()
        new[grow] = lam[grow] * np.exp(step_size * risks[grow] / initial[grow])
        new[present] *= lam[present].sum() / new[present].sum()
        initial[first] = risks[first]
        lam = new
    return lam


@pytest.mark.parametrize("num_tasks", SIZES)
def test_excess_mtl_weights_follow_the_excess_risk_estimates(num_tasks):
    rng = np.random.default_rng(num_tasks)
    steps = 6
    scales = np.exp(rng.uniform(-1, 1, size=num_tasks))[None, :, None]
    decay = np.exp(-np.outer(np.arange(steps), rng.uniform(0, 0.5, size=num_tasks)))[:, :, None]
    gradient_steps = rng.normal(size=(steps, num_tasks, 5)) * scales * decay
    presence = np.ones((steps, num_tasks), bool)
    presence[2:4, 1] = False
    loss_weights = rng.uniform(0.5, 2.0, size=num_tasks)
    strategy = B.ExcessMTL(step_size=0.3)
    strategy.setup([f"t{i}" for i in range(num_tasks)], list(loss_weights))
    for grads, present in zip(gradient_steps, presence):
        before = strategy.task_weights.numpy()[1], strategy.squared_sum.numpy()[1]
        weighted = (grads * loss_weights[:, None] * present[:, None]).astype("float32")  # of w_i L_i
        strategy.observe_gradients([ops.convert_to_tensor(weighted.reshape(num_tasks, 5, 1))], ops.ones(num_tasks),
                                   ops.convert_to_tensor(loss_weights.astype("float32")), present)
        if not present[1]:
            assert (strategy.task_weights.numpy()[1], strategy.squared_sum.numpy()[1]) == before
    expected = numpy_excess(gradient_steps * presence[:, :, None], presence, 0.3)
    np.testing.assert_allclose(strategy.task_weights.numpy(), expected, rtol=1e-4)
    assert strategy.task_weights.numpy().sum() == pytest.approx(num_tasks, rel=1e-5)
    assert np.ptp(expected) > 1e-3
    weights, _ = combine(strategy, np.ones(num_tasks), np.ones(num_tasks, bool))
    np.testing.assert_allclose(weights, expected * loss_weights, rtol=1e-4)


def test_excess_mtl_matches_the_diagonal_preconditioner_when_each_task_moves_one_coordinate():
    """With every task's gradient on a coordinate of its own, AdaGrad-norm is AdaGrad: LibMTL's numbers."""
    rng = np.random.default_rng(2)
    steps, num_tasks = 5, 3
    gradient_steps = np.zeros((steps, num_tasks, num_tasks))
    for i in range(num_tasks):
        gradient_steps[:, i, i] = rng.uniform(0.1, 3.0, size=steps)
    presence = np.ones((steps, num_tasks), bool)
    strategy = set_up(B.ExcessMTL, num_tasks=num_tasks, step_size=0.5)
    for grads in gradient_steps:
        strategy.observe_gradients([ops.convert_to_tensor(grads.astype("float32"))], ops.ones(num_tasks),
                                   ops.ones(num_tasks), np.ones(num_tasks, bool))
    expected = numpy_excess(gradient_steps, presence, 0.5, diagonal=True)
    np.testing.assert_allclose(strategy.task_weights.numpy(), expected, rtol=1e-4)


# -- GO4Align -----------------------------------------------------------------------------------


def numpy_go4align_indicators(loss_steps, presence, step_size):
    """GO4Align's risk-guided indicators γ at every step (Shen et al. 2024; their code), in NumPy."""
    num_tasks = loss_steps.shape[1]
    p = np.full(num_tasks, 1.0 / num_tasks)
    indicators = []
    for losses, present in zip(loss_steps, presence):
        moved = p * np.exp(-step_size * losses)
        p = np.where(present, moved * p[present].sum() / moved[present].sum(), p)
        indicators.append(np.where(present, p * losses[present].sum() / np.where(present, losses, 1), 0))
    return np.array(indicators), p


@pytest.mark.parametrize("num_tasks", SIZES)
def test_go4align_groups_the_indicators_by_k_means(num_tasks):
    rng = np.random.default_rng(num_tasks)
    steps, groups = 4, min(3, num_tasks)
    loss_steps = np.exp(rng.uniform(-1.5, 1.5, size=(steps, num_tasks)))
    presence = np.ones((steps, num_tasks), bool)
    presence[1:, 1] = False
    loss_steps *= presence
    strategy = set_up(B.GO4Align, num_tasks=num_tasks, num_groups=groups, step_size=0.5)
    indicators, final_p = numpy_go4align_indicators(loss_steps, presence, 0.5)
    for losses, present, gamma in zip(loss_steps, presence, indicators):
        weights, extra = combine(strategy, losses, present)
        assert extra == 0.0 and np.all(weights[~present] == 0)
        active = weights[present]
        centres = np.unique(np.round(active, 5))
        assert len(centres) == min(groups, len(np.unique(np.round(gamma[present], 5))))
        # k-means' fixed point: each task sits at its nearest centre, each centre is its group's mean.
        distance = np.abs(gamma[present][:, None] - centres[None, :])
        np.testing.assert_allclose(distance.min(axis=1), np.abs(gamma[present] - active), atol=1e-5)
        for centre in centres:
            members = np.isclose(active, centre, atol=1e-5)
            assert centre == pytest.approx(gamma[present][members].mean(), rel=1e-4)
        strategy.observe_losses(ops.convert_to_tensor(losses.astype("float32")), present)
    np.testing.assert_allclose(strategy.indicator.numpy(), final_p, rtol=1e-5)
    assert strategy.indicator.numpy().sum() == pytest.approx(1.0, rel=1e-5)


def test_go4align_clusters_are_the_best_split_of_the_line():
    """On a line the optimal k-means groups are contiguous: compare with every split of the sorted values."""
    rng = np.random.default_rng(11)
    for _ in range(5):
        values = np.sort(np.concatenate([rng.normal(0.5, 0.05, 3), rng.normal(1.0, 0.05, 4), rng.normal(2.5, 0.1, 3)]))
        present = np.ones(10, bool)
        run = compiled(lambda v, p: B.GO4Align.cluster(v, p, 3, 10))
        centres, assigned = (ops.convert_to_numpy(t) for t in run(values.astype("float32"), present))
        found = ((values - centres[assigned]) ** 2).sum()
        best = min(sum(((part - part.mean()) ** 2).sum() for part in np.split(values, [a, b]))
                   for a in range(1, 9) for b in range(a + 1, 10))
        assert found == pytest.approx(best, rel=1e-4, abs=1e-9)


# -- MoCo ------------------------------------------------------------------------------------------


def numpy_moco(gram_steps, loss_steps, presence, beta=0.5, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.5, rho=0.0):
    """MoCo's λ recursion on tracked Gram matrices of the rescaled gradients L_i g_i / ‖g_i‖, in NumPy.

    Returns the coefficients α of every step (of the raw gradients) and the final λ.
    """
    num_tasks = gram_steps.shape[1]
    tracked, lam, alphas = np.zeros((num_tasks, num_tasks)), np.full(num_tasks, 1 / num_tasks), []
    for t, (gram, losses, present) in enumerate(zip(gram_steps, loss_steps, presence), start=1):
        idx = np.flatnonzero(present)
        scale = np.zeros(num_tasks)
        scale[idx] = losses[idx] / np.sqrt(np.diag(gram)[idx])
        rescaled = gram * np.outer(scale, scale)
        b, g = beta / t ** beta_sigma, gamma / t ** gamma_sigma
        block = np.ix_(idx, idx)
        tracked[block] = tracked[block] - b * (tracked[block] - rescaled[block])
        total = lam[idx].sum()
        shares = lam[idx] / total
        shares = numpy_projection(shares - g * (tracked[block] + rho * np.eye(len(idx))) @ shares)
        lam[idx] = total * shares
        alpha = np.zeros(num_tasks)
        alpha[idx] = shares * scale[idx]
        alphas.append(alpha)
    return np.array(alphas), lam


@pytest.mark.parametrize("num_tasks", SIZES)
def test_moco_tracks_the_gram_matrix_and_steps_lambda_on_the_simplex(num_tasks):
    rng = np.random.default_rng(num_tasks)
    steps = 5
    gradients = rng.normal(size=(steps, num_tasks, 8)) * np.exp(rng.uniform(-1, 1, size=(1, num_tasks, 1)))
    presence = np.ones((steps, num_tasks), bool)
    presence[2:4, 1] = False
    gradients *= presence[:, :, None]
    gram_steps = np.einsum("sip,sjp->sij", gradients, gradients)
    loss_steps = np.exp(rng.uniform(-1, 1, size=(steps, num_tasks)))
    strategy = set_up(B.MoCo, num_tasks=num_tasks, gamma=0.5, rho=0.1)
    expected, lam = numpy_moco(gram_steps, loss_steps, presence, gamma=0.5, rho=0.1)
    for gram, losses, present, alpha in zip(gram_steps, loss_steps, presence, expected):
        before = strategy.task_weights.numpy()[1], strategy.tracked_gram.numpy()[1]
        strategy.observe_gradients([], ops.convert_to_tensor(losses.astype("float32")), ops.ones(num_tasks), present)
        found = ops.convert_to_numpy(strategy.task_coefficients(ops.convert_to_tensor(gram.astype("float32")),
                                                                ops.convert_to_tensor(present)))
        np.testing.assert_allclose(found, alpha, rtol=1e-4, atol=1e-7)
        if not present[1]:
            assert strategy.task_weights.numpy()[1] == before[0]
            np.testing.assert_array_equal(strategy.tracked_gram.numpy()[1], before[1])
    np.testing.assert_allclose(strategy.task_weights.numpy(), lam, rtol=1e-4, atol=1e-7)
    assert strategy.task_weights.numpy().sum() == pytest.approx(1.0, rel=1e-5)


def test_moco_with_full_tracking_and_one_step_per_batch_reaches_the_min_norm_point():
    """β = 1, no decay: M is this batch's Gram matrix; repeated steps on one batch reach MGDA's λ.

    With unit losses the rescaled gradients are the unit gradients: the min-norm point of their hull.
    """
    grads, present = CASES["conflicting"]
    units = grads / np.linalg.norm(grads, axis=1, keepdims=True)
    strategy = set_up(B.MoCo, beta=1.0, beta_sigma=0.0, gamma=0.3, gamma_sigma=0.0)
    strategy.observe_gradients([], ops.ones(3), ops.ones(3), present)
    step = compiled(strategy.task_coefficients, stateful=True)
    gram, flags = ops.convert_to_tensor((grads @ grads.T).astype("float32")), ops.convert_to_tensor(present)
    for _ in range(150):
        alpha = ops.convert_to_numpy(step(gram, flags))
    lam = strategy.task_weights.numpy()
    np.testing.assert_allclose(alpha, lam / np.linalg.norm(grads, axis=1), rtol=1e-5)
    norm = np.sum((lam @ units) ** 2)
    assert norm <= np.min(np.sum((grid_on(present) @ units) ** 2, axis=1)) * (1 + 1e-3)
    # KKT of the min-norm problem: (K̃λ)_i ≥ λᵀK̃λ for every task.
    assert np.all(units @ (lam @ units) >= norm * (1 - 1e-3))


# -- SDMGrad ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_sdmgrad_weights_minimise_the_regularised_objective(case):
    grads, present = CASES[case]
    lam = 0.3
    strategy = set_up(B.SDMGrad, lam=lam, iterations=400)
    alpha = coefficients(strategy, grads, present)
    w = strategy.task_weights.numpy().astype(np.float64)
    w = np.where(present, w / w[present].sum(), 0)
    g0 = grads[present].mean(axis=0)

    def objective(points):  # ½ ‖G w + λ g₀‖²
        return 0.5 * np.sum((points @ grads + lam * g0) ** 2, axis=-1)

    assert objective(w) <= objective(grid_on(present)).min() + 1e-6 * (1 + objective(w))
    # KKT on the simplex: ∇F_i ≥ wᵀ∇F for every present task, with equality where w_i > 0.
    gradient = grads @ (w @ grads + lam * g0)
    scale = np.abs(gradient[present]).max() + 1e-12
    assert np.all(gradient[present] >= w @ gradient - 1e-3 * scale)
    support = present & (w > 1e-4)
    np.testing.assert_allclose(gradient[support], w @ gradient, atol=1e-3 * scale)
    mean = present / present.sum()
    np.testing.assert_allclose(alpha, (w + lam * mean) / (1 + lam), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(aggregate(set_up(B.SDMGrad, lam=lam, iterations=400), grads, present),
                               alpha @ grads, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("num_tasks", SIZES)
def test_sdmgrad_warm_started_steps_match_numpy_and_keep_an_absent_weight(num_tasks):
    rng = np.random.default_rng(num_tasks)
    steps, iterations, lam = 3, 5, 0.3
    strategy = set_up(B.SDMGrad, num_tasks=num_tasks, lam=lam, iterations=iterations)
    w = np.full(num_tasks, 1 / num_tasks)
    for step in range(steps):
        grads = rng.normal(size=(num_tasks, 7))
        present = np.ones(num_tasks, bool)
        present[1] = step == 0
        grads[~present] = 0
        idx = np.flatnonzero(present)
        gram = grads[idx] @ grads[idx].T
        gram = gram / np.mean(np.diag(gram))
        mean = np.full(len(idx), 1 / len(idx))
        total = w[idx].sum()
        u = w[idx] / total
        for _ in range(iterations):
            u = numpy_projection(u - (gram @ u + lam * gram @ mean) / np.linalg.eigvalsh(gram).max())
        before = strategy.task_weights.numpy()[1]
        alpha = coefficients(strategy, grads, present)
        expected = np.zeros(num_tasks)
        expected[idx] = (u + lam * mean) / (1 + lam)
        np.testing.assert_allclose(alpha, expected, rtol=1e-4, atol=1e-6)
        w[idx] = total * u
        np.testing.assert_allclose(strategy.task_weights.numpy(), w, rtol=1e-4, atol=1e-6)
        if not present[1]:
            assert strategy.task_weights.numpy()[1] == before


# -- inside fit: a task without labels ------------------------------------------------------------


@pytest.mark.parametrize("cls", NEW, ids=lambda c: c.__name__)
def test_absent_task_in_fit_keeps_its_head_and_state_and_adds_nothing(cls):
    """One step with task ``gone`` unlabelled; the shared update is the other two tasks'."""
    x, labels = problem()
    first = {name: y[:32] for name, y in labels.items()}
    model = build([kmtl.Task("c")] + regression("gone", "b"))  # fused columns: c, gone, b
    strategy = cls(warmup_epochs=0) if cls is B.STCH else cls()
    lr = 0.1
    model.compile(optimizer=keras.optimizers.SGD(lr), balancing=strategy)
    shared = trunk(model)
    grads = formula_gradients(model, x[:32], first, shared)  # tasks c and b, unweighted
    losses = task_losses(model, x[:32], first)[[0, 2]]
    before = flat(shared)
    gone_head = model.task_heads.dense.kernel.numpy()[:, 1].copy()
    state = [v.numpy().copy() for v in strategy.variables]
    model.fit(x[:32], first, batch_size=32, epochs=1, shuffle=False, verbose=0)

    np.testing.assert_array_equal(model.task_heads.dense.kernel.numpy()[:, 1], gone_head)
    for saved, variable in zip(state, strategy.variables, strict=True):
        if len(variable.shape) >= 1 and variable.shape[0] == 3:  # per-task state (MoCo's Gram matrix: row 1)
            np.testing.assert_array_equal(variable.numpy()[1], saved[1], err_msg=variable.name)
    applied = (before - flat(shared)) / lr
    if cls is B.GLS:
        weights = np.sqrt(np.prod(losses)) / (2 * losses)
    elif cls is B.STCH:  # n = 1: softmax of the log losses, times T / L_i
        weights = 2 * (losses / losses.sum()) / losses
    elif cls is B.ExcessMTL:  # the first step sets r(0) and leaves the weights at 1
        weights = np.ones(2)
    elif cls is B.GO4Align:  # two tasks, two groups: γ = p ⊙ Σ L / L, p one step from uniform
        q = np.exp(-1e-4 * losses)
        weights = (2 / 3) * (q / q.sum()) * losses.sum() / losses  # the present tasks keep p's total, ⅔
    else:
        reference = set_up(cls, num_tasks=2)
        if cls is B.MoCo:
            reference.observe_gradients([], ops.convert_to_tensor(losses.astype("float32")), ops.ones(2),
                                        np.ones(2, bool))
        weights = coefficients(reference, grads, np.ones(2, bool))
    np.testing.assert_allclose(applied, weights @ grads, rtol=2e-3, atol=1e-5)
