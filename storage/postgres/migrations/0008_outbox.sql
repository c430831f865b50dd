-- Schema 8: the outbox (storage.Outbox). One row per audit event and sink,
-- written in the transaction that writes the event; a sink's queue is its
-- rows that are not dead, in seq order; its dead letters the rows that are.
CREATE TABLE outbox (
    seq bigserial PRIMARY KEY,
    sink text COLLATE "C" NOT NULL,
    queued timestamptz NOT NULL,
    data json NOT NULL,
    dead boolean NOT NULL DEFAULT false,
    failed timestamptz,
    reason text
);
CREATE INDEX outbox_queue ON outbox (sink, seq) WHERE NOT dead;
CREATE INDEX outbox_dead ON outbox (sink, seq) WHERE dead;

-- Who delivers each sink, until when.
CREATE TABLE sink_leases (
    sink text COLLATE "C" PRIMARY KEY,
    holder text NOT NULL,
    until timestamptz NOT NULL
);

-- The event routes (storage.EventRoute), one row for all of them.
CREATE TABLE event_routes (
    id int PRIMARY KEY CHECK (id = 1),
    routes json NOT NULL
);
