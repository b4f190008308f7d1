"""Gradients through equilibria (implicit function theorem): known answers, finite
differences, unrolled iterations, active sets and the unconverged flag."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax import equilibrium
from marketjax.mechanisms import implicit, unrolled


def _market(seed, m, g):
    kb, ku, ks = jax.random.split(jax.random.key(seed), 3)
    budgets = jax.random.uniform(kb, (m,), minval=0.5, maxval=2.0)
    utilities = jax.random.uniform(ku, (m, g), minval=0.1, maxval=1.0)
    supply = jax.random.uniform(ks, (g,), minval=0.5, maxval=2.0)
    return budgets, utilities, supply


def _fd(fn, x, h):
    """Central differences of fn: f[...] -> f[K] at x, as f[K, *x.shape]."""
    x = np.asarray(x, np.float32)
    cols = []
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        cols.append((np.asarray(fn(x + e)) - np.asarray(fn(x - e))) / (2 * h))
    return np.stack(cols, -1).reshape(-1, *x.shape)


def test_dense_solve_matches_numpy_and_pivots():
    a = np.array([[0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [3.0, 0.0, 1.0]], np.float32)
    b = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_allclose(implicit.dense_solve(a, b), np.linalg.solve(a, b), 1e-5)
    inv = jax.vmap(implicit.inverse)(jnp.stack([a, 2 * a]))
    np.testing.assert_allclose(inv[1], np.linalg.inv(2 * a), rtol=1e-5, atol=1e-6)


def test_cobb_douglas_price_jacobian_is_exact():
    """p_j = sum_i B_i a_ij / s_j, so dp_j/dB_i = a_ij / s_j (reverse and forward),
    and dp_j/ds_j = -p_j / s_j; batched over markets under jit(vmap)."""
    budgets, utilities, supply = _market(0, 5, 4)
    shares = utilities / utilities.sum(1, keepdims=True)

    def prices(b, u, s):
        return equilibrium.fisher(
            b,
            u,
            s,
            kind="cobb_douglas",
            method="proportional_response",
            tol=1e-6,
            max_iters=10,
        ).prices

    want = np.asarray(shares / supply[None, :]).T  # [G, M]
    np.testing.assert_allclose(
        jax.jacrev(prices)(budgets, utilities, supply), want, atol=1e-6
    )
    np.testing.assert_allclose(
        jax.jacfwd(prices)(budgets, utilities, supply), want, atol=1e-6
    )
    p = prices(budgets, utilities, supply)
    ds = jax.jacrev(prices, argnums=2)(budgets, utilities, supply)
    np.testing.assert_allclose(ds, np.diag(-p / supply), atol=1e-6)
    batch = jnp.stack([budgets, 2 * budgets, 0.5 * budgets])
    jac = jax.jit(jax.vmap(jax.jacrev(prices), in_axes=(0, None, None)))(
        batch, utilities, supply
    )
    np.testing.assert_allclose(jac, np.broadcast_to(want, (3, *want.shape)), atol=1e-6)


@pytest.mark.parametrize("kind,rho", [("ces", 0.5), ("ces", -1.0), ("linear", None)])
def test_fisher_gradients_match_finite_differences(kind, rho):
    """Random unseen markets: d prices / d (budgets, utilities, supply) and the
    allocation's derivative against central differences of the solver itself."""
    budgets, utilities, supply = _market(11, 4, 3)

    def solve(b, u, s):
        return equilibrium.fisher(
            b,
            u,
            s,
            kind=kind,
            method="proportional_response",
            tol=1e-6,
            max_iters=5000,
            rho=rho,
        )

    assert bool(solve(budgets, utilities, supply).converged)
    h = 1e-2
    for argnum, x in enumerate((budgets, utilities, supply)):

        def f(v, argnum=argnum):
            args = [budgets, utilities, supply]
            args[argnum] = jnp.asarray(v)
            return solve(*args).prices

        got = np.asarray(jax.jacrev(f)(x)).reshape(3, *x.shape)
        np.testing.assert_allclose(got, _fd(f, x, h), rtol=3e-3, atol=3e-4)
    alloc = jax.jacrev(lambda s: solve(budgets, utilities, s).allocation.ravel())(
        supply
    )
    fd = _fd(
        lambda s: solve(budgets, utilities, jnp.asarray(s)).allocation.ravel(),
        supply,
        h,
    )
    np.testing.assert_allclose(alloc, fd, atol=2e-3)


def test_fisher_ces_gradient_matches_unrolled_iterations():
    """The implicit gradient equals backprop through many unrolled rounds."""
    budgets, utilities, supply = _market(5, 6, 4)
    w = jnp.arange(1.0, 5.0)

    def implicit_revenue(b, u):
        eq = equilibrium.fisher(
            b,
            u,
            supply,
            kind="ces",
            method="proportional_response",
            tol=1e-6,
            max_iters=5000,
            rho=0.5,
        )
        return jnp.dot(w, eq.prices)

    def unrolled_revenue(b, u):
        p = unrolled.fisher(b, u, supply, kind="ces", rho=0.5, num_iters=400)
        return jnp.dot(w, p)

    gi = jax.grad(implicit_revenue, argnums=(0, 1))(budgets, utilities)
    gu = jax.grad(unrolled_revenue, argnums=(0, 1))(budgets, utilities)
    for a, b in zip(gi, gu, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)


def separable_value(params, bundle):
    return jnp.sum(params["a"] * bundle - 0.5 * params["b"] * bundle**2)


def separable_demand(params, prices, budget):
    del budget
    return jnp.maximum((params["a"] - prices) / params["b"], 0.0)


@pytest.mark.parametrize("closed_form", [False, True])
def test_quasilinear_one_good_known_derivatives(closed_form):
    """v_i = a_i x - b_i x^2/2: interior agents give p = (sum a/b - S) / sum 1/b,
    dp/da_i = (1/b_i)/sum_j(1/b_j), dp/dS = -1/sum_j(1/b_j); the fourth agent sits
    at the corner x = 0 (a_4 = 2 < p = 5.6) and drops out of both."""
    params = {
        "a": jnp.array([[10.0], [8.0], [6.0], [2.0]]),
        "b": jnp.array([[1.0], [2.0], [1.0], [1.0]]),
    }

    def price(prm, s):
        eq = equilibrium.quasilinear(
            separable_value,
            prm,
            s,
            tol=1e-6,
            max_iters=200,
            demand_fn=separable_demand if closed_form else None,
        )
        return eq.prices[0]

    supply = jnp.array([6.0])
    np.testing.assert_allclose(price(params, supply), 28 / 5, rtol=1e-6)
    inv_b = np.array([1.0, 0.5, 1.0])
    grad = jax.grad(price)(params, supply)
    np.testing.assert_allclose(
        grad["a"][:, 0], [*(inv_b / inv_b.sum()), 0.0], atol=1e-6
    )
    np.testing.assert_allclose(
        jax.grad(price, argnums=1)(params, supply), [-1 / inv_b.sum()], rtol=1e-6
    )
    # dp/db_i = -(x_i / b_i) / sum 1/b (x_i = (a_i - p) / b_i)
    x = np.array([4.4, 1.2, 0.4])
    want_b = -(x * inv_b) / inv_b.sum()
    np.testing.assert_allclose(grad["b"][:, 0], [*want_b, 0.0], atol=2e-5)


def quadratic_value(params, bundle):
    return jnp.dot(params["a"], bundle) - 0.5 * jnp.dot(bundle, params["q"] @ bundle)


def _quadratic(seed, m, g):
    ka, kl = jax.random.split(jax.random.key(seed))
    a = jax.random.uniform(ka, (m, g), minval=1.0, maxval=5.0)
    low = 0.3 * jax.random.normal(kl, (m, g, g))
    return a, jnp.einsum("mij,mkj->mik", low, low) + jnp.eye(g)[None]


@pytest.mark.parametrize("budgets", [None, (1.5, 3.0, 3.0, 0.4, 3.0)])
def test_quasilinear_non_separable_matches_finite_differences(budgets):
    """Corners (some x_ij = 0) and, in the second case, binding budgets."""
    a, q = _quadratic(3, 5, 3)
    caps = None if budgets is None else jnp.asarray(budgets)

    def solve(a_, caps_):
        return equilibrium.quasilinear(
            quadratic_value,
            {"a": a_, "q": q},
            jnp.ones(3),
            tol=1e-6,
            max_iters=3000,
            budgets=caps_,
        )

    eq = solve(a, caps)
    assert bool(eq.converged)
    assert int(jnp.sum(eq.allocation == 0)) > 0  # some agents at a corner
    got = jax.jacrev(lambda v: solve(v, caps).prices)(a)
    np.testing.assert_allclose(
        got, _fd(lambda v: solve(jnp.asarray(v), caps).prices, a, 1e-2), atol=3e-4
    )
    if caps is not None:
        spent = jnp.sum(eq.allocation * eq.prices[None, :], axis=1)
        assert bool(jnp.any(spent >= caps * (1 - 1e-4)))  # a budget binds
        got = jax.jacrev(lambda c: solve(a, c).prices)(caps)
        np.testing.assert_allclose(
            got, _fd(lambda c: solve(a, jnp.asarray(c)).prices, caps, 1e-2), atol=3e-4
        )


def test_quasilinear_free_good_has_zero_price_derivative():
    """A good in excess supply at price 0 keeps price 0 under small changes; an
    agent exactly at its corner (marginal value = price at x = 0) is a kink: NaN."""
    params = {"a": jnp.array([[3.0, 0.5], [2.0, 0.2]]), "b": jnp.ones((2, 2))}

    def prices(prm, s):
        return equilibrium.quasilinear(
            separable_value, prm, s, tol=1e-6, max_iters=200
        ).prices

    supply = jnp.array([2.0, 5.0])  # nobody wants 5 units of good 1 at any price
    assert float(prices(params, supply)[1]) == 0.0
    jac = jax.jacrev(prices)(params, supply)
    np.testing.assert_allclose(jac["a"][1], 0.0)
    np.testing.assert_allclose(jac["a"][0, :, 0], [0.5, 0.5], atol=1e-6)
    kink = jnp.array([1.0, 5.0])  # p_0 = 2 = a_10: agent 1 demands exactly 0
    np.testing.assert_allclose(prices(params, kink)[0], 2.0, rtol=1e-6)
    assert np.all(np.isnan(jax.jacrev(prices)(params, kink)["a"]))


def _linear_excess(p, th):
    return th["a"] / p - th["s"]  # p* = a / s


def test_tatonnement_params_and_closure_forms():
    th = {"a": jnp.array([1.0, 2.0, 3.0]), "s": jnp.array([2.0, 1.0, 4.0])}

    def new(t):
        return equilibrium.tatonnement(
            _linear_excess,
            jnp.ones(3),
            step_size=0.2,
            max_iters=500,
            tol=1e-6,
            params=t,
        ).prices

    def old(a):
        return equilibrium.tatonnement(
            lambda p: a / p - th["s"],
            jnp.ones(3),
            step_size=0.2,
            max_iters=500,
            tol=1e-6,
        ).prices

    jac = jax.jacrev(new)(th)
    np.testing.assert_allclose(jac["a"], np.diag(1 / th["s"]), atol=1e-5)
    np.testing.assert_allclose(jac["s"], np.diag(-th["a"] / th["s"] ** 2), atol=1e-5)
    np.testing.assert_allclose(
        jax.jacfwd(old)(th["a"]), np.diag(1 / th["s"]), atol=1e-5
    )
    batch = jnp.stack([th["a"], 2 * th["a"]])
    grads = jax.jit(jax.vmap(jax.grad(lambda a: old(a).sum())))(batch)
    np.testing.assert_allclose(grads, np.broadcast_to(1 / th["s"], (2, 3)), atol=1e-5)
    unrolled_grad = jax.grad(
        lambda t: unrolled.tatonnement(
            _linear_excess,
            jnp.ones(3),
            t,
            step_size=0.2,
            num_iters=300,
            price_update="multiplicative",
        ).sum()
    )(th)
    np.testing.assert_allclose(
        jax.grad(lambda t: new(t).sum())(th)["a"], unrolled_grad["a"], atol=1e-4
    )


def test_unconverged_gradients_are_nan():
    """A tiny budget of iterations: converged is False and so is every gradient."""
    budgets, utilities, supply = _market(2, 3, 2)

    def fisher_price(b):
        return equilibrium.fisher(
            b,
            utilities,
            supply,
            kind="ces",
            method="tatonnement",
            tol=1e-6,
            max_iters=2,
            rho=0.5,
        ).prices.sum()

    assert np.all(np.isnan(jax.grad(fisher_price)(budgets)))
    params = {"a": jnp.array([[10.0], [8.0]]), "b": jnp.ones((2, 1))}
    g = jax.grad(
        lambda prm: equilibrium.quasilinear(
            separable_value, prm, jnp.ones(1), tol=1e-6, max_iters=1
        ).prices[0]
    )(params)
    assert np.all(np.isnan(g["a"]))
    g = jax.grad(
        lambda a: equilibrium.tatonnement(
            lambda p: a / p - 1.0, jnp.ones(2), step_size=0.01, max_iters=3, tol=1e-6
        ).prices.sum()
    )(jnp.array([1.0, 2.0]))
    assert np.all(np.isnan(g))
