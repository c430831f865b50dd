package api

import (
	"strings"

	"github.com/gofiber/fiber/v2"
)

// dialectRoutes are the compatibility dialects' routes (docs/compat.md),
// each with its handler. Paths match in any case, as the servers they stand
// in for did.
func (s *server) dialectRoutes() map[string]fiber.Handler {
	return map[string]fiber.Handler{
		"/api/User/GetUserToken":             s.getUserToken,
		"/api/Login":                         s.commandLogin,
		"/commandcenter/api/Login":           s.commandLogin,
		"/api/RenewLoginToken":               s.renewLoginToken,
		"/commandcenter/api/RenewLoginToken": s.renewLoginToken,
		"/api/v1/Authentication/Login":       s.tokenLoginLogin,
		"/api/v1/Authentication/TokenLogin":  s.tokenLogin,
		"/Auth/Login":                        s.authLogin,
		"/api/session/regeneratetoken":       s.regenerateToken,
	}
}

// dialectPaths are the dialects' paths, lower-cased.
var dialectPaths = map[string]bool{}

func init() {
	for path := range (&server{}).dialectRoutes() {
		dialectPaths[strings.ToLower(path)] = true
	}
}

// isDialect reports whether a request path is a dialect's. The dialects
// answer as the servers they stand in for did: an Accept they cannot
// serve falls back to JSON, as ASP.NET Web API does, where the native API
// answers 406.
func isDialect(path string) bool {
	return dialectPaths[strings.ToLower(strings.TrimSuffix(path, "/"))]
}

// tokenLoginPrefix is where the token-login document's API lives: its
// errors, even those no handler saw (an unknown path, a method, a body
// over the limit), come in its LoginData shape and obey its
// suppressResponseCodes.
const tokenLoginPrefix = "/api/v1/"

func isTokenLogin(path string) bool {
	return strings.HasPrefix(strings.ToLower(path), tokenLoginPrefix)
}

// tokenLoginQueryOf reads the token-login document's fields and
// suppressResponseCodes parameters, in any case.
func tokenLoginQueryOf(c *fiber.Ctx) tokenLoginQuery {
	var q tokenLoginQuery
	for k, v := range c.Context().QueryArgs().All() {
		switch strings.ToLower(string(k)) {
		case "fields":
			for _, f := range strings.Split(string(v), ",") {
				if f = strings.TrimSpace(f); f != "" {
					q.fields = append(q.fields, f)
				}
			}
		case "suppressresponsecodes":
			q.suppress = strings.EqualFold(string(v), "true")
		}
	}
	return q
}
