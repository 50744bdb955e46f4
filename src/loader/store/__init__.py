"""The store: persistence, encryption, tokens, audit, change notification."""
