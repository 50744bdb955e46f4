"""``loader run``: exec the app with its secrets in its environment, or supervise it."""
