package auth

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"tether"
	"tether/device"
	"tether/storage"
)

// MaxScopes is the most groups one account or key may be limited to.
const MaxScopes = 64

// ErrScopeExceeded is returned when a scoped manager names a group outside
// their scope, for a worker, a handset or a code: they cannot widen
// anyone's scope, their own included. It tells nothing the caller did not
// name.
var ErrScopeExceeded = device.ErrScopeExceeded

// errAdminScoped refuses scopes on an admin: admins manage the whole fleet.
var errAdminScoped = tether.Invalid("scopes", "scopes_admin", "an admin manages the whole fleet and has no scopes")

// CheckScopes checks a list of handset groups given as scopes (field names
// it in errors) and returns it sorted without repeats, or nil for an empty
// list (no scope: the whole fleet). Each group is a handset group name:
// not empty, at most device.MaxGroup printable characters.
func CheckScopes(field string, in []string) ([]string, *tether.ValidationError) {
	if len(in) > MaxScopes {
		return nil, tether.Invalid(field, field+"_too_many", fmt.Sprintf("at most %d groups", MaxScopes))
	}
	var errs tether.ValidationError
	out := make([]string, 0, len(in))
	for i, g := range in {
		g = strings.TrimSpace(g)
		if g == "" || utf8.RuneCountInString(g) > device.MaxGroup || !tether.Printable(g) || !storage.ScopeGroup(g) {
			errs.Fields = append(errs.Fields, tether.FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Code: "scope_invalid",
				Message: fmt.Sprintf("a scope is a handset group: 1 to %d printable characters", device.MaxGroup)})
			continue
		}
		out = append(out, g)
	}
	if len(errs.Fields) > 0 {
		return nil, &errs
	}
	return storage.ScopeGroups(out), nil
}

// grantScopes returns the scopes a scoped manager by gives a new worker:
// those asked for, each in by's scope (ErrScopeExceeded otherwise), or,
// when none are, by's only group; a manager of several groups must name
// them.
func grantScopes(by Principal, asked []string) ([]string, error) {
	if len(asked) == 0 {
		if len(by.Scopes) == 1 {
			return []string{by.Scopes[0]}, nil
		}
		return nil, tether.Invalid("scopes", "scopes_required", "name the groups the worker is in: you manage several")
	}
	for _, g := range asked {
		if !storage.InGroups(g, by.Scopes) {
			return nil, fmt.Errorf("%s granting group %q: %w", by, g, ErrScopeExceeded)
		}
	}
	return asked, nil
}
