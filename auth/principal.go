package auth

import (
	"fmt"
	"slices"

	"tether"
	"tether/device"
	"tether/storage"
)

// PrincipalKind says how a caller proved who it is.
type PrincipalKind string

// The kinds of principal.
const (
	// KindAPIKey is a script or resource server holding an API key.
	KindAPIKey PrincipalKind = "apikey"
	// KindUser is a person holding an access token.
	KindUser PrincipalKind = "user"
	// KindCLI is an operator running the tether command on the server
	// itself, with the store file in hand: the most trusted of all.
	KindCLI PrincipalKind = "cli"
)

// Principal is who is making a request.
type Principal struct {
	Kind PrincipalKind
	// ID is the API key's or the user's ID; empty for the CLI.
	ID   string
	Role storage.Role
	// Scopes are the handset groups a scoped manager (a user or an API
	// key) manages; nil for the whole fleet. Admins, workers and the CLI
	// are never scoped. See the scope rules in storage/scopes.go.
	Scopes []string
	// AMR is how a user proved who they are at sign-in (RFC 8176 values,
	// such as ["pwd","otp"]); nil for an API key and the CLI.
	AMR []string
}

// CLI is the principal of commands run on the server with the store file.
var CLI = Principal{Kind: KindCLI, Role: storage.RoleAdmin}

// String names the principal in records and the audit trail, such as
// "apikey:ak_01J…" or "cli".
func (p Principal) String() string {
	if p.ID == "" {
		return string(p.Kind)
	}
	return string(p.Kind) + ":" + p.ID
}

// ErrForbidden is returned when the principal's role does not allow the
// request.
var ErrForbidden = tether.NewError(tether.CodeForbidden, "your role does not allow this")

// ErrUnauthenticated is returned when a request carries no credentials, or
// ones that are not valid.
var ErrUnauthenticated = tether.NewError(tether.CodeTokenInvalid, "missing or invalid credentials")

// roleRank orders the roles that manage things. Workers and introspection
// keys manage nothing.
var roleRank = map[storage.Role]int{storage.RoleManager: 1, storage.RoleAdmin: 2}

// Require returns ErrForbidden unless p holds one of roles.
func (p Principal) Require(roles ...storage.Role) error {
	for _, r := range roles {
		if p.Role == r {
			return nil
		}
	}
	return ErrForbidden
}

// CanGrant reports whether p may create, edit or hand out an account or key
// of role r: admins may grant any role, managers only roles below admin,
// and a scoped manager only workers (an account that can manage is in no
// scope).
func (p Principal) CanGrant(r storage.Role) bool {
	switch p.Role {
	case storage.RoleAdmin:
		return true
	case storage.RoleManager:
		if p.Scoped() {
			return r == storage.RoleWorker
		}
		return roleRank[r] < roleRank[storage.RoleAdmin]
	}
	return false
}

// Scoped reports whether p is limited to some handset groups.
func (p Principal) Scoped() bool { return p.Scopes != nil }

// RequireFleet refuses a scoped principal what concerns the whole fleet
// and no group (the sinks the audit trail is pushed to, and their dead
// letters, which hold every group's events) as a record out of its scope
// is refused: as if there were none (storage.ErrNotFound).
func (p Principal) RequireFleet() error {
	if p.Scoped() {
		return fmt.Errorf("for unscoped managers and admins: %w", storage.ErrNotFound)
	}
	return nil
}

// Device is p as the device rules know it: the name it acts under and the
// groups it is limited to.
func (p Principal) Device() device.Actor {
	return device.Actor{Name: p.String(), Scopes: p.Scopes, AMR: p.AMR}
}

// Stamp marks an audit event as p's action: p names the actor, and the
// scope it acted in and the factors it signed in with go with it.
func (p Principal) Stamp(ev *storage.Event) {
	ev.Actor = p.String()
	ev.ActorScopes = slices.Clone(p.Scopes)
	ev.ActorAMR = slices.Clone(p.AMR)
}

// principalOf is the principal of a user signed in with amr: a manager
// carries the scopes of their account; other roles carry none.
func principalOf(u storage.User, amr []string) Principal {
	p := Principal{Kind: KindUser, ID: u.ID, Role: u.Role, AMR: slices.Clone(amr)}
	if u.Role == storage.RoleManager {
		p.Scopes = scopesOf(u.Scopes)
	}
	return p
}

// scopesOf is a stored list of scopes as a principal holds it: nil for
// none (the whole fleet), and otherwise the groups that can be in a scope.
// A stored list with no such group yields an empty, non-nil scope: it
// holds nothing, rather than everything.
func scopesOf(stored []string) []string {
	if len(stored) == 0 {
		return nil
	}
	if g := storage.ScopeGroups(stored); g != nil {
		return g
	}
	return []string{}
}
