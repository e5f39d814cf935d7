"""Built-in optimisers (what minimises the training loss)."""
