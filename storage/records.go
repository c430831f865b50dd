package storage

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/mtibben/confusables"
	"golang.org/x/text/secure/precis"
)

// DeviceStatus is where a handset is in its lifecycle.
type DeviceStatus string

// The device statuses. Only an enrolled handset may log in.
const (
	DeviceEnrolled  DeviceStatus = "enrolled"
	DeviceSuspended DeviceStatus = "suspended"
	DeviceRetired   DeviceStatus = "retired"
)

// Valid reports whether s is one of the known statuses.
func (s DeviceStatus) Valid() bool {
	return s == DeviceEnrolled || s == DeviceSuspended || s == DeviceRetired
}

// Device is an enrolled handset. A manager may register one by IMEI alone;
// the rest is recorded at its first login.
type Device struct {
	ID   string `json:"id"`
	IMEI string `json:"imei"`
	// HasIccCard is nil until the handset has said.
	HasIccCard   *bool    `json:"hasIccCard,omitempty"`
	IccIDs       []string `json:"iccIds,omitempty"`
	OSAPI        int      `json:"osApi,omitempty"`
	OSName       string   `json:"osName,omitempty"`
	Manufacturer string   `json:"manufacturer,omitempty"`
	Model        string   `json:"model,omitempty"`
	AppVersion   string   `json:"appVersion,omitempty"`

	Status DeviceStatus `json:"status"`
	// StatusReason is what the manager gave when suspending or retiring.
	StatusReason    string    `json:"statusReason,omitempty"`
	StatusChangedAt time.Time `json:"statusChangedAt,omitzero"`
	StatusChangedBy string    `json:"statusChangedBy,omitempty"`

	Label string `json:"label,omitempty"`
	Group string `json:"group,omitempty"`
	// Mode is the handset's own mode, or ModeGroup (empty) to follow its
	// group's: see ModeOf.
	Mode DeviceMode `json:"mode,omitempty"`
	// AssignedUsers holds user IDs. Empty means any worker may use it. A
	// shared handset ignores it: see Group.Roster.
	AssignedUsers []string `json:"assignedUsers,omitempty"`
	// Notes is what managers write about the handset, free text.
	Notes string `json:"notes,omitempty"`

	EnrolledAt time.Time `json:"enrolledAt"`
	// EnrolledBy names the actor that registered it, such as "apikey:ak_…".
	EnrolledBy string    `json:"enrolledBy,omitempty"`
	LastSeenAt time.Time `json:"lastSeenAt,omitzero"`
	UpdatedAt  time.Time `json:"updatedAt"`

	// Key is the public half of a key the handset holds in its secure
	// hardware, once enrolled: its uses are then proven with it.
	Key *DeviceKey `json:"key,omitempty"`
}

// DeviceKey is a handset's enrolled public key.
type DeviceKey struct {
	// Thumbprint is the key's RFC 7638 thumbprint (base64url SHA-256): what
	// proofs and access tokens (cnf.jkt) are bound to.
	Thumbprint string `json:"thumbprint"`
	// JWK is the public key as the handset sent it, in canonical members.
	JWK        json.RawMessage `json:"jwk"`
	EnrolledAt time.Time       `json:"enrolledAt"`
	EnrolledBy string          `json:"enrolledBy,omitempty"`
	// Attestation is what the handset's key attestation showed, if it sent
	// one.
	Attestation *Attestation `json:"attestation,omitempty"`
}

// Attestation is what an Android key attestation showed about a key.
type Attestation struct {
	// SecurityLevel is where the key lives: "TrustedEnvironment" or
	// "StrongBox".
	SecurityLevel string `json:"securityLevel"`
	// VerifiedBootState is "Verified" for a locked handset running its
	// maker's software.
	VerifiedBootState string `json:"verifiedBootState"`
	DeviceLocked      bool   `json:"deviceLocked"`
	// IMEI and Serial are what the attestation said, where it said (and
	// they matched the handset's payload).
	IMEI   string `json:"imei,omitempty"`
	Serial string `json:"serial,omitempty"`
	// Root names the certificate the chain ends in.
	Root       string    `json:"root"`
	AttestedAt time.Time `json:"attestedAt"`
}

// Clone returns a deep copy of d, so that a backend never shares slices with
// its callers.
func (d Device) Clone() Device {
	if d.HasIccCard != nil {
		v := *d.HasIccCard
		d.HasIccCard = &v
	}
	d.IccIDs = slices.Clone(d.IccIDs)
	d.AssignedUsers = slices.Clone(d.AssignedUsers)
	if d.Key != nil {
		k := *d.Key
		k.JWK = bytes.Clone(k.JWK)
		if k.Attestation != nil {
			a := *k.Attestation
			k.Attestation = &a
		}
		d.Key = &k
	}
	return d
}

// DeviceName is how people tell a handset: its IMEI and its label (which
// may be empty).
type DeviceName struct {
	IMEI  string
	Label string
}

// DeviceFilter selects devices for ListDevices. Zero fields match all.
type DeviceFilter struct {
	Status DeviceStatus
	Group  string
	// AssignedUser keeps the devices whose AssignedUsers hold this user ID.
	AssignedUser string
	// Text matches, case-insensitively, a substring of the ID, IMEI, label,
	// group, manufacturer or model.
	Text string
	// Groups keeps the devices in that scope (see DeviceInScope): nil
	// keeps all, an empty slice none.
	Groups []string
	// After is the cursor from the previous page; Limit the page size (see
	// PageLimit).
	After string
	Limit int
}

// Match reports whether d passes the filter's Status, Group, AssignedUser,
// Text and Groups. It is the definition backends implement, and what
// scanning backends call.
func (f DeviceFilter) Match(d Device) bool {
	if f.Status != "" && d.Status != f.Status {
		return false
	}
	if !DeviceInScope(d, f.Groups) {
		return false
	}
	if f.Group != "" && d.Group != f.Group {
		return false
	}
	if f.AssignedUser != "" && !slices.Contains(d.AssignedUsers, f.AssignedUser) {
		return false
	}
	if f.Text == "" {
		return true
	}
	return containsFold(f.Text, d.ID, d.IMEI, d.Label, d.Group, d.Manufacturer, d.Model)
}

// Role is what an account or API key may do.
type Role string

// The roles. Workers log in from handsets; managers run the fleet; admins
// also manage keys and backups. Introspect is for API keys of resource
// servers that only check tokens; client for API keys that identify a field
// app to the dialects that ask for one (and open nothing else).
const (
	RoleWorker     Role = "worker"
	RoleManager    Role = "manager"
	RoleAdmin      Role = "admin"
	RoleIntrospect Role = "introspect"
	RoleClient     Role = "client"
)

// User is an account.
type User struct {
	ID string `json:"id"`
	// Key is a small integer id, assigned by CreateUser, for the clients that
	// expect integer user ids.
	Key       uint64 `json:"key"`
	Username  string `json:"username"`
	Role      Role   `json:"role"`
	FirstName string `json:"firstName,omitempty"`
	LastName  string `json:"lastName,omitempty"`
	Email     string `json:"email,omitempty"`
	ImageURL  string `json:"imageUrl,omitempty"`
	// Features are free strings the field apps switch on.
	Features []string `json:"features,omitempty"`
	// Profile is a free-form JSON object, or nil.
	Profile json.RawMessage `json:"profile,omitempty"`
	// Scopes are, for a manager, the handset groups they manage (none: the
	// whole fleet); for a worker, the groups a scoped manager created them
	// into. See the scope rules in scopes.go.
	Scopes []string `json:"scopes,omitempty"`
	// PasswordHash is a PHC-format argon2id hash, or empty when the account
	// cannot log in with a password.
	PasswordHash      string    `json:"passwordHash,omitempty"`
	PasswordChangedAt time.Time `json:"passwordChangedAt,omitzero"`
	Disabled          bool      `json:"disabled,omitempty"`
	CreatedAt         time.Time `json:"createdAt"`
	UpdatedAt         time.Time `json:"updatedAt"`
	// Directory is set for a user who signs in with the company
	// directory: the directory owns their names, email, role and
	// password.
	Directory *UserDirectory `json:"directory,omitempty"`

	// MFA holds the second factors and recovery codes, or nil for none.
	MFA *UserMFA `json:"mfa,omitempty"`
}

// UserDirectory is what Tether keeps of a directory user's entry.
type UserDirectory struct {
	// DN is the entry's distinguished name.
	DN             string `json:"dn"`
	DisplayName    string `json:"displayName,omitempty"`
	EmployeeNumber string `json:"employeeNumber,omitempty"`
	// SyncedAt is when the entry was last read: a sign-in or a sync.
	SyncedAt time.Time `json:"syncedAt"`
	// DisabledFor says why the directory had the account disabled (it
	// was deleted, disabled there, or left the allowed groups); empty when
	// it did not. An account the directory allows again is enabled again,
	// one a manager disabled is not.
	DisabledFor string `json:"disabledFor,omitempty"`
}

// Clone returns a deep copy of u.
func (u User) Clone() User {
	u.Features = slices.Clone(u.Features)
	u.Scopes = slices.Clone(u.Scopes)
	u.Profile = bytes.Clone(u.Profile)
	if u.Directory != nil {
		d := *u.Directory
		u.Directory = &d
	}
	u.MFA = u.MFA.Clone()
	return u
}

// User sources, as UserFilter.Source selects them.
const (
	SourceLocal     = "local"
	SourceDirectory = "ldap"
)

// Source is where the user's account lives: SourceLocal or
// SourceDirectory.
func (u User) Source() string {
	if u.Directory != nil {
		return SourceDirectory
	}
	return SourceLocal
}

// UserFilter selects users for ListUsers. Zero fields match all.
type UserFilter struct {
	Role Role
	// Disabled, when set, keeps only users whose Disabled equals it.
	Disabled *bool
	// Source, when set, keeps only the users of that source
	// (SourceLocal, SourceDirectory).
	Source string
	// Text matches, case-insensitively, a substring of the ID, username,
	// first name, last name or email.
	Text string
	// Groups keeps the users in that scope (see UserInScope): nil keeps
	// all, an empty slice none.
	Groups []string
	After  string
	Limit  int
}

// Match reports whether u passes the filter's Role, Disabled, Source, Text
// and Groups. handsetGroups are the groups of the handsets u is assigned
// to; they are read only when f.Groups is set.
func (f UserFilter) Match(u User, handsetGroups []string) bool {
	if f.Role != "" && u.Role != f.Role {
		return false
	}
	if !UserInScope(u, handsetGroups, f.Groups) {
		return false
	}
	if f.Disabled != nil && u.Disabled != *f.Disabled {
		return false
	}
	if f.Source != "" && u.Source() != f.Source {
		return false
	}
	if f.Text == "" {
		return true
	}
	return containsFold(f.Text, u.ID, u.Username, u.FirstName, u.LastName, u.Email)
}

// UsernameKey is the form in which usernames are unique: case-folded and
// Unicode-normalised, so "Alice", "ALICE" and "ａｌｉｃｅ" are one account.
// Every backend indexes usernames by it.
func UsernameKey(name string) string {
	if k, err := precis.UsernameCaseMapped.String(name); err == nil {
		return k
	}
	// Names the profile refuses never pass auth's validation, but a backend
	// still needs a key for them: fall back to plain lower-casing.
	return strings.ToLower(name)
}

// UsernameSkeleton is the form in which usernames that look alike are
// equal: the Unicode UTS #39 skeleton, taken again after lower-casing, so
// that "walter" and "wаlter" (with a Cyrillic а), "Ian" and "lan", "rn"
// and "m" have one skeleton. A new username whose skeleton another
// account's has is refused (an impostor's name); accounts that already
// exist are never merged. Every backend indexes usernames by it too.
func UsernameSkeleton(name string) string {
	if n, err := precis.UsernameCasePreserved.String(name); err == nil {
		name = n
	}
	return strings.ToLower(confusables.Skeleton(strings.ToLower(confusables.Skeleton(name))))
}

// ConfusableConflict is the conflict of a new username that looks like
// one taken.
func ConfusableConflict(name string) *ConflictError {
	return &ConflictError{Entity: "user", Field: "username confusable with", Value: name}
}

// APIKey is a key for scripts and resource servers. The secret itself is
// shown once at creation and never stored.
type APIKey struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Role Role   `json:"role"`
	// Hash is the SHA-256 of the secret.
	Hash []byte `json:"hash"`
	// Hint is the first characters of the secret, to tell keys apart.
	Hint      string    `json:"hint"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
	// AllowFrom, when not empty, holds the networks (CIDR prefixes) the
	// key is accepted from; from elsewhere it is refused.
	AllowFrom []string `json:"allowFrom,omitempty"`
	// Scopes are the handset groups a manager's key manages; none means
	// the whole fleet.
	Scopes []string `json:"scopes,omitempty"`
}

// Clone returns a deep copy of k.
func (k APIKey) Clone() APIKey {
	k.Hash = bytes.Clone(k.Hash)
	k.AllowFrom = slices.Clone(k.AllowFrom)
	k.Scopes = slices.Clone(k.Scopes)
	return k
}

func containsFold(needle string, fields ...string) bool {
	needle = strings.ToLower(needle)
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), needle) {
			return true
		}
	}
	return false
}
