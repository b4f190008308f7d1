"""marketjax.envs."""
