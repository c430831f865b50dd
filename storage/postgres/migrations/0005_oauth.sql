-- Schema 5: OAuth clients, and the short-lived codes of OAuth grants.
CREATE TABLE oauth_clients (
    id                text COLLATE "C" PRIMARY KEY,
    -- NULL for a client not registered dynamically.
    registration_hash bytea CONSTRAINT oauth_clients_registration_hash_key UNIQUE,
    data              json NOT NULL
);

CREATE TABLE auth_codes (
    id         text COLLATE "C" PRIMARY KEY,
    hash       bytea NOT NULL CONSTRAINT auth_codes_hash_key UNIQUE,
    expires_at timestamptz NOT NULL,
    data       json NOT NULL
);
CREATE INDEX auth_codes_expires_idx ON auth_codes (expires_at);

-- A user code is unique among the codes not expired: a rule on time, so
-- not a constraint but a read in the creating transaction, which
-- SERIALIZABLE makes safe (the index gives it a predicate lock).
CREATE TABLE device_codes (
    id         text COLLATE "C" PRIMARY KEY,
    hash       bytea NOT NULL CONSTRAINT device_codes_hash_key UNIQUE,
    user_code  text COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL,
    data       json NOT NULL
);
CREATE INDEX device_codes_user_code_idx ON device_codes (user_code);
CREATE INDEX device_codes_expires_idx ON device_codes (expires_at);
