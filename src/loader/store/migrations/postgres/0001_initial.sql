CREATE TABLE apps (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE environments (
    id           BIGSERIAL PRIMARY KEY,
    app_id       BIGINT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    revision     BIGINT NOT NULL DEFAULT 0,
    data_key_id  BIGINT,
    created_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (app_id, name)
);

CREATE TABLE data_keys (
    id             BIGSERIAL PRIMARY KEY,
    env_id         BIGINT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    master_key_id  TEXT NOT NULL,
    nonce          BYTEA NOT NULL,
    wrapped        BYTEA NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX data_keys_env ON data_keys(env_id);

CREATE TABLE secrets (
    id                 BIGSERIAL PRIMARY KEY,
    env_id             BIGINT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    description        TEXT,
    version            BIGINT NOT NULL DEFAULT 0,
    modified_revision  BIGINT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    UNIQUE (env_id, name)
);

CREATE TABLE secret_versions (
    secret_id    BIGINT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    actor        TEXT,
    data_key_id  BIGINT REFERENCES data_keys(id) ON DELETE CASCADE,
    nonce        BYTEA,
    ciphertext   BYTEA,
    PRIMARY KEY (secret_id, version)
);
CREATE INDEX secret_versions_key ON secret_versions(data_key_id);

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    digest        BYTEA NOT NULL,
    scopes        TEXT NOT NULL,
    app_id        BIGINT,
    environments  TEXT,
    description   TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);

CREATE TABLE audit_events (
    id           BIGSERIAL PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL,
    token_id     TEXT,
    app_id       BIGINT,
    environment  TEXT,
    names        TEXT NOT NULL DEFAULT '',
    action       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    client       TEXT
);
CREATE INDEX audit_events_app ON audit_events(app_id, id);
