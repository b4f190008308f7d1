"""The wide market (Algorithm 2, Definition 2.2), batched over B episodes.

The goods are the rights to control the factors of the world's action (one good per
factor: a board of ``MultiCatch-K``; a non-factored env is one good), each in supply
1 and divisible. Each step, in every one of B episodes sharing one wealth vector:

1. each agent's network reads the observation and outputs Q_i(ω)[g, a], the value
   of controlling good g and acting a on it; its bid per unit of g is
   ``q_ig = max_a Q_i[g, a]`` (capped so that what it can be made to pay stays
   within its 1/B share of its budget, ``budget="shared"``, the default: B episodes
   never overdraw an account; or within its whole wealth per episode,
   ``"per_episode"``, the first wave's rule);
2. Equ clears every good: separable valuations in closed form
   (``wide_clear.clear``), coupled ones (``v_i(x) = q_i·x − ½xᵀCx``, C not
   diagonal) by the batched Newton solver ``mechanisms/quadratic_equ.py``, all B
   markets in one call, warm-started from the previous step's prices (carried in
   the state); every step records whether each market converged: prices
   p f32[B, G] and allocations x f32[B, N, G];
3. buyers pay ``p · x_i``; the previous holders (or the bank, at an episode's start)
   are paid γ times the price pro rata to what they held; the bank keeps the rest;
4. each good's controller, drawn among its holders in proportion to their holdings,
   acts on it with its own proposed action (ε-greedy): an agent's action transforms
   only goods it owns (``wide_clear.exercise``);
5. the environment steps; the reward of factor g goes to g's holders pro rata to x;
   holders pay rent (``ledger.rent_due``: proportional to wealth and to the share
   of all B·G units held, or flat per unit); when an episode ends its holders sell
   to nobody and the bank owns the fresh episode's goods.

Settlement of all B episodes is one contraction over [B, N, G]; the books
(``markets/ledger.py``) count rewards in and rent out, so that
Σ wealth + bank = initial + rewards − rent.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.agents.families import MLP
from marketjax.agents.population import Population
from marketjax.core.axes import axes
from marketjax.envs.gymnax_adapter import BatchedEnv, EpisodeStats, track_episodes
from marketjax.learners.base import Experience
from marketjax.markets.ledger import (
    Books,
    bid_budget,
    books_imbalance,
    episode_share,
    limited_liability,
    rent_due,
)
from marketjax.markets.wide_clear import (
    BUDGETS,
    SUPPLY,
    VALUATIONS,
    cap_bids,
    clear,
    exercise,
    sole_controller,
)
from marketjax.mechanisms.quadratic_equ import solve_batch


@struct.dataclass
class WideMarketParams:
    """Sweepable numbers of the market (array leaves)."""

    gamma: jax.Array  # f32[], sellers' share γ of the price
    rent: jax.Array  # f32[], ε of the rent rule
    curvature: jax.Array  # f32[], c of the valuations v(x) = q·x − (c/2)|x|²
    explore: jax.Array  # f32[], ε of the controllers' ε-greedy actions
    coupling: jax.Array = 0.0  # f32[], ρ of C = c((1-ρ)I + ρ11ᵀ) (coupled only)
    equ_tol: jax.Array = 1e-4  # f32[], Equ's relative excess-demand tolerance


@struct.dataclass
class EquTotals:
    """Equ's record over a whole run (for the summary: failures are never silent)."""

    markets: jax.Array  # f32[], markets cleared (steps × B)
    unconverged: jax.Array  # f32[], of which Equ did not converge
    residual_max: jax.Array  # f32[], the largest excess demand left
    iterations_max: jax.Array  # i32[], the most Equ iterations of one market

    @classmethod
    def zeros(cls) -> EquTotals:
        f = jnp.zeros((), jnp.float32)
        return cls(f, f, f, jnp.zeros((), jnp.int32))

    def add(self, converged, iterations, residual) -> EquTotals:
        """Adds one step's markets (bool[B], i32[B], f32[B])."""
        return EquTotals(
            self.markets + converged.size,
            self.unconverged + jnp.sum((~converged).astype(jnp.float32)),
            jnp.maximum(self.residual_max, jnp.max(residual)),
            jnp.maximum(self.iterations_max, jnp.max(iterations)),
        )


@struct.dataclass
class WideMarketState:
    """A population, B episodes, their holdings and the books."""

    population: Population
    env_state: Any = axes("B")  # gymnax state, leaves [B, ...]
    obs: jax.Array = axes("B", "D")  # f32[B, D], current observation per episode
    holdings: jax.Array = axes("B", "N", "G")  # f32[B, N, G], bundles held
    stats: EpisodeStats = axes("B")  # running returns of the B episodes
    books: Books
    prices: jax.Array = axes("B", "G")  # f32[B, G], last clearing prices (warm start)
    equ: EquTotals


class WideStepRecord(NamedTuple):
    """What one wide-market step did (stacked over steps by ``lax.scan``)."""

    obs: jax.Array  # f32[B, D], observation the agents valued
    price: jax.Array  # f32[B, G], clearing prices
    allocation: jax.Array  # f32[B, N, G], equilibrium bundles
    controller: jax.Array  # i32[B, G], holder that acted on each good
    action: jax.Array  # i32[B, G], action taken on each good
    factor_reward: jax.Array  # f32[B, G], reward of each good's factor
    done: jax.Array  # bool[B], the episode ended at this step
    completed_return_sum: jax.Array  # f32[]
    completed_count: jax.Array  # f32[]
    equ_converged: jax.Array  # bool[B], Equ met its tolerance in each market
    equ_iterations: jax.Array  # i32[B], Equ's iterations (0: closed form)
    equ_residual: jax.Array  # f32[B], max_g |excess demand| left
    capped: jax.Array  # f32[], share of (episode, agent) bids cut by the budget


class QNetworks(NamedTuple):
    """An agent family for the wide market: ω -> Q f32[G, A] (for ONE agent).

    With a joint head (``wide.joint_action``) the network also values every joint
    action of the whole bundle, ``Q_J f32[A^G]``, used when the agent controls every
    good of an episode (``markets/wide.py``, "joint action").
    """

    init: Any  # key -> params
    apply: Any  # (params, obs f32[D]) -> f32[G, A]
    values: Any = None  # (params, obs f32[D]) -> f32[G·A + J], every output, flat
    joint_actions: int = 0  # J = A^G with a joint head, else 0


def make_q_networks(
    obs_dim: int,
    num_goods: int,
    num_actions: int,
    hidden,
    layer_norm: bool,
    norm: str = "layer",
    joint: bool = False,
) -> QNetworks:
    """An MLP from the observation to a Q-value per (good, action), and with
    ``joint`` one per joint action of all G goods (A^G more outputs)."""
    per_good = num_goods * num_actions
    joint_actions = num_actions**num_goods if joint else 0
    net = MLP(tuple(hidden), per_good + joint_actions, layer_norm, norm)
    dummy = jnp.zeros((obs_dim,), jnp.float32)

    def apply(params, obs):
        return net.apply(params, obs)[..., :per_good].reshape(num_goods, num_actions)

    return QNetworks(lambda key: net.init(key, dummy), apply, net.apply, joint_actions)


def joint_index(action: jax.Array, num_actions: int) -> jax.Array:
    """i32[...]: the joint action's index Σ_g a_g·A^g, from actions i32[..., G]."""
    g = action.shape[-1]
    radix = num_actions ** jnp.arange(g, dtype=jnp.int32)
    radix = radix.reshape((1,) * (action.ndim - 1) + (g,))
    return jnp.sum(action * radix, axis=-1).astype(jnp.int32)


def joint_decode(index: jax.Array, num_goods: int, num_actions: int) -> jax.Array:
    """i32[..., G]: the per-good actions of joint indices i32[...] (inverse of
    :func:`joint_index`)."""
    radix = num_actions ** jnp.arange(num_goods, dtype=jnp.int32)
    radix = radix.reshape((1,) * index.ndim + (num_goods,))
    return ((index[..., None] // radix) % num_actions).astype(jnp.int32)


def factors(env: BatchedEnv) -> tuple[int, int]:
    """``(G goods, actions per good)``: an env's factors, or one good."""
    inner = env.env
    if hasattr(inner, "num_factors"):
        return int(inner.num_factors), int(inner.factor_actions)
    return 1, env.spec.num_actions


def settle(price, allocation, held, factor_reward, gamma, rent, wealth=None):
    """Money moved by one step of all B episodes (Algorithm 2's CAPITALISM).

    Args:
      price: f32[B, G]; allocation: f32[B, N, G] bought this step; held: f32[B, N, G]
        bundles held before (sold now); factor_reward: f32[B, G]; gamma: f32[];
      rent: f32[N] rent each agent owes this step (``ledger.rent_due``).
      wealth: f32[N] wealth before the step, or None. Given, a holder that hands
        goods on at a negative price pays at most what it has and the bank covers
        the rest (``ledger.limited_liability``): bids never overdraw an account.

    Returns:
      ``(agent_delta f32[N], bank_delta, rewards_in, rent_out)`` (f32 scalars), with
      Σ agent_delta + bank_delta = rewards_in − rent_out.
    """
    per_unit = (factor_reward - price)[:, None, :]
    credit = gamma * price[:, None, :]
    agent = jnp.sum(allocation * per_unit + credit * held, axis=(0, 2)) - rent
    bought = jnp.sum(allocation, axis=1)  # [B, G]
    sold = jnp.sum(held, axis=1)  # [B, G]
    bank = jnp.sum(price * bought - gamma * price * sold)
    if wealth is not None:
        resale = jnp.sum(jnp.maximum(-credit, 0.0) * held, axis=(0, 2))  # [N]
        after = wealth + agent
        covered = limited_liability(after, resale)
        bank = bank - jnp.sum(covered)
        # A fully covered account ends at exactly 0 (not 0 ± float32 rounding).
        full = (covered > 0.0) & (covered >= -after)
        agent = jnp.where(full, -wealth, agent + covered)
    return agent, bank, jnp.sum(factor_reward * bought), jnp.sum(rent)


class WideMarket:
    """Algorithm 2 on an environment, for one Q-network family.

    Shapes are fixed here: N (via the population), B (via the env) and G goods (via
    the env's factors); numbers you might sweep are in :class:`WideMarketParams`.
    """

    def __init__(
        self,
        env: BatchedEnv,
        nets: QNetworks,
        proportional: bool = True,
        rent_rule: str = "proportional",
        valuation: str = "separable",
        budget: str = "shared",
        equ_max_iters: int = 50,
    ):
        if not env.spec.discrete:
            raise ValueError(f"the wide market needs discrete actions; {env.name}")
        if valuation not in VALUATIONS or budget not in BUDGETS:
            raise ValueError(f"unknown valuation {valuation!r} or budget {budget!r}")
        self.valuation = valuation
        self.budget = budget
        self.equ_max_iters = equ_max_iters
        self.env = env
        self.nets = nets
        self.proportional = proportional
        self.rent_rule = rent_rule
        self.num_goods, self.num_actions = factors(env)
        inner = env.env
        self.encode = (
            inner.encode if hasattr(inner, "encode") else (lambda a: a[..., 0])
        )

    def init(self, key: jax.Array, population: Population) -> WideMarketState:
        obs, env_state = self.env.reset(key)
        b, n = self.env.num_envs, population.size
        return WideMarketState(
            population=population,
            env_state=env_state,
            obs=obs,
            holdings=jnp.zeros((b, n, self.num_goods), jnp.float32),
            stats=EpisodeStats.zeros(b),
            books=Books.open(population.wealth),
            prices=jnp.zeros((b, self.num_goods), jnp.float32),
            equ=EquTotals.zeros(),
        )

    def q_values(self, params: Any, obs: jax.Array) -> jax.Array:
        """Q f32[B, N, G, A] of every agent (vmap over agents of vmap over B)."""
        per_agent = jax.vmap(jax.vmap(self.nets.apply, (None, 0)), (0, None))
        return jnp.moveaxis(per_agent(params, obs), 0, 1)

    def q_and_joint(self, params: Any, obs: jax.Array):
        """``(Q f32[B, N, G, A], joint proposals i32[B, N, G] or None)``: the joint
        head's greedy joint action, decoded per good, when the agents have one."""
        if not self.nets.joint_actions:
            return self.q_values(params, obs), None
        per_agent = jax.vmap(jax.vmap(self.nets.values, (None, 0)), (0, None))
        out = jnp.moveaxis(per_agent(params, obs), 0, 1)  # [B, N, G·A + J]
        g, a = self.num_goods, self.num_actions
        q = out[..., : g * a].reshape((*out.shape[:2], g, a))
        best = jnp.argmax(out[..., g * a :], axis=-1)  # [B, N]
        return q, joint_decode(best, g, a)

    def room(self, wealth: jax.Array, params: WideMarketParams) -> jax.Array:
        """f32[N]: what an agent's valuation may reach in one episode."""
        if self.budget == "per_episode":
            return wealth
        b = self.env.num_envs
        budget = bid_budget(wealth, params.rent, self.rent_rule, b * self.num_goods)
        return episode_share(budget, b)

    def capped_bids(
        self, raw: jax.Array, wealth: jax.Array, params: WideMarketParams
    ) -> jax.Array:
        """Bids f32[B, N, G] after the budget cap (``wide_clear.cap_bids``) on raw
        bids f32[B, N, G], for this market's valuation and budget rule.

        ``per_episode`` is the first wave's rule whole (its room and its cap, sup v
        alone, without the box bound), so that runs made under it replay as trained.
        """
        room = self.room(wealth, params)
        coupling = 0.0 if self.valuation == "separable" else params.coupling
        supply = None if self.budget == "per_episode" else SUPPLY
        return cap_bids(raw, room, params.curvature, coupling, supply)

    def equilibrium(
        self,
        population: Population,
        q: jax.Array,
        params: WideMarketParams,
        p0: jax.Array,
    ):
        """Equ for all B episodes from Q f32[B, N, G, A] and warm prices p0 f32[B, G].

        Returns ``(bids f32[B, N, G], price f32[B, G], alloc f32[B, N, G],
        converged bool[B], iterations i32[B], residual f32[B], capped f32[])``.
        """
        raw = jnp.max(q, axis=-1)
        bids = self.capped_bids(raw, population.wealth, params)
        if self.valuation == "separable":
            price, alloc = clear(jnp.swapaxes(bids, 1, 2), SUPPLY, params.curvature)
            alloc = jnp.swapaxes(alloc, 1, 2)
            residual = jnp.max(jnp.abs(jnp.sum(alloc, axis=1) - SUPPLY), axis=-1)
            converged = jnp.ones(residual.shape, bool)
            iterations = jnp.zeros(residual.shape, jnp.int32)
        else:
            eq = solve_batch(
                bids,
                params.curvature,
                params.coupling,
                SUPPLY,
                p0,
                tol=params.equ_tol,
                max_iters=self.equ_max_iters,
            )
            price, alloc = eq.prices, eq.allocation
            converged, iterations, residual = eq.converged, eq.iterations, eq.residual
        cut = jnp.any(bids != raw, axis=-1)  # [B, N]
        capped = jnp.mean(cut.astype(jnp.float32))
        return bids, price, alloc, converged, iterations, residual, capped

    def step(
        self, key: jax.Array, state: WideMarketState, params: WideMarketParams
    ) -> tuple[WideMarketState, WideStepRecord]:
        """One step of every episode: value, clear, exercise, env step, settle."""
        k_act, k_env = jax.random.split(key)
        pop = state.population
        q, joint = self.q_and_joint(pop.params, state.obs)
        _, price, alloc, converged, iters, residual, capped = self.equilibrium(
            pop, q, params, state.prices
        )
        proposals = jnp.argmax(q, axis=-1).astype(jnp.int32)  # [B, N, G]
        controller, action, _ = exercise(
            k_act,
            alloc,
            proposals,
            params.explore,
            self.num_actions,
            self.proportional,
            joint,
        )
        obs, env_state, reward, done, info = self.env.step(
            k_env, state.env_state, self.encode(action)
        )
        factor_reward = info.get("factor_rewards", reward[:, None])
        units = jnp.sum(alloc, axis=(0, 2))  # [N]
        rent = rent_due(
            pop.wealth,
            units,
            alloc.shape[0] * alloc.shape[2],
            params.rent,
            self.rent_rule,
        )
        delta, bank, rewards_in, rent_out = settle(
            price, alloc, state.holdings, factor_reward, params.gamma, rent, pop.wealth
        )
        books = state.books.record(bank_delta=bank, rewards=rewards_in, rent=rent_out)
        population = pop.replace(wealth=pop.wealth + delta)
        stats, ret_sum, ret_count = track_episodes(state.stats, reward, done)
        # At an episode's end the holders sell to nobody: the bank owns the goods
        # of the fresh episode and sells them at the next step.
        holdings = jnp.where(done[:, None, None], 0.0, alloc)
        equ = state.equ.add(converged, iters, residual)
        new_state = WideMarketState(
            population, env_state, obs, holdings, stats, books, price, equ
        )
        record = WideStepRecord(
            state.obs,
            price,
            alloc,
            controller,
            action,
            factor_reward,
            done,
            ret_sum,
            ret_count,
            converged,
            iters,
            residual,
            capped,
        )
        return new_state, record

    def forget(self, state: WideMarketState, replaced: jax.Array) -> WideMarketState:
        """Replaced slots (bool[N]) give up their holdings: a newcomer is never
        credited for its predecessor's goods (the bank sells them afresh)."""
        keep = ~replaced[None, :, None]
        return state.replace(holdings=jnp.where(keep, state.holdings, 0.0))

    def experience(
        self,
        key: jax.Array,
        state: WideMarketState,
        rec: WideStepRecord,
        params: WideMarketParams,
    ) -> Experience:
        """The rollout as one payoff stream per good: the controller of good g is
        paid g's reward and, per unit, the next clearing price (bootstrapped from
        the market on the last observation)."""
        pop = state.population
        q_last = self.q_values(pop.params, state.obs)
        last_price = self.equilibrium(pop, q_last, params, state.prices)[1]
        price_next = jnp.concatenate([rec.price[1:], last_price[None]], axis=0)
        goods = jnp.arange(self.num_goods, dtype=jnp.int32)
        owner = rec.controller
        output = goods[None, None, :] * self.num_actions + rec.action
        reward, credit = rec.factor_reward, price_next
        if self.nets.joint_actions:
            # One more stream: the whole bundle, held where one agent controlled
            # every good, valued by the joint head at the joint action taken.
            sole = sole_controller(rec.controller)  # [T, B]
            per_good = self.num_goods * self.num_actions
            owner = jnp.concatenate([owner, sole[..., None]], axis=-1)
            taken = per_good + joint_index(rec.action, self.num_actions)
            output = jnp.concatenate([output, taken[..., None]], axis=-1)
            reward = jnp.concatenate(
                [reward, jnp.sum(reward, -1, keepdims=True)], axis=-1
            )
            credit = jnp.concatenate([credit, jnp.sum(credit, -1, keepdims=True)], -1)
        return Experience(
            obs=rec.obs,
            owner=owner,
            output=output,
            reward=reward,
            credit_next=credit,
            done=rec.done,
        )


def wide_books_imbalance(state: WideMarketState) -> jax.Array:
    """Relative imbalance of a wide market's books (0 when they balance)."""
    return books_imbalance(state.books, state.population.wealth)
