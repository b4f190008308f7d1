"""marketjax.markets."""
