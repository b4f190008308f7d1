"""marketjax.embeddings."""
