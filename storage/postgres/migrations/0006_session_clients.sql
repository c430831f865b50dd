-- Schema 6: a live session per user, handset and OAuth client (or the
-- native API, ''), so two apps on one handset do not end each other's.
ALTER TABLE session_pairs ADD COLUMN client_id text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE session_pairs DROP CONSTRAINT session_pairs_pkey;
ALTER TABLE session_pairs ADD PRIMARY KEY (user_id, device_id, client_id);
