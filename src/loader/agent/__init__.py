"""The sidecar agent: follows one app/environment in the store, renders env files and templates
into tmpfs, and serves a locked-down local endpoint."""
