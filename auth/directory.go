package auth

import (
	"context"
	"time"

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
