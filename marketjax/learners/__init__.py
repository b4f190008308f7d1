"""Learners: optax-style ``(init, update)`` pairs that improve a population.

``LEARNERS`` names the built-in ones; a config's ``learning:`` key picks a chain:
``bids`` = ``q_lambda``, ``selection`` = ``selection``, ``both`` = the two chained.
"""

from marketjax.learners.base import (
    Experience,
    Learner,
    LearnerOutput,
    chain,
    no_change,
)
from marketjax.learners.q_lambda import lambda_returns, linear_anneal, q_lambda
from marketjax.learners.selection import selection
from marketjax.learners.utility_ppo import BidExperience, utility_ppo

LEARNERS = ("q_lambda", "selection", "utility_ppo")
# `learning:` choices of market configs -> the learners they chain, in order.
LEARNING_CHAINS = {
    "bids": ("q_lambda",),
    "selection": ("selection",),
    "both": ("q_lambda", "selection"),
}

__all__ = [
    "LEARNERS",
    "LEARNING_CHAINS",
    "BidExperience",
    "Experience",
    "Learner",
    "LearnerOutput",
    "chain",
    "lambda_returns",
    "linear_anneal",
    "no_change",
    "q_lambda",
    "selection",
    "utility_ppo",
]
