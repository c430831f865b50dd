package api

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"

	"github.com/gofiber/fiber/v2"

	"tether/device"
	"tether/storage"
)

// deviceView is a device as the API shows it.
type deviceView struct {
	ID              string            `json:"id"`
	IMEI            string            `json:"imei"`
	HasIccCard      *bool             `json:"hasIccCard,omitempty"`
	IccIDs          []string          `json:"iccIds"`
	OSVersion       *device.OSVersion `json:"osVersion,omitempty"`
	DeviceInfo      *device.Info      `json:"deviceInfo,omitempty"`
	AppVersion      string            `json:"appVersion,omitempty"`
	Status          string            `json:"status"`
	StatusReason    string            `json:"statusReason,omitempty"`
	StatusChangedAt timestamp         `json:"statusChangedAt,omitzero"`
	StatusChangedBy string            `json:"statusChangedBy,omitempty"`
	// StatusChangedByName and EnrolledByName name those actors: a
	// username, an API key's name.
	StatusChangedByName string    `json:"statusChangedByName,omitempty"`
	Label               string    `json:"label"`
	Group               string    `json:"group"`
	Mode                string    `json:"mode"`       // the mode that applies: "personal" or "shared"
	ModeSource          string    `json:"modeSource"` // where it comes from: "handset" (its own) or "group"
	AssignedUsers       []string  `json:"assignedUsers"`
	Notes               string    `json:"notes"`
	EnrolledAt          timestamp `json:"enrolledAt"`
	EnrolledBy          string    `json:"enrolledBy,omitempty"`
	EnrolledByName      string    `json:"enrolledByName,omitempty"`
	LastSeenAt          timestamp `json:"lastSeenAt,omitzero"`
	UpdatedAt           timestamp `json:"updatedAt"`
	Key                 *keyView  `json:"key,omitempty"`
}

// keyView shows a handset's enrolled key and what its attestation showed.
type keyView struct {
	Thumbprint        string    `json:"thumbprint"`
	Type              string    `json:"type"`
	EnrolledAt        timestamp `json:"enrolledAt"`
	EnrolledBy        string    `json:"enrolledBy,omitempty"`
	Attested          bool      `json:"attested"`
	SecurityLevel     string    `json:"securityLevel,omitempty"`
	VerifiedBootState string    `json:"verifiedBootState,omitempty"`
	AttestedIMEI      string    `json:"attestedImei,omitempty"`
	AttestedSerial    string    `json:"attestedSerial,omitempty"`
}

func keyViewOf(k *storage.DeviceKey) *keyView {
	if k == nil {
		return nil
	}
	v := &keyView{Thumbprint: k.Thumbprint, EnrolledAt: stamp(k.EnrolledAt), EnrolledBy: k.EnrolledBy}
	v.Type = curveOf(k.JWK) // the key was checked when it was enrolled
	if a := k.Attestation; a != nil {
		v.Attested, v.SecurityLevel, v.VerifiedBootState = true, a.SecurityLevel, a.VerifiedBootState
		v.AttestedIMEI, v.AttestedSerial = a.IMEI, a.Serial
	}
	return v
}

// curveOf returns a JWK's crv member as json.Unmarshal into a struct with
// that one field finds it (any key equal to "crv" but for case, the last
// one winning), or "" where that fails. A page of handsets shows one key
// each: the form handsets send and the store keeps, an object of strings
// of printable ASCII without escapes or spaces, is read here at a fraction
// of the cost; anything else goes to encoding/json.
func curveOf(jwk []byte) string {
	if crv, ok := plainCurve(jwk); ok {
		return crv
	}
	var v struct {
		Crv string `json:"crv"`
	}
	if json.Unmarshal(jwk, &v) != nil {
		return ""
	}
	return v.Crv
}

// plainCurve is curveOf for an object of plain strings (plainString), and
// whether jwk is one.
func plainCurve(jwk []byte) (string, bool) {
	if len(jwk) < 2 || jwk[0] != '{' {
		return "", false
	}
	if jwk[1] == '}' {
		return "", len(jwk) == 2
	}
	var crv []byte
	for i := 1; ; i++ {
		key, next, ok := plainString(jwk, i)
		if !ok || next == len(jwk) || jwk[next] != ':' {
			return "", false
		}
		val, next, ok := plainString(jwk, next+1)
		if !ok || next == len(jwk) {
			return "", false
		}
		if bytes.EqualFold(key, []byte("crv")) {
			crv = val
		}
		switch i = next; jwk[i] {
		case ',':
		case '}':
			return string(crv), i+1 == len(jwk)
		default:
			return "", false
		}
	}
}

// plainString returns the content of the JSON string at data[i] if it is
// printable ASCII without a backslash (what it means is what it says), and
// the index after its closing quote.
func plainString(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return data[i+1 : j], j + 1, true
		case c < 0x20 || c == '\\' || c > 0x7e:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// deviceView shows a device, with the names n finds (n learns them first,
// if it does not know them yet).
func (s *server) deviceView(ctx context.Context, d storage.Device, n *names) (deviceView, error) {
	if err := n.learnDevices(ctx, []storage.Device{d}); err != nil {
		return deviceView{}, err
	}
	return n.deviceView(d), nil
}

// learnDevices reads the names the views of ds show, in one batch per
// kind for all of them: the usernames of their assigned users and of
// their actors, the names of the API keys and codes among those.
func (n *names) learnDevices(ctx context.Context, ds []storage.Device) error {
	if err := n.s.Devices.LearnUsernames(ctx, ds, n.users); err != nil {
		return err
	}
	modes, err := n.s.Devices.Modes(ctx, ds)
	if err != nil {
		return err
	}
	maps.Copy(n.modes, modes)
	actors := make([]string, 0, 2*len(ds))
	for _, d := range ds {
		actors = append(actors, d.EnrolledBy, d.StatusChangedBy)
	}
	return n.learn(ctx, nil, nil, actors)
}

// deviceView shows a device with the names n has learned (learnDevices):
// it reads nothing.
func (n *names) deviceView(d storage.Device) deviceView {
	users := make([]string, 0, len(d.AssignedUsers))
	for _, id := range d.AssignedUsers {
		// LearnUsernames shows a user that no longer exists as its id.
		users = append(users, n.users[id])
	}
	v := deviceView{
		ID: d.ID, IMEI: d.IMEI, HasIccCard: d.HasIccCard, IccIDs: d.IccIDs, AppVersion: d.AppVersion,
		Status: string(d.Status), StatusReason: d.StatusReason, StatusChangedAt: stamp(d.StatusChangedAt),
		StatusChangedBy: d.StatusChangedBy, Label: d.Label, Group: d.Group, AssignedUsers: users, Notes: d.Notes,
		EnrolledAt: stamp(d.EnrolledAt), EnrolledBy: d.EnrolledBy, LastSeenAt: stamp(d.LastSeenAt), UpdatedAt: stamp(d.UpdatedAt),
		Key: keyViewOf(d.Key), EnrolledByName: n.actor(d.EnrolledBy), StatusChangedByName: n.actor(d.StatusChangedBy),
		Mode: string(n.modes[d.ID]), ModeSource: "group",
	}
	if d.Mode.Valid() {
		v.ModeSource = "handset"
	}
	if v.IccIDs == nil {
		v.IccIDs = []string{}
	}
	if d.OSAPI != 0 {
		v.OSVersion = &device.OSVersion{API: d.OSAPI, Name: d.OSName}
	}
	if d.Manufacturer != "" || d.Model != "" {
		v.DeviceInfo = &device.Info{Manufacturer: d.Manufacturer, Model: d.Model}
	}
	return v
}

// sendDevice answers with a device.
func (s *server) sendDevice(c *fiber.Ctx, status int, d storage.Device) error {
	v, err := s.deviceView(c.UserContext(), d, s.names())
	if err != nil {
		return err
	}
	return s.respond(c, status, v, xmlNames("device", "item"))
}

// collect fetches a list: the page asked for or, when the client asked for
// a spreadsheet (CSV or XLSX), every page from the cursor on: an export.
func collect[T any](c *fiber.Ctx, cursor string, limit int, fetch func(after string, limit int) (storage.Page[T], error)) (storage.Page[T], error) {
	if f, _, err := negotiate(c.Get(fiber.HeaderAccept)); err != nil || (f != formatCSV && f != formatXLSX) {
		return fetch(cursor, limit)
	}
	var all storage.Page[T]
	for after := cursor; ; {
		page, err := fetch(after, storage.MaxPageSize)
		if err != nil {
			return all, err
		}
		all.Items = append(all.Items, page.Items...)
		if page.Next == "" {
			return all, nil
		}
		after = page.Next
	}
}

// listView is one page of a list.
type listView[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}

type registerDeviceRequest struct {
	device.Payload
	Label         string   `json:"label"`
	Group         string   `json:"group"`
	AssignedUsers []string `json:"assignedUsers"`
	Notes         string   `json:"notes"`
	Mode          string   `json:"mode"`
}

func (s *server) registerDevice(c *fiber.Ctx) error {
	var req registerDeviceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	d, err := s.Devices.Register(c.UserContext(), principal(c).Device(), device.Registration{
		Payload: req.Payload, Label: req.Label, Group: req.Group, AssignedUsers: req.AssignedUsers, Notes: req.Notes, Mode: req.Mode,
	})
	if err != nil {
		return err
	}
	c.Location("/v1/devices/" + d.ID)
	return s.sendDevice(c, fiber.StatusCreated, d)
}

func (s *server) listDevices(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	f := storage.DeviceFilter{
		Status:       storage.DeviceStatus(query(c, "status")),
		Group:        query(c, "group"),
		Text:         query(c, "q"),
		AssignedUser: query(c, "assignedUser"),
	}
	page, err := collect(c, query(c, "cursor"), limit, func(after string, limit int) (storage.Page[storage.Device], error) {
		f.After, f.Limit = after, limit
		return s.Devices.List(c.UserContext(), principal(c).Device(), f)
	})
	if err != nil {
		return err
	}
	names := s.names()
	if err := names.learnDevices(c.UserContext(), page.Items); err != nil {
		return err
	}
	out := listView[deviceView]{Items: make([]deviceView, 0, len(page.Items)), NextCursor: page.Next}
	for _, d := range page.Items {
		out.Items = append(out.Items, names.deviceView(d))
	}
	return s.respond(c, fiber.StatusOK, out, xmlNames("devices", "device"))
}

// getDevice answers GET /v1/devices/{id}; the id may also be an IMEI.
func (s *server) getDevice(c *fiber.Ctx) error {
	d, err := s.Devices.Find(c.UserContext(), principal(c).Device(), param(c, "id"))
	if err != nil {
		return err
	}
	return s.sendDevice(c, fiber.StatusOK, d)
}

type patchDeviceRequest struct {
	Label         *string     `json:"label"`
	Group         *string     `json:"group"`
	AssignedUsers *[]string   `json:"assignedUsers"`
	Notes         *string     `json:"notes"`
	Mode          *string     `json:"mode"`
	PublicKey     optionalRaw `json:"publicKey,omitempty"`
}

// optionalRaw is a JSON member that may be absent, null or a value: absent
// leaves a field alone, null clears it.
type optionalRaw struct {
	set bool
	raw json.RawMessage
}

func (o *optionalRaw) UnmarshalJSON(data []byte) error {
	o.set, o.raw = true, append(json.RawMessage(nil), data...)
	return nil
}

func (s *server) patchDevice(c *fiber.Ctx) error {
	var req patchDeviceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	patch := device.Patch{Label: req.Label, Group: req.Group, AssignedUsers: req.AssignedUsers, Notes: req.Notes, Mode: req.Mode}
	if req.PublicKey.set {
		patch.PublicKey = &req.PublicKey.raw
	}
	d, err := s.Devices.Update(c.UserContext(), principal(c).Device(), param(c, "id"), patch)
	if err != nil {
		return err
	}
	return s.sendDevice(c, fiber.StatusOK, d)
}

type transitionRequest struct {
	Reason string `json:"reason"`
}

// deviceTransition serves suspend, retire and reinstate. The body, with an
// optional reason, may be left out.
func (s *server) deviceTransition(op func(*device.Service, context.Context, device.Actor, string, string) (storage.Device, error)) fiber.Handler {
	return func(c *fiber.Ctx) error {
		var req transitionRequest
		if len(c.Body()) > 0 {
			if err := decodeJSON(c, &req); err != nil {
				return err
			}
		}
		d, err := op(s.Devices, c.UserContext(), principal(c).Device(), param(c, "id"), req.Reason)
		if err != nil {
			return err
		}
		return s.sendDevice(c, fiber.StatusOK, d)
	}
}
