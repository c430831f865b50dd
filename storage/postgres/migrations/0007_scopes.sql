-- Schema 7: scopes (storage's scope rules). The columns a scoped query
-- filters on, written from the record in the same statement as it:
--   users.role, users.scopes         a worker's own groups (a manager's
--                                    are the groups they manage);
--   devices.assigned_users           the workers assigned to the handset;
--   enrollment_codes.grp             the group the code enrolls into;
--   events.groups                    the groups the event concerns, set
--                                    when it is written (Event.Groups).
-- Arrays, with GIN indexes for the && and @> of the scoped queries; all
-- in the "C" collation, as the ids they are compared with.
-- Events written before have no groups: they stay for unscoped principals
-- only.
ALTER TABLE users ADD COLUMN role text NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN scopes text[] COLLATE "C" NOT NULL DEFAULT '{}';
UPDATE users SET role = coalesce(data->>'role', ''),
    scopes = ARRAY(SELECT g FROM json_array_elements_text(coalesce(data->'scopes', '[]')) g WHERE g <> '');
CREATE INDEX users_scopes_idx ON users USING gin (scopes);

ALTER TABLE devices ADD COLUMN assigned_users text[] COLLATE "C" NOT NULL DEFAULT '{}';
UPDATE devices SET assigned_users = ARRAY(SELECT json_array_elements_text(coalesce(data->'assignedUsers', '[]')))
    WHERE data->'assignedUsers' IS NOT NULL;
CREATE INDEX devices_assigned_users_idx ON devices USING gin (assigned_users);

ALTER TABLE enrollment_codes ADD COLUMN grp text COLLATE "C" NOT NULL DEFAULT '';
UPDATE enrollment_codes SET grp = coalesce(data->>'group', '') WHERE data->>'group' IS NOT NULL;
CREATE INDEX enrollment_codes_grp_idx ON enrollment_codes (grp);

ALTER TABLE events ADD COLUMN groups text[] COLLATE "C" NOT NULL DEFAULT '{}';
CREATE INDEX events_groups_idx ON events USING gin (groups);
