package api

// Seed renew-login-token.txt: POST /api/Login, then POST /api/RenewLoginToken
// (also under /commandcenter) with the expired token.

import (
	"strings"

	"github.com/gofiber/fiber/v2"

	"tether/auth"
)

// renewAnswer is the seed's {token, error}: on success error is {}, on
// failure token is empty and error holds a stable code and a message.
type renewAnswer struct {
	Token string      `json:"token"`
	Error renewErrorV `json:"error"`
}

type renewErrorV struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

func (s *server) renewFail(c *fiber.Ctx, err error) error {
	p := toProblem(err)
	if p.Status >= 500 {
		s.log.ErrorContext(c.UserContext(), "renew-login-token dialect failed", "error", err)
	}
	if p.retryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, retryAfter(p.retryAfter))
	}
	return s.respond(c, p.Status, renewAnswer{Error: renewErrorV{Code: string(p.Code), Message: p.Detail}})
}

type commandLoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	DeviceID string `json:"deviceId"`
}

// commandLogin is POST /api/Login: username, password and the handset's
// id or IMEI (the same deviceId must come with every renewal).
func (s *server) commandLogin(c *fiber.Ctx) error {
	var req commandLoginRequest
	if err := decodeLoose(c, &req, bodyKinds{}); err != nil {
		return s.renewFail(c, err)
	}
	g, err := s.Auth.Login(c.UserContext(), auth.LoginRequest{
		Username: req.Username, Password: req.Password, DeviceRef: req.DeviceID, Persistent: true,
	})
	if err != nil {
		return s.renewFail(c, err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return s.respond(c, fiber.StatusOK, renewAnswer{Token: g.AccessToken})
}

type renewLoginTokenRequest struct {
	DeviceID  string `json:"deviceId"`
	SessionID string `json:"sessionId"`
}

var errAuthtoken = auth.ErrUnauthenticated.With("header", "Authtoken")

// renewLoginToken is POST /api/RenewLoginToken: the Authtoken header (the
// token itself, or a registered API key) and {deviceId, sessionId} where
// sessionId is the expired token. Every renewal rule of the native API
// applies.
func (s *server) renewLoginToken(c *fiber.Ctx) error {
	var req renewLoginTokenRequest
	if err := decodeLoose(c, &req, bodyKinds{}); err != nil {
		return s.renewFail(c, err)
	}
	header := strings.TrimSpace(c.Get("Authtoken"))
	switch {
	case header == "":
		return s.renewFail(c, errAuthtoken)
	case header == req.SessionID:
	default:
		if _, err := s.APIKeys.Authenticate(c.UserContext(), header); err != nil {
			return s.renewFail(c, errAuthtoken)
		}
	}
	g, err := s.Auth.Renew(c.UserContext(), req.SessionID, req.DeviceID)
	if err != nil {
		return s.renewFail(c, err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return s.respond(c, fiber.StatusOK, renewAnswer{Token: g.AccessToken})
}
