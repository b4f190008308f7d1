"""marketjax.agents."""
