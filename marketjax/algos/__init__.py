"""Algorithms: one trainer per algorithm, above the markets and learners.

``ALGORITHMS`` maps a config's ``algo:`` to the module defining its config section
(``CONFIG_CLASS``) and ``make_trainer(config) -> Trainer``.
"""

ALGORITHMS = {
    "chang": "marketjax.algos.chang",
    "deep": "marketjax.algos.deep",
    "hayek": "marketjax.algos.hayek",
    "ppo": "marketjax.algos.ppo.trainer",
    "wide": "marketjax.algos.wide",
}
