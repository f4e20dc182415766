-- The web UI: people's sessions, sign-in flows in progress, and the audit trail.

-- A signed-in person's session. Only a hash of the cookie's value is kept, so a copy of the
-- database signs nobody in. Ends at `expires_ms` (absolute), after `idle_ms` without a request,
-- or when revoked.
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    method TEXT NOT NULL,
    roles TEXT NOT NULL,
    csrf TEXT NOT NULL,
    address TEXT,
    created_ms BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
CREATE INDEX web_sessions_user ON web_sessions (user_name, created_ms);

-- An OpenID Connect sign-in between the redirect to the provider and its answer: the state is
-- the key (used once), with the nonce and the PKCE verifier kept here, never in the browser.
CREATE TABLE web_flows (
    state_hash TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    verifier TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Who did what, from where, and how it ended: sign-ins (both outcomes), refusals, actions.
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    user_name TEXT,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    address TEXT,
    detail TEXT
);
CREATE INDEX audit_user ON audit (user_name, id);
CREATE INDEX audit_action ON audit (action, id);

-- Who started a run from the UI (absent: a schedule, the CLI or the API), so that an approver
-- may be kept from approving their own run.
ALTER TABLE jobs ADD COLUMN started_by TEXT;

-- A target's accounts in one situation, in key order (the UI's review and orphan lists).
CREATE INDEX links_situation ON links (connection, situation, key);
