package auth

import (
	"context"
	"fmt"
	"maps"
	"time"

	"tether"
	"tether/device"
	"tether/storage"
)

// Reasons a session on a shared handset ends for.
const (
	// reasonHandover: another worker logged in on the handset.
	reasonHandover = "handover"
	// reasonShiftEnded: the app ended its worker's shift.
	reasonShiftEnded = "shift_ended"
)

// ErrModeChanged refuses a login during which a manager changed its
// handset's mode: the client tries again, under the new mode.
var ErrModeChanged = tether.NewError(tether.CodeConflict, "the handset's mode changed during the login: try again")

// share prepares sess, about to be opened on dev for user, for the
// handset's mode: on a shared handset, the session is cut to its shift
// (where the group has shifts) and returned options hand the handset over
// in the session's own transaction, ending every other user's session on
// it, each with a device.handover event; handed receives how many it
// ended.
func (s *Service) share(ctx context.Context, user storage.User, dev storage.Device, sess *storage.Session, handed *int) ([]storage.WriteOption, error) {
	g, err := s.groupOf(ctx, dev)
	if err != nil {
		return nil, err
	}
	if storage.ModeOf(dev, g) != storage.ModeShared {
		return nil, nil
	}
	if g.Shifts != nil {
		end, err := device.ShiftEnd(*g.Shifts, sess.CreatedAt)
		if err != nil {
			return nil, fmt.Errorf("shift of group %q: %w", g.Name, err)
		}
		sess.ShiftEnd, sess.ShiftGrace = end, g.Shifts.Grace
		sess.ExpiresAt = minTime(sess.ExpiresAt, sess.ShiftDeadline())
	}
	base := s.event(ctx, "device.handover", "success")
	base.Actor = "user:" + user.ID
	base.UserID, base.Username, base.DeviceID, base.SessionID = user.ID, user.Username, dev.ID, sess.ID
	r := storage.Revocation{
		DeviceID: dev.ID, Except: sess.ID, ExceptUser: user.ID, Reason: reasonHandover, At: sess.CreatedAt,
		Audit: func(old storage.Session) storage.Event {
			ev := base
			ev.ID = storage.NewID(storage.PrefixEvent)
			ev.Detail = maps.Clone(base.Detail)
			if ev.Detail == nil {
				ev.Detail = map[string]string{}
			}
			ev.Detail["fromUserId"], ev.Detail["fromSessionId"] = old.UserID, old.ID
			ev.Detail["fromSince"] = old.CreatedAt.UTC().Format(time.RFC3339)
			return ev
		},
	}
	return []storage.WriteOption{storage.WithRevocation(r, handed)}, nil
}

// EndShift ends the caller's session on a handset at the end of their
// shift, the point where the handset is handed back: the session ends
// (reason shift_ended) with a shift.end event in its transaction.
func (s *Service) EndShift(ctx context.Context, id Identity) error {
	if id.Device == nil {
		return tether.Invalid("device", "no_handset", "the session is on no handset: log out instead")
	}
	ev := s.event(ctx, "shift.end", "success")
	id.Principal().Stamp(&ev)
	ev.UserID, ev.Username, ev.SessionID, ev.DeviceID = id.User.ID, id.User.Username, id.Session.ID, id.Session.DeviceID
	if !id.Session.ShiftEnd.IsZero() {
		ev.Detail = map[string]string{"shiftEnd": id.Session.ShiftEnd.UTC().Format(time.RFC3339)}
	}
	_, err := s.store.UpdateSession(ctx, id.Session.ID, func(cur storage.Session) (storage.Session, error) {
		if cur.Revoked() {
			return cur, sessionEnded(cur, s.now())
		}
		cur.RevokedAt, cur.RevokeReason = s.now().UTC(), reasonShiftEnded
		return cur, nil
	}, storage.WithEvents(ev))
	if err != nil {
		return err
	}
	s.written(ev)
	return nil
}
