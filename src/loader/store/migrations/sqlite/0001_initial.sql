CREATE TABLE apps (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE environments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id       INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    revision     INTEGER NOT NULL DEFAULT 0,
    data_key_id  INTEGER,
    created_at   TEXT NOT NULL,
    UNIQUE (app_id, name)
);

CREATE TABLE data_keys (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    env_id         INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    master_key_id  TEXT NOT NULL,
    nonce          BLOB NOT NULL,
    wrapped        BLOB NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX data_keys_env ON data_keys(env_id);

CREATE TABLE secrets (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    env_id             INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    description        TEXT,
    version            INTEGER NOT NULL DEFAULT 0,
    modified_revision  INTEGER NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    UNIQUE (env_id, name)
);

CREATE TABLE secret_versions (
    secret_id    INTEGER NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
    version      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    actor        TEXT,
    data_key_id  INTEGER REFERENCES data_keys(id) ON DELETE CASCADE,
    nonce        BLOB,
    ciphertext   BLOB,
    PRIMARY KEY (secret_id, version)
);
CREATE INDEX secret_versions_key ON secret_versions(data_key_id);

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    digest        BLOB NOT NULL,
    scopes        TEXT NOT NULL,
    app_id        INTEGER,
    environments  TEXT,
    description   TEXT,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    revoked_at    TEXT
);

CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    token_id     TEXT,
    app_id       INTEGER,
    environment  TEXT,
    names        TEXT NOT NULL DEFAULT '',
    action       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    client       TEXT
);
CREATE INDEX audit_events_app ON audit_events(app_id, id);
