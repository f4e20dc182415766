-- Orders that wait for others: a membership for an account being created waits for its create
-- (`member`: the created key becomes the member value), a membership of a group being created
-- for the group's create (`key`: the created key becomes the order's key), an account's delete
-- for its removal from groups (`after`). A row goes when the order waited on ends.
CREATE TABLE order_deps (
    order_id TEXT NOT NULL,
    on_id TEXT NOT NULL,
    role TEXT NOT NULL,
    attribute TEXT,
    PRIMARY KEY (on_id, order_id)
);
CREATE INDEX order_deps_order ON order_deps (order_id);
