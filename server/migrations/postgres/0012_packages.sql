-- Connector packages the server stores and offers to agents (signed by their publishers;
-- agents check the signatures against keys of their own).
CREATE TABLE connector_packages (
    digest TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    bundle BYTEA NOT NULL,
    size BIGINT NOT NULL,
    publisher TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    signed TEXT NOT NULL,
    published_ms BIGINT NOT NULL,
    published_by TEXT NOT NULL,
    UNIQUE (name, version)
);

-- The version of each connector offered now: the newest published, or one an administrator
-- chose (a rollback is this explicit choice).
CREATE TABLE connector_active (
    name TEXT PRIMARY KEY,
    digest TEXT NOT NULL REFERENCES connector_packages(digest),
    set_ms BIGINT NOT NULL,
    set_by TEXT NOT NULL
);

-- What each agent's connection files ask for, and the packages it refused, as last reported.
ALTER TABLE agents ADD COLUMN wants TEXT NOT NULL DEFAULT '[]';
ALTER TABLE agents ADD COLUMN refused_packages TEXT NOT NULL DEFAULT '[]';
