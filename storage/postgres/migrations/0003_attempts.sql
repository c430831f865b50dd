-- Schema 3: the login throttle's counters, shared by every instance, so a
-- limit holds for the fleet of servers together (storage.Throttles).
-- Logged: a database crash does not hand an attacker fresh attempts.
CREATE TABLE login_attempts (
    account       text COLLATE "C" NOT NULL, -- '' for a counter of an address
    address       text COLLATE "C" NOT NULL, -- '' for a counter of an account
    failures      integer NOT NULL,
    last_at       timestamptz NOT NULL,
    blocked_until timestamptz,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (account, address)
);
CREATE INDEX login_attempts_address_idx ON login_attempts (address, account);
CREATE INDEX login_attempts_expires_idx ON login_attempts (expires_at);
