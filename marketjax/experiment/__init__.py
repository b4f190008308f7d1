"""marketjax.experiment."""
