"""The books of a market: every flow of money in or out, counted exactly once.

Invariant (DESIGN.md): the total wealth of all agents plus the bank account changes
only by rewards paid in, rent taken out and allowances granted:

    Σ wealth + bank = initial + rewards − rent + allowances.

Counters and the bank account use Kahan (compensated) summation so that millions of
float32 additions do not drift; :func:`books_imbalance` returns the relative error of
the identity above, which tests check at scale and the runner checks in debug mode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class KahanSum:
    """A float32 running sum with its rounding compensation (Kahan 1965)."""

    total: jax.Array  # f32[]
    compensation: jax.Array  # f32[]

    @classmethod
    def of(cls, value) -> KahanSum:
        return cls(jnp.asarray(value, jnp.float32), jnp.zeros((), jnp.float32))

    def add(self, x: jax.Array) -> KahanSum:
        y = jnp.asarray(x, jnp.float32) - self.compensation
        t = self.total + y
        return KahanSum(t, (t - self.total) - y)

    @property
    def value(self) -> jax.Array:
        return self.total - self.compensation


@struct.dataclass
class Books:
    """The bank account and the counted flows across the market's boundary."""

    bank: KahanSum  # the founder/bank: sells first rights, keeps (1-γ) remainders
    initial: jax.Array  # f32[], Σ wealth + bank when the books were opened
    rewards_in: KahanSum  # rewards paid into the economy by the environment
    rent_out: KahanSum  # rent taken out of the economy
    allowances_in: KahanSum  # allowances granted to entrants
    net_inflow: KahanSum  # rewards − rent + allowances, summed per round

    @classmethod
    def open(cls, agent_wealth: jax.Array, bank: float = 0.0) -> Books:
        """Opens the books with the agents' wealth f32[N] and the bank's balance."""
        initial = jnp.sum(agent_wealth) + jnp.float32(bank)
        return cls(
            KahanSum.of(bank),
            initial,
            KahanSum.of(0.0),
            KahanSum.of(0.0),
            KahanSum.of(0.0),
            KahanSum.of(0.0),
        )

    def record(
        self,
        *,
        bank_delta: jax.Array = 0.0,
        rewards: jax.Array = 0.0,
        rent: jax.Array = 0.0,
        allowances: jax.Array = 0.0,
    ) -> Books:
        """Adds one round of flows (each an f32 scalar)."""
        rewards, rent, allowances = (
            jnp.asarray(x, jnp.float32) for x in (rewards, rent, allowances)
        )
        return Books(
            bank=self.bank.add(bank_delta),
            initial=self.initial,
            rewards_in=self.rewards_in.add(rewards),
            rent_out=self.rent_out.add(rent),
            allowances_in=self.allowances_in.add(allowances),
            net_inflow=self.net_inflow.add(rewards - rent + allowances),
        )

    def expected_total(self) -> jax.Array:
        """initial + rewards − rent + allowances.

        Summed round by round (``net_inflow``) rather than from the three running
        totals: those grow without bound, and the difference of large float32
        numbers would lose the cents that the check is about.
        """
        return self.initial + self.net_inflow.value


def books_imbalance(books: Books, agent_wealth: jax.Array) -> jax.Array:
    """Relative imbalance of the books: |actual − expected| / money in circulation.

    Args:
      books: the market's books.
      agent_wealth: f32[N] (or f32[..., N]) the agents' wealth.

    Returns:
      f32 scalar; 0 for perfectly kept books.
    """
    actual = jnp.sum(agent_wealth) + books.bank.value
    expected = books.expected_total()
    scale = jnp.maximum(1.0, jnp.sum(jnp.abs(agent_wealth)) + jnp.abs(books.bank.value))
    return jnp.abs(actual - expected) / scale
