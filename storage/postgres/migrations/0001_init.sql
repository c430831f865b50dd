-- Schema 1: every record kind of schema 2 of the embedded store. Records
-- are kept whole as JSON in "data", exactly as the embedded store keeps
-- them; the other columns are the keys, unique rules and filters the
-- queries use, written from the record in the same statement.

CREATE TABLE counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO counters (name, value) VALUES ('users', 0), ('sessions', 0);

CREATE TABLE devices (
    id     text COLLATE "C" PRIMARY KEY,
    imei   text NOT NULL CONSTRAINT devices_imei_key UNIQUE,
    status text NOT NULL,
    grp    text NOT NULL,
    data   json NOT NULL
);
CREATE INDEX devices_status_idx ON devices (status, id);
CREATE INDEX devices_grp_idx ON devices (grp, id);

CREATE TABLE users (
    id           text COLLATE "C" PRIMARY KEY,
    username_key text NOT NULL CONSTRAINT users_username_key UNIQUE,
    data         json NOT NULL
);

CREATE TABLE api_keys (
    id   text COLLATE "C" PRIMARY KEY,
    hash bytea NOT NULL CONSTRAINT api_keys_hash_key UNIQUE,
    data json NOT NULL
);

CREATE TABLE sessions (
    id          text COLLATE "C" PRIMARY KEY,
    user_id     text COLLATE "C" NOT NULL,
    device_id   text COLLATE "C" NOT NULL, -- '' for a session without a handset
    family_hash bytea NOT NULL CONSTRAINT sessions_family_key UNIQUE,
    revoked     boolean NOT NULL,
    ended_at    timestamptz NOT NULL,
    data        json NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id, id);
CREATE INDEX sessions_device_idx ON sessions (device_id, id);
CREATE INDEX sessions_ended_idx ON sessions (ended_at);

-- The one live session of each user and handset.
CREATE TABLE session_pairs (
    user_id    text COLLATE "C" NOT NULL,
    device_id  text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE events (
    id        text COLLATE "C" PRIMARY KEY,
    at        timestamptz NOT NULL,
    action    text NOT NULL,
    user_id   text NOT NULL,
    device_id text NOT NULL,
    data      json NOT NULL
);
CREATE INDEX events_at_idx ON events (at);

CREATE TABLE signing_keys (
    id   text COLLATE "C" PRIMARY KEY,
    data json NOT NULL
);

CREATE TABLE enrollment_codes (
    id         text COLLATE "C" PRIMARY KEY,
    hash       bytea NOT NULL CONSTRAINT enrollment_codes_hash_key UNIQUE,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    data       json NOT NULL
);
