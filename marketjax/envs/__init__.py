"""marketjax.envs: our own environments, registered for configs by name."""

import functools

from marketjax.envs.bandit import make_bandit
from marketjax.envs.blocks_world import make_blocks_world
from marketjax.envs.chain import make_chain
from marketjax.envs.complements import make_complements
from marketjax.envs.duality import make_duality
from marketjax.envs.gymnax_adapter import register_env
from marketjax.envs.multicatch import make_multicatch
from marketjax.envs.reach_target import make_reach_target
from marketjax.envs.supply_chain import make_supply_chain

for _k in (2, 4):
    register_env(f"MultiCatch-{_k}", functools.partial(make_multicatch, _k))
# Worlds made of goods (issue 11): a production line and two complementary keys.
for _k in (2, 3):
    register_env(f"SupplyChain-{_k}", functools.partial(make_supply_chain, _k))
register_env("Complements-4", functools.partial(make_complements, 4))
# Three keys: the lock opens only when all three turn to one position.
register_env("Complements-4x3", functools.partial(make_complements, 4, keys=3))
# Chang et al. (2020)'s tabular tasks.
register_env("ChangBandit", make_bandit)
register_env("ChangChain", make_chain)
register_env("ChangDuality", make_duality)
# Baum's Blocks World (Hayek machine): 3 colours, step limit 10·n, up to 64 blocks.
register_env("BlocksWorld", make_blocks_world)
register_env(
    "BlocksWorld-r10", functools.partial(make_blocks_world, reward_per_block=10.0)
)
# ... and with log n among the features, for bids that scale with the reward 10n.
register_env(
    "BlocksWorld-r10-n",
    functools.partial(make_blocks_world, reward_per_block=10.0, size_feature=True),
)
# ... and half of the instances revisit a size drawn in [1, the slot's level].
register_env(
    "BlocksWorld-r10-n-mix",
    functools.partial(
        make_blocks_world, reward_per_block=10.0, size_feature=True, revisit=0.5
    ),
)
# Seed 002 §3, dynamic scale: the depth of the solution is set by the input.
register_env("ReachTarget", make_reach_target)
