-- Schema 7: scopes (storage's scope rules). The columns a scoped query
-- filters on, written from the records in the same transaction as they:
--   devices.assigned_users    the users assigned to the handset;
--   users.role, users.scopes  the user's role and own scopes;
--   users.groups              for a worker, the groups they are in: their
--                             own scopes and their handsets' groups,
--                             worked out again by every write that can
--                             change them (of the user, or of a handset
--                             they are or were assigned to), so that
--                             neither a scoped list nor an event's write
--                             has to; none for anyone else;
--   enrollment_codes.grp      the group the code enrolls into (codes are
--                             few: no index);
--   events.groups             the groups the event concerns, set when it
--                             is written (Event.Groups).
-- Arrays in the "C" collation (that of the ids they hold, and Go's sort
-- order), with GIN indexes. Those of users and devices are updated at once
-- (fastupdate off: no pending list for every read to scan), as they change
-- seldom. Events written before have no groups: they stay for unscoped
-- principals only.
ALTER TABLE devices ADD COLUMN assigned_users text[] COLLATE "C" NOT NULL DEFAULT '{}';
UPDATE devices SET assigned_users = ARRAY(SELECT json_array_elements_text(data->'assignedUsers'))
    WHERE json_typeof(data->'assignedUsers') = 'array';
CREATE INDEX devices_assigned_users_idx ON devices USING gin (assigned_users) WITH (fastupdate = off);

ALTER TABLE users ADD COLUMN role text NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN scopes text[] COLLATE "C" NOT NULL DEFAULT '{}';
ALTER TABLE users ADD COLUMN groups text[] COLLATE "C" NOT NULL DEFAULT '{}';
UPDATE users SET role = coalesce(data->>'role', ''),
    scopes = ARRAY(SELECT g FROM json_array_elements_text(data->'scopes') g WHERE g <> '')
    WHERE json_typeof(data->'scopes') = 'array';
UPDATE users SET role = coalesce(data->>'role', '') WHERE role = '';
UPDATE users u SET groups = ARRAY(SELECT DISTINCT g FROM (
        SELECT unnest(u.scopes) AS g
        UNION ALL SELECT d.grp COLLATE "C" FROM devices d WHERE d.assigned_users @> ARRAY[u.id]
    ) x WHERE g <> '' ORDER BY g)
    WHERE u.role = 'worker';
CREATE INDEX users_groups_idx ON users USING gin (groups) WITH (fastupdate = off);

ALTER TABLE enrollment_codes ADD COLUMN grp text COLLATE "C" NOT NULL DEFAULT '';
UPDATE enrollment_codes SET grp = data->>'group' WHERE data->>'group' IS NOT NULL;

ALTER TABLE events ADD COLUMN groups text[] COLLATE "C" NOT NULL DEFAULT '{}';
CREATE INDEX events_groups_idx ON events USING gin (groups);
