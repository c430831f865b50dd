-- Schema 2: the DPoP proofs used, so every instance refuses a replay.
-- Unlogged: nothing to flush to disk per proof; after a crash or a
-- failover it starts empty, which lets through at most the replays of the
-- proofs of the last minute.
CREATE UNLOGGED TABLE proofs (
    key        text COLLATE "C" PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX proofs_expires_idx ON proofs (expires_at);
