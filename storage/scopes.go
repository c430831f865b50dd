package storage

import (
	"context"
	"slices"
	"strings"
)

// Scopes: a manager (a user or an API key) may be limited to some handset
// groups, their Scopes. A scope S, a set of group names, holds:
//
//   - a handset whose Group is in S;
//   - a worker assigned to a handset in S (Device.AssignedUsers), or whose
//     own Scopes (the groups a scoped manager created them into) meet S.
//     Managers and admins are in no scope: a scoped manager never sees
//     another account that can manage;
//   - a session whose handset is in S, or whose user is a worker in S;
//   - an enrollment code whose Group is in S;
//   - an audit event whose Groups meet S (see Event.Groups).
//
// The empty group name is in no scope (a handset in no group is seen by
// unscoped principals only), nor is a name holding a NUL byte.
//
// Every list filter has a Groups field that selects this way: nil means no
// restriction, a non-nil empty slice nothing at all, and otherwise only what
// is in the scope Groups names. Backends filter in their query, so that
// pages stay full and cursors stay valid; each filter's Match is the
// definition they implement.

// InGroups reports whether group is one of groups, that is whether what
// belongs to group is in the scope groups names. nil groups is no
// restriction: everything is in.
func InGroups(group string, groups []string) bool {
	if groups == nil {
		return true
	}
	return ScopeGroup(group) && slices.Contains(groups, group)
}

// MeetsGroups reports whether one of have is one of groups; nil groups is
// no restriction.
func MeetsGroups(have, groups []string) bool {
	if groups == nil {
		return true
	}
	for _, g := range have {
		if ScopeGroup(g) && slices.Contains(groups, g) {
			return true
		}
	}
	return false
}

// ScopeGroup reports whether g can be in a scope: it is not empty and holds
// no NUL byte (which the embedded store's indexes use as a separator).
func ScopeGroup(g string) bool { return g != "" && !strings.ContainsRune(g, 0) }

// ScopeGroups returns the distinct names of gs that can be in a scope, sorted;
// nil when there are none.
func ScopeGroups(gs ...[]string) []string {
	var out []string
	for _, g := range gs {
		for _, name := range g {
			if ScopeGroup(name) {
				out = append(out, name)
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// DeviceInScope reports whether d is in the scope groups.
func DeviceInScope(d Device, groups []string) bool { return InGroups(d.Group, groups) }

// UserInScope reports whether u is in the scope groups, given
// handsetGroups, the groups of the handsets u is assigned to: a worker
// whose own Scopes, or one of whose handsets, are in it. With nil groups
// every user is in.
func UserInScope(u User, handsetGroups, groups []string) bool {
	if groups == nil {
		return true
	}
	return u.Role == RoleWorker && (MeetsGroups(u.Scopes, groups) || MeetsGroups(handsetGroups, groups))
}

// CodeInScope reports whether an enrollment code is in the scope groups.
func CodeInScope(c EnrollmentCode, groups []string) bool { return InGroups(c.Group, groups) }

// EventInScope reports whether an audit event is in the scope groups: one
// of the groups it was written with is (see Event.Groups).
func EventInScope(e Event, groups []string) bool { return MeetsGroups(e.Groups, groups) }

// EventGroups is the rule for Event.Groups: the groups an event's subjects
// are in when it is written, that is the group of its handset (DeviceID),
// and, if its user (UserID) is a worker, that worker's Scopes and the groups
// of the handsets assigned to them, together with the groups the caller
// gave (for subjects the store cannot see, such as an enrollment code). The
// groups of a user who is no worker are not taken: a manager's or an
// admin's own events (their sign-ins, a reset of their password) are for
// unscoped principals only, as the accounts themselves are.
//
// device is the event's handset ("" for none or a missing one); user its
// user (the zero User for none or a missing one); handsetGroups the groups
// of the handsets assigned to user. Backends call it, or do the same in
// their query, inside the write transaction.
func EventGroups(e Event, deviceGroup string, user User, handsetGroups []string) []string {
	var fromUser []string
	if user.Role == RoleWorker {
		fromUser = ScopeGroups(user.Scopes, handsetGroups)
	}
	return ScopeGroups(e.Groups, []string{deviceGroup}, fromUser)
}

// ScopeChecker answers, for one record, whether it is in a scope, in one
// cheap read and without listing: what the API needs to answer 404 for a
// record outside a manager's scope. (A device, an enrollment code or an
// event is in scope by its own fields: DeviceInScope, CodeInScope,
// EventInScope.)
type ScopeChecker interface {
	// UserInScope reports whether the user with the given ID is in the
	// scope groups (see the package's scope rules; nil groups: every user
	// is), or returns ErrNotFound when there is no such user.
	UserInScope(ctx context.Context, id string, groups []string) (bool, error)
	// SessionInScope reports whether the session with the given ID is in
	// the scope groups: its handset is, or its user is a worker in it. It
	// returns ErrNotFound when there is no such session.
	SessionInScope(ctx context.Context, id string, groups []string) (bool, error)
	// HandsetGroups returns the distinct groups of the handsets the user
	// with the given ID is assigned to, sorted (none for a user who is
	// assigned to none, or who does not exist).
	HandsetGroups(ctx context.Context, userID string) ([]string, error)
}
