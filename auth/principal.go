package auth

import (
	"tether"
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
// of role r: admins may grant any role, managers only roles below admin.
func (p Principal) CanGrant(r storage.Role) bool {
	switch p.Role {
	case storage.RoleAdmin:
		return true
	case storage.RoleManager:
		return roleRank[r] < roleRank[storage.RoleAdmin]
	}
	return false
}
