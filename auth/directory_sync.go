package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"tether/storage"
)

// DirectorySync says what one directory sync did.
type DirectorySync struct {
	At time.Time
	// Checked counts the directory users looked up; Updated those whose
	// names, email or role changed; Disabled those the directory no longer
	// lets sign in (each with every session ended); Enabled those it lets
	// sign in again.
	Checked, Updated, Disabled, Enabled int
	// Skipped is true when another server sharing the store was syncing.
	Skipped bool
}

// directorySyncLock names the lock servers sharing a store take to sync.
const directorySyncLock = "directory-sync"

// Why the sync disables a directory user, as its audit event says.
const (
	goneFromDirectory   = "deleted from the directory, or moved out of the search base"
	disabledInDirectory = "disabled in the directory"
	outOfGroups         = "in none of the allowed groups"
)

// SyncDirectory looks every directory user Tether knows up in the
// directory again. One the directory no longer has, has disabled, or has
// in none of the allowed groups is disabled, with every session of theirs
// ended, in one transaction (user.directory_disabled, with the reason);
// names, email and role follow the directory, a role gone down ending the
// user's sessions; one the directory lets sign in again is enabled again.
// Of servers sharing a store one syncs at a time; the others skip. The
// sync ends at the first lookup the directory does not answer, changing
// nothing more. Each run is audited as directory.sync.
func (s *Service) SyncDirectory(ctx context.Context) (DirectorySync, error) {
	r := DirectorySync{At: s.now().UTC()}
	if s.dir == nil {
		return r, errors.New("no directory")
	}
	unlock, ok, err := s.lockSync(ctx)
	if err != nil || !ok {
		r.Skipped = err == nil
		return r, err
	}
	defer unlock()
	err = s.syncDirectory(ctx, &r)
	ev := s.event(ctx, "directory.sync", "success")
	ev.Actor = "directory"
	ev.Detail = map[string]string{
		"checked": strconv.Itoa(r.Checked), "updated": strconv.Itoa(r.Updated),
		"disabled": strconv.Itoa(r.Disabled), "enabled": strconv.Itoa(r.Enabled),
	}
	if err != nil {
		ev.Outcome, ev.Reason = "failure", reasonOf(err)
		ev.Detail["error"] = truncate(err.Error(), 512)
	}
	s.record(ctx, ev)
	return r, err
}

// lockSync takes the sync's lock: the store's, where servers share it,
// else this process's.
func (s *Service) lockSync(ctx context.Context) (func(), bool, error) {
	if l, ok := s.store.(storage.Locker); ok {
		return l.TryLock(ctx, directorySyncLock)
	}
	if !s.syncing.TryLock() {
		return nil, false, nil
	}
	return s.syncing.Unlock, true, nil
}

// mostGone is how many directory users one sync may find gone from the
// directory before it suspects the directory rather than the users (a
// service account that lost its read access finds nobody): past it, and
// past half of them, it changes nothing and fails.
const mostGone = 10

// errImplausibleSync stops a sync that would disable most users as gone.
var errImplausibleSync = errors.New("the directory no longer has most directory users")

func (s *Service) syncDirectory(ctx context.Context, r *DirectorySync) error {
	// First every lookup, changing nothing: a directory that stops
	// answering halfway, or answers implausibly, leaves everyone as they
	// were.
	type lookup struct {
		user storage.User
		du   DirectoryUser
		err  error
	}
	var found []lookup
	live, gone := 0, 0
	f := storage.UserFilter{Source: storage.SourceDirectory, Limit: storage.MaxPageSize}
	for {
		page, err := s.store.ListUsers(ctx, f)
		if err != nil {
			return err
		}
		for _, u := range page.Items {
			du, err := s.dir.Lookup(ctx, u.Username)
			s.noteDirectory(err)
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("look up %s: %w", u.Username, err)
			}
			if !u.Disabled {
				live++
				if err != nil {
					gone++
				}
			}
			found = append(found, lookup{u, du, err})
		}
		if page.Next == "" {
			break
		}
		f.After = page.Next
	}
	r.Checked = len(found)
	if gone > mostGone && 2*gone > live {
		return fmt.Errorf("%w: %d of the %d enabled ones are not found, so nothing was changed: check that the service account can still read them, and the user base and filter; if they were really removed, disable them in Tether", errImplausibleSync, gone, live)
	}
	for _, l := range found {
		if err := s.syncUser(ctx, l.user, l.du, l.err, r); err != nil {
			return err
		}
	}
	return nil
}

// syncUser brings one directory user in step with what the directory said
// of them (du, or lookupErr).
func (s *Service) syncUser(ctx context.Context, u storage.User, du DirectoryUser, lookupErr error, r *DirectorySync) error {
	reason := ""
	switch {
	case errors.Is(lookupErr, storage.ErrNotFound):
		reason = goneFromDirectory
	case du.Disabled:
		reason = disabledInDirectory
	case du.Role == "":
		reason = outOfGroups
	}
	now := s.now().UTC()
	if reason != "" {
		if u.Disabled {
			return nil
		}
		ev := s.event(ctx, "user.directory_disabled", "success")
		ev.Actor, ev.UserID, ev.Username, ev.Reason = "directory", u.ID, u.Username, reason
		ev.Detail = map[string]string{"dn": truncate(u.Directory.DN, 256)}
		_, err := s.store.UpdateUser(ctx, u.ID, func(cur storage.User) (storage.User, error) {
			if cur.Directory == nil {
				return cur, errNotDirectory
			}
			cur.Disabled, cur.Directory.DisabledFor, cur.Directory.SyncedAt, cur.UpdatedAt = true, reason, now, now
			return cur, nil
		}, storage.WithEvents(ev), storage.WithRevocation(storage.Revocation{UserID: u.ID, Reason: "directory_disabled", At: now}, nil))
		switch {
		case errors.Is(err, errNotDirectory) || errors.Is(err, storage.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		s.written(ev)
		r.Disabled++
		return nil
	}
	before := u
	after := u.Clone()
	fromDirectory(&after, du, now)
	enabling := u.Disabled && u.Directory.DisabledFor != ""
	a, b := after.Directory, before.Directory
	passwordChanged := du.PasswordChangedAt.After(u.PasswordChangedAt)
	changed := after.Role != before.Role || after.FirstName != before.FirstName || after.LastName != before.LastName ||
		after.Email != before.Email || a.DN != b.DN || a.DisplayName != b.DisplayName || a.EmployeeNumber != b.EmployeeNumber ||
		passwordChanged
	var events []storage.Event
	if changed || enabling {
		ev := s.event(ctx, "user.directory_updated", "success")
		ev.Actor, ev.UserID, ev.Username = "directory", u.ID, u.Username
		ev.Detail = map[string]string{"dn": truncate(du.DN, 256)}
		if after.Role != before.Role {
			ev.Detail["role"] = string(before.Role) + " → " + string(after.Role)
		}
		if passwordChanged {
			ev.Detail["password"] = "changed in the directory: every session ended"
		}
		if enabling {
			ev.Reason = "the directory allows the account again"
		}
		events = append(events, ev)
	}
	if _, err := s.updateFromDirectory(ctx, u, du, now, events...); err != nil && !errors.Is(err, ErrInvalidCredentials) {
		return err
	}
	s.written(events...)
	if changed {
		r.Updated++
	}
	if enabling {
		r.Enabled++
	}
	return nil
}

var errNotDirectory = errors.New("not a directory user any more")

// RunDirectorySync syncs every interval until ctx is done. A failed sync is
// logged; the next one tries again.
func (s *Service) RunDirectorySync(ctx context.Context, every time.Duration) {
	runEvery(ctx, every, func() {
		r, err := s.SyncDirectory(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			s.log.Error("directory sync failed", "error", err, "checked", r.Checked)
		case r.Updated+r.Disabled+r.Enabled > 0:
			s.log.Info("directory synced", "checked", r.Checked, "updated", r.Updated, "disabled", r.Disabled, "enabled", r.Enabled)
		}
	})
}

// LastDirectorySync returns the last directory.sync event, from whichever
// server ran it, or ErrNotFound before the first. It is the fleet's, an
// event of no group: for a scoped manager it is not found either.
func (s *Service) LastDirectorySync(ctx context.Context, by Principal) (storage.Event, error) {
	page, err := s.store.ListEvents(ctx, storage.EventFilter{Action: "directory.sync", NewestFirst: true, Limit: 1, Groups: by.Scopes})
	if err != nil {
		return storage.Event{}, err
	}
	if len(page.Items) == 0 {
		return storage.Event{}, fmt.Errorf("directory sync: %w", storage.ErrNotFound)
	}
	return page.Items[0], nil
}
