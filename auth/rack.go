package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tether/device"
	"tether/storage"
)

// The states of a shared handset in its rack.
const (
	// RackFree: nobody is signed in on it.
	RackFree = "free"
	// RackInUse: a worker is signed in, within their shift.
	RackInUse = "in_use"
	// RackOverdue: a worker is still signed in past their shift's end,
	// within the grace.
	RackOverdue = "overdue"
	// RackUnreturned: the last worker's session ran to its shift's
	// deadline and nobody handed the handset back (Session.Unreturned).
	RackUnreturned = "unreturned"
)

// Slot is a shared handset in its rack: its state and who holds it.
type Slot struct {
	Device storage.Device
	// State is one of the Rack states, or the handset's status when it is
	// not enrolled ("suspended", "retired").
	State string
	// Holder is who holds the handset (in use, overdue or unreturned, or a
	// handset suspended while unreturned), or nil.
	Holder *Holder
}

// Holder is the worker who holds a shared handset.
type Holder struct {
	UserID, Username, SessionID string
	// Since is when they picked it up (their session's start).
	Since time.Time
	// ShiftEnd and Deadline are their shift's end and that plus the
	// grace; zero without shifts.
	ShiftEnd, Deadline time.Time
}

// Rack lists the shared handsets in by's scope (of group, when it is not
// empty), in ID order, each with its state and holder at the time of the
// call.
func (s *Service) Rack(ctx context.Context, by Principal, group string) ([]Slot, error) {
	groups, err := s.groupSettings(ctx)
	if err != nil {
		return nil, err
	}
	return s.rack(ctx, by.Scopes, group, groups)
}

// rack is Rack with the groups' settings read.
func (s *Service) rack(ctx context.Context, scopes []string, group string, groups map[string]storage.Group) ([]Slot, error) {
	now := s.now().UTC()
	var shared []storage.Device
	f := storage.DeviceFilter{Group: group, Groups: scopes, Limit: storage.MaxPageSize}
	for {
		page, err := s.store.ListDevices(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, d := range page.Items {
			if storage.ModeOf(d, groups[d.Group]) == storage.ModeShared {
				shared = append(shared, d)
			}
		}
		if page.Next == "" {
			break
		}
		f.After = page.Items[len(page.Items)-1].ID
	}
	return s.slots(ctx, shared, now)
}

// groupSettings reads every group's settings, by name.
func (s *Service) groupSettings(ctx context.Context) (map[string]storage.Group, error) {
	all, err := s.store.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	groups := make(map[string]storage.Group, len(all))
	for _, g := range all {
		groups[g.Name] = g
	}
	return groups, nil
}

// slots works out the state of each of the shared handsets ds at now.
func (s *Service) slots(ctx context.Context, ds []storage.Device, now time.Time) ([]Slot, error) {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	latest, err := s.store.LatestSessions(ctx, ids)
	if err != nil {
		return nil, err
	}
	userIDs := make([]string, 0, len(latest))
	for _, sess := range latest {
		userIDs = append(userIDs, sess.UserID)
	}
	usernames, err := s.store.Usernames(ctx, userIDs)
	if err != nil {
		return nil, err
	}
	out := make([]Slot, 0, len(ds))
	for _, d := range ds {
		slot := Slot{Device: d, State: RackFree}
		sess, ok := latest[d.ID]
		switch {
		case !ok:
		case sess.Live(now) && !sess.ShiftEnd.IsZero() && !now.Before(sess.ShiftEnd):
			slot.State = RackOverdue
		case sess.Live(now):
			slot.State = RackInUse
		case sess.Unreturned(now):
			slot.State = RackUnreturned
		}
		if slot.State != RackFree {
			slot.Holder = &Holder{
				UserID: sess.UserID, Username: usernames[sess.UserID], SessionID: sess.ID,
				Since: sess.CreatedAt, ShiftEnd: sess.ShiftEnd, Deadline: sess.ShiftDeadline(),
			}
		}
		if d.Status != storage.DeviceEnrolled {
			slot.State = string(d.Status)
		}
		out = append(out, slot)
	}
	return out, nil
}

// Suspender suspends a handset, as the device rules do (device.Service).
type Suspender interface {
	Suspend(ctx context.Context, by device.Actor, id, reason string) (storage.Device, error)
}

// WithSuspender lets the shift watch suspend handsets not handed back
// (Group.SuspendUnreturnedAfter); without it, it only reports them.
func WithSuspender(sp Suspender) ServiceOption {
	return func(s *Service) { s.suspender = sp }
}

// Unreturned is how many shared handsets the last shift watch found not
// handed back, for the metrics (0 before the first).
func (s *Service) Unreturned() int { return int(s.unreturned.Load()) }

// ShiftActor is the actor the shift watch acts as.
const ShiftActor = "system:shifts"

// ShiftReport says what one shift watch found and did.
type ShiftReport struct {
	// Unreturned counts the shared handsets not handed back; Noted those
	// newly found so (each with a device.unreturned event); Suspended
	// those it suspended.
	Unreturned, Noted, Suspended int
}

// WatchShifts looks at every shared handset once and counts those not
// handed back (Unreturned); each of those is noted, once, with a
// device.unreturned event (in the transaction that marks its session),
// and, where its group says so, suspended that long after its deadline.
// Of servers sharing a store, every one counts, and one at a time notes
// and suspends.
func (s *Service) WatchShifts(ctx context.Context) (ShiftReport, error) {
	var r ShiftReport
	groups, err := s.groupSettings(ctx)
	if err != nil {
		return r, err
	}
	slots, err := s.rack(ctx, nil, "", groups)
	if err != nil {
		return r, err
	}
	unreturned := slots[:0]
	for _, slot := range slots {
		if slot.State == RackUnreturned {
			unreturned = append(unreturned, slot)
		}
	}
	r.Unreturned = len(unreturned)
	s.unreturned.Store(int64(r.Unreturned))
	if len(unreturned) == 0 {
		return r, nil
	}
	if l, ok := s.store.(storage.Locker); ok {
		unlock, held, err := l.TryLock(ctx, "shift-watch")
		if err != nil || !held {
			return r, err
		}
		defer unlock()
	}
	now := s.now().UTC()
	for _, slot := range unreturned {
		h := slot.Holder
		noted, err := s.noteUnreturned(ctx, slot)
		if err != nil {
			return r, err
		}
		if noted {
			r.Noted++
		}
		after := groups[slot.Device.Group].SuspendUnreturnedAfter
		if after <= 0 || s.suspender == nil || now.Before(h.Deadline.Add(after)) {
			continue
		}
		reason := fmt.Sprintf("not handed back: %s's shift ended %s", nameOr(h.Username, h.UserID), h.ShiftEnd.Format(time.RFC3339))
		if _, err := s.suspender.Suspend(ctx, device.Actor{Name: ShiftActor}, slot.Device.ID, reason); err != nil {
			if errors.Is(err, device.ErrInvalidTransition) || errors.Is(err, storage.ErrNotFound) {
				continue
			}
			return r, err
		}
		r.Suspended++
	}
	return r, nil
}

// noteUnreturned marks the session of an unreturned slot as noted, with
// its device.unreturned event, unless it was noted already.
func (s *Service) noteUnreturned(ctx context.Context, slot Slot) (bool, error) {
	h := slot.Holder
	ev := s.event(ctx, "device.unreturned", "success")
	ev.Actor, ev.UserID, ev.Username, ev.DeviceID, ev.SessionID = ShiftActor, h.UserID, h.Username, slot.Device.ID, h.SessionID
	ev.Detail = map[string]string{"shiftEnd": h.ShiftEnd.Format(time.RFC3339), "deadline": h.Deadline.Format(time.RFC3339)}
	_, err := s.store.UpdateSession(ctx, h.SessionID, func(cur storage.Session) (storage.Session, error) {
		if !cur.UnreturnedAt.IsZero() {
			return cur, errNoted
		}
		cur.UnreturnedAt = s.now().UTC()
		return cur, nil
	}, storage.WithEvents(ev))
	switch {
	case errors.Is(err, errNoted), errors.Is(err, storage.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	s.written(ev)
	return true, nil
}

var errNoted = errors.New("already noted")

func nameOr(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// RunShiftWatch watches the shared handsets every interval until ctx is
// done.
func (s *Service) RunShiftWatch(ctx context.Context, every time.Duration) {
	runEvery(ctx, every, func() {
		r, err := s.WatchShifts(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("shift watch failed", "error", err)
		case r.Noted+r.Suspended > 0:
			s.log.Info("shared handsets not handed back", "unreturned", r.Unreturned, "noted", r.Noted, "suspended", r.Suspended)
		}
	})
}
