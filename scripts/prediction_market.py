"""A prediction market learning a scikit-learn dataset (seed 004; docs/beyond_rl.md).

    python scripts/prediction_market.py [--out runs/prediction_digits] [key=value ...]

Keys are those of ``marketjax.markets.prediction_run.DEFAULTS``; values are read as
JSON when they parse (``num_traders=20``, ``features_per_trader=[2,4]``), else as
strings (``dataset=breast_cancer``). Writes summary.json, metrics.jsonl and PNGs.
"""

import argparse
import json
import sys

from marketjax.markets.prediction_run import DEFAULTS, run_prediction_market


def parse(pairs):
    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in DEFAULTS:
            raise SystemExit(
                f"expected key=value with key in {sorted(DEFAULTS)}: {pair}"
            )
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=None, help="run directory")
    parser.add_argument("overrides", nargs="*", help="key=value")
    args = parser.parse_args(argv)
    config = parse(args.overrides)
    out = args.out or f"runs/{config.get('name', DEFAULTS['name'])}"
    summary = run_prediction_market(config, out)
    print(json.dumps({"out": out, "test": summary["test"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
