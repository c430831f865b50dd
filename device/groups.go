package device

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"tether"
	"tether/storage"
)

// MaxSuspendUnreturnedAfter caps how long a group waits before it
// suspends a handset not handed back.
const MaxSuspendUnreturnedAfter = 30 * 24 * time.Hour

// ParseMode reads a handset's mode as managers write it: "personal",
// "shared", or "group" (no mode of its own: its group's). field names it
// in the error.
func ParseMode(field, v string) (storage.DeviceMode, *tether.ValidationError) {
	switch strings.TrimSpace(v) {
	case "personal":
		return storage.ModePersonal, nil
	case "shared":
		return storage.ModeShared, nil
	case "group":
		return storage.ModeGroup, nil
	}
	return "", tether.Invalid(field, "mode_invalid", `mode is "personal", "shared" or "group" (the group's mode)`)
}

// GroupSettings is a manager's replacement of a group's settings: every
// field is set as given (a nil Shifts removes the shifts).
type GroupSettings struct {
	// Mode is "personal" or "shared": the mode of the group's handsets
	// that have none of their own. Empty is personal.
	Mode string
	// Roster are usernames or user IDs who may pick up the group's shared
	// handsets besides the group's workers.
	Roster []string
	Shifts *storage.ShiftSchedule
	// SuspendUnreturnedAfter, when not zero, suspends a shared handset not
	// handed back that long after its shift's deadline.
	SuspendUnreturnedAfter time.Duration
}

// checkGroupName checks a group's name as a path or a form gives it.
func checkGroupName(name string) error {
	if name == "" || name != strings.TrimSpace(name) {
		return tether.Invalid("name", "name_invalid", "a group's name, without surrounding spaces")
	}
	if err := checkText("name", name, MaxGroup); err != nil {
		return err
	}
	if !storage.ScopeGroup(name) {
		return tether.Invalid("name", "name_invalid", "not a group's name")
	}
	return nil
}

// GetGroup returns the settings of the named group in by's scope: the
// zero settings, with the name, for a group that has none. A group
// outside the scope is not found.
func (s *Service) GetGroup(ctx context.Context, by Actor, name string) (storage.Group, error) {
	if err := checkGroupName(name); err != nil {
		return storage.Group{}, err
	}
	if by.Scopes != nil && !storage.InGroups(name, by.Scopes) {
		return storage.Group{}, notFound("group", name)
	}
	g, err := s.store.GetGroup(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Group{Name: name}, nil
	}
	return g, err
}

// Groups returns the groups in by's scope, in name order: those with
// settings and those handsets are in, the latter with the zero settings
// (with the name) when they have none.
func (s *Service) Groups(ctx context.Context, by Actor) ([]storage.Group, error) {
	all, err := s.store.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	names, err := s.store.DeviceGroups(ctx)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]storage.Group, len(all)+len(names))
	for _, g := range all {
		byName[g.Name] = g
	}
	for _, n := range names {
		if _, ok := byName[n]; !ok {
			byName[n] = storage.Group{Name: n}
		}
	}
	groups := make([]storage.Group, 0, len(byName))
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		if by.Scopes == nil || storage.InGroups(n, by.Scopes) {
			groups = append(groups, byName[n])
		}
	}
	return groups, nil
}

// SetGroup replaces the settings of the named group, in by's scope
// (ErrScopeExceeded outside it: the caller named the group), with a
// group.update event. It returns a *tether.ValidationError naming every
// bad field. Sessions open on the group's handsets keep the shift they
// were opened in; the next login follows the new settings.
func (s *Service) SetGroup(ctx context.Context, by Actor, name string, set GroupSettings) (storage.Group, error) {
	if err := checkGroupName(name); err != nil {
		return storage.Group{}, err
	}
	if by.Scopes != nil && !storage.InGroups(name, by.Scopes) {
		return storage.Group{}, fmt.Errorf("settings of group %q: %w", name, ErrScopeExceeded)
	}
	var errs []*tether.ValidationError
	mode := storage.ModePersonal
	switch strings.TrimSpace(set.Mode) {
	case "", "personal":
	case "shared":
		mode = storage.ModeShared
	default:
		errs = append(errs, tether.Invalid("mode", "mode_invalid", `a group's mode is "personal" or "shared"`))
	}
	roster, rerr, err := s.resolveUsersOf(ctx, "roster", set.Roster, by.Scopes)
	if err != nil {
		return storage.Group{}, err
	}
	errs = append(errs, rerr)
	if set.Shifts != nil {
		var verr *tether.ValidationError
		if err := CheckShifts(*set.Shifts); errors.As(err, &verr) {
			errs = append(errs, verr)
		}
	}
	if set.SuspendUnreturnedAfter < 0 || set.SuspendUnreturnedAfter > MaxSuspendUnreturnedAfter {
		errs = append(errs, tether.Invalid("suspendUnreturnedAfterMinutes", "out_of_range",
			fmt.Sprintf("from 0 (never) to %d minutes", int(MaxSuspendUnreturnedAfter/time.Minute))))
	}
	if all := tether.Join(errs...); all != nil {
		return storage.Group{}, all
	}
	now := s.now().UTC()
	ev := by.event(ctx, now, "group.update")
	ev.Groups = []string{name}
	ev.Detail = map[string]string{"group": name, "mode": string(mode)}
	if set.Shifts != nil {
		ev.Detail["shifts"] = set.Shifts.TimeZone + " " + strings.Join(set.Shifts.Boundaries, ",")
	}
	return s.store.UpdateGroup(ctx, name, func(storage.Group) (storage.Group, error) {
		g := storage.Group{
			Name: name, Mode: mode, Roster: roster, SuspendUnreturnedAfter: set.SuspendUnreturnedAfter,
			UpdatedAt: now, UpdatedBy: by.Name,
		}
		if set.Shifts != nil {
			sh := *set.Shifts
			g.Shifts = &sh
		}
		return g.Clone(), nil
	}, storage.WithEvents(ev))
}

// DeleteGroup removes the settings of the named group in by's scope (its
// handsets stay in it, personal unless they have a mode of their own),
// with a group.delete event; not found for a group without settings or
// outside the scope.
func (s *Service) DeleteGroup(ctx context.Context, by Actor, name string) error {
	if err := checkGroupName(name); err != nil {
		return err
	}
	if by.Scopes != nil && !storage.InGroups(name, by.Scopes) {
		return notFound("group", name)
	}
	ev := by.event(ctx, s.now(), "group.delete")
	ev.Groups = []string{name}
	ev.Detail = map[string]string{"group": name}
	return s.store.DeleteGroup(ctx, name, storage.WithEvents(ev))
}

// Modes returns the mode each of devices has (storage.ModeOf), reading
// the settings of their groups once.
func (s *Service) Modes(ctx context.Context, devices []storage.Device) (map[string]storage.DeviceMode, error) {
	groups := map[string]storage.Group{}
	need := false
	for _, d := range devices {
		if !d.Mode.Valid() && d.Group != "" {
			need = true
			break
		}
	}
	if need {
		all, err := s.store.ListGroups(ctx)
		if err != nil {
			return nil, err
		}
		for _, g := range all {
			groups[g.Name] = g
		}
	}
	modes := make(map[string]storage.DeviceMode, len(devices))
	for _, d := range devices {
		modes[d.ID] = storage.ModeOf(d, groups[d.Group])
	}
	return modes, nil
}
