"""marketjax.mechanisms."""
