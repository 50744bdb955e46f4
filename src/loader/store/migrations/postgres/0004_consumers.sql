-- Issue 20: who consumes each environment, the restart budget, and its slots.
-- Consumers report on their own requests; the store writes their rows in batches.
CREATE TABLE consumers (
    env_id       BIGINT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    consumer_id  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    host         TEXT NOT NULL,
    version      TEXT NOT NULL,
    rendered     BIGINT,
    running      BIGINT,
    health       TEXT,
    failed       BIGINT,
    seq          BIGINT NOT NULL,
    last_seen    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (env_id, consumer_id)
);
CREATE INDEX consumers_last_seen ON consumers(last_seen);

-- max_unavailable: a count ("3") or a percentage of the live runners ("10%").
CREATE TABLE rollout_policies (
    env_id           BIGINT PRIMARY KEY REFERENCES environments(id) ON DELETE CASCADE,
    max_unavailable  TEXT NOT NULL
);

-- A runner holds a slot from before it restarts its child until the child is healthy; a slot
-- whose lease ran out (a runner that died) is free again.
CREATE TABLE restart_slots (
    env_id       BIGINT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    consumer_id  TEXT NOT NULL,
    revision     BIGINT NOT NULL,
    granted_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (env_id, consumer_id)
);
