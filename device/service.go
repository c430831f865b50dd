// Package device holds the rules about handsets: the payload a handset sends
// and how it is validated and normalised, the Android release table, and the
// lifecycle a manager drives (register, edit, suspend, retire, reinstate).
package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"

	"tether"
	"tether/storage"
)

// Store is the persistence the device service needs.
type Store interface {
	storage.Devices
	storage.Groups
	// GetUser and GetUserByUsername resolve assigned users; Usernames
	// names them.
	GetUser(ctx context.Context, id string) (storage.User, error)
	GetUserByUsername(ctx context.Context, name string) (storage.User, error)
	Usernames(ctx context.Context, ids []string) (map[string]string, error)
	// UserInScope tells whether a user may be assigned by a scoped
	// manager (see storage.ScopeChecker).
	UserInScope(ctx context.Context, id string, groups []string) (bool, error)
}

// Actor is who asks the device rules for something: the name records and
// the audit trail give them, the handset groups they are limited to (nil:
// the whole fleet; see the scope rules in storage/scopes.go), and how they
// signed in, for the audit trail.
type Actor struct {
	Name   string
	Scopes []string
	AMR    []string
}

// event starts an audit event of the actor's.
func (a Actor) event(ctx context.Context, t time.Time, action string) storage.Event {
	ev := storage.NewEvent(ctx, t, action, "success", a.Name)
	ev.ActorScopes, ev.ActorAMR = slices.Clone(a.Scopes), slices.Clone(a.AMR)
	return ev
}

// ErrScopeExceeded is returned when a scoped manager names a group outside
// their scope: a handset's new group, an enrollment code's, a worker's.
// It is no leak: the caller named the group.
var ErrScopeExceeded = tether.NewError(tether.CodeScopeExceeded, "that group is outside the groups you manage")

// notFound is the answer for a record outside the caller's scope: the
// same as for one that does not exist.
func notFound(kind, ref string) error {
	return fmt.Errorf("%s %s: %w", kind, ref, storage.ErrNotFound)
}

// ScopedGroup returns the group a scoped actor's new record goes into:
// group itself, or, when none is given and the scope is a single group,
// that group. It returns a *tether.ValidationError for field when none is
// given and the scope has several groups, and ErrScopeExceeded for a group
// outside the scope. With nil scopes group is returned as it is.
func ScopedGroup(field, group string, scopes []string) (string, error) {
	if scopes == nil {
		return group, nil
	}
	if group == "" {
		if len(scopes) == 1 {
			return scopes[0], nil
		}
		return "", tether.Invalid(field, field+"_required", "name a group: you manage several")
	}
	if !storage.InGroups(group, scopes) {
		return "", fmt.Errorf("group %q: %w", group, ErrScopeExceeded)
	}
	return group, nil
}

// ErrInvalidTransition is returned for a lifecycle change the device's
// status does not allow, such as suspending a retired handset.
var ErrInvalidTransition = tether.NewError(tether.CodeConflict,
	"the device's status does not allow this change: a retired device must be reinstated first")

// Limits on what managers write about a device.
const (
	MaxLabel         = 64
	MaxGroup         = 64
	MaxReason        = 256
	MaxNotes         = 500
	MaxAssignedUsers = 100
)

// Service applies the device rules on top of a Store.
type Service struct {
	store    Store
	validate *validator.Validate
	now      func() time.Time
	// imports holds a token for each import under way (ImportFile).
	imports chan struct{}
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock; tests use it to pin time.
func WithClock(now func() time.Time) Option {
	return func(s *Service) { s.now = now }
}

// WithImportSlots sets how many imports ImportFile runs at once
// (DefaultImportSlots); n below 1 counts as 1.
func WithImportSlots(n int) Option {
	return func(s *Service) { s.imports = make(chan struct{}, max(1, n)) }
}

// NewService returns a Service. v must have the device rules registered
// (RegisterValidations).
func NewService(store Store, v *validator.Validate, opts ...Option) *Service {
	s := &Service{store: store, validate: v, now: time.Now, imports: make(chan struct{}, DefaultImportSlots)}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Registration is a manager's request to register a handset. Only the IMEI
// is required; whatever else of the payload is given must be valid.
type Registration struct {
	Payload
	Label string
	Group string
	// AssignedUsers are usernames or user IDs; empty lets any worker use
	// the handset.
	AssignedUsers []string
	// Notes is free text about the handset, on one line.
	Notes string
	// Mode is "personal", "shared", or "group" or empty: its group's.
	Mode string
}

// Register validates and stores a new handset. It returns a
// *tether.ValidationError naming every bad field, or a *storage.ConflictError
// when the IMEI is already registered. A scoped actor registers handsets
// into a group of their scope: the one given (ErrScopeExceeded for one
// outside it), or their only group when none is given; a scope of several
// groups must name one.
func (s *Service) Register(ctx context.Context, by Actor, r Registration) (storage.Device, error) {
	actor := by.Name
	r.Payload.Normalize()
	r.Label = strings.TrimSpace(r.Label)
	r.Group = strings.TrimSpace(r.Group)
	r.Notes = strings.TrimSpace(r.Notes)
	var gerr *tether.ValidationError
	g, err := ScopedGroup("group", r.Group, by.Scopes)
	switch {
	case errors.As(err, &gerr):
	case err != nil:
		return storage.Device{}, err
	default:
		r.Group = g
	}

	var verr *tether.ValidationError
	if err := Validate(s.validate, r.Payload, "", false); err != nil {
		if !errors.As(err, &verr) {
			return storage.Device{}, err
		}
	}
	ids, uerr, err := s.resolveUsers(ctx, r.AssignedUsers, by.Scopes)
	if err != nil {
		return storage.Device{}, err
	}
	now := s.now().UTC()
	// A key given at registration is the manager's word for it: the
	// handset proves it holds the key at its first use.
	var key *storage.DeviceKey
	var kerr *tether.ValidationError
	if r.Payload.OffersKey() {
		if len(r.Payload.Attestation) > 0 {
			kerr = tether.Invalid("attestation", "attestation_at_enrollment", "a key attestation is checked when the handset enrolls itself or logs in, not at registration")
		} else if key, _, err = KeyOf(r.Payload.PublicKey, actor, now); err != nil && !errors.As(err, &kerr) {
			return storage.Device{}, err
		}
	}
	var mode storage.DeviceMode
	var merr *tether.ValidationError
	if r.Mode != "" {
		mode, merr = ParseMode("mode", r.Mode)
	}
	if all := tether.Join(verr, checkText("label", r.Label, MaxLabel), checkText("group", r.Group, MaxGroup),
		checkText("notes", r.Notes, MaxNotes), uerr, kerr, gerr, merr); all != nil {
		return storage.Device{}, all
	}

	d := storage.Device{
		ID:            storage.NewID(storage.PrefixDevice),
		Status:        storage.DeviceEnrolled,
		Label:         r.Label,
		Group:         r.Group,
		Mode:          mode,
		AssignedUsers: ids,
		Notes:         r.Notes,
		EnrolledAt:    now,
		EnrolledBy:    actor,
		UpdatedAt:     now,
		Key:           key,
	}
	Apply(&d, r.Payload)
	ev := by.event(ctx, now, "device.register")
	ev.DeviceID = d.ID
	if err := s.store.CreateDevice(ctx, d, storage.WithEvents(ev)); err != nil {
		return storage.Device{}, fmt.Errorf("register device: %w", err)
	}
	return d, nil
}

// Apply copies what a validated payload says onto a device record: the
// fields it carries, leaving the others as they are.
func Apply(d *storage.Device, p Payload) {
	d.IMEI = p.IMEI
	if p.HasIccCard != nil {
		v := *p.HasIccCard
		d.HasIccCard = &v
	}
	if p.IccIDs != nil {
		d.IccIDs = append([]string(nil), p.IccIDs...)
	}
	if p.OSVersion != nil {
		d.OSAPI, d.OSName = p.OSVersion.API, p.OSVersion.Name
	}
	if p.DeviceInfo != nil {
		d.Manufacturer, d.Model = p.DeviceInfo.Manufacturer, p.DeviceInfo.Model
	}
	if p.AppVersion != nil {
		d.AppVersion = *p.AppVersion
	}
}

// Find returns the device a reference names: a device ID ("dev_…") or an
// IMEI, with or without separators. It returns an error wrapping
// storage.ErrNotFound when there is none, or when it is outside the
// scope of a scoped actor.
func (s *Service) Find(ctx context.Context, by Actor, ref string) (storage.Device, error) {
	var (
		d   storage.Device
		err error
	)
	if strings.HasPrefix(ref, storage.PrefixDevice) {
		d, err = s.store.GetDevice(ctx, ref)
	} else {
		d, err = s.store.GetDeviceByIMEI(ctx, stripSeparators(ref))
	}
	if err != nil {
		return storage.Device{}, err
	}
	if !storage.DeviceInScope(d, by.Scopes) {
		return storage.Device{}, notFound("device", ref)
	}
	return d, nil
}

// resolve turns a reference (a device id or an IMEI) into a device id. A
// device found by IMEI outside scopes is not found, as a missing one; one
// named by id is checked by the write that follows.
func (s *Service) resolve(ctx context.Context, ref string, scopes []string) (string, error) {
	if strings.HasPrefix(ref, storage.PrefixDevice) {
		return ref, nil
	}
	d, err := s.store.GetDeviceByIMEI(ctx, stripSeparators(ref))
	if err != nil {
		return "", err
	}
	if !storage.DeviceInScope(d, scopes) {
		return "", notFound("device", ref)
	}
	return d.ID, nil
}

// List returns one page of the devices in by's scope (whatever f.Groups
// says). f.AssignedUser may be a username or a user ID: a user's handsets
// are those assigned to them by name (not those any worker may use); a
// username of no user has none.
func (s *Service) List(ctx context.Context, by Actor, f storage.DeviceFilter) (storage.Page[storage.Device], error) {
	f.Groups = by.Scopes
	if f.Status != "" && !f.Status.Valid() {
		return storage.Page[storage.Device]{}, tether.Invalid("status", "status_invalid",
			"status must be enrolled, suspended or retired")
	}
	if f.AssignedUser != "" && !strings.HasPrefix(f.AssignedUser, storage.PrefixUser) {
		u, err := s.store.GetUserByUsername(ctx, f.AssignedUser)
		if errors.Is(err, storage.ErrNotFound) {
			return storage.Page[storage.Device]{Items: []storage.Device{}}, nil
		}
		if err != nil {
			return storage.Page[storage.Device]{}, err
		}
		f.AssignedUser = u.ID
	}
	return s.store.ListDevices(ctx, f)
}

// Names returns the IMEIs and labels of the devices with the given ids, in
// one read; ids of no device are left out.
func (s *Service) Names(ctx context.Context, ids []string) (map[string]storage.DeviceName, error) {
	return s.store.DeviceNames(ctx, ids)
}

// Patch is a manager's edit of a device. Nil fields are left as they are; an
// empty label, group or notes clears it.
type Patch struct {
	Label         *string
	Group         *string
	AssignedUsers *[]string
	Notes         *string
	// Mode is "personal", "shared" or "group" (its group's).
	Mode *string
	// PublicKey replaces the handset's key with this public JWK, or, as
	// JSON null, removes it (the handset may then enroll a new one at its
	// next login). Either way its sessions end: they were bound to the old
	// key.
	PublicKey *json.RawMessage
}

// Update applies a Patch to the device ref names (its id or IMEI). A
// scoped actor edits only the devices in their scope (others are not
// found) and moves them only to a group of their scope (ErrScopeExceeded
// otherwise, before anything is read).
func (s *Service) Update(ctx context.Context, by Actor, ref string, p Patch) (storage.Device, error) {
	actor := by.Name
	if p.Group != nil && by.Scopes != nil {
		if !storage.InGroups(strings.TrimSpace(*p.Group), by.Scopes) {
			return storage.Device{}, fmt.Errorf("moving %s to %q: %w", ref, strings.TrimSpace(*p.Group), ErrScopeExceeded)
		}
	}
	id, err := s.resolve(ctx, ref, by.Scopes)
	if err != nil {
		return storage.Device{}, err
	}
	var errs []*tether.ValidationError
	if p.Label != nil {
		v := strings.TrimSpace(*p.Label)
		p.Label = &v
		errs = append(errs, checkText("label", v, MaxLabel))
	}
	if p.Group != nil {
		v := strings.TrimSpace(*p.Group)
		p.Group = &v
		errs = append(errs, checkText("group", v, MaxGroup))
	}
	if p.Notes != nil {
		v := strings.TrimSpace(*p.Notes)
		p.Notes = &v
		errs = append(errs, checkText("notes", v, MaxNotes))
	}
	var mode storage.DeviceMode
	if p.Mode != nil {
		var merr *tether.ValidationError
		mode, merr = ParseMode("mode", *p.Mode)
		errs = append(errs, merr)
	}
	var ids []string
	if p.AssignedUsers != nil {
		var uerr *tether.ValidationError
		ids, uerr, err = s.resolveUsers(ctx, *p.AssignedUsers, by.Scopes)
		if err != nil {
			return storage.Device{}, err
		}
		errs = append(errs, uerr)
	}
	if all := tether.Join(errs...); all != nil {
		return storage.Device{}, all
	}
	var key *storage.DeviceKey
	events := []storage.Event{by.event(ctx, s.now(), "device.update")}
	var opts []storage.WriteOption
	if p.PublicKey != nil {
		if string(*p.PublicKey) != "null" {
			var err error
			if key, _, err = KeyOf(*p.PublicKey, actor, s.now()); err != nil {
				return storage.Device{}, err
			}
		}
		ev := by.event(ctx, s.now(), "device.key_replaced")
		if key == nil {
			ev.Action = "device.key_cleared"
		} else {
			ev.Detail = map[string]string{"thumbprint": key.Thumbprint}
		}
		events = append(events, ev)
		opts = append(opts, storage.WithRevocation(storage.Revocation{DeviceID: id, Reason: "device_key_replaced", At: s.now().UTC()}, nil))
	}
	for i := range events {
		events[i].DeviceID = id
	}
	return s.store.UpdateDevice(ctx, id, func(d storage.Device) (storage.Device, error) {
		// Checked in the write itself, so a handset moved out of scope
		// meanwhile is not changed.
		if !storage.DeviceInScope(d, by.Scopes) {
			return d, notFound("device", ref)
		}
		if p.PublicKey != nil {
			d.Key = key
		}
		if p.Label != nil {
			d.Label = *p.Label
		}
		if p.Group != nil {
			d.Group = *p.Group
		}
		if p.AssignedUsers != nil {
			d.AssignedUsers = ids
		}
		if p.Notes != nil {
			d.Notes = *p.Notes
		}
		if p.Mode != nil {
			d.Mode = mode
		}
		d.UpdatedAt = s.now().UTC()
		return d, nil
	}, append(opts, storage.WithEvents(events...))...)
}

// Suspend stops a handset from logging in, as when it is lost. Suspending a
// suspended handset changes nothing; a retired one cannot be suspended.
// Suspend, Retire and Reinstate take the device's id or IMEI.
func (s *Service) Suspend(ctx context.Context, by Actor, id, reason string) (storage.Device, error) {
	return s.transition(ctx, by, id, storage.DeviceSuspended, reason)
}

// Retire takes a handset out of service for good (it can still be
// reinstated, as when it was retired by mistake).
func (s *Service) Retire(ctx context.Context, by Actor, id, reason string) (storage.Device, error) {
	return s.transition(ctx, by, id, storage.DeviceRetired, reason)
}

// Reinstate returns a suspended or retired handset to service.
func (s *Service) Reinstate(ctx context.Context, by Actor, id, reason string) (storage.Device, error) {
	return s.transition(ctx, by, id, storage.DeviceEnrolled, reason)
}

// CanTransition reports whether a device in status from may be moved to
// status to. Moving to the status it has is allowed and changes nothing.
func CanTransition(from, to storage.DeviceStatus) bool {
	if from == to {
		return true
	}
	switch to {
	case storage.DeviceSuspended:
		return from == storage.DeviceEnrolled
	case storage.DeviceRetired:
		return from == storage.DeviceEnrolled || from == storage.DeviceSuspended
	case storage.DeviceEnrolled:
		return from == storage.DeviceSuspended || from == storage.DeviceRetired
	}
	return false
}

func (s *Service) transition(ctx context.Context, by Actor, ref string, to storage.DeviceStatus, reason string) (storage.Device, error) {
	actor := by.Name
	reason = strings.TrimSpace(reason)
	if verr := checkText("reason", reason, MaxReason); verr != nil {
		return storage.Device{}, verr
	}
	id, err := s.resolve(ctx, ref, by.Scopes)
	if err != nil {
		return storage.Device{}, err
	}
	now := s.now().UTC()
	action := map[storage.DeviceStatus]string{
		storage.DeviceSuspended: "device.suspend", storage.DeviceRetired: "device.retire", storage.DeviceEnrolled: "device.reinstate",
	}[to]
	ev := by.event(ctx, now, action)
	ev.DeviceID, ev.Reason = id, reason
	opts := []storage.WriteOption{storage.WithEvents(ev)}
	if to != storage.DeviceEnrolled {
		// A handset out of service loses every session on it, in the
		// same transaction as its status.
		opts = append(opts, storage.WithRevocation(storage.Revocation{
			DeviceID: id, Reason: "device_" + string(to), At: now,
		}, nil))
	}
	return s.store.UpdateDevice(ctx, id, func(d storage.Device) (storage.Device, error) {
		if !storage.DeviceInScope(d, by.Scopes) {
			return d, notFound("device", ref)
		}
		if !CanTransition(d.Status, to) {
			return d, fmt.Errorf("device %s is %s, cannot become %s: %w", d.ID, d.Status, to, ErrInvalidTransition)
		}
		if d.Status == to {
			return d, nil
		}
		d.Status = to
		d.StatusReason = reason
		d.StatusChangedAt = now
		d.StatusChangedBy = actor
		d.UpdatedAt = now
		return d, nil
	}, opts...)
}

// AssignedUsernames returns the usernames of a device's assigned users, in
// order. A user that no longer exists shows as its ID. names, if not nil,
// remembers usernames across calls (for a list of devices; see
// LearnUsernames).
func (s *Service) AssignedUsernames(ctx context.Context, d storage.Device, names map[string]string) ([]string, error) {
	var missing []string
	for _, id := range d.AssignedUsers {
		if _, ok := names[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		found, err := s.store.Usernames(ctx, missing)
		if err != nil {
			return nil, err
		}
		if names == nil {
			names = found
		} else {
			for id, name := range found {
				names[id] = name
			}
		}
	}
	out := make([]string, 0, len(d.AssignedUsers))
	for _, id := range d.AssignedUsers {
		name, ok := names[id]
		if !ok {
			name = id
		}
		out = append(out, name)
	}
	return out, nil
}

// LearnUsernames reads, in one go, the usernames of the users assigned to
// any of devices into names, for AssignedUsernames to find. A user that no
// longer exists gets its ID as its name (as it does when a store error
// ends the reading).
func (s *Service) LearnUsernames(ctx context.Context, devices []storage.Device, names map[string]string) error {
	var ids []string
	for _, d := range devices {
		for _, id := range d.AssignedUsers {
			if _, known := names[id]; !known {
				names[id] = id // until the store says otherwise; asked once
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	found, err := s.store.Usernames(ctx, ids)
	if err != nil {
		return err
	}
	for id, name := range found {
		names[id] = name
	}
	return nil
}

// resolveUsers turns usernames or user IDs into user IDs, with a field error
// for each that names no user, or, for a scoped actor (scopes not nil), a
// user outside the scope: a scoped manager cannot draw someone else's
// worker into their scope by assigning them a handset. Duplicates are
// dropped.
func (s *Service) resolveUsers(ctx context.Context, refs []string, scopes []string) ([]string, *tether.ValidationError, error) {
	return s.resolveUsersOf(ctx, "assignedUsers", refs, scopes)
}

// resolveUsersOf is resolveUsers for the list named field.
func (s *Service) resolveUsersOf(ctx context.Context, field string, refs []string, scopes []string) ([]string, *tether.ValidationError, error) {
	if len(refs) > MaxAssignedUsers {
		if field == "assignedUsers" {
			return nil, tether.Invalid(field, "assigned_users_too_many", fmt.Sprintf("at most %d assigned users", MaxAssignedUsers)), nil
		}
		return nil, tether.Invalid(field, field+"_too_many", fmt.Sprintf("at most %d users", MaxAssignedUsers)), nil
	}
	var ids []string
	verr := &tether.ValidationError{}
	seen := map[string]bool{}
	for i, ref := range refs {
		ref = strings.TrimSpace(ref)
		field := fmt.Sprintf("%s[%d]", field, i)
		if ref == "" || len(ref) > 256 {
			verr.Fields = append(verr.Fields, tether.FieldError{Field: field, Code: "user_unknown", Message: "no such user"})
			continue
		}
		var u storage.User
		var err error
		if strings.HasPrefix(ref, storage.PrefixUser) {
			u, err = s.store.GetUser(ctx, ref)
		} else {
			u, err = s.store.GetUserByUsername(ctx, ref)
		}
		if err == nil && scopes != nil {
			var in bool
			if in, err = s.store.UserInScope(ctx, u.ID, scopes); err == nil && !in {
				err = notFound("user", ref)
			}
		}
		if errors.Is(err, storage.ErrNotFound) {
			verr.Fields = append(verr.Fields, tether.FieldError{Field: field, Code: "user_unknown",
				Message: fmt.Sprintf("no user %q", ref)})
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if !seen[u.ID] {
			seen[u.ID] = true
			ids = append(ids, u.ID)
		}
	}
	if len(verr.Fields) > 0 {
		return nil, verr, nil
	}
	return ids, nil, nil
}

// checkText checks a free-text field a manager sets: at most max printable
// characters, and empty is allowed.
func checkText(field, v string, max int) *tether.ValidationError {
	if utf8.RuneCountInString(v) > max {
		return tether.Invalid(field, field+"_length", fmt.Sprintf("%s must be at most %d characters", field, max))
	}
	if !tether.Printable(v) {
		return tether.Invalid(field, field+"_chars", field+" must be printable text")
	}
	return nil
}
