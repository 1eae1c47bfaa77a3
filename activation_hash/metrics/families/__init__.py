"""Built-in metric families: every module here that defines ``FAMILY`` is registered
(see ``activation_hash.metrics.registry``)."""
