package auth

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"

	"tether"
	"tether/storage"
)

// Directory is a company directory (LDAP, Active Directory) whose people
// sign in to Tether with their directory passwords. directory/ implements
// it; auth decides what a directory user may do.
type Directory interface {
	// Authenticate finds username in the directory and binds as it with
	// password. It returns ErrInvalidCredentials for a name the directory
	// does not have, a wrong password, or a user in none of the allowed
	// groups or matched by the disabled filter (the caller cannot tell
	// which, nor can a client), and ErrDirectoryUnavailable when the
	// directory cannot be reached or does not answer in time.
	Authenticate(ctx context.Context, username, password string) (DirectoryUser, error)
	// Lookup finds username with the service account, without a password:
	// for the sync. A name the directory does not have (deleted, or moved
	// out of the search base) is storage.ErrNotFound; a directory that
	// cannot be reached is ErrDirectoryUnavailable.
	Lookup(ctx context.Context, username string) (DirectoryUser, error)
}

// DirectoryUser is what the directory says about a person.
type DirectoryUser struct {
	// DN is the entry's distinguished name.
	DN string
	// Username is the name the person signs in with, as the directory
	// spells it.
	Username       string
	DisplayName    string
	FirstName      string
	LastName       string
	Email          string
	EmployeeNumber string
	// Groups are the DNs of the groups the entry is a member of.
	Groups []string
	// Role is the role the groups give; empty when role groups are
	// configured and the entry is in none of them (it may not sign in).
	Role storage.Role
	// Disabled is true when the disabled filter matches the entry.
	Disabled bool
	// PasswordChangedAt is when the password was last changed in the
	// directory, where it says (zero where it does not): a change ends
	// every session of the user, as a password reset in Tether does.
	PasswordChangedAt time.Time
}

// Allowed reports whether the directory lets the person sign in to
// Tether: a role, and not disabled.
func (u DirectoryUser) Allowed() bool { return u.Role != "" && !u.Disabled }

// ErrDirectoryUnavailable is returned when the directory cannot be reached
// or does not answer in time: a directory user's login answers 503 with
// Retry-After; local users are not concerned.
var ErrDirectoryUnavailable = tether.NewError(tether.CodeDirectoryUnavailable,
	"the company directory cannot be reached: try again shortly").After(30 * time.Second)

// ErrDirectoryManaged is returned for a change of what the directory owns
// of a directory user: names, email, role, password.
var ErrDirectoryManaged = tether.NewError(tether.CodeDirectoryManaged,
	"this is managed in the company directory: change it there")

// WithDirectory signs in, against d, the users Tether does not have as
// local users, and keeps them in step with it (SyncDirectory).
func WithDirectory(d Directory) ServiceOption {
	return func(s *Service) { s.dir = d }
}

// DirectoryUp reports whether the directory answered the last time it was
// asked; known is false before it has been asked, or with no directory.
func (s *Service) DirectoryUp() (up, known bool) {
	switch s.dirUp.Load() {
	case 1:
		return true, true
	case 0:
		return false, true
	}
	return false, false
}

// HasDirectory reports whether directory sign-in is on.
func (s *Service) HasDirectory() bool { return s.dir != nil }

// noteDirectory records whether the directory answered.
func (s *Service) noteDirectory(err error) {
	if errors.Is(err, ErrDirectoryUnavailable) {
		s.dirUp.Store(0)
	} else {
		s.dirUp.Store(1)
	}
}

// directoryPassword checks a password against the directory for a name no
// local user has (known is the zero User) or a directory user's, and
// brings the user's record up to date with what the directory says (made
// at the first sign-in). It costs what a local password check does: the
// same hash is run, whatever the directory answers.
func (s *Service) directoryPassword(ctx context.Context, username, password string, known storage.User) (storage.User, error) {
	du, err := s.dir.Authenticate(ctx, username, password)
	s.noteDirectory(err)
	if _, herr := s.hasher.Verify(password, s.dummyHash); herr != nil {
		s.log.ErrorContext(ctx, "dummy password hash", "error", herr)
	}
	switch {
	case errors.Is(err, ErrDirectoryUnavailable):
		s.log.WarnContext(ctx, "directory sign-in failed: the directory cannot be reached", "error", err)
		return storage.User{}, ErrDirectoryUnavailable
	case err != nil:
		s.log.DebugContext(ctx, "directory sign-in refused", "error", err)
		return storage.User{}, ErrInvalidCredentials
	case !du.Allowed():
		return storage.User{}, ErrInvalidCredentials
	}
	return s.adoptDirectoryUser(ctx, du, known)
}

// roleRank orders the roles a directory user may have.
var directoryRank = map[storage.Role]int{storage.RoleWorker: 0, storage.RoleManager: 1, storage.RoleAdmin: 2}

// fromDirectory sets what the directory owns of u from du.
func fromDirectory(u *storage.User, du DirectoryUser, now time.Time) {
	u.Role = du.Role
	u.FirstName = directoryText(du.FirstName, MaxName)
	u.LastName = directoryText(du.LastName, MaxName)
	u.Email = ""
	if e := strings.TrimSpace(du.Email); len(e) <= 254 && validEmail(e) {
		u.Email = e
	}
	if u.Directory == nil {
		u.Directory = &storage.UserDirectory{}
	}
	u.Directory.DN = du.DN
	u.Directory.DisplayName = directoryText(du.DisplayName, 128)
	u.Directory.EmployeeNumber = directoryText(du.EmployeeNumber, 64)
	u.Directory.SyncedAt = now
	u.PasswordHash = "" // a directory user has no password of Tether's
}

// validEmail reports whether e is a bare email address.
func validEmail(e string) bool {
	a, err := mail.ParseAddress(e)
	return err == nil && a.Address == e
}

// directoryText is a directory attribute as a user record keeps it:
// printable, at most n bytes.
func directoryText(s string, n int) string {
	s = strings.TrimSpace(s)
	if !tether.Printable(s) {
		return ""
	}
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// adoptDirectoryUser makes or updates the user record of a directory user
// who just proved their password, with the audit event
// user.directory_login. A user the directory had disabled, and now allows,
// is enabled again; one a manager disabled stays disabled.
func (s *Service) adoptDirectoryUser(ctx context.Context, du DirectoryUser, known storage.User) (storage.User, error) {
	now := s.now().UTC()
	ev := s.event(ctx, "user.directory_login", "success")
	ev.Detail = map[string]string{"dn": truncate(du.DN, 256)}
	if known.ID == "" {
		name := du.Username
		if _, err := precis.UsernameCasePreserved.String(name); err != nil || len(name) > MaxUsername {
			s.log.WarnContext(ctx, "directory user cannot be a Tether user: the username is not one Tether takes", "dn", du.DN)
			return storage.User{}, ErrInvalidCredentials
		}
		u := storage.User{ID: storage.NewID(storage.PrefixUser), Username: name, CreatedAt: now, UpdatedAt: now, PasswordChangedAt: now}
		fromDirectory(&u, du, now)
		ev.UserID, ev.Username, ev.Actor = u.ID, u.Username, "directory"
		ev.Detail["created"] = "true"
		created, err := s.store.CreateUser(ctx, u, storage.WithEvents(ev))
		if errors.Is(err, storage.ErrConflict) {
			// Another server made the record first, or the name looks
			// like a local user's: the latter may not sign in.
			if again, gerr := s.store.GetUserByUsername(ctx, name); gerr == nil && again.Directory != nil && again.Directory.DN == du.DN {
				return s.adoptDirectoryUser(ctx, du, again)
			}
			s.log.WarnContext(ctx, "directory user cannot be a Tether user: a local user's name is the same or looks alike", "dn", du.DN, "error", err)
			return storage.User{}, ErrInvalidCredentials
		}
		if err != nil {
			return storage.User{}, fmt.Errorf("record directory user: %w", err)
		}
		s.written(ev)
		return created, nil
	}
	ev.UserID, ev.Username, ev.Actor = known.ID, known.Username, "directory"
	updated, err := s.updateFromDirectory(ctx, known, du, now, ev)
	if err != nil {
		return storage.User{}, err
	}
	s.written(ev)
	return updated, nil
}

// errRoleMoved stops an update from the directory whose user's role or
// password time changed since it was read: it is read and tried again.
var errRoleMoved = errors.New("role changed meanwhile")

// updateFromDirectory sets what the directory says of du on the record of
// known, with ev, in one transaction: a role gone down ends the user's
// sessions in it (the new role may not have them), as does a password
// changed in the directory since Tether last heard, and an account the
// directory had disabled and now allows is enabled again.
func (s *Service) updateFromDirectory(ctx context.Context, known storage.User, du DirectoryUser, now time.Time, events ...storage.Event) (storage.User, error) {
	for {
		opts := []storage.WriteOption{storage.WithEvents(events...)}
		switch {
		case du.PasswordChangedAt.After(known.PasswordChangedAt):
			opts = append(opts, storage.WithRevocation(storage.Revocation{UserID: known.ID, Reason: "password_changed", At: now}, nil))
		case directoryRank[du.Role] < directoryRank[known.Role]:
			opts = append(opts, storage.WithRevocation(storage.Revocation{UserID: known.ID, Reason: "role_changed", At: now}, nil))
		}
		updated, err := s.store.UpdateUser(ctx, known.ID, func(u storage.User) (storage.User, error) {
			switch {
			case u.Directory == nil:
				return u, fmt.Errorf("%w: user %s is local now", ErrInvalidCredentials, u.ID)
			case u.Role != known.Role || !u.PasswordChangedAt.Equal(known.PasswordChangedAt):
				return u, errRoleMoved
			}
			if du.PasswordChangedAt.After(u.PasswordChangedAt) {
				u.PasswordChangedAt = du.PasswordChangedAt.UTC()
			}
			fromDirectory(&u, du, now)
			if u.Disabled && u.Directory.DisabledFor != "" {
				u.Disabled, u.Directory.DisabledFor = false, ""
			}
			u.UpdatedAt = now
			return u, nil
		}, opts...)
		if !errors.Is(err, errRoleMoved) {
			return updated, err
		}
		if known, err = s.store.GetUser(ctx, known.ID); err != nil {
			return storage.User{}, err
		}
	}
}
