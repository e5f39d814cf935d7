"""Built-in amp-core plugins (installed as ``amp_plugins``)."""
