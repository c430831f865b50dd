package storage

import (
	"context"
	"slices"
	"time"
)

// DeviceMode says how a handset is used.
type DeviceMode string

// The device modes. A personal handset is one worker's (or its assigned
// users'); a shared handset is picked up by whoever starts the shift, and
// holds one worker's session at a time. ModeGroup, stored on a handset, is
// the absence of a mode of its own: it follows its group's.
const (
	ModePersonal DeviceMode = "personal"
	ModeShared   DeviceMode = "shared"
	ModeGroup    DeviceMode = ""
)

// Valid reports whether m is a mode a group may have (personal or shared).
func (m DeviceMode) Valid() bool { return m == ModePersonal || m == ModeShared }

// Group is the settings of a handset group. A group exists as a name on
// handsets whether it has settings or not; a group without them has the
// zero settings: personal handsets, no shifts.
type Group struct {
	Name string `json:"name"`
	// Mode is the mode of the group's handsets that have none of their
	// own; empty is personal.
	Mode DeviceMode `json:"mode,omitempty"`
	// Roster holds the user IDs that may pick up the group's shared
	// handsets besides the workers in the group.
	Roster []string `json:"roster,omitempty"`
	// Shifts, when set, ends every session on the group's shared handsets
	// at the end of its shift plus the grace.
	Shifts *ShiftSchedule `json:"shifts,omitempty"`
	// SuspendUnreturnedAfter, when not zero, suspends a shared handset
	// that long after it was due back (see Session.Unreturned).
	SuspendUnreturnedAfter time.Duration `json:"suspendUnreturnedAfter,omitempty"`
	UpdatedAt              time.Time     `json:"updatedAt"`
	UpdatedBy              string        `json:"updatedBy,omitempty"`
}

// ShiftSchedule is a group's working day cut into shifts: each shift runs
// from one boundary to the next, every day, in the group's time zone.
type ShiftSchedule struct {
	// TimeZone is an IANA time zone name, such as "Europe/Berlin".
	TimeZone string `json:"timeZone"`
	// Boundaries are the local times of day ("06:00", "14:00", "22:00")
	// at which one shift ends and the next begins, in order.
	Boundaries []string `json:"boundaries"`
	// Grace is how long past its shift's end a session may go on, for
	// the handover; a session opened within the grace before a boundary
	// belongs to the shift that begins there.
	Grace time.Duration `json:"grace"`
}

// Clone returns a deep copy of g.
func (g Group) Clone() Group {
	g.Roster = slices.Clone(g.Roster)
	if g.Shifts != nil {
		s := *g.Shifts
		s.Boundaries = slices.Clone(s.Boundaries)
		g.Shifts = &s
	}
	return g
}

// ModeOf is the mode a handset has: its own, or else its group's (g, the
// zero Group if it has no settings), or else personal.
func ModeOf(d Device, g Group) DeviceMode {
	switch {
	case d.Mode.Valid():
		return d.Mode
	case g.Mode.Valid():
		return g.Mode
	}
	return ModePersonal
}

// Groups persists the settings of handset groups, by name.
type Groups interface {
	// GetGroup returns the settings of the named group, or ErrNotFound if
	// it has none.
	GetGroup(ctx context.Context, name string) (Group, error)
	// ListGroups returns the settings of every group that has some, in
	// name order.
	ListGroups(ctx context.Context) ([]Group, error)
	// UpdateGroup replaces the settings of the named group with what fn
	// returns (see the package contract); fn is given Group{Name: name}
	// for a group without settings, which it thereby creates. Changing
	// the name is an error.
	UpdateGroup(ctx context.Context, name string, fn func(Group) (Group, error), opts ...WriteOption) (Group, error)
	// DeleteGroup removes the settings of the named group (its handsets
	// stay in it), or returns ErrNotFound.
	DeleteGroup(ctx context.Context, name string, opts ...WriteOption) error
}
