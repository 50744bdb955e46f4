"""The store's HTTP API (aiohttp)."""
