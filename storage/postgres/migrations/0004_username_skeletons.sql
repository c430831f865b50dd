-- Schema 4: usernames by skeleton (storage.UsernameSkeleton), so a new
-- username that looks like one taken is refused. Not unique: accounts that
-- looked alike before the rule are kept. The column is filled by the
-- migration's Go step (fillSkeletons) in the same transaction.
ALTER TABLE users ADD COLUMN username_skeleton text COLLATE "C";
CREATE INDEX users_username_skeleton_idx ON users (username_skeleton);
