"""SupplyChain-K: a world made of goods (seed Alg. 2, Def. 2.2; seed 004's example).

The state is a vector of goods quantities ``stock i32[K]``: good 0 is raw, goods
1..K-1 are intermediates; good K is the final good, which a consumer buys at price
``P`` the moment it is made (it is never stored). Recipe ``r`` (``r = 0..K-1``)
turns one unit of good ``r`` into one unit of good ``r + 1``.

There are ``G = K`` stations (the factors: the right to run station ``g`` is one good
of the wide market). Station ``g``'s action is ``0`` (idle) or ``1 + r`` (run recipe
``r``); it runs recipe ``g`` (its speciality) at rate ``high`` units per step and
every other recipe at rate ``low < high``: capacities make specialisation pay.
The stations act in line order (station 0 first), each on the stock its
predecessors left (:func:`produce`); a recipe uses ``min(rate, input stock, room
left in the output's storage)`` units. Then nature delivers ``supply`` raw units
(storage capped at ``cap``). Property rights: station ``g``'s action changes only its
recipe's input and output goods (:func:`recipe_goods`; tested).

Rewards are value added at posted prices ``price[k] = P k / K`` (raw is free, the
final good sells at ``P``): a unit of recipe ``r`` earns ``price[r+1] - price[r]``
for the station that ran it (``info["factor_rewards"]``). The env reward is their
sum: the consumer's payments plus the change of the inventory's value at posted
prices; since inventories are bounded by ``cap`` the long-run profit *rate* does
not depend on the posted intermediate prices.

Optimal profit rate (analytic). Every final unit needs one raw unit, nature delivers
``supply`` per step and a raw unit earns at most ``P`` in total along the chain, so
the return of a ``T``-step episode is at most ``P · supply · T``. With
``high >= supply`` the specialised policy (station ``g`` always runs recipe ``g``)
moves every delivery through the whole chain in the step it is used (line order),
so it attains the bound: the optimal rate is ``P · supply`` per step
(:meth:`SupplyChain.optimal_return`; checked by exact dynamic programming in
``tests/envs/test_supply_chain.py``). With swapped specialities the line runs at
``low`` units per step.

Observation: f32[K + 1], the stock divided by ``cap`` and the elapsed fraction
``t / T`` of the episode. Action: ``Discrete((K+1)**K)``, ``a = Σ_g a_g (K+1)**g``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class SupplyChainState(environment.EnvState):
    """Goods quantities and the clock."""

    stock: jax.Array  # i32[K], raw (0) and intermediate goods held in the world
    time: jax.Array  # i32[], steps since the episode began


@struct.dataclass
class SupplyChainParams(environment.EnvParams):
    """Episode limit (the chain ends by its own horizon first)."""

    max_steps_in_episode: int = 1000


class SupplyChain(environment.Environment[SupplyChainState, SupplyChainParams]):
    """A K-stage production line; gymnax API, factored actions (one per station)."""

    def __init__(
        self,
        stages: int = 2,
        supply: int = 2,
        cap: int = 4,
        high: int = 2,
        low: int = 1,
        price: float = 1.0,
        horizon: int = 32,
    ):
        super().__init__()
        if not (0 < low <= high and supply <= cap and stages >= 1):
            raise ValueError("need 0 < low <= high, supply <= cap, stages >= 1")
        self.stages = stages
        self.supply = supply
        self.cap = cap
        self.high = high
        self.low = low
        self.price = price
        self.horizon = horizon

    @property
    def default_params(self) -> SupplyChainParams:
        return SupplyChainParams()

    @property
    def num_factors(self) -> int:
        return self.stages

    @property
    def factor_actions(self) -> int:
        return self.stages + 1

    def encode(self, station_actions: jax.Array) -> jax.Array:
        """Flat action(s) i32[...] of per-station actions i32[..., K]."""
        base = self.factor_actions
        powers = base ** jnp.arange(self.stages, dtype=jnp.int32)
        return jnp.sum(station_actions.astype(jnp.int32) * powers, axis=-1)

    def decode(self, action: jax.Array) -> jax.Array:
        """Per-station actions i32[..., K] of flat actions i32[...]."""
        base = self.factor_actions
        powers = base ** jnp.arange(self.stages, dtype=jnp.int32)
        return (jnp.asarray(action, jnp.int32)[..., None] // powers) % base

    def rates(self) -> jax.Array:
        """i32[G, K] units per step of recipe r at station g (high on the diagonal)."""
        eye = jnp.eye(self.stages, dtype=jnp.int32)
        return eye * self.high + (1 - eye) * self.low

    def value_added(self) -> jax.Array:
        """f32[K] reward per unit of each recipe (posted prices P k / K)."""
        return jnp.full((self.stages,), self.price / self.stages, jnp.float32)

    def recipe_goods(self, action: int) -> tuple[int, ...]:
        """Goods (indices into the stock; K = the final good) an action may change."""
        if action == 0:
            return ()
        return (action - 1, action)

    def produce(
        self, stock: jax.Array, actions: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Stations act in line order on the stock (seed Alg. 2: s <- Σ x[α](s[α])).

        Args:
          stock: i32[K] goods before production.
          actions: i32[G] each station's action (0 idle, 1 + r recipe r).

        Returns:
          ``(stock i32[K], factor_rewards f32[G])`` after every station has acted.
        """
        rates = self.rates()
        value = self.value_added()
        last = self.stages - 1
        rewards = []
        for g in range(self.stages):
            r = jnp.clip(actions[g] - 1, 0, last)
            out = jnp.minimum(r + 1, last)
            stored = r < last  # the final good (r = K-1's output) is sold at once
            room = jnp.where(stored, self.cap - stock[out], rates[g, r])
            units = jnp.minimum(jnp.minimum(rates[g, r], stock[r]), room)
            units = jnp.where(actions[g] > 0, jnp.maximum(units, 0), 0)
            stock = stock.at[r].add(-units)
            stock = stock.at[out].add(jnp.where(stored, units, 0))
            rewards.append(units.astype(jnp.float32) * value[r])
        return stock, jnp.stack(rewards)

    def step_env(
        self,
        key: jax.Array,
        state: SupplyChainState,
        action: int | jax.Array,
        params: SupplyChainParams,
    ) -> tuple[jax.Array, SupplyChainState, jax.Array, jax.Array, dict[Any, Any]]:
        """Production in line order, then nature's raw delivery."""
        del key  # deterministic
        stock, factor_rewards = self.produce(state.stock, self.decode(action))
        stock = stock.at[0].set(jnp.minimum(stock[0] + self.supply, self.cap))
        state = state.replace(stock=stock, time=state.time + 1)
        done = self.is_terminated(state, params)
        info = {
            "discount": self.discount(state, params),
            "factor_rewards": factor_rewards,
        }
        obs = jax.lax.stop_gradient(self.get_obs(state))
        return obs, jax.lax.stop_gradient(state), jnp.sum(factor_rewards), done, info

    def reset_env(
        self, key: jax.Array, params: SupplyChainParams
    ) -> tuple[jax.Array, SupplyChainState]:
        """Empty line with the first raw delivery in storage."""
        stock = jnp.zeros((self.stages,), jnp.int32).at[0].set(self.supply)
        state = SupplyChainState(stock=stock, time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def get_obs(self, state: SupplyChainState, params=None, key=None) -> jax.Array:
        """f32[K + 1]: stock / cap and t / T."""
        t = state.time.astype(jnp.float32) / self.horizon
        return jnp.concatenate([state.stock.astype(jnp.float32) / self.cap, t[None]])

    def is_terminated(self, state: SupplyChainState, params: SupplyChainParams):
        return state.time >= self.horizon

    def optimal_return(self) -> float:
        """Return of an optimal T-step episode: ``P · supply · T`` (high >= supply)."""
        if self.high < self.supply:
            raise ValueError("the closed form needs high >= supply")
        return self.price * self.supply * self.horizon

    @property
    def name(self) -> str:
        return f"SupplyChain-{self.stages}"

    @property
    def num_actions(self) -> int:
        return self.factor_actions**self.stages

    def action_space(self, params: SupplyChainParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params: SupplyChainParams) -> spaces.Box:
        return spaces.Box(0, 1, (self.stages + 1,), dtype=jnp.float32)

    def state_space(self, params: SupplyChainParams) -> spaces.Dict:
        return spaces.Dict(
            {
                "stock": spaces.Box(0, self.cap, (self.stages,), jnp.int32),
                "time": spaces.Discrete(self.horizon + 1),
            }
        )


def make_supply_chain(stages: int) -> tuple[SupplyChain, SupplyChainParams]:
    """``(env, env_params)`` for ``SupplyChain-<stages>`` (for ``register_env``)."""
    env = SupplyChain(stages)
    return env, env.default_params
