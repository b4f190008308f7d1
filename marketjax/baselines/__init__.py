"""marketjax.baselines."""
