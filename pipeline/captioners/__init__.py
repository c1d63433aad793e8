"""Caption backends."""
