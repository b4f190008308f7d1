"""Equ: market equilibrium engines (DESIGN.md, public contract; seed Def. 2.2).

``from marketjax import equilibrium`` gives:

* ``tatonnement(excess_demand, p0, *, step_size, max_iters, tol, optimizer=None)`` —
  generic price adjustment for any ``z(p)`` (Walras; Cheung, Cole & Devanur 2013);
* ``fisher(budgets, utilities, supply, *, kind, method, tol, max_iters, rho=None)`` —
  Fisher markets, linear / Cobb–Douglas / CES buyers, by proportional response
  (Zhang 2011; Birnbaum, Devanur & Xiao 2011) or tâtonnement;
* ``quasilinear(value_fn, params, supply, *, tol, max_iters)`` — Walrasian
  equilibrium of concave quasilinear agents, projected dual gradient descent;

each returning an ``Equilibrium`` (prices f[G], allocation f[M, G], excess_demand
f[G], converged, iterations, residual). All jit and vmap over a batch of markets.
Convergence is reported honestly: ``converged`` is True only if the residual test
held at the returned prices; cycling (Scarf 1960), set-valued demand, a step that is
too large or a stall leave it False with the residual reported.

All three are differentiable (``jax.grad`` / ``jax.jacobian`` / ``jax.jvp``) in
every array input by the implicit function theorem on the equilibrium conditions
(``implicit``, ``implicit_fisher``, ``implicit_quasilinear``); a gradient at an
unconverged or degenerate point is NaN, never silently wrong. ``unrolled`` holds
fixed-iteration references for checking and benchmarking.
"""

from marketjax.mechanisms.adaptive_step import (
    BarzilaiBorweinState,
    scale_by_barzilai_borwein,
)
from marketjax.mechanisms.fisher import KINDS, METHODS, fisher
from marketjax.mechanisms.fisher_demand import demand as fisher_demand
from marketjax.mechanisms.quasilinear import budget_projection, quasilinear
from marketjax.mechanisms.tatonnement import (
    PRICE_UPDATES,
    Equilibrium,
    projected_residual,
    run_tatonnement,
    tatonnement,
)

__all__ = [
    "KINDS",
    "METHODS",
    "PRICE_UPDATES",
    "BarzilaiBorweinState",
    "Equilibrium",
    "budget_projection",
    "fisher",
    "fisher_demand",
    "projected_residual",
    "quasilinear",
    "run_tatonnement",
    "scale_by_barzilai_borwein",
    "tatonnement",
]
