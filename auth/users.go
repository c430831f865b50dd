package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"
	"golang.org/x/text/secure/precis"

	"tether"
	"tether/device"
	"tether/storage"
)

// Limits on account fields.
const (
	MaxUsername   = 64
	MaxName       = 64
	MaxFeatures   = 64
	MaxFeature    = 64
	MaxProfileLen = 16 << 10
)

// UsersStore is the persistence Users needs: the accounts, and whether
// one is in a scope.
type UsersStore interface {
	storage.Users
	storage.ScopeChecker
}

// Users manages accounts: who they are, their role, their password, the
// handset groups they are in or manage.
type Users struct {
	store    UsersStore
	hasher   *Hasher
	validate *validator.Validate
	now      func() time.Time
}

// UsersOption configures Users.
type UsersOption func(*Users)

// WithUsersClock sets the clock.
func WithUsersClock(now func() time.Time) UsersOption {
	return func(u *Users) { u.now = now }
}

// NewUsers returns a Users service. v must have the auth rules registered
// (RegisterValidations).
func NewUsers(store UsersStore, hasher *Hasher, v *validator.Validate, opts ...UsersOption) *Users {
	u := &Users{store: store, hasher: hasher, validate: v, now: time.Now}
	for _, opt := range opts {
		opt(u)
	}
	return u
}

// RegisterValidations adds the account rules to v.
func RegisterValidations(v *validator.Validate) error {
	rules := map[string]validator.Func{
		"username": func(fl validator.FieldLevel) bool {
			_, err := precis.UsernameCasePreserved.String(fl.Field().String())
			return err == nil
		},
		"printable": func(fl validator.FieldLevel) bool { return tether.Printable(fl.Field().String()) },
		"role": func(fl validator.FieldLevel) bool {
			switch storage.Role(fl.Field().String()) {
			case storage.RoleWorker, storage.RoleManager, storage.RoleAdmin:
				return true
			}
			return false
		},
		"json_object": func(fl validator.FieldLevel) bool {
			raw, ok := fl.Field().Interface().(json.RawMessage)
			if !ok {
				return false
			}
			return raw == nil || isJSONObject(raw)
		},
	}
	for tag, fn := range rules {
		if err := v.RegisterValidation(tag, fn); err != nil {
			return fmt.Errorf("register %s: %w", tag, err)
		}
	}
	return nil
}

func isJSONObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{' && json.Valid(t)
}

// profile is what a user's record says about them, with its rules. It is
// checked whole on create and after every patch.
type profile struct {
	Username  string          `json:"username" validate:"required,max=64,username"`
	Role      string          `json:"role" validate:"role"`
	FirstName string          `json:"firstName" validate:"max=64,printable"`
	LastName  string          `json:"lastName" validate:"max=64,printable"`
	Email     string          `json:"email" validate:"omitempty,max=254,email"`
	ImageURL  string          `json:"imageUrl" validate:"omitempty,max=2048,http_url"`
	Features  []string        `json:"features" validate:"max=64,unique,dive,min=1,max=64,printable"`
	Profile   json.RawMessage `json:"profile" validate:"max=16384,json_object"`
}

func describeUser(field, tag, param string) (string, string) {
	switch tag {
	case "required":
		return field + "_required", field + " is required"
	case "max":
		return field + "_length", fmt.Sprintf("%s must be at most %s long", field, param)
	case "min":
		return field + "_length", fmt.Sprintf("%s must be at least %s long", field, param)
	case "username":
		return "username_invalid", "username may hold letters, digits and symbols such as . _ - @, but no spaces"
	case "printable":
		return field + "_chars", field + " must be printable text"
	case "role":
		return "role_invalid", "role must be worker, manager or admin"
	case "email":
		return "email_invalid", "email is not a valid address"
	case "http_url":
		return "image_url_invalid", "imageUrl must be an http or https URL"
	case "unique":
		return field + "_duplicate", field + " must not repeat"
	case "json_object":
		return "profile_invalid", "profile must be a JSON object"
	}
	return field + "_invalid", field + " is invalid"
}

func (s *Users) check(p *profile) error {
	p.Username = strings.TrimSpace(p.Username)
	if name, err := precis.UsernameCasePreserved.String(p.Username); err == nil {
		p.Username = name
	}
	p.FirstName = strings.TrimSpace(p.FirstName)
	p.LastName = strings.TrimSpace(p.LastName)
	p.Email = strings.TrimSpace(p.Email)
	p.ImageURL = strings.TrimSpace(p.ImageURL)
	if err := s.validate.Struct(p); err != nil {
		return tether.FromValidator(err, "", describeUser)
	}
	if p.Profile != nil {
		var buf bytes.Buffer
		if err := json.Compact(&buf, p.Profile); err != nil {
			return tether.Invalid("profile", "profile_invalid", "profile must be a JSON object")
		}
		p.Profile = buf.Bytes()
	}
	return nil
}

// passwordPolicy applies the password policy.
func passwordPolicy(pw string) *tether.ValidationError {
	switch {
	case !utf8.ValidString(pw):
		return tether.Invalid("password", "password_chars", "password must be valid UTF-8")
	case utf8.RuneCountInString(pw) < MinPasswordLen:
		return tether.Invalid("password", "password_length", fmt.Sprintf("password must be at least %d characters", MinPasswordLen))
	case len(pw) > MaxPasswordLen:
		return tether.Invalid("password", "password_length", fmt.Sprintf("password must be at most %d bytes", MaxPasswordLen))
	}
	return nil
}

// NewUser is a request to create an account.
type NewUser struct {
	Username  string
	Password  string
	Role      storage.Role
	FirstName string
	LastName  string
	Email     string
	ImageURL  string
	Features  []string
	Profile   json.RawMessage
	// Scopes are, for a manager, the handset groups they manage (none:
	// the whole fleet), and for a worker the groups they are in. Admins
	// have none.
	Scopes []string
}

// Create validates and stores a new account with a hashed password. It
// returns a *tether.ValidationError naming every bad field, ErrForbidden when
// by may not grant the role, or a *storage.ConflictError when the username
// is taken (case-insensitively).
//
// A scoped manager creates workers only, into groups of their own scope:
// the scopes given (ErrScopeExceeded for a group outside theirs) or, when
// none are, their only group (a manager of several groups must name them).
func (s *Users) Create(ctx context.Context, by Principal, nu NewUser) (storage.User, error) {
	if nu.Role == "" {
		nu.Role = storage.RoleWorker
	}
	scopes, serr := CheckScopes("scopes", nu.Scopes)
	if serr == nil && nu.Role == storage.RoleAdmin && len(scopes) > 0 {
		serr = errAdminScoped
	}
	if serr == nil && by.Scoped() && by.CanGrant(nu.Role) {
		var err error
		if scopes, err = grantScopes(by, scopes); err != nil && !errors.As(err, &serr) {
			return storage.User{}, err
		}
	}
	p := profile{
		Username: nu.Username, Role: string(nu.Role), FirstName: nu.FirstName, LastName: nu.LastName,
		Email: nu.Email, ImageURL: nu.ImageURL, Features: nu.Features, Profile: nu.Profile,
	}
	var verr *tether.ValidationError
	if err := s.check(&p); err != nil {
		if !errors.As(err, &verr) {
			return storage.User{}, err
		}
	}
	if all := tether.Join(verr, passwordPolicy(nu.Password), serr); all != nil {
		return storage.User{}, all
	}
	if !by.CanGrant(nu.Role) {
		return storage.User{}, fmt.Errorf("%s creating a %s: %w", by, nu.Role, ErrForbidden)
	}
	hash, err := s.hasher.Hash(nu.Password)
	if err != nil {
		return storage.User{}, err
	}
	now := s.now().UTC()
	u := storage.User{
		ID:                storage.NewID(storage.PrefixUser),
		Username:          p.Username,
		Role:              nu.Role,
		FirstName:         p.FirstName,
		LastName:          p.LastName,
		Email:             p.Email,
		ImageURL:          p.ImageURL,
		Features:          p.Features,
		Profile:           p.Profile,
		Scopes:            scopes,
		PasswordHash:      hash,
		PasswordChangedAt: now,
		CreatedAt:         now,
		UpdatedAt:         now,
	}
	ev := storage.NewEvent(ctx, now, "user.create", "success", "")
	by.Stamp(&ev)
	ev.UserID, ev.Username = u.ID, u.Username
	if len(scopes) > 0 {
		ev.Detail = map[string]string{"scopes": truncate(strings.Join(scopes, " "), 256)}
		if u.Role == storage.RoleWorker {
			ev.Groups = scopes
		}
	}
	created, err := s.store.CreateUser(ctx, u, storage.WithEvents(ev))
	if err != nil {
		return storage.User{}, fmt.Errorf("create user: %w", err)
	}
	return created, nil
}

// Get returns a user by ID, or storage.ErrNotFound when there is none or
// it is outside by's scope.
func (s *Users) Get(ctx context.Context, by Principal, id string) (storage.User, error) {
	handsets, err := userInScope(ctx, s.store, by, id)
	if err != nil {
		return storage.User{}, err
	}
	u, err := s.store.GetUser(ctx, id)
	if err != nil {
		return storage.User{}, err
	}
	return u, recheckScope(by, id, u, handsets)
}

// userInScope returns storage.ErrNotFound, as for a missing user, for a
// user outside by's scope; otherwise the groups of the handsets the user is
// assigned to, for recheckScope to check the user's record against.
func userInScope(ctx context.Context, store storage.ScopeChecker, by Principal, id string) ([]string, error) {
	if !by.Scoped() {
		return nil, nil
	}
	in, err := store.UserInScope(ctx, id, by.Scopes)
	if err != nil {
		return nil, err
	}
	if !in {
		return nil, fmt.Errorf("user %s out of scope: %w", id, storage.ErrNotFound)
	}
	return store.HandsetGroups(ctx, id)
}

// recheckScope checks, inside the write that changes it, that the user u
// is still in by's scope, given the groups of their handsets read before:
// a worker moved out of scope (or promoted) meanwhile is not found.
func recheckScope(by Principal, id string, u storage.User, handsets []string) error {
	if by.Scoped() && !storage.UserInScope(u, handsets, by.Scopes) {
		return fmt.Errorf("user %s out of scope: %w", id, storage.ErrNotFound)
	}
	return nil
}

// Usernames returns the usernames of the users with the given ids, in one
// read; ids of no user are left out.
func (s *Users) Usernames(ctx context.Context, ids []string) (map[string]string, error) {
	return s.store.Usernames(ctx, ids)
}

// List returns one page of the users in by's scope (whatever f.Groups
// says).
func (s *Users) List(ctx context.Context, by Principal, f storage.UserFilter) (storage.Page[storage.User], error) {
	f.Groups = by.Scopes
	if f.Role != "" && f.Role != storage.RoleWorker && f.Role != storage.RoleManager && f.Role != storage.RoleAdmin {
		return storage.Page[storage.User]{}, tether.Invalid("role", "role_invalid", "role must be worker, manager or admin")
	}
	return s.store.ListUsers(ctx, f)
}

// UserPatch is an edit of an account. Nil fields are left as they are.
// Usernames do not change: handsets and logs know people by them.
type UserPatch struct {
	Role      *storage.Role
	FirstName *string
	LastName  *string
	Email     *string
	ImageURL  *string
	Features  *[]string
	// Profile replaces the whole profile object; JSON null clears it.
	Profile  *json.RawMessage
	Disabled *bool
	// Scopes replaces the account's scopes (see NewUser.Scopes); an empty
	// list clears them. A scoped manager sets, of a worker's, only the
	// groups of their own scope: the worker's other groups stay.
	Scopes *[]string
}

// Update applies a patch. by may not touch an account of a role it could not
// grant, nor grant one, nor change its own scopes; a scoped manager sees
// only the workers in their scope (others are not found) and cannot widen
// anyone's scope beyond their own (ErrScopeExceeded).
func (s *Users) Update(ctx context.Context, by Principal, id string, p UserPatch) (storage.User, error) {
	if p.Role != nil && !by.CanGrant(*p.Role) {
		return storage.User{}, fmt.Errorf("%s granting %s: %w", by, *p.Role, ErrForbidden)
	}
	var scopes []string
	if p.Scopes != nil {
		var verr *tether.ValidationError
		if scopes, verr = CheckScopes("scopes", *p.Scopes); verr != nil {
			return storage.User{}, verr
		}
		if by.Scoped() {
			for _, g := range scopes {
				if !storage.InGroups(g, by.Scopes) {
					return storage.User{}, fmt.Errorf("%s giving %s group %q: %w", by, id, g, ErrScopeExceeded)
				}
			}
		}
	}
	handsets, err := userInScope(ctx, s.store, by, id)
	if err != nil {
		return storage.User{}, err
	}
	now := s.now().UTC()
	ev := storage.NewEvent(ctx, now, "user.update", "success", "")
	by.Stamp(&ev)
	ev.UserID = id
	if p.Scopes != nil {
		ev.Detail = map[string]string{"scopes": truncate(strings.Join(scopes, " "), 256)}
	}
	opts := []storage.WriteOption{storage.WithEvents(ev)}
	if p.Disabled != nil && *p.Disabled {
		// A disabled account loses every session, in the same transaction.
		opts = append(opts, storage.WithRevocation(storage.Revocation{UserID: id, Reason: "account_disabled", At: now}, nil))
	}
	return s.store.UpdateUser(ctx, id, func(u storage.User) (storage.User, error) {
		if err := recheckScope(by, id, u, handsets); err != nil {
			return u, err
		}
		if !by.CanGrant(u.Role) {
			return u, fmt.Errorf("%s editing a %s: %w", by, u.Role, ErrForbidden)
		}
		if p.Scopes != nil && by.Kind == KindUser && by.ID == u.ID && !slices.Equal(scopes, storage.ScopeGroups(u.Scopes)) {
			return u, fmt.Errorf("%s changing its own scopes: %w", by, ErrForbidden)
		}
		// What the directory owns is changed there; disabling, features
		// and the profile are Tether's own.
		if u.Directory != nil && (p.Role != nil || p.FirstName != nil || p.LastName != nil || p.Email != nil) {
			return u, ErrDirectoryManaged
		}
		if by.Kind == KindUser && by.ID == u.ID && ((p.Disabled != nil && *p.Disabled) || (p.Role != nil && *p.Role != u.Role)) {
			return u, fmt.Errorf("%s disabling or demoting itself: %w", by, ErrForbidden)
		}
		pr := profile{
			Username: u.Username, Role: string(u.Role), FirstName: u.FirstName, LastName: u.LastName,
			Email: u.Email, ImageURL: u.ImageURL, Features: u.Features, Profile: u.Profile,
		}
		if p.Role != nil {
			pr.Role = string(*p.Role)
		}
		setIf(&pr.FirstName, p.FirstName)
		setIf(&pr.LastName, p.LastName)
		setIf(&pr.Email, p.Email)
		setIf(&pr.ImageURL, p.ImageURL)
		setIf(&pr.Features, p.Features)
		if p.Profile != nil {
			pr.Profile = *p.Profile
			if bytes.Equal(bytes.TrimSpace(pr.Profile), []byte("null")) {
				pr.Profile = nil
			}
		}
		if err := s.check(&pr); err != nil {
			return u, err
		}
		next := u.Scopes
		if p.Scopes != nil {
			next = scopes
			if by.Scoped() {
				// The worker's groups outside by's scope are not by's to
				// change.
				var keep []string
				for _, g := range u.Scopes {
					if !storage.InGroups(g, by.Scopes) {
						keep = append(keep, g)
					}
				}
				next = storage.ScopeGroups(keep, scopes)
			}
		}
		if storage.Role(pr.Role) == storage.RoleAdmin && len(next) > 0 {
			return u, errAdminScoped
		}
		u.Scopes = next
		u.Role = storage.Role(pr.Role)
		u.FirstName, u.LastName, u.Email, u.ImageURL = pr.FirstName, pr.LastName, pr.Email, pr.ImageURL
		u.Features, u.Profile = pr.Features, pr.Profile
		if p.Disabled != nil {
			u.Disabled = *p.Disabled
			if u.Directory != nil {
				// A manager's word: the directory does not undo it.
				u.Directory.DisabledFor = ""
			}
		}
		u.UpdatedAt = now
		return u, nil
	}, opts...)
}

// SetPassword resets an account's password on a manager's (or the
// operator's) word, and ends every session of the account in the same
// transaction: whoever knew the old password, or holds a token of it, is
// out. A user changing their own password goes through
// Service.ChangePassword, which keeps the session it is made from.
func (s *Users) SetPassword(ctx context.Context, by Principal, id, password string) error {
	if verr := passwordPolicy(password); verr != nil {
		return verr
	}
	handsets, err := userInScope(ctx, s.store, by, id)
	if err != nil {
		return err
	}
	target, err := s.store.GetUser(ctx, id)
	if err != nil {
		return err
	}
	if !by.CanGrant(target.Role) {
		return fmt.Errorf("%s setting the password of a %s: %w", by, target.Role, ErrForbidden)
	}
	if target.Directory != nil {
		return ErrDirectoryManaged
	}
	// Hash outside the store's transaction: it is slow on purpose.
	hash, err := s.hasher.Hash(password)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	ev := storage.NewEvent(ctx, now, "user.password", "success", "")
	by.Stamp(&ev)
	ev.UserID, ev.Username, ev.Reason = id, target.Username, "reset: every session ended"
	_, err = s.store.UpdateUser(ctx, id, func(u storage.User) (storage.User, error) {
		if err := recheckScope(by, id, u, handsets); err != nil {
			return u, err
		}
		if !by.CanGrant(u.Role) {
			return u, fmt.Errorf("%s setting the password of a %s: %w", by, u.Role, ErrForbidden)
		}
		if u.Directory != nil {
			return u, ErrDirectoryManaged
		}
		u.PasswordHash = hash
		u.PasswordChangedAt = now
		u.UpdatedAt = now
		return u, nil
	}, storage.WithEvents(ev), storage.WithRevocation(storage.Revocation{UserID: id, Reason: "password_reset", At: now}, nil))
	return err
}

// ResetMFA removes every second factor and recovery code of the user
// userID, on an admin's word (or the operator's, on the host), for a
// person who lost theirs; every session of the user ends in the same
// transaction. At their next sign-in they enroll a new factor where their
// role must have one. It returns how many sessions ended. An admin resets
// another account's factors, not their own.
func (s *Users) ResetMFA(ctx context.Context, by Principal, userID string) (int, error) {
	if err := by.Require(storage.RoleAdmin); err != nil {
		return 0, err
	}
	if by.Kind == KindUser && by.ID == userID {
		return 0, errResetOwn
	}
	target, err := s.store.GetUser(ctx, userID)
	if err != nil {
		return 0, err
	}
	now := s.now().UTC()
	ev := storage.NewEvent(ctx, now, "user.mfa_reset", "success", "")
	by.Stamp(&ev)
	ev.UserID, ev.Username, ev.Reason = target.ID, target.Username, "every factor and recovery code removed; every session ended"
	factors := 0
	if target.MFA != nil {
		factors = len(target.MFA.Factors)
	}
	ev.Detail = map[string]string{"factors": fmt.Sprint(factors)}
	var n int
	_, err = s.store.UpdateUser(ctx, userID, func(cur storage.User) (storage.User, error) {
		if cur.MFA != nil {
			// The completed steps stay: none may be used again; and every
			// step begun before the reset is void (passwordStamp).
			cur.MFA = &storage.UserMFA{Spent: cur.MFA.Spent, ResetAt: now}
		}
		cur.UpdatedAt = now
		return cur, nil
	}, storage.WithEvents(ev), storage.WithRevocation(storage.Revocation{UserID: userID, Reason: "mfa_reset", At: now}, &n))
	if err != nil {
		return 0, err
	}
	return n, nil
}

func setIf[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// NewValidator returns the validator with every rule registered: the device
// payload's and the accounts'. Servers and commands share one.
func NewValidator() (*validator.Validate, error) {
	v := tether.NewValidator()
	if err := device.RegisterValidations(v); err != nil {
		return nil, err
	}
	if err := RegisterValidations(v); err != nil {
		return nil, err
	}
	return v, nil
}
