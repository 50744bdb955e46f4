-- Workload identity: trust policies. A workload token (a Kubernetes service-account token, a CI
-- job's OIDC token) signed by `issuer` (keys from jwks_url or jwks_file), carrying `audience`,
-- whose claims match every condition (JSON object: claim path -> exact value or glob), is
-- exchanged for an access token with this grant. Deleting a policy sets deleted_at: tokens
-- issued under it stop working, and other processes hear of it as of a revocation.
CREATE TABLE trust_policies (
    id            TEXT PRIMARY KEY,
    issuer        TEXT NOT NULL,
    jwks_url      TEXT,
    jwks_file     TEXT,
    audience      TEXT NOT NULL,
    conditions    TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    app_id        BIGINT,
    environments  TEXT,
    ttl           INTEGER NOT NULL,
    description   TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    deleted_at    TIMESTAMPTZ
);
CREATE INDEX trust_policies_issuer ON trust_policies(issuer);

-- Audit of exchanges: the verified subject of the workload token and a refusal's reason code.
ALTER TABLE audit_events ADD COLUMN subject TEXT;
ALTER TABLE audit_events ADD COLUMN reason TEXT;
