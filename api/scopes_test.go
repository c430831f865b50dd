package api_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Route classes: who a route is for.
const (
	classOpen       = "open"       // no credentials: handsets, sign-in steps, discovery
	classSelf       = "self"       // a signed-in user's own token
	classFactors    = "factors"    // a manager's or admin's own second factors
	classIntrospect = "introspect" // a resource server's key
	classManager    = "manager"    // a manager or admin, in the caller's scope
	classAdmin      = "admin"      // an admin only
	classOps        = "ops"        // health, metrics, the OpenAPI document, the console's files
	classOAuth      = "oauth"      // the OAuth 2.0 / OpenID Connect protocol
	classDialect    = "dialect"    // the seed dialects (docs/compat.md)
)

// routeClasses classifies every route the server registers. A route
// missing here fails TestRouteTableIsClassified: whoever adds one says who
// it is for, and, for a manager route, how a scope applies to it (the
// cases of TestScopesByRoute).
var routeClasses = map[string]string{
	"POST /v1/auth/login": classOpen, "POST /v1/auth/refresh": classOpen, "POST /v1/auth/renew": classOpen,
	"POST /v1/auth/mfa": classOpen, "POST /v1/auth/mfa/enroll": classOpen, "POST /v1/auth/mfa/enroll/confirm": classOpen,
	"POST /v1/enroll": classOpen, "POST /v1/enroll/challenge": classOpen, "GET /.well-known/jwks.json": classOpen,

	"POST /v1/auth/logout": classSelf, "GET /v1/auth/me": classSelf, "POST /v1/auth/password": classSelf,

	"GET /v1/auth/factors": classFactors, "POST /v1/auth/factors/totp": classFactors,
	"POST /v1/auth/factors/totp/confirm": classFactors, "POST /v1/auth/factors/:id/remove": classFactors,
	"POST /v1/auth/recovery-codes": classFactors,

	"POST /v1/auth/introspect": classIntrospect,

	"POST /v1/devices/": classManager, "POST /v1/devices/import": classManager, "GET /v1/devices/": classManager,
	"GET /v1/devices/:id": classManager, "PATCH /v1/devices/:id": classManager,
	"POST /v1/devices/:id/suspend": classManager, "POST /v1/devices/:id/retire": classManager,
	"POST /v1/devices/:id/reinstate": classManager,
	"POST /v1/users/":                classManager, "GET /v1/users/": classManager, "GET /v1/users/:id": classManager,
	"PATCH /v1/users/:id": classManager, "POST /v1/users/:id/password": classManager,
	"POST /v1/users/:id/logout-all": classManager,
	"GET /v1/sessions/":             classManager, "DELETE /v1/sessions/:id": classManager,
	"GET /v1/audit": classManager, "GET /v1/directory": classManager,
	"GET /v1/lockouts/": classManager, "DELETE /v1/lockouts/": classManager,
	"POST /v1/enrollment-codes/": classManager, "GET /v1/enrollment-codes/": classManager,
	"DELETE /v1/enrollment-codes/:id": classManager, "GET /v1/enrollment-codes/:id/qr.png": classManager,

	"POST /v1/users/:id/mfa/reset": classAdmin, "POST /v1/admin/keys/rotate": classAdmin, "GET /v1/admin/backup": classAdmin,
	"POST /v1/api-keys/": classAdmin, "GET /v1/api-keys/": classAdmin, "DELETE /v1/api-keys/:id": classAdmin,
	"GET /v1/oauth/clients": classAdmin, "POST /v1/oauth/clients": classAdmin, "GET /v1/oauth/clients/:id": classAdmin,
	"PUT /v1/oauth/clients/:id": classAdmin, "DELETE /v1/oauth/clients/:id": classAdmin,
	"POST /v1/oauth/clients/:id/secret": classAdmin,

	"GET /healthz": classOps, "GET /readyz": classOps, "GET /metrics": classOps, "GET /openapi.json": classOps,
	"GET /console": classOps, "GET /console/*": classOps,

	"GET /.well-known/openid-configuration": classOAuth, "GET /.well-known/oauth-authorization-server": classOAuth,
	"GET /oauth2/authorize": classOAuth, "POST /oauth2/authorize": classOAuth, "GET /oauth2/device": classOAuth,
	"POST /oauth2/device": classOAuth, "POST /oauth2/device_authorization": classOAuth, "POST /oauth2/token": classOAuth,
	"POST /oauth2/revoke": classOAuth, "POST /oauth2/introspect": classOAuth, "GET /oauth2/userinfo": classOAuth,
	"POST /oauth2/userinfo": classOAuth, "GET /oauth2/logout": classOAuth, "POST /oauth2/logout": classOAuth,
	// Dynamic client registration: an admin's (TestEveryRouteChecksItsRole).
	"POST /oauth2/register": classOAuth, "GET /oauth2/register/:id": classOAuth, "PUT /oauth2/register/:id": classOAuth,
	"DELETE /oauth2/register/:id": classOAuth,

	"POST /api/User/GetUserToken": classDialect, "POST /api/Login": classDialect, "POST /api/RenewLoginToken": classDialect,
	"POST /commandcenter/api/Login": classDialect, "POST /commandcenter/api/RenewLoginToken": classDialect,
	"POST /api/v1/Authentication/Login": classDialect, "POST /api/v1/Authentication/TokenLogin": classDialect,
	"POST /Auth/Login": classDialect, "POST /api/session/regeneratetoken": classDialect,
}

func TestRouteTableIsClassified(t *testing.T) {
	e := newEnv(t, oauthOn{})
	seen := map[string]bool{}
	for _, rt := range e.app.GetRoutes(true) {
		if rt.Method == "HEAD" {
			continue
		}
		key := rt.Method + " " + rt.Path
		seen[key] = true
		class, ok := routeClasses[key]
		if !ok {
			t.Errorf("%s: not classified in routeClasses: say who it is for (and, for a manager route, add its scope cases)", key)
			continue
		}
		if class == classManager {
			if _, ok := scopeCases[key]; !ok {
				t.Errorf("%s: a manager route with no scope case in scopeCases", key)
			}
		}
	}
	for key := range routeClasses {
		if !seen[key] {
			t.Errorf("%s: classified but not served", key)
		}
	}
}

// Who asks, in TestScopesByRoute.
const (
	whoAdmin   = "admin"
	whoManager = "unscoped manager"
	whoScopedA = "manager scoped to A"
	whoScopedB = "manager key scoped to B"
	whoWorker  = "worker"
	whoNone    = "no credentials"
)

var everyone = []string{whoAdmin, whoManager, whoScopedA, whoScopedB, whoWorker, whoNone}

// scopeWorld is a server with principals of every kind, and handsets,
// workers, sessions and codes made on demand in group A, group B or none.
type scopeWorld struct {
	e     *env
	creds map[string]string // who → bearer secret
	mu    sync.Mutex
	n     int
}

// imeiN returns a fresh valid IMEI.
func imeiN(n int) string {
	body := fmt.Sprintf("35%012d", n)
	sum := 0
	for i := 0; i < 14; i++ {
		d := int(body[i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return body + fmt.Sprint((10-sum%10)%10)
}

func (w *scopeWorld) next() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	return w.n
}

func newScopeWorld(t *testing.T) *scopeWorld {
	e := newEnv(t, oauthOn{})
	w := &scopeWorld{e: e, creds: map[string]string{whoAdmin: e.admin, whoManager: e.manager}}
	// A manager account scoped to A, signed in with a password.
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "mgr-a", "password": "correct horse", "role": "manager", "scopes": []string{"A"}}); r.status != 201 {
		t.Fatalf("manager A: %d %s", r.status, r.body)
	}
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "mgr-a", "password": "correct horse"})
	if r.status != 200 {
		t.Fatalf("manager A login: %d %s", r.status, r.body)
	}
	w.creds[whoScopedA] = r.json(t)["accessToken"].(string)
	// A manager's API key scoped to B.
	r = e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "manager", "name": "depot B", "scopes": []string{"B"}})
	if r.status != 201 || fmt.Sprint(r.json(t)["scopes"]) != "[B]" {
		t.Fatalf("key B: %d %s", r.status, r.body)
	}
	w.creds[whoScopedB] = r.json(t)["key"].(string)
	// A worker signed in on a handset of no group.
	_, sessionToken := w.session(t, "")
	w.creds[whoWorker] = sessionToken
	return w
}

func groupsOf(g string) []string {
	if g == "" {
		return nil
	}
	return []string{g}
}

// device registers a handset in group g and returns its id and IMEI.
func (w *scopeWorld) device(t *testing.T, g string, assigned ...string) (string, string) {
	t.Helper()
	imei := imeiN(w.next())
	r := w.e.do("POST", "/v1/devices", w.e.admin, map[string]any{"imei": imei, "group": g, "assignedUsers": assigned})
	if r.status != 201 {
		t.Fatalf("device: %d %s", r.status, r.body)
	}
	return r.json(t)["id"].(string), imei
}

// worker creates a worker in group g (none for ""), and returns their id and
// username.
func (w *scopeWorld) worker(t *testing.T, g string) (string, string) {
	t.Helper()
	name := fmt.Sprintf("worker-%d", w.next())
	r := w.e.do("POST", "/v1/users", w.e.admin, map[string]any{"username": name, "password": "correct horse", "scopes": groupsOf(g)})
	if r.status != 201 {
		t.Fatalf("worker: %d %s", r.status, r.body)
	}
	return r.json(t)["id"].(string), name
}

// session signs a new worker of group g in on a new handset of group g, and
// returns the session's id and access token.
func (w *scopeWorld) session(t *testing.T, g string) (string, string) {
	t.Helper()
	_, name := w.worker(t, g)
	_, imei := w.device(t, g, name)
	r := w.e.do("POST", "/v1/auth/login", "", map[string]any{"username": name, "password": "correct horse", "device": handset(imei)})
	if r.status != 200 {
		t.Fatalf("worker login: %d %s", r.status, r.body)
	}
	m := r.json(t)
	return m["sessionId"].(string), m["accessToken"].(string)
}

// code makes an enrollment code for group g and returns its id and code.
func (w *scopeWorld) code(t *testing.T, g string) (string, string) {
	t.Helper()
	r := w.e.do("POST", "/v1/enrollment-codes", w.e.admin, map[string]any{"group": g})
	if r.status != 201 {
		t.Fatalf("code: %d %s", r.status, r.body)
	}
	return r.json(t)["id"].(string), r.json(t)["code"].(string)
}

// record reads an object straight from the store, to see that a refused
// request changed nothing.
func (w *scopeWorld) record(t *testing.T, kind, id string) string {
	t.Helper()
	ctx := t.Context()
	var (
		v   any
		err error
	)
	switch kind {
	case "device":
		v, err = w.e.store.GetDevice(ctx, id)
	case "user":
		v, err = w.e.store.GetUser(ctx, id)
	case "session":
		v, err = w.e.store.GetSession(ctx, id)
	case "code":
		v, err = w.e.store.GetEnrollmentCode(ctx, id)
	default:
		return ""
	}
	if err != nil {
		t.Fatalf("%s %s: %v", kind, id, err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// scopeKind says how a scope applies to a manager route.
type scopeKind int

const (
	// onRecord: the route names a record; out of scope it is not found.
	onRecord scopeKind = iota
	// creates: the route makes a record in the group named; a group out
	// of scope is scope_exceeded, none is the scoped manager's only group.
	creates
	// lists: the route lists; out of scope the record is not in the list.
	lists
	// fleet: the route is about no record of a group.
	fleet
)

// object is what a case made, in a group, for its request.
type object struct {
	kind string // "device", "user", "session", "code"; "" for none
	id   string
	// name is the IMEI, username or code that goes with it.
	name string
}

// scopeCase is how TestScopesByRoute exercises one manager route on an
// object of group g: make makes the object (as an admin), send sends the
// request as secret. For lists, the answer holds the object's id under
// field exactly when it is in the caller's scope.
type scopeCase struct {
	scope   scopeKind
	success int
	// outOfScope is the status of a creating route refused for its group
	// (403 scope_exceeded; the import's per-row 400).
	outOfScope int
	field      string
	make       func(t *testing.T, w *scopeWorld, g string) object
	send       func(w *scopeWorld, secret, g string, o object) response
}

func hasItem(r response, field, value string) bool {
	var page struct {
		Items []map[string]any `json:"items"`
	}
	if json.Unmarshal(r.body, &page) != nil {
		return false
	}
	for _, it := range page.Items {
		if it[field] == value {
			return true
		}
	}
	return false
}

func makeDevice(t *testing.T, w *scopeWorld, g string) object {
	id, imei := w.device(t, g)
	return object{"device", id, imei}
}

func makeWorker(t *testing.T, w *scopeWorld, g string) object {
	id, name := w.worker(t, g)
	return object{"user", id, name}
}

func makeSession(t *testing.T, w *scopeWorld, g string) object {
	id, _ := w.session(t, g)
	return object{"session", id, ""}
}

func makeCode(t *testing.T, w *scopeWorld, g string) object {
	id, code := w.code(t, g)
	return object{"code", id, code}
}

func makeNothing(t *testing.T, w *scopeWorld, g string) object { return object{} }

// at sends method to path+suffix, with the object's id in place of :id.
func at(method, path string, body any, headers ...string) func(w *scopeWorld, secret, g string, o object) response {
	return func(w *scopeWorld, secret, g string, o object) response {
		return w.e.do(method, strings.ReplaceAll(strings.ReplaceAll(path, ":id", o.id), ":name", o.name), secret, body, headers...)
	}
}

var scopeCases = map[string]scopeCase{
	"POST /v1/devices/": {scope: creates, success: 201, outOfScope: 403, make: makeNothing, send: func(w *scopeWorld, secret, g string, o object) response {
		return w.e.do("POST", "/v1/devices", secret, map[string]any{"imei": imeiN(w.next()), "group": g})
	}},
	"POST /v1/devices/import": {scope: creates, success: 200, outOfScope: 400, make: makeNothing, send: func(w *scopeWorld, secret, g string, o object) response {
		return w.e.do("POST", "/v1/devices/import", secret, "imei,group\n"+imeiN(w.next())+","+g+"\n", "Content-Type", "text/csv")
	}},
	"GET /v1/devices/":               {scope: lists, success: 200, field: "id", make: makeDevice, send: at("GET", "/v1/devices?q=:name", nil)},
	"GET /v1/devices/:id":            {scope: onRecord, success: 200, make: makeDevice, send: at("GET", "/v1/devices/:id", nil)},
	"PATCH /v1/devices/:id":          {scope: onRecord, success: 200, make: makeDevice, send: at("PATCH", "/v1/devices/:id", map[string]any{"label": "relabelled", "notes": "edited"})},
	"POST /v1/devices/:id/suspend":   {scope: onRecord, success: 200, make: makeDevice, send: at("POST", "/v1/devices/:id/suspend", nil)},
	"POST /v1/devices/:id/retire":    {scope: onRecord, success: 200, make: makeDevice, send: at("POST", "/v1/devices/:id/retire", nil)},
	"POST /v1/devices/:id/reinstate": {scope: onRecord, success: 200, make: makeDevice, send: at("POST", "/v1/devices/:id/reinstate", nil)},

	"POST /v1/users/": {scope: creates, success: 201, outOfScope: 403, make: makeNothing, send: func(w *scopeWorld, secret, g string, o object) response {
		return w.e.do("POST", "/v1/users", secret, map[string]any{"username": fmt.Sprintf("new-%d", w.next()), "password": "correct horse", "scopes": groupsOf(g)})
	}},
	"GET /v1/users/":                {scope: lists, success: 200, field: "id", make: makeWorker, send: at("GET", "/v1/users?q=:name", nil)},
	"GET /v1/users/:id":             {scope: onRecord, success: 200, make: makeWorker, send: at("GET", "/v1/users/:id", nil)},
	"PATCH /v1/users/:id":           {scope: onRecord, success: 200, make: makeWorker, send: at("PATCH", "/v1/users/:id", map[string]any{"firstName": "Renamed", "disabled": true})},
	"POST /v1/users/:id/password":   {scope: onRecord, success: 204, make: makeWorker, send: at("POST", "/v1/users/:id/password", map[string]any{"password": "another long password"})},
	"POST /v1/users/:id/logout-all": {scope: onRecord, success: 200, make: makeSessionUser, send: at("POST", "/v1/users/:id/logout-all", nil)},

	"GET /v1/sessions/":       {scope: lists, success: 200, field: "id", make: makeSession, send: at("GET", "/v1/sessions?limit=1000", nil)},
	"DELETE /v1/sessions/:id": {scope: onRecord, success: 204, make: makeSession, send: at("DELETE", "/v1/sessions/:id", nil)},
	"GET /v1/audit":           {scope: lists, success: 200, field: "deviceId", make: makeDevice, send: at("GET", "/v1/audit?action=device.register&deviceId=:id", nil)},
	"GET /v1/directory":       {scope: fleet, success: 200, make: makeNothing, send: at("GET", "/v1/directory", nil)},
	"GET /v1/lockouts/":       {scope: fleet, success: 200, make: makeNothing, send: at("GET", "/v1/lockouts", nil)},
	"DELETE /v1/lockouts/":    {scope: onRecord, success: 200, make: makeWorker, send: at("DELETE", "/v1/lockouts?account=:name", nil)},

	"POST /v1/enrollment-codes/": {scope: creates, success: 201, outOfScope: 403, make: makeNothing, send: func(w *scopeWorld, secret, g string, o object) response {
		return w.e.do("POST", "/v1/enrollment-codes", secret, map[string]any{"group": g})
	}},
	"GET /v1/enrollment-codes/":           {scope: lists, success: 200, field: "id", make: makeCode, send: at("GET", "/v1/enrollment-codes", nil)},
	"DELETE /v1/enrollment-codes/:id":     {scope: onRecord, success: 204, make: makeCode, send: at("DELETE", "/v1/enrollment-codes/:id", nil)},
	"GET /v1/enrollment-codes/:id/qr.png": {scope: onRecord, success: 200, make: makeCode, send: at("GET", "/v1/enrollment-codes/:id/qr.png?code=:name", nil)},
}

// makeSessionUser signs a worker of group g in and returns the worker.
func makeSessionUser(t *testing.T, w *scopeWorld, g string) object {
	sid, _ := w.session(t, g)
	sess, err := w.e.store.GetSession(t.Context(), sid)
	if err != nil {
		t.Fatal(err)
	}
	return object{"user", sess.UserID, ""}
}

// inScope reports whether an object of group g is in who's scope.
func inScope(who, g string) bool {
	switch who {
	case whoAdmin, whoManager:
		return true
	case whoScopedA:
		return g == "A"
	case whoScopedB:
		return g == "B"
	}
	return false
}

// TestScopesByRoute sends every manager route as every kind of principal,
// on objects in group A, in group B and in none, and checks the status: a
// scoped manager finds only what is in their scope (the rest answers as a
// missing record does, and changes nothing), creates only in it, and
// lists only it.
func TestScopesByRoute(t *testing.T) {
	w := newScopeWorld(t)
	notFound := wantProblem(t, w.e.do("GET", "/v1/devices/dev_missing", w.e.admin, nil), 404, "not_found")["detail"]
	keys := make([]string, 0, len(scopeCases))
	for k := range scopeCases {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		c := scopeCases[key]
		t.Run(strings.ReplaceAll(strings.TrimPrefix(key, " "), "/", "_"), func(t *testing.T) {
			for _, who := range everyone {
				for _, g := range []string{"A", "B", ""} {
					o := c.make(t, w, g)
					var before string
					if o.kind != "" {
						before = w.record(t, o.kind, o.id)
					}
					r := c.send(w, w.creds[who], g, o)
					where := fmt.Sprintf("%s as %s on an object in group %q", key, who, g)
					refused := true
					switch {
					case who == whoNone:
						wantStatus(t, where, r, 401, "token_invalid")
					case who == whoWorker:
						wantStatus(t, where, r, 403, "forbidden")
					case c.scope == fleet:
						wantStatus(t, where, r, c.success, "")
					case c.scope == lists:
						wantStatus(t, where, r, c.success, "")
						if got, want := hasItem(r, c.field, o.id), inScope(who, g); got != want {
							t.Errorf("%s: listed %v; want %v\n%s", where, got, want, r.body)
						}
					case c.scope == creates:
						// A scoped manager's new record without a group goes
						// into their only group.
						if inScope(who, g) || (g == "" && (who == whoScopedA || who == whoScopedB)) {
							wantStatus(t, where, r, c.success, "")
						} else if c.outOfScope == 403 {
							wantStatus(t, where, r, 403, "scope_exceeded")
						} else {
							wantStatus(t, where, r, c.outOfScope, "validation_failed")
						}
					case inScope(who, g):
						refused = false
						wantStatus(t, where, r, c.success, "")
					default:
						if p := wantStatus(t, where, r, 404, "not_found"); p != nil && p["detail"] != notFound {
							t.Errorf("%s: detail %v; want that of a missing record, %v", where, p["detail"], notFound)
						}
					}
					if refused && o.kind != "" {
						if after := w.record(t, o.kind, o.id); after != before {
							t.Errorf("%s: refused, yet the %s changed:\n%s\n%s", where, o.kind, before, after)
						}
					}
				}
			}
		})
	}
}

// wantStatus checks an answer's status and, when code is set, its problem
// code; it returns the problem document of an error answer.
func wantStatus(t *testing.T, where string, r response, status int, code string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d; want %d\n%s", where, r.status, status, r.body)
		return nil
	}
	if code == "" {
		return nil
	}
	var p map[string]any
	if err := json.Unmarshal(r.body, &p); err != nil || p["code"] != code {
		t.Errorf("%s: %s; want code %s", where, r.body, code)
		return nil
	}
	return p
}
