package api

import (
	"context"
	"net/url"
	"time"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/device"
	"tether/storage"
)

// groupView is a group's settings as the API shows them.
type groupView struct {
	Name string `json:"name"`
	// HasSettings says whether a manager gave the group settings; a group
	// without them, one handsets are in, has the defaults.
	HasSettings bool `json:"hasSettings"`
	// Mode is the mode of the group's handsets that have none of their
	// own: "personal" or "shared".
	Mode string `json:"mode"`
	// Roster names, by username, who may pick up the group's shared
	// handsets besides its workers.
	Roster                        []string    `json:"roster"`
	Shifts                        *shiftsView `json:"shifts"`
	SuspendUnreturnedAfterMinutes int         `json:"suspendUnreturnedAfterMinutes"`
	UpdatedAt                     timestamp   `json:"updatedAt,omitzero"`
	UpdatedBy                     string      `json:"updatedBy,omitempty"`
	// UpdatedByName names that actor, as audit events do.
	UpdatedByName string `json:"updatedByName,omitempty"`
}

// shiftsView is a shift schedule as the API shows and takes it.
type shiftsView struct {
	TimeZone     string   `json:"timeZone"`
	Boundaries   []string `json:"boundaries"`
	GraceMinutes int      `json:"graceMinutes"`
}

// groupViews shows groups, their rosters by username.
func (s *server) groupViews(ctx context.Context, gs []storage.Group) ([]groupView, error) {
	var ids, actors []string
	for _, g := range gs {
		ids = append(ids, g.Roster...)
		actors = append(actors, g.UpdatedBy)
	}
	n := s.names()
	if err := n.learn(ctx, ids, nil, actors); err != nil {
		return nil, err
	}
	out := make([]groupView, 0, len(gs))
	for _, g := range gs {
		v := groupView{
			Name: g.Name, HasSettings: !g.UpdatedAt.IsZero(), Mode: string(storage.ModePersonal), Roster: make([]string, 0, len(g.Roster)),
			SuspendUnreturnedAfterMinutes: int(g.SuspendUnreturnedAfter / time.Minute),
			UpdatedAt:                     stamp(g.UpdatedAt), UpdatedBy: g.UpdatedBy, UpdatedByName: n.actor(g.UpdatedBy),
		}
		if g.Mode.Valid() {
			v.Mode = string(g.Mode)
		}
		for _, id := range g.Roster {
			if name := n.users[id]; name != "" {
				v.Roster = append(v.Roster, name)
			} else {
				v.Roster = append(v.Roster, id)
			}
		}
		if g.Shifts != nil {
			v.Shifts = &shiftsView{TimeZone: g.Shifts.TimeZone, Boundaries: g.Shifts.Boundaries, GraceMinutes: int(g.Shifts.Grace / time.Minute)}
		}
		out = append(out, v)
	}
	return out, nil
}

// listGroups is GET /v1/groups: the groups in the caller's scope, those
// with settings and those handsets are in.
func (s *server) listGroups(c *fiber.Ctx) error {
	gs, err := s.Devices.Groups(c.UserContext(), principal(c).Device())
	if err != nil {
		return err
	}
	views, err := s.groupViews(c.UserContext(), gs)
	if err != nil {
		return err
	}
	return s.respond(c, fiber.StatusOK, listView[groupView]{Items: views}, xmlNames("groups", "group"))
}

// groupName is the {name} of a group's path, unescaped: group names may
// hold spaces and any other printable text.
func groupName(c *fiber.Ctx) (string, error) {
	name, err := url.PathUnescape(param(c, "name"))
	if err != nil {
		return "", tether.Invalid("name", "name_invalid", "the group's name is not escaped properly")
	}
	return name, nil
}

// getGroup is GET /v1/groups/{name}: a group without settings has the
// defaults.
func (s *server) getGroup(c *fiber.Ctx) error {
	name, err := groupName(c)
	if err != nil {
		return err
	}
	g, err := s.Devices.GetGroup(c.UserContext(), principal(c).Device(), name)
	if err != nil {
		return err
	}
	return s.sendGroup(c, g)
}

func (s *server) sendGroup(c *fiber.Ctx, g storage.Group) error {
	views, err := s.groupViews(c.UserContext(), []storage.Group{g})
	if err != nil {
		return err
	}
	return s.respond(c, fiber.StatusOK, views[0], xmlNames("group", "item"))
}

type putGroupRequest struct {
	Mode                          string      `json:"mode"`
	Roster                        []string    `json:"roster"`
	Shifts                        *shiftsView `json:"shifts"`
	SuspendUnreturnedAfterMinutes int         `json:"suspendUnreturnedAfterMinutes"`
}

// putGroup is PUT /v1/groups/{name}: the group's settings replaced by
// the body's (a member left out takes its default).
func (s *server) putGroup(c *fiber.Ctx) error {
	name, err := groupName(c)
	if err != nil {
		return err
	}
	var req putGroupRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	set := device.GroupSettings{
		Mode: req.Mode, Roster: req.Roster,
		SuspendUnreturnedAfter: minutes(req.SuspendUnreturnedAfterMinutes),
	}
	if req.Shifts != nil {
		set.Shifts = &storage.ShiftSchedule{TimeZone: req.Shifts.TimeZone, Boundaries: req.Shifts.Boundaries, Grace: minutes(req.Shifts.GraceMinutes)}
	}
	g, err := s.Devices.SetGroup(c.UserContext(), principal(c).Device(), name, set)
	if err != nil {
		return err
	}
	return s.sendGroup(c, g)
}

// minutes is n minutes, saturated so that a huge n stays out of range
// rather than wrapping into it.
func minutes(n int) time.Duration {
	const most = int(1<<62) / int(time.Minute)
	switch {
	case n > most:
		n = most
	case n < -most:
		n = -most
	}
	return time.Duration(n) * time.Minute
}

// deleteGroup is DELETE /v1/groups/{name}.
func (s *server) deleteGroup(c *fiber.Ctx) error {
	name, err := groupName(c)
	if err != nil {
		return err
	}
	if err := s.Devices.DeleteGroup(c.UserContext(), principal(c).Device(), name); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// rackView is one shared handset in its rack, flat for the spreadsheets.
type rackView struct {
	DeviceID string `json:"deviceId"`
	IMEI     string `json:"imei"`
	Label    string `json:"label"`
	Group    string `json:"group"`
	// State is free, in_use, overdue, unreturned, suspended or retired.
	State     string    `json:"state"`
	UserID    string    `json:"userId,omitempty"`
	Username  string    `json:"username,omitempty"`
	SessionID string    `json:"sessionId,omitempty"`
	Since     timestamp `json:"since,omitzero"`
	ShiftEnd  timestamp `json:"shiftEnd,omitzero"`
	Deadline  timestamp `json:"deadline,omitzero"`
}

// rack is GET /v1/rack: who holds which shared handset now, in the
// caller's scope (of one group with ?group=), as JSON, CSV or XLSX.
func (s *server) rack(c *fiber.Ctx) error {
	slots, err := s.Auth.Rack(c.UserContext(), principal(c), query(c, "group"))
	if err != nil {
		return err
	}
	out := listView[rackView]{Items: make([]rackView, 0, len(slots))}
	for _, sl := range slots {
		v := rackView{DeviceID: sl.Device.ID, IMEI: sl.Device.IMEI, Label: sl.Device.Label, Group: sl.Device.Group, State: sl.State}
		if h := sl.Holder; h != nil {
			v.UserID, v.Username, v.SessionID = h.UserID, h.Username, h.SessionID
			v.Since, v.ShiftEnd, v.Deadline = stamp(h.Since), stamp(h.ShiftEnd), stamp(h.Deadline)
		}
		out.Items = append(out.Items, v)
	}
	return s.respond(c, fiber.StatusOK, out, xmlNames("rack", "handset"))
}

// endShift is POST /v1/auth/end-shift: the app ends its worker's shift,
// handing the handset back.
func (s *server) endShift(c *fiber.Ctx) error {
	if err := s.Auth.EndShift(c.UserContext(), identity(c)); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}
