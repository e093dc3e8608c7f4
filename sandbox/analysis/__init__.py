"""Reading trained memories: disentanglement, attention lags, free-running generation."""
