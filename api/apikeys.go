package api

import (
	"time"

	"github.com/gofiber/fiber/v2"

	"tether/auth"
	"tether/storage"
)

type apiKeyView struct {
	ID        string       `json:"id"`
	Name      string       `json:"name"`
	Role      storage.Role `json:"role"`
	Hint      string       `json:"hint"`
	CreatedAt time.Time    `json:"createdAt"`
	CreatedBy string       `json:"createdBy,omitempty"`
	// AllowFrom are the networks the key is accepted from; absent for
	// anywhere.
	AllowFrom []string `json:"allowFrom,omitempty" xml:"allowFrom>network,omitempty"`
	// Scopes are the handset groups a manager's key manages; absent for
	// the whole fleet.
	Scopes []string `json:"scopes,omitempty" xml:"scopes>group,omitempty" doc:"the handset groups a manager's key is limited to; absent: the whole fleet"`
	// Key is the secret, present only in the answer that creates it.
	Key string `json:"key,omitempty"`
}

func newAPIKeyView(k storage.APIKey) apiKeyView {
	return apiKeyView{ID: k.ID, Name: k.Name, Role: k.Role, Hint: k.Hint, CreatedAt: k.CreatedAt, CreatedBy: k.CreatedBy, AllowFrom: k.AllowFrom, Scopes: k.Scopes}
}

type createAPIKeyRequest struct {
	Role      storage.Role `json:"role"`
	Name      string       `json:"name"`
	AllowFrom []string     `json:"allowFrom"`
	Scopes    []string     `json:"scopes" doc:"limit a manager's key to these handset groups (at most 64); none: the whole fleet"`
}

func (s *server) createAPIKey(c *fiber.Ctx) error {
	var req createAPIKeyRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	secret, k, err := s.APIKeys.CreateKey(c.UserContext(), principal(c), auth.NewAPIKey{Role: req.Role, Name: req.Name, AllowFrom: req.AllowFrom, Scopes: req.Scopes})
	if err != nil {
		return err
	}
	v := newAPIKeyView(k)
	v.Key = secret
	c.Set(fiber.HeaderCacheControl, "no-store")
	return s.respond(c, fiber.StatusCreated, v, xmlNames("apiKey", "item"))
}

func (s *server) listAPIKeys(c *fiber.Ctx) error {
	keys, err := s.APIKeys.List(c.UserContext())
	if err != nil {
		return err
	}
	out := listView[apiKeyView]{Items: make([]apiKeyView, 0, len(keys))}
	for _, k := range keys {
		out.Items = append(out.Items, newAPIKeyView(k))
	}
	return s.respond(c, fiber.StatusOK, out, xmlNames("apiKeys", "apiKey"))
}

func (s *server) deleteAPIKey(c *fiber.Ctx) error {
	if err := s.APIKeys.Revoke(c.UserContext(), principal(c), param(c, "id")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}
