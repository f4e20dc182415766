-- Identities whose account someone confirmed by hand since the target's last provisioning: the
-- next provisioning, incremental too, brings that account in line, then forgets them.
CREATE TABLE links_reviewed (
    connection TEXT NOT NULL,
    identity TEXT NOT NULL,
    PRIMARY KEY (connection, identity)
);
