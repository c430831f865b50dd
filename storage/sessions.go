package storage

import (
	"bytes"
	"context"
	"slices"
	"time"

	"tether"
)

// More record ID prefixes.
const (
	PrefixSession = "ses_"
	PrefixEvent   = "evt_"
	PrefixKey     = "key_"
	PrefixCode    = "enc_"
)

// Session is one login of a user on one handset (or, for managers, on no
// handset): the refresh-token family and the latest access token issued in
// it. There is at most one live session per (user, device).
type Session struct {
	ID string `json:"id"`
	// Key is a small integer id, assigned by CreateSession, for the clients
	// that expect integer session ids.
	Key      uint64 `json:"key"`
	UserID   string `json:"userId"`
	DeviceID string `json:"deviceId,omitempty"`
	// DeviceName is, for a session without a handset, the device name its
	// login gave (a client's name for the machine it runs on): it is
	// refreshed and renewed only with that exact name.
	DeviceName string `json:"deviceName,omitempty"`
	// Persistent sessions get the long lifetimes.
	Persistent bool `json:"persistent"`
	// ClientID is the OAuth client the session's tokens were issued to,
	// and Scope what they may do, for a session opened through the OAuth
	// endpoints; both empty for the native API's.
	ClientID string `json:"clientId,omitempty"`
	Scope    string `json:"scope,omitempty"`
	// AuthTime is when the person last proved who they are (for the ID
	// token's auth_time); zero means CreatedAt.
	AuthTime time.Time `json:"authTime,omitzero"`
	// AMR are how the person proved who they are at the login (RFC 8176
	// values: "pwd", "otp", and "recovery" for a recovery code), for the
	// tokens' amr; empty for a session from before they were kept, which
	// was a password's.
	AMR []string `json:"amr,omitempty"`

	CreatedAt  time.Time `json:"createdAt"`
	LastUsedAt time.Time `json:"lastUsedAt"`
	// IdleTimeout ends the session when it is not used for that long;
	// ExpiresAt ends it whatever happens.
	IdleTimeout time.Duration `json:"idleTimeout"`
	ExpiresAt   time.Time     `json:"expiresAt"`

	// FamilyHash identifies the refresh-token family: every refresh token of
	// the session carries the family, so a token from an older generation is
	// still recognised as this session's (and its reuse revokes it).
	FamilyHash []byte `json:"familyHash"`
	// RefreshHash is the hash of the current refresh token; PrevRefreshHash
	// of the one it replaced, at RotatedAt.
	RefreshHash     []byte    `json:"refreshHash"`
	PrevRefreshHash []byte    `json:"prevRefreshHash,omitempty"`
	RotatedAt       time.Time `json:"rotatedAt,omitzero"`
	// Replay is the answer to the last refresh, sealed with a key only the
	// previous refresh token yields, so a retry within the grace gets the
	// very same pair without the store ever holding a usable token.
	Replay []byte `json:"replay,omitempty"`

	// JKT is the thumbprint of the handset key the session is bound to:
	// its refreshes and renewals are proven with that key, and its access
	// tokens carry it as cnf.jkt. Empty for a session without proofs.
	JKT string `json:"jkt,omitempty"`

	// AccessJTI is the id of the latest access token issued in the
	// session: the only one that may be renewed.
	AccessJTI       string    `json:"accessJti"`
	AccessExpiresAt time.Time `json:"accessExpiresAt"`
	// PrevAccessJTI is the access token the last renewal renewed, at
	// RenewedAt; RenewReplay its answer, sealed with a key only that token
	// yields, so a retry within the grace gets the very same answer.
	PrevAccessJTI string    `json:"prevAccessJti,omitempty"`
	RenewedAt     time.Time `json:"renewedAt,omitzero"`
	RenewReplay   []byte    `json:"renewReplay,omitempty"`
	// AccessHash is the SHA-256 of the latest access token issued in the
	// session, PrevAccessHash of the one the last renewal renewed: a
	// renewal presenting one of them needs no signature check (the
	// session vouches for the token, byte for byte). Empty for sessions
	// from before they were kept: their tokens are verified.
	AccessHash     []byte `json:"accessHash,omitempty"`
	PrevAccessHash []byte `json:"prevAccessHash,omitempty"`

	RevokedAt    time.Time `json:"revokedAt,omitzero"`
	RevokeReason string    `json:"revokeReason,omitempty"`

	// ShiftEnd is, for a session on a shared handset of a group with
	// shifts, the end of the shift it was opened in, and ShiftGrace the
	// group's grace then: ExpiresAt is no later than their sum, the
	// session's deadline. UnreturnedAt is when the server noted the
	// session reached its deadline unended (see Unreturned).
	ShiftEnd     time.Time     `json:"shiftEnd,omitzero"`
	ShiftGrace   time.Duration `json:"shiftGrace,omitempty"`
	UnreturnedAt time.Time     `json:"unreturnedAt,omitzero"`

	ClientIP  string `json:"clientIp,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
}

// Clone returns a deep copy of s.
func (s Session) Clone() Session {
	s.FamilyHash = bytes.Clone(s.FamilyHash)
	s.RefreshHash = bytes.Clone(s.RefreshHash)
	s.PrevRefreshHash = bytes.Clone(s.PrevRefreshHash)
	s.Replay = bytes.Clone(s.Replay)
	s.RenewReplay = bytes.Clone(s.RenewReplay)
	s.AccessHash = bytes.Clone(s.AccessHash)
	s.PrevAccessHash = bytes.Clone(s.PrevAccessHash)
	s.AMR = slices.Clone(s.AMR)
	return s
}

// Revoked reports whether the session was ended.
func (s Session) Revoked() bool { return !s.RevokedAt.IsZero() }

// EndedAt is when the session ended or will end: when it was revoked, or
// the sooner of its absolute and idle limits.
func (s Session) EndedAt() time.Time {
	if s.Revoked() {
		return s.RevokedAt
	}
	idle := s.LastUsedAt.Add(s.IdleTimeout)
	if idle.Before(s.ExpiresAt) {
		return idle
	}
	return s.ExpiresAt
}

// Live reports whether the session is neither revoked nor expired at t.
func (s Session) Live(t time.Time) bool {
	return !s.Revoked() && t.Before(s.ExpiresAt) && t.Before(s.LastUsedAt.Add(s.IdleTimeout))
}

// ShiftDeadline is when a session of a shift must end (ShiftEnd plus
// ShiftGrace), or the zero time for a session without a shift.
func (s Session) ShiftDeadline() time.Time {
	if s.ShiftEnd.IsZero() {
		return time.Time{}
	}
	return s.ShiftEnd.Add(s.ShiftGrace)
}

// Unreturned reports whether a session of a shift ran to its deadline at
// t: nobody ended it (no handover, no end of shift, no logout) and it was
// in use until the deadline cut it off, so its handset was not handed
// back.
func (s Session) Unreturned(t time.Time) bool {
	deadline := s.ShiftDeadline()
	return !deadline.IsZero() && !s.Revoked() && !t.Before(deadline) && !s.EndedAt().Before(deadline)
}

// SessionBundle is a session with its user and device, read together.
type SessionBundle struct {
	Session Session
	User    User
	Device  *Device
	// NewestKey is the id of the newest signing key in the store at the
	// same instant, so a server can tell, with no read of its own, that
	// another one rotated (or revoked) the keys it verifies with.
	NewestKey string
	// Revision names the stored version of the session read, in a store
	// that can tell (0 in one that cannot): see Unchanged.
	Revision uint64
	// Stored is the session's record as read, in a store that tells a
	// changed session by its bytes (nil in one that does not): see
	// Unchanged.
	Stored []byte
}

// SessionFilter selects sessions for ListSessions. Zero fields match all.
type SessionFilter struct {
	UserID   string
	DeviceID string
	// LiveAt, when set, keeps only sessions live at that time.
	LiveAt time.Time
	// Groups keeps the sessions in that scope (see SessionInScope): nil
	// keeps all, an empty slice none.
	Groups []string
	After  string
	Limit  int
}

// Match reports whether s passes the filter's UserID, DeviceID, LiveAt
// and Groups. deviceGroup is the group of the session's handset, user its
// user and handsetGroups the groups of the handsets that user is assigned
// to (see SessionInScope); they are read only when f.Groups is set.
func (f SessionFilter) Match(s Session, deviceGroup string, user User, handsetGroups []string) bool {
	if f.UserID != "" && s.UserID != f.UserID {
		return false
	}
	if f.DeviceID != "" && s.DeviceID != f.DeviceID {
		return false
	}
	if !f.LiveAt.IsZero() && !s.Live(f.LiveAt) {
		return false
	}
	return SessionInScope(s, deviceGroup, user, handsetGroups, f.Groups)
}

// SessionInScope reports whether s is in the scope groups: its handset, of
// group deviceGroup, is, or its user (user, assigned to handsets of
// handsetGroups) is a worker in it (UserInScope). With nil groups every
// session is in.
func SessionInScope(s Session, deviceGroup string, user User, handsetGroups, groups []string) bool {
	if groups == nil {
		return true
	}
	if s.DeviceID != "" && InGroups(deviceGroup, groups) {
		return true
	}
	return user.ID == s.UserID && UserInScope(user, handsetGroups, groups)
}

// Sessions persists sessions. IDs and family hashes are unique.
type Sessions interface {
	// CreateSession stores a new session and returns it with Key set. In
	// the same transaction it revokes (with reason "replaced") any live
	// session of the same user, device and OAuth client (ClientID, "" for
	// the native API), and runs the write options. If
	// check is not nil it is called inside the transaction with the
	// session's user and device (the zero Device for a session without
	// one) as they are then; an error from it aborts everything.
	CreateSession(ctx context.Context, s Session, check func(User, Device) error, opts ...WriteOption) (Session, error)
	// GetSession returns the session with the given ID, or ErrNotFound.
	GetSession(ctx context.Context, id string) (Session, error)
	// GetSessionByFamily returns the session whose FamilyHash is hash, or
	// ErrNotFound.
	GetSessionByFamily(ctx context.Context, familyHash []byte) (Session, error)
	// GetSessionBundle returns the session with the given ID together with
	// its user and device as they are in the same instant (one read), or
	// ErrNotFound for a missing session. A missing user is the zero User; a
	// session without a device, or whose device is gone, has a nil Device.
	GetSessionBundle(ctx context.Context, id string) (SessionBundle, error)
	// GetSessionBundleByFamily is GetSessionBundle by family hash.
	GetSessionBundleByFamily(ctx context.Context, familyHash []byte) (SessionBundle, error)
	// ListSessions returns one page of sessions matching f, in ID order.
	ListSessions(ctx context.Context, f SessionFilter) (Page[Session], error)
	// LatestSessions returns, in one read, the session most recently
	// opened (by CreatedAt, then ID) on each of the given handsets, live
	// or not, by device ID; handsets without one are left out.
	LatestSessions(ctx context.Context, deviceIDs []string) (map[string]Session, error)
	// UpdateSession replaces the session with what fn returns (see the
	// package contract), and runs the write options in the same
	// transaction. Changing the ID, Key, user, device or family is an error.
	UpdateSession(ctx context.Context, id string, fn func(Session) (Session, error), opts ...WriteOption) (Session, error)
	// PurgeSessions deletes the sessions that ended (EndedAt) before t, in
	// write transactions of at most batch sessions, and returns how many.
	PurgeSessions(ctx context.Context, endedBefore time.Time, batch int) (int, error)
}

// Revocation revokes, in the transaction of a write, every live session of
// a user or of a device (whichever is set), but the session named Except,
// with a reason and time.
type Revocation struct {
	UserID   string
	DeviceID string
	// Except is the id of a session to leave live, such as the one that
	// asked for the others to end; empty for none. ExceptUser, when set,
	// leaves that user's sessions live too.
	Except     string
	ExceptUser string
	Reason     string
	At         time.Time
	// Audit, when set, is called with each session as it is revoked, and
	// the event it returns is appended in the same transaction. It may be
	// called more than once for a session (a retried transaction) and
	// must have no side effects.
	Audit func(Session) Event
}

// Later reports whether a was opened after b (by CreatedAt, then ID): the
// order of LatestSessions.
func Later(a, b Session) bool {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c > 0
	}
	return a.ID > b.ID
}

// Spares reports whether r leaves the session s live.
func (r Revocation) Spares(s Session) bool {
	return s.Revoked() || s.ID == r.Except || (r.ExceptUser != "" && s.UserID == r.ExceptUser)
}

// WriteOptions are extra writes made in the same transaction as a write
// method's own, so a change and its consequences commit together or not at
// all.
type WriteOptions struct {
	// Events are appended to the audit trail.
	Events []Event
	// Revoke ends sessions.
	Revoke []Revocation
	// Revoked receives how many sessions Revoke ended, if not nil.
	Revoked *int
	// Read is the session as the caller read it (Unchanged), or nil.
	Read *SessionBundle
}

// WriteOption adds to WriteOptions.
type WriteOption func(*WriteOptions)

// WithEvents appends audit events in the same transaction.
func WithEvents(events ...Event) WriteOption {
	return func(o *WriteOptions) { o.Events = append(o.Events, events...) }
}

// WithRevocation revokes sessions in the same transaction. If count is not
// nil it receives the number revoked.
func WithRevocation(r Revocation, count *int) WriteOption {
	return func(o *WriteOptions) {
		o.Revoke = append(o.Revoke, r)
		if count != nil {
			o.Revoked = count
		}
	}
}

// Unchanged tells UpdateSession that the caller read the session moments
// before, in b, unchanged since as far as it knows: a store may then apply
// the update function to b.Session without reading the session again,
// provided the session is still at b.Revision (or, in bbolt, still
// b.Stored, byte for byte) when it writes, and reads it afresh otherwise.
// The update function sees the session as stored either way; what the
// option saves, on PostgreSQL, is the locked read, a transaction's begin
// and commit, and all but one round trip; in bbolt, decoding the session
// again inside the write, which holds the store's one writer.
func Unchanged(b SessionBundle) WriteOption {
	return func(o *WriteOptions) { o.Read = &b }
}

// ApplyOptions collects write options.
func ApplyOptions(opts []WriteOption) WriteOptions {
	var o WriteOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Event is one entry of the audit trail: who did what to whom, when, from
// where, and how it ended.
type Event struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Action string    `json:"action"`
	// Outcome is "success" or "failure".
	Outcome string `json:"outcome"`
	// Reason is the error code of a failure, or a note.
	Reason string `json:"reason,omitempty"`
	// Actor names who acted, such as "user:usr_…", "apikey:ak_…" or "cli".
	Actor     string `json:"actor,omitempty"`
	UserID    string `json:"userId,omitempty"`
	Username  string `json:"username,omitempty"`
	DeviceID  string `json:"deviceId,omitempty"`
	SessionID string `json:"sessionId,omitempty"`
	ClientIP  string `json:"clientIp,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
	// ActorScopes are the handset groups the actor was limited to when
	// they acted (none: the whole fleet); ActorAMR how the actor, a
	// person, proved who they are at sign-in (RFC 8176 values, such as
	// "pwd" and "otp"; none for an API key or the CLI).
	ActorScopes []string `json:"actorScopes,omitempty"`
	ActorAMR    []string `json:"actorAmr,omitempty"`
	// Detail holds small extra facts, such as the ICC IDs seen.
	Detail map[string]string `json:"detail,omitempty"`
	// Groups are the handset groups the event concerns, sorted: in a scope
	// that holds one of them, the event is in (EventInScope). The store
	// sets them inside the transaction that writes the event, by
	// EventGroups: the groups the caller gave, its handset's group, and,
	// for a worker, the worker's Scopes and their handsets' groups, as they
	// are then. They never change afterwards: an event about a handset
	// that later moves to another group stays in the scope of the group it
	// was in. An event about nothing scoped (a key rotation, an API key, a
	// manager's own account) has none, and is for unscoped principals only.
	Groups []string `json:"groups,omitempty"`
}

// EventFilter selects events for ListEvents. Zero fields match all.
type EventFilter struct {
	// From and To bound Time: From <= Time < To.
	From, To time.Time
	Action   string
	UserID   string
	DeviceID string
	// Groups keeps the events in that scope (see EventInScope): nil keeps
	// all, an empty slice none.
	Groups []string
	// NewestFirst lists the newest events first. After is then the cursor
	// going back in time: the page holds the events before it.
	NewestFirst bool
	// After is the cursor from the previous page (an event's ID); Limit
	// the page size (see PageLimit).
	After string
	Limit int
}

// Match reports whether e passes the filter's fields other than the cursor
// and order.
func (f EventFilter) Match(e Event) bool {
	switch {
	case !f.From.IsZero() && e.Time.Before(f.From):
		return false
	case !f.To.IsZero() && !e.Time.Before(f.To):
		return false
	case f.Action != "" && e.Action != f.Action:
		return false
	case f.UserID != "" && e.UserID != f.UserID:
		return false
	case f.DeviceID != "" && e.DeviceID != f.DeviceID:
		return false
	}
	return EventInScope(e, f.Groups)
}

// Audit persists the audit trail. Events are never changed once written.
type Audit interface {
	// AppendEvents stores events (each with a unique ID), their Groups
	// set as Event.Groups says.
	AppendEvents(ctx context.Context, events ...Event) error
	// ListEvents returns one page of events matching f, in ID order (which
	// is the order they were made in): oldest first, or newest first with
	// f.NewestFirst.
	ListEvents(ctx context.Context, f EventFilter) (Page[Event], error)
	// PurgeEvents deletes the events older than t, in write transactions
	// of at most batch events, and returns how many.
	PurgeEvents(ctx context.Context, before time.Time, batch int) (int, error)
}

// SigningKey is a key that signs tokens: Ed25519 (EdDSA), ECDSA P-256
// (ES256) or RSA (RS256).
type SigningKey struct {
	// ID is the JWT "kid".
	ID string `json:"id"`
	// Alg is the JOSE algorithm the key signs with: "EdDSA", "ES256" or
	// "RS256". Empty is EdDSA (keys stored before there were others); see
	// Algorithm.
	Alg string `json:"alg,omitempty"`
	// Private is, for EdDSA, the Ed25519 seed (32 bytes), and for the
	// others the PKCS #8 private key in DER; or, when Sealed, that sealed
	// with the server's master key.
	Private []byte `json:"private"`
	Sealed  bool   `json:"sealed,omitempty"`
	// Public is, for EdDSA, the Ed25519 public key (32 bytes), and for the
	// others the PKIX public key in DER.
	Public    []byte    `json:"public"`
	CreatedAt time.Time `json:"createdAt"`
	// RetiredAt is when a newer key of its algorithm took over signing;
	// zero for an active key. A retired key still verifies the tokens it
	// signed.
	RetiredAt time.Time `json:"retiredAt,omitzero"`
}

// Algorithm is the key's algorithm: Alg, or "EdDSA" where Alg is empty.
func (k SigningKey) Algorithm() string {
	if k.Alg == "" {
		return "EdDSA"
	}
	return k.Alg
}

// Clone returns a deep copy of k.
func (k SigningKey) Clone() SigningKey {
	k.Private = bytes.Clone(k.Private)
	k.Public = bytes.Clone(k.Public)
	return k
}

// SigningKeys persists token signing keys. Each key has an algorithm
// (SigningKey.Algorithm), and the keys of one algorithm rotate apart from
// the others': an active (unretired) key of each, and retired ones.
type SigningKeys interface {
	// ListSigningKeys returns every key, oldest first.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// AddMissingSigningKeys stores each key of next whose algorithm has
	// no active key, and leaves out the others, in one transaction: of
	// instances starting together on one store, each with keys of its
	// own, one key per algorithm is stored.
	AddMissingSigningKeys(ctx context.Context, next []SigningKey) error
	// RotateSigningKeys stores the keys of next, at most one per
	// algorithm, as active keys, and marks every other unretired key of
	// one of their algorithms retired at the CreatedAt of the new key of
	// its algorithm, in one transaction. Keys of other algorithms are left
	// as they are. A key whose ID is taken is a *ConflictError.
	RotateSigningKeys(ctx context.Context, next []SigningKey, opts ...WriteOption) error
	// RevokeSigningKeys stores the keys of next as the active keys and
	// deletes every other key, in one transaction: what they signed stops
	// verifying.
	RevokeSigningKeys(ctx context.Context, next []SigningKey, opts ...WriteOption) error
	// DeleteSigningKey removes a key, or returns ErrNotFound.
	DeleteSigningKey(ctx context.Context, id string) error
	// ReplaceSigningKey stores k in place of the key with its ID (to seal
	// it), or returns ErrNotFound.
	ReplaceSigningKey(ctx context.Context, k SigningKey) error
}

// EnrollmentCode lets a handset enroll itself. Only a hash of the code is
// stored.
type EnrollmentCode struct {
	ID   string `json:"id"`
	Hash []byte `json:"hash"`
	// Label and Group are given to the devices it enrolls.
	Label     string    `json:"label,omitempty"`
	Group     string    `json:"group,omitempty"`
	MaxUses   int       `json:"maxUses"`
	Uses      int       `json:"uses"`
	ExpiresAt time.Time `json:"expiresAt"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// Clone returns a deep copy of c.
func (c EnrollmentCode) Clone() EnrollmentCode {
	c.Hash = bytes.Clone(c.Hash)
	return c
}

// CodeFilter selects enrollment codes for ListEnrollmentCodes. Zero fields
// match all.
type CodeFilter struct {
	// Groups keeps the codes in that scope (see CodeInScope): nil keeps
	// all, an empty slice none.
	Groups []string
}

// Match reports whether c passes the filter.
func (f CodeFilter) Match(c EnrollmentCode) bool { return CodeInScope(c, f.Groups) }

// EnrollmentCodes persists enrollment codes. IDs and hashes are unique.
type EnrollmentCodes interface {
	// CreateEnrollmentCode stores a new code.
	CreateEnrollmentCode(ctx context.Context, c EnrollmentCode, opts ...WriteOption) error
	// GetEnrollmentCode returns a code by ID, or ErrNotFound.
	GetEnrollmentCode(ctx context.Context, id string) (EnrollmentCode, error)
	// ListEnrollmentCodes returns every code matching f, oldest first.
	ListEnrollmentCodes(ctx context.Context, f CodeFilter) ([]EnrollmentCode, error)
	// UpdateEnrollmentCode replaces a code with what fn returns.
	UpdateEnrollmentCode(ctx context.Context, id string, fn func(EnrollmentCode) (EnrollmentCode, error), opts ...WriteOption) (EnrollmentCode, error)
	// EnrollWithCode, in one transaction: finds the code whose hash is
	// hash (or returns ErrNotFound), calls enroll with it, and stores the
	// code and the new device enroll returns. enroll counts the use, or
	// returns an error refusing the code. A device with a taken IMEI is a
	// *ConflictError and uses nothing.
	EnrollWithCode(ctx context.Context, hash []byte, enroll func(EnrollmentCode) (EnrollmentCode, Device, error), opts ...WriteOption) (Device, error)
	// PurgeEnrollmentCodes deletes the codes that expired, or were revoked,
	// before t, in write transactions of at most batch codes, and returns
	// how many.
	PurgeEnrollmentCodes(ctx context.Context, before time.Time, batch int) (int, error)
}

// NewEvent starts an audit event at t, with the request origin carried by
// ctx (see tether.WithOrigin). actor may be empty.
func NewEvent(ctx context.Context, t time.Time, action, outcome, actor string) Event {
	o := tether.OriginOf(ctx)
	ua := o.UserAgent
	if len(ua) > 256 {
		ua = ua[:256]
	}
	e := Event{
		ID: NewID(PrefixEvent), Time: t.UTC(), Action: action, Outcome: outcome,
		Actor: actor, ClientIP: o.IP, UserAgent: ua,
	}
	for k, v := range o.Client {
		if e.Detail == nil {
			e.Detail = make(map[string]string, len(o.Client))
		}
		if len(v) > 256 {
			v = v[:256]
		}
		e.Detail["client."+k] = v
	}
	return e
}
