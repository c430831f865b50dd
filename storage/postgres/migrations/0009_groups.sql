-- Schema 9: the settings of handset groups (storage.Groups), by name.
CREATE TABLE groups (
    name text COLLATE "C" PRIMARY KEY,
    data json NOT NULL
);
