package api

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/auth"
	"tether/storage"
)

// userView is an account as the API shows it: never its password hash.
type userView struct {
	ID                string          `json:"id"`
	Key               uint64          `json:"key"`
	Username          string          `json:"username"`
	Role              storage.Role    `json:"role"`
	FirstName         string          `json:"firstName"`
	LastName          string          `json:"lastName"`
	Email             string          `json:"email"`
	ImageURL          string          `json:"imageUrl"`
	Features          []string        `json:"features"`
	Profile           json.RawMessage `json:"profile,omitempty"`
	Disabled          bool            `json:"disabled"`
	PasswordChangedAt time.Time       `json:"passwordChangedAt,omitzero"`
	CreatedAt         time.Time       `json:"createdAt"`
	UpdatedAt         time.Time       `json:"updatedAt"`
	// Source is "local", or "ldap" for a user of the company directory,
	// which owns their names, email, role and password.
	Source    string                 `json:"source"`
	Directory *storage.UserDirectory `json:"directory,omitempty"`
	// Scopes are, for a manager, the handset groups they manage (empty:
	// the whole fleet), and for a worker the groups they are in.
	Scopes []string `json:"scopes" doc:"a manager's handset groups (empty: the whole fleet); a worker's groups; an admin has none"`

	// MFA is what a manager or admin has of second factors; absent for
	// the other roles.
	MFA *mfaSummaryView `json:"mfa,omitempty"`
}

func newUserView(u storage.User) userView {
	v := userView{
		ID: u.ID, Key: u.Key, Username: u.Username, Role: u.Role, FirstName: u.FirstName,
		LastName: u.LastName, Email: u.Email, ImageURL: u.ImageURL, Features: u.Features,
		Profile: u.Profile, Disabled: u.Disabled, PasswordChangedAt: u.PasswordChangedAt,
		CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, Source: u.Source(), Directory: u.Directory,
	}
	if v.Features == nil {
		v.Features = []string{}
	}
	v.Scopes = u.Scopes
	if v.Scopes == nil {
		v.Scopes = []string{}
	}
	v.MFA = mfaSummary(u)
	return v
}

type createUserRequest struct {
	Username  string          `json:"username"`
	Password  string          `json:"password"`
	Role      storage.Role    `json:"role"`
	FirstName string          `json:"firstName"`
	LastName  string          `json:"lastName"`
	Email     string          `json:"email"`
	ImageURL  string          `json:"imageUrl"`
	Features  []string        `json:"features"`
	Profile   json.RawMessage `json:"profile"`
	Scopes    []string        `json:"scopes" doc:"a manager's handset groups (none: the whole fleet) or a worker's groups; a manager limited to groups gives a worker groups of their own only (none: their only group)"`
}

func (s *server) createUser(c *fiber.Ctx) error {
	var req createUserRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if string(req.Profile) == "null" {
		req.Profile = nil
	}
	u, err := s.Users.Create(c.UserContext(), principal(c), auth.NewUser{
		Username: req.Username, Password: req.Password, Role: req.Role, FirstName: req.FirstName,
		LastName: req.LastName, Email: req.Email, ImageURL: req.ImageURL, Features: req.Features,
		Profile: req.Profile, Scopes: req.Scopes,
	})
	if err != nil {
		return err
	}
	c.Location("/v1/users/" + u.ID)
	return s.respond(c, fiber.StatusCreated, newUserView(u), xmlNames("user", "item"))
}

func (s *server) listUsers(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	f := storage.UserFilter{
		Role:   storage.Role(query(c, "role")),
		Text:   query(c, "q"),
		Source: query(c, "source"),
	}
	if f.Source != "" && f.Source != storage.SourceLocal && f.Source != storage.SourceDirectory {
		return tether.Invalid("source", "source_invalid", "source must be local or ldap")
	}
	switch c.Query("disabled") {
	case "":
	case "true":
		f.Disabled = new(bool)
		*f.Disabled = true
	case "false":
		f.Disabled = new(bool)
	default:
		return invalidRequest("disabled must be true or false")
	}
	page, err := collect(c, query(c, "cursor"), limit, func(after string, limit int) (storage.Page[storage.User], error) {
		f.After, f.Limit = after, limit
		return s.Users.List(c.UserContext(), principal(c), f)
	})
	if err != nil {
		return err
	}
	out := listView[userView]{Items: make([]userView, 0, len(page.Items)), NextCursor: page.Next}
	for _, u := range page.Items {
		out.Items = append(out.Items, newUserView(u))
	}
	return s.respond(c, fiber.StatusOK, out, xmlNames("users", "user"))
}

func (s *server) getUser(c *fiber.Ctx) error {
	u, err := s.Users.Get(c.UserContext(), principal(c), param(c, "id"))
	if err != nil {
		return err
	}
	return s.respond(c, fiber.StatusOK, newUserView(u), xmlNames("user", "item"))
}

type patchUserRequest struct {
	Role      *storage.Role    `json:"role"`
	FirstName *string          `json:"firstName"`
	LastName  *string          `json:"lastName"`
	Email     *string          `json:"email"`
	ImageURL  *string          `json:"imageUrl"`
	Features  *[]string        `json:"features"`
	Profile   *json.RawMessage `json:"profile"`
	Disabled  *bool            `json:"disabled"`
	Scopes    *[]string        `json:"scopes" doc:"replaces the scopes ([] clears them); a manager limited to groups changes only the worker's groups among their own"`
}

func (s *server) patchUser(c *fiber.Ctx) error {
	var req patchUserRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	u, err := s.Users.Update(c.UserContext(), principal(c), param(c, "id"), auth.UserPatch{
		Role: req.Role, FirstName: req.FirstName, LastName: req.LastName, Email: req.Email,
		ImageURL: req.ImageURL, Features: req.Features, Profile: req.Profile, Disabled: req.Disabled,
		Scopes: req.Scopes,
	})
	if err != nil {
		return err
	}
	return s.respond(c, fiber.StatusOK, newUserView(u), xmlNames("user", "item"))
}

type passwordRequest struct {
	Password string `json:"password"`
}

func (s *server) setPassword(c *fiber.Ctx) error {
	var req passwordRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := s.Users.SetPassword(c.UserContext(), principal(c), param(c, "id"), req.Password); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// directoryView is the state of directory sign-in.
type directoryView struct {
	// Configured is false when the server has no directory.
	Configured bool `json:"configured"`
	// Up is whether the directory answered this server the last time it
	// asked; absent before it asked.
	Up *bool `json:"up,omitempty"`
	// LastSync is the last sync, from whichever server ran it.
	LastSync *directorySyncView `json:"lastSync,omitempty"`
}

type directorySyncView struct {
	At       time.Time `json:"at"`
	Outcome  string    `json:"outcome"`
	Reason   string    `json:"reason,omitempty"`
	Checked  int       `json:"checked"`
	Updated  int       `json:"updated"`
	Disabled int       `json:"disabled"`
	Enabled  int       `json:"enabled"`
}

// directoryStatus is GET /v1/directory.
func (s *server) directoryStatus(c *fiber.Ctx) error {
	v := directoryView{Configured: s.Auth.HasDirectory()}
	if up, known := s.Auth.DirectoryUp(); known {
		v.Up = &up
	}
	if v.Configured {
		ev, err := s.Auth.LastDirectorySync(c.UserContext(), principal(c))
		switch {
		case err == nil:
			n := func(k string) int { i, _ := strconv.Atoi(ev.Detail[k]); return i }
			v.LastSync = &directorySyncView{At: ev.Time, Outcome: ev.Outcome, Reason: ev.Reason,
				Checked: n("checked"), Updated: n("updated"), Disabled: n("disabled"), Enabled: n("enabled")}
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
	}
	return s.respond(c, fiber.StatusOK, v, xmlNames("directory", "item"))
}
