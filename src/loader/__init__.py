"""loader: runtime secret injection (store, sidecar agent, runner)."""

__version__ = "0.1.0"
