package api

// Seed token-login.txt: POST /api/v1/Authentication/Login and
// POST /api/v1/Authentication/TokenLogin, answering LoginData.

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"

	"github.com/gofiber/fiber/v2"

	"tether/auth"
	"tether/storage"
)

// loginData is the seed's answer, in its PascalCase. Error is not in the
// seed: it is added only to refusals, so a client that ignores unknown
// members still sees Authenticated false.
type loginData struct {
	Authenticated         bool         `json:"Authenticated"`
	ReAuthenticationToken string       `json:"ReAuthenticationToken"`
	Me                    *currentUser `json:"Me"`
	SessionToken          string       `json:"SessionToken"`
	Error                 *loginError  `json:"Error,omitempty"`
}

// currentUser is the seed's user. ID is a Guid in the seed: userGUID of
// the user's id.
type currentUser struct {
	ID        string `json:"ID"`
	FirstName string `json:"FirstName"`
	LastName  string `json:"LastName"`
	ImageURL  string `json:"ImageURL"`
}

type loginError struct {
	Code    string `json:"Code"`
	Message string `json:"Message"`
}

type tokenLoginQuery struct {
	fields   []string
	suppress bool
}

// readTokenLoginQuery reads the seed's query parameters and checks APIKey,
// which must be a registered client key.
func (s *server) readTokenLoginQuery(c *fiber.Ctx) (tokenLoginQuery, error) {
	q := tokenLoginQueryOf(c)
	key := ""
	for k, v := range c.Context().QueryArgs().All() {
		if strings.EqualFold(string(k), "APIKey") {
			key = string(v)
		}
	}
	if key == "" {
		return q, auth.ErrUnauthenticated.With("parameter", "APIKey")
	}
	p, err := s.APIKeys.Authenticate(c.UserContext(), key)
	if err != nil {
		return q, err
	}
	if p.Role != storage.RoleClient {
		return q, auth.ErrForbidden
	}
	return q, nil
}

// sendLoginData answers with the fields asked for: only the top-level
// members named in fields (any case; unknown names ignored), or the whole
// object when none matches.
func (s *server) sendLoginData(c *fiber.Ctx, q tokenLoginQuery, status int, v loginData) error {
	if q.suppress {
		status = fiber.StatusOK
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	all := map[string]any{
		"Authenticated": v.Authenticated, "ReAuthenticationToken": v.ReAuthenticationToken,
		"Me": v.Me, "SessionToken": v.SessionToken,
	}
	picked := map[string]any{}
	for _, want := range q.fields {
		for name, val := range all {
			if strings.EqualFold(want, name) {
				picked[name] = val
			}
		}
	}
	if len(picked) == 0 {
		return s.respond(c, status, v, xmlNames("LoginData", "item"))
	}
	if v.Error != nil {
		picked["Error"] = v.Error
	}
	return s.respond(c, status, picked, xmlNames("LoginData", "item"))
}

func (s *server) tokenLoginFail(c *fiber.Ctx, q tokenLoginQuery, err error) error {
	p := toProblem(err)
	if p.Status >= 500 {
		s.log.ErrorContext(c.UserContext(), "token-login dialect failed", "error", err)
	}
	if p.retryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, retryAfter(p.retryAfter))
	}
	return s.sendLoginData(c, q, p.Status, loginData{Error: &loginError{Code: string(p.Code), Message: p.Detail}})
}

func grantLoginData(g auth.Grant, reauth bool) loginData {
	v := loginData{
		Authenticated: true, SessionToken: g.AccessToken,
		Me: &currentUser{ID: userGUID(g.User.ID), FirstName: g.User.FirstName, LastName: g.User.LastName, ImageURL: g.User.ImageURL},
	}
	if reauth {
		v.ReAuthenticationToken = g.RefreshToken
	}
	return v
}

type tokenLoginLoginRequest struct {
	Username                      string `json:"username"`
	Password                      string `json:"password"`
	GenerateReAuthenticationToken bool   `json:"generateReAuthenticationToken"`
}

// tokenLoginLogin is POST /api/v1/Authentication/Login. The handset, if
// any, is named by X-Device-Id. With generateReAuthenticationToken the
// answer carries a re-authentication token: the session's refresh token.
func (s *server) tokenLoginLogin(c *fiber.Ctx) error {
	q, err := s.readTokenLoginQuery(c)
	if err != nil {
		return s.tokenLoginFail(c, q, err)
	}
	var req tokenLoginLoginRequest
	if err := decodeLoose(c, &req, bodyKinds{form: true}); err != nil {
		return s.tokenLoginFail(c, q, err)
	}
	g, err := s.Auth.Login(c.UserContext(), auth.LoginRequest{
		Username: req.Username, Password: req.Password, DeviceRef: deviceHeader(c), Persistent: true,
	})
	if err != nil {
		return s.tokenLoginFail(c, q, err)
	}
	return s.sendLoginData(c, q, fiber.StatusOK, grantLoginData(g, req.GenerateReAuthenticationToken))
}

type tokenAuthentication struct {
	ReAuthenticationToken string `json:"reAuthenticationToken"`
}

// tokenLogin is POST /api/v1/Authentication/TokenLogin: it trades a
// re-authentication token for a new session token. The answer carries the
// same re-authentication token, which the client keeps until the session
// ends (a new one at each call with --token-login-rotate).
func (s *server) tokenLogin(c *fiber.Ctx) error {
	q, err := s.readTokenLoginQuery(c)
	if err != nil {
		return s.tokenLoginFail(c, q, err)
	}
	var req tokenAuthentication
	if err := decodeLoose(c, &req, bodyKinds{form: true}); err != nil {
		return s.tokenLoginFail(c, q, err)
	}
	g, err := s.Auth.Reauthenticate(c.UserContext(), req.ReAuthenticationToken, deviceHeader(c))
	if err != nil {
		return s.tokenLoginFail(c, q, err)
	}
	return s.sendLoginData(c, q, fiber.StatusOK, grantLoginData(g, true))
}

// guidNamespace is Tether's namespace for the name-based UUIDs it shows
// where a seed has a Guid. It never changes: the UUIDs made in it are
// clients' user ids.
var guidNamespace = [16]byte{0xde, 0x0b, 0x7c, 0x28, 0xc7, 0xdf, 0x4c, 0xda, 0x9b, 0x9b, 0x80, 0x57, 0x2a, 0x47, 0x93, 0x63}

// userGUID is the Guid a seed shows for a user: the RFC 4122 (RFC 9562)
// version 5 UUID of the user's id in guidNamespace. It depends on the id
// alone, so it is the same at every login, on every server, after a
// restart and after tether migrate, which keeps ids.
func userGUID(userID string) string {
	return nameUUID(guidNamespace, userID)
}

// nameUUID is the version 5 (SHA-1, name-based) UUID of name in namespace.
func nameUUID(namespace [16]byte, name string) string {
	h := sha1.New()
	h.Write(namespace[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // the RFC 4122 variant
	x := hex.EncodeToString(u[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}
