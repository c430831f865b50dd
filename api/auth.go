package api

import (
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/auth"
	"tether/device"
	"tether/storage"
)

type loginRequest struct {
	Username   string          `json:"username"`
	Password   string          `json:"password"`
	Device     *device.Payload `json:"device"`
	Persistent bool            `json:"persistent"`
}

// tokenView is the answer of login, refresh and renew.
type tokenView struct {
	AccessToken      string     `json:"accessToken"`
	TokenType        string     `json:"tokenType"`
	ExpiresAt        time.Time  `json:"expiresAt"`
	ExpiresIn        int64      `json:"expiresIn"`
	RefreshToken     string     `json:"refreshToken,omitempty"`
	RefreshExpiresAt *time.Time `json:"refreshExpiresAt,omitempty"`
	SessionID        string     `json:"sessionId"`
	DeviceID         string     `json:"deviceId,omitempty"`
	User             *userView  `json:"user,omitempty"`
	// ShiftEnd is, on a shared handset of a group with shifts, the end of
	// the session's shift (it ends at that plus the grace).
	ShiftEnd *time.Time `json:"shiftEnd,omitempty"`

	// RecoveryCodes come with the tokens of a login that enrolled a first
	// second factor: shown this once.
	RecoveryCodes []string `json:"recoveryCodes,omitempty"`
}

func (s *server) sendGrant(c *fiber.Ctx, g auth.Grant, withUser bool) error {
	return s.sendGrantWith(c, g, withUser, nil)
}

func (s *server) sendGrantWith(c *fiber.Ctx, g auth.Grant, withUser bool, codes []string) error {
	v := tokenView{
		AccessToken: g.AccessToken,
		TokenType:   tokenType(g.Session),
		ExpiresAt:   g.AccessExpiresAt,
		ExpiresIn:   int64(time.Until(g.AccessExpiresAt).Round(time.Second) / time.Second),
		SessionID:   g.Session.ID,
		DeviceID:    g.Session.DeviceID,

		RecoveryCodes: codes,
	}
	if g.RefreshToken != "" {
		v.RefreshToken = g.RefreshToken
		v.RefreshExpiresAt = &g.RefreshExpiresAt
	}
	if !g.Session.ShiftEnd.IsZero() {
		v.ShiftEnd = &g.Session.ShiftEnd
	}
	if withUser {
		u := newUserView(g.User)
		v.User = &u
	}
	// Tokens must not land in caches (RFC 6749 section 5.1).
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderPragma, "no-cache")
	return s.respond(c, fiber.StatusOK, v, xmlNames("token", "item"))
}

// missing names the members of a request that must not be empty and are,
// each with the code NAME_required, or is nil.
func missing(members map[string]string) error {
	var errs []*tether.ValidationError
	for _, name := range slices.Sorted(maps.Keys(members)) {
		if members[name] == "" {
			errs = append(errs, tether.Invalid(name, name+"_required", name+" is required"))
		}
	}
	if all := tether.Join(errs...); all != nil {
		return all
	}
	return nil
}

func (s *server) login(c *fiber.Ctx) error {
	var req loginRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	// A body without credentials is the client's mistake, said at once and
	// not counted as a failed login.
	if err := missing(map[string]string{"username": strings.TrimSpace(req.Username), "password": req.Password}); err != nil {
		return err
	}
	g, err := s.Auth.Login(c.UserContext(), auth.LoginRequest{
		Username: req.Username, Password: req.Password, Device: req.Device, Persistent: req.Persistent,
		SecondFactor: true,
	})
	if interrupted(err) {
		// The problem carries the step's token.
		noStoreSecret(c)
	}
	if err != nil {
		return err
	}
	return s.sendGrant(c, g, true)
}

type refreshRequest struct {
	RefreshToken string `json:"refreshToken"`
	DeviceID     string `json:"deviceId"`
}

func (s *server) refresh(c *fiber.Ctx) error {
	var req refreshRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	g, err := s.Auth.Refresh(c.UserContext(), req.RefreshToken, req.DeviceID)
	if err != nil {
		return err
	}
	return s.sendGrant(c, g, true)
}

type renewRequest struct {
	AccessToken string `json:"accessToken"`
	DeviceID    string `json:"deviceId"`
}

func (s *server) renew(c *fiber.Ctx) error {
	var req renewRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	g, err := s.Auth.Renew(c.UserContext(), req.AccessToken, req.DeviceID)
	if err != nil {
		return err
	}
	return s.sendGrant(c, g, false)
}

func (s *server) logout(c *fiber.Ctx) error {
	if err := s.Auth.Logout(c.UserContext(), identity(c)); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

type changePasswordRequest struct {
	CurrentPassword string `json:"currentPassword"`
	NewPassword     string `json:"newPassword"`
}

// changePassword is POST /v1/auth/password: the caller changes their own
// password; every other session of theirs ends.
func (s *server) changePassword(c *fiber.Ctx) error {
	var req changePasswordRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := s.Auth.ChangePassword(c.UserContext(), identity(c), req.CurrentPassword, req.NewPassword); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// lockoutView is one counter of the login throttle.
type lockoutView struct {
	Account       string     `json:"account,omitempty"`
	Address       string     `json:"address,omitempty"`
	Failures      int        `json:"failures"`
	LastFailureAt time.Time  `json:"lastFailureAt"`
	BlockedUntil  *time.Time `json:"blockedUntil,omitempty"`
	ForgottenAt   time.Time  `json:"forgottenAt"`
}

// listLockouts is GET /v1/lockouts: who is held back by the login
// throttle, and from where.
func (s *server) listLockouts(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	f := storage.AttemptFilter{Account: query(c, "account"), Address: query(c, "address")}
	page, err := collect(c, query(c, "cursor"), limit, func(after string, limit int) (storage.Page[storage.Attempts], error) {
		f.After, f.Limit = after, limit
		return s.Auth.LockoutsFor(c.UserContext(), principal(c), f)
	})
	if err != nil {
		return err
	}
	now := time.Now()
	out := listView[lockoutView]{Items: make([]lockoutView, 0, len(page.Items)), NextCursor: page.Next}
	for _, a := range page.Items {
		v := lockoutView{Account: a.Account, Address: a.Address, Failures: a.Failures, LastFailureAt: a.LastAt, ForgottenAt: a.ExpiresAt}
		if a.BlockedUntil.After(now) {
			v.BlockedUntil = &a.BlockedUntil
		}
		out.Items = append(out.Items, v)
	}
	return s.respond(c, fiber.StatusOK, out, xmlNames("lockouts", "lockout"))
}

// clearLockouts is DELETE /v1/lockouts?account=…&address=…: forget an
// account's failed logins, an address's, or those of the pair.
func (s *server) clearLockouts(c *fiber.Ctx) error {
	n, err := s.Auth.ClearLockout(c.UserContext(), principal(c), query(c, "account"), query(c, "address"))
	if err != nil {
		return err
	}
	return s.respond(c, fiber.StatusOK, fiber.Map{"cleared": n}, xmlNames("lockoutsCleared", "item"))
}

type sessionView struct {
	ID     string `json:"id"`
	Key    uint64 `json:"key"`
	UserID string `json:"userId"`
	// Username, DeviceIMEI and DeviceLabel name the user and handset.
	Username     string    `json:"username,omitempty"`
	DeviceID     string    `json:"deviceId,omitempty"`
	DeviceName   string    `json:"deviceName,omitempty"`
	DeviceIMEI   string    `json:"deviceImei,omitempty"`
	DeviceLabel  string    `json:"deviceLabel,omitempty"`
	Persistent   bool      `json:"persistent"`
	CreatedAt    time.Time `json:"createdAt"`
	LastUsedAt   time.Time `json:"lastUsedAt"`
	ExpiresAt    time.Time `json:"expiresAt"`
	IdleExpires  time.Time `json:"idleExpiresAt"`
	Live         bool      `json:"live"`
	RevokedAt    time.Time `json:"revokedAt,omitzero"`
	RevokeReason string    `json:"revokeReason,omitempty"`
	ClientIP     string    `json:"clientIp,omitempty"`
	UserAgent    string    `json:"userAgent,omitempty"`
	// ShiftEnd is the end of the session's shift, on a shared handset of
	// a group with shifts.
	ShiftEnd time.Time `json:"shiftEnd,omitzero"`

	// AMR is how the person signed in: ["pwd"], ["pwd","otp"] or
	// ["pwd","recovery"].
	AMR []string `json:"amr"`
}

func newSessionView(sess storage.Session, now time.Time) sessionView {
	return sessionView{
		ID: sess.ID, Key: sess.Key, UserID: sess.UserID, DeviceID: sess.DeviceID, DeviceName: sess.DeviceName, Persistent: sess.Persistent,
		CreatedAt: sess.CreatedAt, LastUsedAt: sess.LastUsedAt, ExpiresAt: sess.ExpiresAt,
		IdleExpires: sess.LastUsedAt.Add(sess.IdleTimeout), Live: sess.Live(now),
		RevokedAt: sess.RevokedAt, RevokeReason: sess.RevokeReason, ClientIP: sess.ClientIP, UserAgent: sess.UserAgent,
		AMR: auth.SessionAMR(sess), ShiftEnd: sess.ShiftEnd,
	}
}

func (s *server) me(c *fiber.Ctx) error {
	id := identity(c)
	sess := newSessionView(id.Session, time.Now())
	sess.Username = id.User.Username
	out := fiber.Map{"user": newUserView(id.User), "session": &sess}
	if id.Device != nil {
		sess.DeviceIMEI, sess.DeviceLabel = id.Device.IMEI, id.Device.Label
		v, err := s.deviceView(c.UserContext(), *id.Device, s.names())
		if err != nil {
			return err
		}
		out["device"] = v
	}
	return s.respond(c, fiber.StatusOK, out, xmlNames("me", "item"))
}

type introspectRequest struct {
	Token string `json:"token"`
}

// introspect answers in the shape of RFC 7662: an inactive token says only
// {"active": false}.
func (s *server) introspect(c *fiber.Ctx) error {
	var req introspectRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	in := s.Auth.Introspect(c.UserContext(), req.Token)
	c.Set(fiber.HeaderCacheControl, "no-store")
	if !in.Active {
		return s.respond(c, fiber.StatusOK, fiber.Map{"active": false}, xmlNames("introspection", "item"))
	}
	cl := in.Claims
	out := fiber.Map{
		"active": true, "sub": cl.Subject, "sid": cl.SID, "jti": cl.ID, "iss": cl.Issuer, "aud": cl.Audience,
		"exp": cl.ExpiresAt.Unix(), "iat": cl.IssuedAt.Unix(), "role": cl.Role, "username": in.Username,
		"token_type": in.TokenType,
	}
	if cl.DID != "" {
		out["did"] = cl.DID
	}
	if cl.Cnf != nil {
		out["cnf"] = fiber.Map{"jkt": cl.Cnf.JKT}
	}
	if len(cl.AMR) > 0 {
		out["amr"] = cl.AMR
	}
	return s.respond(c, fiber.StatusOK, out, xmlNames("introspection", "item"))
}

type enrollRequest struct {
	Code   string          `json:"code"`
	Device *device.Payload `json:"device"`
}

func (s *server) enroll(c *fiber.Ctx) error {
	var req enrollRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Device == nil {
		req.Device = &device.Payload{}
	}
	d, err := s.Auth.Enroll(c.UserContext(), req.Code, *req.Device)
	if err != nil {
		return err
	}
	c.Location("/v1/devices/" + d.ID)
	return s.sendDevice(c, fiber.StatusCreated, d)
}

func (s *server) jwks(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "public, max-age=300")
	return s.respond(c, fiber.StatusOK, fiber.Map{"keys": s.Auth.Keys().JWKS()}, xmlNames("jwks", "key"))
}

type rotateRequest struct {
	// Revoke deletes every other key at once (a key that may be stolen).
	Revoke bool `json:"revoke"`
}

func (s *server) rotateKeys(c *fiber.Ctx) error {
	var req rotateRequest
	if len(c.Body()) > 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	kids, err := s.Auth.RotateKeys(c.UserContext(), principal(c), req.Revoke)
	if err != nil {
		return err
	}
	// kid is the key access tokens are signed with from now on; kids has
	// the new key of every algorithm.
	return s.respond(c, fiber.StatusOK, fiber.Map{"kid": kids[s.Auth.Config().TokenAlg], "kids": kids, "revoked": req.Revoke}, xmlNames("rotation", "item"))
}

func (s *server) listSessions(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	f := storage.SessionFilter{UserID: query(c, "userId"), DeviceID: query(c, "deviceId")}
	switch c.Query("live", "true") {
	case "true":
		f.LiveAt = time.Now()
	case "false", "all":
	default:
		return invalidRequest("live must be true or all")
	}
	page, err := collect(c, query(c, "cursor"), limit, func(after string, limit int) (storage.Page[storage.Session], error) {
		f.After, f.Limit = after, limit
		return s.Auth.ListSessions(c.UserContext(), principal(c), f)
	})
	if err != nil {
		return err
	}
	users := make([]string, 0, len(page.Items))
	devices := make([]string, 0, len(page.Items))
	for _, sess := range page.Items {
		users, devices = append(users, sess.UserID), append(devices, sess.DeviceID)
	}
	names := s.names()
	if err := names.learn(c.UserContext(), users, devices, nil); err != nil {
		return err
	}
	now := time.Now()
	out := listView[sessionView]{Items: make([]sessionView, 0, len(page.Items)), NextCursor: page.Next}
	for _, sess := range page.Items {
		v := newSessionView(sess, now)
		v.Username = names.users[sess.UserID]
		d := names.devices[sess.DeviceID]
		v.DeviceIMEI, v.DeviceLabel = d.IMEI, d.Label
		out.Items = append(out.Items, v)
	}
	return s.respond(c, fiber.StatusOK, out, xmlNames("sessions", "session"))
}

func (s *server) deleteSession(c *fiber.Ctx) error {
	if err := s.Auth.RevokeSession(c.UserContext(), principal(c), param(c, "id")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *server) logoutAll(c *fiber.Ctx) error {
	n, err := s.Auth.LogoutAll(c.UserContext(), principal(c), param(c, "id"))
	if err != nil {
		return err
	}
	return s.respond(c, fiber.StatusOK, fiber.Map{"revoked": n}, xmlNames("logoutAll", "item"))
}

// listEvents is GET /v1/audit: oldest first, or newest first with
// order=desc; either way nextCursor goes on in the same order.
func (s *server) listEvents(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	f := storage.EventFilter{Action: query(c, "action"), UserID: query(c, "userId"), DeviceID: query(c, "deviceId")}
	switch c.Query("order", "asc") {
	case "asc":
	case "desc":
		f.NewestFirst = true
	default:
		return invalidRequest("order must be asc (oldest first) or desc (newest first)")
	}
	for name, dst := range map[string]*time.Time{"from": &f.From, "to": &f.To} {
		if raw := c.Query(name); raw != "" {
			t, err := time.Parse(time.RFC3339, raw)
			if err != nil {
				return invalidRequest("%s must be an RFC 3339 time such as 2026-11-22T08:00:00Z", name)
			}
			*dst = t
		}
	}
	page, err := collect(c, query(c, "cursor"), limit, func(after string, limit int) (storage.Page[storage.Event], error) {
		f.After, f.Limit = after, limit
		return s.Auth.EventsFor(c.UserContext(), principal(c), f)
	})
	if err != nil {
		return err
	}
	users := make([]string, 0, len(page.Items))
	devices := make([]string, 0, len(page.Items))
	actors := make([]string, 0, len(page.Items))
	for _, e := range page.Items {
		users, devices, actors = append(users, e.UserID), append(devices, e.DeviceID), append(actors, e.Actor)
	}
	names := s.names()
	if err := names.learn(c.UserContext(), users, devices, actors); err != nil {
		return err
	}
	out := listView[eventView]{Items: make([]eventView, 0, len(page.Items)), NextCursor: page.Next}
	for _, e := range page.Items {
		v := eventView{Event: e, ActorName: names.actor(e.Actor)}
		if v.Username == "" {
			// Usernames never change: the user's is the one they had.
			v.Username = names.users[e.UserID]
		}
		d := names.devices[e.DeviceID]
		v.DeviceIMEI, v.DeviceLabel = d.IMEI, d.Label
		out.Items = append(out.Items, v)
	}
	return s.respond(c, fiber.StatusOK, out, xmlNames("events", "event"))
}

// eventView is an audit event with the names, as they are now, of who acted
// and of the handset: ActorName is the actor's username or API key name.
// A username the event did not record is filled in from its userId.
type eventView struct {
	storage.Event
	ActorName   string `json:"actorName,omitempty"`
	DeviceIMEI  string `json:"deviceImei,omitempty"`
	DeviceLabel string `json:"deviceLabel,omitempty"`
}

type createCodeRequest struct {
	// ExpiresIn is a Go duration such as "24h".
	ExpiresIn string `json:"expiresIn"`
	MaxUses   int    `json:"maxUses"`
	Label     string `json:"label"`
	Group     string `json:"group"`
}

type codeView struct {
	ID   string `json:"id"`
	Code string `json:"code,omitempty"`
	// EnrollURL and QRPath come with the code, once: what a handset scans,
	// and where to get it as a QR image.
	EnrollURL string    `json:"enrollUrl,omitempty"`
	QRPath    string    `json:"qrPath,omitempty"`
	Label     string    `json:"label"`
	Group     string    `json:"group"`
	MaxUses   int       `json:"maxUses"`
	Uses      int       `json:"uses"`
	ExpiresAt time.Time `json:"expiresAt"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	Usable    bool      `json:"usable"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
	// Warnings come with a new code: why a handset may not manage to
	// enroll with it (self-enrollment off, an enroll URL of localhost).
	Warnings []auth.CodeWarning `json:"warnings,omitempty"`
}

func newCodeView(rec storage.EnrollmentCode) codeView {
	return codeView{
		ID: rec.ID, Label: rec.Label, Group: rec.Group, MaxUses: rec.MaxUses, Uses: rec.Uses,
		ExpiresAt: rec.ExpiresAt, RevokedAt: rec.RevokedAt, Usable: auth.CodeUsable(rec, time.Now()),
		CreatedAt: rec.CreatedAt, CreatedBy: rec.CreatedBy,
	}
}

func (s *server) createCode(c *fiber.Ctx) error {
	var req createCodeRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	var ttl time.Duration
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil {
			return invalidRequest("expiresIn must be a duration such as 24h or 90m")
		}
		ttl = d
	}
	code, rec, err := s.Auth.CreateEnrollmentCode(c.UserContext(), principal(c), auth.NewCode{
		TTL: ttl, MaxUses: req.MaxUses, Label: req.Label, Group: req.Group,
	})
	if err != nil {
		return err
	}
	v := newCodeView(rec)
	v.Code = code
	v.EnrollURL = auth.EnrollURL(s.serverURL(c), code)
	v.QRPath = "/v1/enrollment-codes/" + rec.ID + "/qr.png?code=" + url.QueryEscape(code)
	v.Warnings = s.Auth.CodeWarnings(v.EnrollURL)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return s.respond(c, fiber.StatusCreated, v, xmlNames("enrollmentCode", "item"))
}

func (s *server) listCodes(c *fiber.Ctx) error {
	codes, err := s.Auth.ListEnrollmentCodes(c.UserContext(), principal(c))
	if err != nil {
		return err
	}
	out := listView[codeView]{Items: make([]codeView, 0, len(codes))}
	for _, rec := range codes {
		out.Items = append(out.Items, newCodeView(rec))
	}
	return s.respond(c, fiber.StatusOK, out, xmlNames("enrollmentCodes", "enrollmentCode"))
}

func (s *server) revokeCode(c *fiber.Ctx) error {
	if err := s.Auth.RevokeEnrollmentCode(c.UserContext(), principal(c), param(c, "id")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// retryAfter formats a Retry-After header: whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(1, secs), 10)
}

// tokenType is "DPoP" for the tokens of a session bound to a handset key.
func tokenType(sess storage.Session) string {
	if sess.JKT != "" {
		return "DPoP"
	}
	return "Bearer"
}

// challengeView is an attestation challenge.
type challengeView struct {
	Challenge string    `json:"challenge"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// enrollChallenge is POST /v1/enroll/challenge: a challenge for the
// handset's keystore to attest its new key with (base64url; the app passes
// its bytes to setAttestationChallenge).
func (s *server) enrollChallenge(c *fiber.Ctx) error {
	ch, exp := s.Auth.Challenge()
	c.Set(fiber.HeaderCacheControl, "no-store")
	return s.respond(c, fiber.StatusOK, challengeView{Challenge: ch, ExpiresAt: exp}, xmlNames("challenge", "item"))
}
