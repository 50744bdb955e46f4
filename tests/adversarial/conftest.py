from tests.integration.conftest import backend, make_store, pg_server, store  # noqa: F401
