package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"tether/events"
	"tether/storage"
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
	"POST /v1/auth/mfa/webauthn": classOpen, "POST /v1/auth/mfa/webauthn/finish": classOpen,
	"POST /v1/auth/mfa/enroll/webauthn": classOpen, "POST /v1/auth/mfa/enroll/webauthn/confirm": classOpen,
	"POST /v1/enroll": classOpen, "POST /v1/enroll/challenge": classOpen, "GET /.well-known/jwks.json": classOpen,

	"POST /v1/auth/logout": classSelf, "GET /v1/auth/me": classSelf, "POST /v1/auth/password": classSelf,
	"POST /v1/auth/end-shift": classSelf,

	"GET /v1/auth/factors": classFactors, "POST /v1/auth/factors/totp": classFactors,
	"POST /v1/auth/factors/totp/confirm": classFactors, "POST /v1/auth/factors/:id/remove": classFactors,
	"POST /v1/auth/recovery-codes":   classFactors,
	"POST /v1/auth/factors/webauthn": classFactors, "POST /v1/auth/factors/webauthn/confirm": classFactors,
	"POST /v1/auth/factors/webauthn/reauth": classFactors,

	"POST /v1/auth/introspect": classIntrospect,

	"POST /v1/devices/": classManager, "POST /v1/devices/import": classManager, "GET /v1/devices/": classManager,
	"GET /v1/devices/:id": classManager, "PATCH /v1/devices/:id": classManager,
	"POST /v1/devices/:id/suspend": classManager, "POST /v1/devices/:id/retire": classManager,
	"POST /v1/devices/:id/reinstate": classManager,
	"POST /v1/users/":                classManager, "GET /v1/users/": classManager, "GET /v1/users/:id": classManager,
	"PATCH /v1/users/:id": classManager, "POST /v1/users/:id/password": classManager,
	"POST /v1/users/:id/logout-all": classManager,
	"GET /v1/sessions/":             classManager, "DELETE /v1/sessions/:id": classManager,
	"GET /v1/groups/": classManager, "GET /v1/groups/:name": classManager, "PUT /v1/groups/:name": classManager,
	"DELETE /v1/groups/:name": classManager, "GET /v1/rack": classManager,
	"GET /v1/audit": classManager, "GET /v1/directory": classManager,
	"GET /v1/events/sinks/": classManager, "GET /v1/events/sinks/:name/dead-letters": classManager,
	"POST /v1/events/sinks/:name/replay": classManager,
	"GET /v1/lockouts/":                  classManager, "DELETE /v1/lockouts/": classManager,
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

func newScopeWorld(t *testing.T, opts ...any) *scopeWorld {
	// A sink the audit trail is pushed to, a file: its routes are for the
	// unscoped.
	sink := events.Config{Sinks: []events.Sink{{Name: "file", Type: events.TypeFile, Path: filepath.Join(t.TempDir(), "events.jsonl")}}}
	e := newEnv(t, append([]any{oauthOn{}, sink}, opts...)...)
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
		v, err = w.e.db.GetDevice(ctx, id)
	case "user":
		v, err = w.e.db.GetUser(ctx, id)
	case "session":
		v, err = w.e.db.GetSession(ctx, id)
	case "code":
		v, err = w.e.db.GetEnrollmentCode(ctx, id)
	case "group":
		v, err = w.e.db.GetGroup(ctx, id)
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
	// unscoped: the route is about the whole fleet and for unscoped
	// principals only; a scoped manager finds nothing there, as out of
	// scope.
	unscoped
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

// groupNamed is group g's name, or, for no group, a fresh group of no
// one's scope.
func groupNamed(w *scopeWorld, g string) string {
	if g == "" {
		return fmt.Sprintf("free-%d", w.next())
	}
	return g
}

// makeGroup gives group g (a fresh group of no one's scope for none)
// settings.
func makeGroup(t *testing.T, w *scopeWorld, g string) object {
	name := groupNamed(w, g)
	if r := w.e.do("PUT", "/v1/groups/"+name, w.e.admin, map[string]any{"mode": "shared"}); r.status != 200 {
		t.Fatalf("group: %d %s", r.status, r.body)
	}
	return object{"group", name, name}
}

// makeSharedDevice registers a shared handset in group g.
func makeSharedDevice(t *testing.T, w *scopeWorld, g string) object {
	imei := imeiN(w.next())
	r := w.e.do("POST", "/v1/devices", w.e.admin, map[string]any{"imei": imei, "group": g, "mode": "shared"})
	if r.status != 201 {
		t.Fatalf("device: %d %s", r.status, r.body)
	}
	return object{"device", r.json(t)["id"].(string), imei}
}

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

	"GET /v1/sessions/":                       {scope: lists, success: 200, field: "id", make: makeSession, send: at("GET", "/v1/sessions?limit=1000", nil)},
	"DELETE /v1/sessions/:id":                 {scope: onRecord, success: 204, make: makeSession, send: at("DELETE", "/v1/sessions/:id", nil)},
	"GET /v1/audit":                           {scope: lists, success: 200, field: "deviceId", make: makeDevice, send: at("GET", "/v1/audit?action=device.register&deviceId=:id", nil)},
	"GET /v1/events/sinks/":                   {scope: unscoped, success: 200, make: makeNothing, send: at("GET", "/v1/events/sinks", nil)},
	"GET /v1/events/sinks/:name/dead-letters": {scope: unscoped, success: 200, make: makeNothing, send: at("GET", "/v1/events/sinks/file/dead-letters", nil)},
	"POST /v1/events/sinks/:name/replay":      {scope: unscoped, success: 200, make: makeNothing, send: at("POST", "/v1/events/sinks/file/replay", nil)},
	"GET /v1/directory":                       {scope: fleet, success: 200, make: makeNothing, send: at("GET", "/v1/directory", nil)},
	"GET /v1/lockouts/":                       {scope: fleet, success: 200, make: makeNothing, send: at("GET", "/v1/lockouts", nil)},
	"DELETE /v1/lockouts/":                    {scope: onRecord, success: 200, make: makeWorker, send: at("DELETE", "/v1/lockouts?account=:name", nil)},

	"POST /v1/enrollment-codes/": {scope: creates, success: 201, outOfScope: 403, make: makeNothing, send: func(w *scopeWorld, secret, g string, o object) response {
		return w.e.do("POST", "/v1/enrollment-codes", secret, map[string]any{"group": g})
	}},
	"GET /v1/groups/":         {scope: lists, success: 200, field: "name", make: makeGroup, send: at("GET", "/v1/groups", nil)},
	"GET /v1/groups/:name":    {scope: onRecord, success: 200, make: makeGroup, send: at("GET", "/v1/groups/:id", nil)},
	"DELETE /v1/groups/:name": {scope: onRecord, success: 204, make: makeGroup, send: at("DELETE", "/v1/groups/:id", nil)},
	"GET /v1/rack":            {scope: lists, success: 200, field: "deviceId", make: makeSharedDevice, send: at("GET", "/v1/rack", nil)},
	"PUT /v1/groups/:name": {scope: creates, success: 200, outOfScope: 403, make: makeNothing, send: func(w *scopeWorld, secret, g string, o object) response {
		// No group is, for a scoped manager, their only group, as a
		// creating route takes it.
		name := groupNamed(w, g)
		switch {
		case g == "" && secret == w.creds[whoScopedA]:
			name = "A"
		case g == "" && secret == w.creds[whoScopedB]:
			name = "B"
		}
		return w.e.do("PUT", "/v1/groups/"+name, secret, map[string]any{"mode": "shared", "shifts": map[string]any{"timeZone": "UTC", "boundaries": []string{"06:00"}}})
	}},
	"GET /v1/enrollment-codes/":           {scope: lists, success: 200, field: "id", make: makeCode, send: at("GET", "/v1/enrollment-codes", nil)},
	"DELETE /v1/enrollment-codes/:id":     {scope: onRecord, success: 204, make: makeCode, send: at("DELETE", "/v1/enrollment-codes/:id", nil)},
	"GET /v1/enrollment-codes/:id/qr.png": {scope: onRecord, success: 200, make: makeCode, send: at("GET", "/v1/enrollment-codes/:id/qr.png?code=:name", nil)},
}

// makeSessionUser signs a worker of group g in and returns the worker.
func makeSessionUser(t *testing.T, w *scopeWorld, g string) object {
	sid, _ := w.session(t, g)
	sess, err := w.e.db.GetSession(t.Context(), sid)
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
func TestScopesByRoute(t *testing.T) { onBothStores(t, testScopesByRoute) }

func testScopesByRoute(t *testing.T, store ...any) {
	w := newScopeWorld(t, store...)
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
					case c.scope == unscoped && (who == whoScopedA || who == whoScopedB):
						if p := wantStatus(t, where, r, 404, "not_found"); p != nil && p["detail"] != notFound {
							t.Errorf("%s: detail %v; want that of a missing record, %v", where, p["detail"], notFound)
						}
					case c.scope == unscoped:
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

// TestAdminRoutesRefuseScopedManagers: the admin routes are an admin's
// alone, whatever scope a manager has.
func TestAdminRoutesRefuseScopedManagers(t *testing.T) {
	w := newScopeWorld(t)
	n := 0
	for _, rt := range w.e.app.GetRoutes(true) {
		key := rt.Method + " " + rt.Path
		if routeClasses[key] != classAdmin {
			continue
		}
		n++
		path := strings.ReplaceAll(rt.Path, ":id", "x")
		for _, who := range []string{whoManager, whoScopedA, whoScopedB, whoWorker, whoNone} {
			r := w.e.do(rt.Method, path, w.creds[who], `{}`, "Content-Type", "application/json")
			if who == whoNone {
				wantStatus(t, key+" as "+who, r, 401, "token_invalid")
			} else {
				wantStatus(t, key+" as "+who, r, 403, "forbidden")
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d admin routes", n)
	}
}

// sendQuiet sends a request from any goroutine and returns its status.
func (w *scopeWorld) sendQuiet(method, path, secret string, body any) (int, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := w.e.app.Test(req, -1)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// TestScopedManagersRace has a manager of A and A2 and a manager of B edit
// and move handsets at once, each reaching for the other's: the store
// ends with every handset in its own manager's groups, changed only by
// them.
func TestScopedManagersRace(t *testing.T) { onBothStores(t, testScopedManagersRace) }

func testScopedManagersRace(t *testing.T, store ...any) {
	w := newScopeWorld(t, store...)
	r := w.e.do("POST", "/v1/api-keys", w.e.admin, map[string]any{"role": "manager", "scopes": []string{"A", "A2"}})
	if r.status != 201 {
		t.Fatalf("key A+A2: %d %s", r.status, r.body)
	}
	keyA, keyAID := r.json(t)["key"].(string), r.json(t)["id"].(string)
	keyB := w.creds[whoScopedB]
	devA, _ := w.device(t, "A")
	devB, _ := w.device(t, "B")

	var wg sync.WaitGroup
	errs := make(chan string, 1000)
	try := func(method, path, secret string, body any, want int) {
		status, err := w.sendQuiet(method, path, secret, body)
		if err != nil || status != want {
			errs <- fmt.Sprintf("%s %s: %d %v; want %d", method, path, status, err, want)
		}
	}
	for g := 0; g < 8; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				group := []string{"A", "A2"}[i%2]
				try("PATCH", "/v1/devices/"+devA, keyA, map[string]any{"group": group, "label": fmt.Sprintf("a-%d-%d", g, i)}, 200)
				try("PATCH", "/v1/devices/"+devB, keyA, map[string]any{"group": "A", "label": "taken by A"}, 404)
				try("POST", "/v1/devices/"+devB+"/suspend", keyA, nil, 404)
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				try("PATCH", "/v1/devices/"+devB, keyB, map[string]any{"label": fmt.Sprintf("b-%d-%d", g, i)}, 200)
				try("PATCH", "/v1/devices/"+devA, keyB, map[string]any{"group": "B", "label": "taken by B"}, 404)
				try("PATCH", "/v1/devices/"+devA, keyB, map[string]any{"group": "A"}, 403)
				try("POST", "/v1/devices/"+devA+"/retire", keyB, nil, 404)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	ctx := t.Context()
	a, err := w.e.db.GetDevice(ctx, devA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.e.db.GetDevice(ctx, devB)
	if err != nil {
		t.Fatal(err)
	}
	if (a.Group != "A" && a.Group != "A2") || !strings.HasPrefix(a.Label, "a-") || a.Status != storage.DeviceEnrolled {
		t.Errorf("handset of A: group %q, label %q, %s", a.Group, a.Label, a.Status)
	}
	if b.Group != "B" || !strings.HasPrefix(b.Label, "b-") || b.Status != storage.DeviceEnrolled {
		t.Errorf("handset of B: group %q, label %q, %s", b.Group, b.Label, b.Status)
	}
	// A worker of A and of B, edited by both managers at once, and
	// reached for by a manager of C: each changes their part of its
	// scopes only, C nothing.
	r = w.e.do("POST", "/v1/users", w.e.admin, map[string]any{"username": "w-shared", "password": "correct horse", "scopes": []string{"A", "B"}})
	shared := r.json(t)["id"].(string)
	r = w.e.do("POST", "/v1/api-keys", w.e.admin, map[string]any{"role": "manager", "scopes": []string{"C"}})
	keyC := r.json(t)["key"].(string)
	errs = make(chan string, 1000)
	for g := 0; g < 4; g++ {
		wg.Add(3)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				try("PATCH", "/v1/users/"+shared, keyA, map[string]any{"scopes": []string{"A"}, "firstName": "A"}, 200)
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				try("PATCH", "/v1/users/"+shared, keyB, map[string]any{"scopes": []string{"B"}, "lastName": "B"}, 200)
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				try("PATCH", "/v1/users/"+shared, keyC, map[string]any{"scopes": []string{"C"}}, 404)
				try("POST", "/v1/users/"+shared+"/password", keyC, map[string]any{"password": "taken over by C"}, 404)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	u, err := w.e.db.GetUser(ctx, shared)
	if err != nil || strings.Join(u.Scopes, ",") != "A,B" || u.FirstName != "A" || u.LastName != "B" {
		t.Errorf("shared worker: %v %q %q, %v; want scopes A,B", u.Scopes, u.FirstName, u.LastName, err)
	}

	page, err := w.e.db.ListEvents(ctx, storage.EventFilter{DeviceID: devA, Limit: storage.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range page.Items {
		if ev.Action == "device.update" && ev.Actor != "apikey:"+keyAID {
			t.Errorf("handset of A changed by %s", ev.Actor)
		}
	}
}

// TestScopeRules: what a scoped manager may not do, hostile scopes, and
// the audit trail's record of who acted within which scope.
func TestScopeRules(t *testing.T) { onBothStores(t, testScopeRules) }

func testScopeRules(t *testing.T, store ...any) {
	w := newScopeWorld(t, store...)
	e, mgrA, keyB := w.e, w.creds[whoScopedA], w.creds[whoScopedB]

	t.Run("hostile scopes", func(t *testing.T) {
		many := make([]string, 10_000)
		for i := range many {
			many[i] = "a"
		}
		workerID, _ := w.worker(t, "A")
		for _, c := range []struct {
			name   string
			scopes any
			code   string
			field  string
		}{
			{"empty", []string{""}, "validation_failed", "scopes[0]"},
			{"blank", []string{"A", "  "}, "validation_failed", "scopes[1]"},
			{"NUL", []string{"a\x00b"}, "validation_failed", "scopes[0]"},
			{"control", []string{"a\nb"}, "validation_failed", "scopes[0]"},
			{"long", []string{strings.Repeat("g", 65)}, "validation_failed", "scopes[0]"},
			{"10k", many, "validation_failed", "scopes"},
			{"string", "A", "invalid_request", ""},
			{"numbers", []int{1, 2}, "invalid_request", ""},
			{"object", map[string]bool{"A": true}, "invalid_request", ""},
			{"nested", [][]string{{"A"}}, "invalid_request", ""},
		} {
			for _, req := range []struct {
				method, path string
				body         map[string]any
			}{
				{"POST", "/v1/users", map[string]any{"username": "hostile", "password": "correct horse", "role": "manager"}},
				{"PATCH", "/v1/users/" + workerID, map[string]any{}},
				{"POST", "/v1/api-keys", map[string]any{"role": "manager"}},
			} {
				req.body["scopes"] = c.scopes
				r := e.do(req.method, req.path, e.admin, req.body)
				p := wantProblem(t, r, 400, c.code)
				if c.field != "" {
					if fieldCodes(t, p)[c.field] == "" {
						t.Errorf("%s %s, %s: no error for %s: %s", req.method, req.path, c.name, c.field, r.body)
					}
				}
			}
		}
		if n := e.userCount(); n > 10 {
			t.Fatalf("%d users after hostile requests", n)
		}
	})

	t.Run("admins are never scoped", func(t *testing.T) {
		p := wantProblem(t, e.do("POST", "/v1/users", e.admin, map[string]any{"username": "ada2", "password": "correct horse", "role": "admin", "scopes": []string{"A"}}), 400, "validation_failed")
		if fieldCodes(t, p)["scopes"] != "scopes_admin" {
			t.Errorf("admin with scopes: %v", p)
		}
		r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "mgr-x", "password": "correct horse", "role": "manager", "scopes": []string{"A"}})
		if r.status != 201 {
			t.Fatalf("manager: %d %s", r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		p = wantProblem(t, e.do("PATCH", "/v1/users/"+id, e.admin, map[string]any{"role": "admin"}), 400, "validation_failed")
		if fieldCodes(t, p)["scopes"] != "scopes_admin" {
			t.Errorf("promoting a scoped manager: %v", p)
		}
		if r := e.do("PATCH", "/v1/users/"+id, e.admin, map[string]any{"role": "admin", "scopes": []string{}}); r.status != 200 || r.json(t)["role"] != "admin" {
			t.Errorf("promoting with the scopes cleared: %d %s", r.status, r.body)
		}
		p = wantProblem(t, e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "admin", "scopes": []string{"A"}}), 400, "validation_failed")
		if fieldCodes(t, p)["scopes"] != "scopes_admin" {
			t.Errorf("admin key with scopes: %v", p)
		}
		p = wantProblem(t, e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "introspect", "scopes": []string{"A"}}), 400, "validation_failed")
		if fieldCodes(t, p)["scopes"] != "scopes_role" {
			t.Errorf("introspection key with scopes: %v", p)
		}
	})

	t.Run("a scoped manager cannot widen", func(t *testing.T) {
		wantProblem(t, e.do("POST", "/v1/users", mgrA, map[string]any{"username": "boss", "password": "correct horse", "role": "manager"}), 403, "forbidden")
		wantProblem(t, e.do("POST", "/v1/users", mgrA, map[string]any{"username": "w-ab", "password": "correct horse", "scopes": []string{"A", "B"}}), 403, "scope_exceeded")
		id, _ := w.worker(t, "A")
		before := w.record(t, "user", id)
		wantProblem(t, e.do("PATCH", "/v1/users/"+id, mgrA, map[string]any{"scopes": []string{"A", "B"}}), 403, "scope_exceeded")
		wantProblem(t, e.do("PATCH", "/v1/users/"+id, mgrA, map[string]any{"role": "manager"}), 403, "forbidden")
		if after := w.record(t, "user", id); after != before {
			t.Errorf("worker changed:\n%s\n%s", before, after)
		}
		// Of a worker in A and B, a manager of A changes the A part only.
		r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "w-both", "password": "correct horse", "scopes": []string{"A", "B"}})
		both := r.json(t)["id"].(string)
		if r := e.do("PATCH", "/v1/users/"+both, mgrA, map[string]any{"scopes": []string{}}); r.status != 200 {
			t.Fatalf("manager A clears A: %d %s", r.status, r.body)
		}
		if got := fmt.Sprint(e.do("GET", "/v1/users/"+both, e.admin, nil).json(t)["scopes"]); got != "[B]" {
			t.Errorf("scopes after manager A cleared theirs: %s; want [B]", got)
		}
		wantProblem(t, e.do("GET", "/v1/users/"+both, mgrA, nil), 404, "not_found")
		// Handsets stay in scope; others' workers cannot be drawn in.
		dev, _ := w.device(t, "A")
		for _, g := range []string{"B", "", "A2"} {
			wantProblem(t, e.do("PATCH", "/v1/devices/"+dev, mgrA, map[string]any{"group": g}), 403, "scope_exceeded")
		}
		_, nameB := w.worker(t, "B")
		p := wantProblem(t, e.do("PATCH", "/v1/devices/"+dev, mgrA, map[string]any{"assignedUsers": []string{nameB}}), 400, "validation_failed")
		if fieldCodes(t, p)["assignedUsers[0]"] != "user_unknown" {
			t.Errorf("assigning a worker of B: %v", p)
		}
		p = wantProblem(t, e.do("POST", "/v1/devices", mgrA, map[string]any{"imei": imeiN(w.next()), "assignedUsers": []string{"mgr-a"}}), 400, "validation_failed")
		if fieldCodes(t, p)["assignedUsers[0]"] != "user_unknown" {
			t.Errorf("assigning a manager: %v", p)
		}
		// The manager's own account is no worker in their scope.
		me := e.do("GET", "/v1/auth/me", mgrA, nil).json(t)["user"].(map[string]any)
		if fmt.Sprint(me["scopes"]) != "[A]" {
			t.Errorf("own scopes: %v", me["scopes"])
		}
		wantProblem(t, e.do("GET", "/v1/users/"+me["id"].(string), mgrA, nil), 404, "not_found")
		wantProblem(t, e.do("PATCH", "/v1/users/"+me["id"].(string), mgrA, map[string]any{"scopes": []string{}}), 404, "not_found")
		// Failed sign-ins are cleared for a named worker in scope only.
		wantProblem(t, e.do("DELETE", "/v1/lockouts?address=192.0.2.1", mgrA, nil), 400, "validation_failed")
		wantProblem(t, e.do("DELETE", "/v1/lockouts?account=nobody", mgrA, nil), 404, "not_found")
	})

	t.Run("own scopes, and scopes changed take effect", func(t *testing.T) {
		if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "mgr-u", "password": "correct horse", "role": "manager"}); r.status != 201 {
			t.Fatal(r.status)
		}
		r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "mgr-u", "password": "correct horse"})
		tok := r.json(t)["accessToken"].(string)
		id := r.json(t)["user"].(map[string]any)["id"].(string)
		wantProblem(t, e.do("PATCH", "/v1/users/"+id, tok, map[string]any{"scopes": []string{"A"}}), 403, "forbidden")
		devB, _ := w.device(t, "B")
		if r := e.do("GET", "/v1/devices/"+devB, tok, nil); r.status != 200 {
			t.Fatalf("unscoped: %d", r.status)
		}
		if r := e.do("PATCH", "/v1/users/"+id, e.admin, map[string]any{"scopes": []string{"A"}}); r.status != 200 {
			t.Fatalf("admin scopes a manager: %d %s", r.status, r.body)
		}
		wantProblem(t, e.do("GET", "/v1/devices/"+devB, tok, nil), 404, "not_found")
	})

	t.Run("imports refuse rows out of scope", func(t *testing.T) {
		a, b, none := imeiN(w.next()), imeiN(w.next()), imeiN(w.next())
		csv := "imei,group\n" + a + ",A\n" + b + ",B\n" + none + ",\n"
		p := wantProblem(t, e.do("POST", "/v1/devices/import", mgrA, csv, "Content-Type", "text/csv"), 400, "validation_failed")
		report := p["report"].(map[string]any)
		errs := report["errors"].([]any)
		if len(errs) != 1 || errs[0].(map[string]any)["row"] != float64(3) || errs[0].(map[string]any)["code"] != "group_out_of_scope" {
			t.Fatalf("report: %v", report)
		}
		r := e.do("POST", "/v1/devices/import?skipInvalid=true", mgrA, csv, "Content-Type", "text/csv")
		if r.status != 200 || r.json(t)["created"] != float64(2) {
			t.Fatalf("import skipping the row of B: %d %s", r.status, r.body)
		}
		for imei, want := range map[string]string{a: "A", none: "A"} {
			if d, err := e.db.GetDeviceByIMEI(t.Context(), imei); err != nil || d.Group != want {
				t.Errorf("%s: %q %v; want group %s", imei, d.Group, err, want)
			}
		}
		if _, err := e.db.GetDeviceByIMEI(t.Context(), b); err == nil {
			t.Error("the row of B was imported")
		}
		// The import is in A's audit, not B's.
		ev := e.do("GET", "/v1/audit?action=device.import", mgrA, nil)
		if n := len(ev.json(t)["items"].([]any)); n != 1 {
			t.Errorf("imports in A's audit: %d", n)
		}
		if n := len(e.do("GET", "/v1/audit?action=device.import", keyB, nil).json(t)["items"].([]any)); n != 0 {
			t.Errorf("imports in B's audit: %d", n)
		}
	})

	t.Run("exports hold the scope only", func(t *testing.T) {
		_, inA := w.device(t, "A")
		_, inB := w.device(t, "B")
		_, inNone := w.device(t, "")
		for _, accept := range []string{"text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"} {
			r := e.do("GET", "/v1/devices", mgrA, nil, "Accept", accept)
			if r.status != 200 {
				t.Fatalf("export %s: %d %s", accept, r.status, r.body)
			}
			if accept != "text/csv" {
				continue // the XLSX is zipped: its rows are the same pages
			}
			if !bytes.Contains(r.body, []byte(inA)) || bytes.Contains(r.body, []byte(inB)) || bytes.Contains(r.body, []byte(inNone)) {
				t.Errorf("manager A's export:\n%s", r.body)
			}
		}
		r := e.do("GET", "/v1/audit", keyB, nil, "Accept", "text/csv")
		if r.status != 200 || bytes.Contains(r.body, []byte(inA)) {
			t.Errorf("manager B's audit export holds A's handset: %d\n%s", r.status, r.body)
		}
	})

	t.Run("the audit trail records the scope and the factor", func(t *testing.T) {
		r := e.do("POST", "/v1/devices", mgrA, map[string]any{"imei": imeiN(w.next())})
		if r.status != 201 || r.json(t)["group"] != "A" {
			t.Fatalf("register without a group: %d %s", r.status, r.body)
		}
		idA := r.json(t)["id"].(string)
		r = e.do("POST", "/v1/devices", keyB, map[string]any{"imei": imeiN(w.next()), "group": "B"})
		idB := r.json(t)["id"].(string)
		for _, c := range []struct {
			id, scopes, amr, groups string
		}{{idA, "[A]", "[pwd]", "[A]"}, {idB, "[B]", "<nil>", "[B]"}} {
			items := e.do("GET", "/v1/audit?action=device.register&deviceId="+c.id, e.admin, nil).json(t)["items"].([]any)
			if len(items) != 1 {
				t.Fatalf("events: %v", items)
			}
			ev := items[0].(map[string]any)
			if fmt.Sprint(ev["actorScopes"]) != c.scopes || fmt.Sprint(ev["actorAmr"]) != c.amr || fmt.Sprint(ev["groups"]) != c.groups {
				t.Errorf("event: actorScopes %v, actorAmr %v, groups %v; want %s, %s, %s", ev["actorScopes"], ev["actorAmr"], ev["groups"], c.scopes, c.amr, c.groups)
			}
		}
		// An unscoped admin's key: no scope, no factor.
		r = e.do("POST", "/v1/enrollment-codes", e.admin, map[string]any{"group": "A"})
		items := e.do("GET", "/v1/audit?action=enrollment_code.create", mgrA, nil).json(t)["items"].([]any)
		found := false
		for _, it := range items {
			ev := it.(map[string]any)
			if ev["detail"].(map[string]any)["code"] == r.json(t)["id"] {
				found = ev["actorScopes"] == nil && ev["actorAmr"] == nil
			}
		}
		if !found {
			t.Errorf("the admin's code for A is not in A's audit as unscoped: %v", items)
		}
	})
}

// onBothStores runs test on the embedded store and on PostgreSQL (skipped
// when no PostgreSQL test server is set, as pgtest says).
func onBothStores(t *testing.T, test func(t *testing.T, store ...any)) {
	t.Run("bolt", func(t *testing.T) { test(t) })
	t.Run("postgres", func(t *testing.T) { test(t, onPostgres{}) })
}
