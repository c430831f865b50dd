package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	qrreader "github.com/makiuchi-d/gozxing/qrcode"

	"tether/api"
	"tether/auth"
)

// handset is the payload of a handset logging in.
func handset(imei string) map[string]any {
	return map[string]any{
		"imei": imei, "hasIccCard": true, "iccIds": []string{"89445001021983048261"},
		"osVersion":  map[string]any{"api": 34, "name": "14"},
		"deviceInfo": map[string]any{"manufacturer": "samsung", "model": "SM-G991B"},
		"appVersion": "3.2.1",
	}
}

// fleet registers two handsets and a worker, and returns the handsets' ids.
func (e *env) fleet() (phone, other string) {
	e.t.Helper()
	for _, imei := range []string{"490154203237518", "356938035643809"} {
		r := e.do("POST", "/v1/devices", e.manager, map[string]any{"imei": imei})
		if r.status != 201 {
			e.t.Fatalf("register: %d %s", r.status, r.body)
		}
		if phone == "" {
			phone = r.json(e.t)["id"].(string)
		} else {
			other = r.json(e.t)["id"].(string)
		}
	}
	for _, u := range []map[string]any{
		{"username": "walter", "password": "correct horse", "role": "worker"},
		{"username": "maria", "password": "correct horse", "role": "manager"},
	} {
		if r := e.do("POST", "/v1/users", e.admin, u); r.status != 201 {
			e.t.Fatalf("user: %d %s", r.status, r.body)
		}
	}
	return phone, other
}

func (e *env) loginWorker() map[string]any {
	e.t.Helper()
	r := e.do("POST", "/v1/auth/login", "", map[string]any{
		"username": "walter", "password": "correct horse", "device": handset("490154203237518"), "persistent": true,
	})
	if r.status != 200 {
		e.t.Fatalf("login: %d %s", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		e.t.Fatal("token answer without Cache-Control: no-store")
	}
	return r.json(e.t)
}

func TestLoginRenewRefreshWalk(t *testing.T) {
	e := newEnv(t, func(c *auth.Config) { c.AccessTTL = 2 * time.Second; c.RefreshReuseGrace = time.Second })
	phone, other := e.fleet()

	tok := e.loginWorker()
	if tok["tokenType"] != "Bearer" || tok["deviceId"] != phone || !strings.HasPrefix(tok["refreshToken"].(string), "rt_") ||
		tok["sessionId"] == "" || tok["user"].(map[string]any)["username"] != "walter" || tok["expiresIn"] == nil {
		t.Fatalf("login answer: %v", tok)
	}
	access := tok["accessToken"].(string)

	r := e.do("GET", "/v1/auth/me", access, nil)
	me := r.json(t)
	if r.status != 200 || me["user"].(map[string]any)["username"] != "walter" || me["device"].(map[string]any)["id"] != phone ||
		me["session"].(map[string]any)["id"] != tok["sessionId"] {
		t.Fatalf("me: %d %s", r.status, r.body)
	}
	// A worker's token opens no manager route.
	wantProblem(t, e.do("GET", "/v1/devices", access, nil), 403, "forbidden")

	time.Sleep(2100 * time.Millisecond) // the access token expires
	wantProblem(t, e.do("GET", "/v1/auth/me", access, nil), 401, "token_expired")

	// Renew from another enrolled handset: 403, from the right one: 200.
	wantProblem(t, e.do("POST", "/v1/auth/renew", "", map[string]any{"accessToken": access, "deviceId": other}), 403, "device_mismatch")
	r = e.do("POST", "/v1/auth/renew", "", map[string]any{"accessToken": access, "deviceId": phone})
	if r.status != 200 || r.json(t)["refreshToken"] != nil {
		t.Fatalf("renew: %d %s", r.status, r.body)
	}
	renewed := r.json(t)["accessToken"].(string)
	if r := e.do("GET", "/v1/auth/me", renewed, nil); r.status != 200 {
		t.Fatalf("me with the renewed token: %d", r.status)
	}
	// The same old token again within the grace (a retry after a lost
	// answer): the very same answer.
	if r := e.do("POST", "/v1/auth/renew", "", map[string]any{"accessToken": access, "deviceId": phone}); r.status != 200 || r.json(t)["accessToken"] != renewed {
		t.Fatalf("a renewal retried within the grace: %d %s; want the same token", r.status, r.body)
	}

	// Refresh, then replay the old refresh token after the grace: the session dies.
	refresh := tok["refreshToken"].(string)
	r = e.do("POST", "/v1/auth/refresh", "", map[string]any{"refreshToken": refresh, "deviceId": phone})
	if r.status != 200 {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	fresh := r.json(t)
	time.Sleep(1100 * time.Millisecond)
	// The old access token, past the grace: renewed already.
	wantProblem(t, e.do("POST", "/v1/auth/renew", "", map[string]any{"accessToken": access, "deviceId": phone}), 401, "token_already_used")
	wantProblem(t, e.do("POST", "/v1/auth/refresh", "", map[string]any{"refreshToken": refresh, "deviceId": phone}), 401, "refresh_token_reused")
	wantProblem(t, e.do("POST", "/v1/auth/refresh", "", map[string]any{"refreshToken": fresh["refreshToken"], "deviceId": phone}), 401, "session_revoked")

	// Log in again, suspend the handset: its fresh token is refused at once.
	tok = e.loginWorker()
	access = tok["accessToken"].(string)
	if r := e.do("GET", "/v1/auth/me", access, nil); r.status != 200 {
		t.Fatal(r.status)
	}
	if r := e.do("POST", "/v1/devices/"+phone+"/suspend", e.manager, nil); r.status != 200 {
		t.Fatal(r.status)
	}
	// The code stays; the words say why.
	p := wantProblem(t, e.do("GET", "/v1/auth/me", access, nil), 401, "session_revoked")
	if p["reason"] != "device_suspended" || !strings.Contains(p["detail"].(string), "handset is suspended") {
		t.Fatalf("after a suspension: %v; want it to say the handset is suspended", p)
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{
		"username": "walter", "password": "correct horse", "device": handset("490154203237518"),
	}), 403, "device_suspended")

	// The audit trail saw it all.
	r = e.do("GET", "/v1/audit?deviceId="+phone+"&limit=1000", e.manager, nil)
	actions := map[string]int{}
	for _, it := range r.json(t)["items"].([]any) {
		ev := it.(map[string]any)
		actions[ev["action"].(string)+"/"+ev["outcome"].(string)]++
	}
	for _, want := range []string{"login/success", "renew/success", "renew/failure", "refresh/success", "refresh_token_reused/failure", "device.suspend/success", "login/failure"} {
		if actions[want] == 0 {
			t.Errorf("no %s event (have %v)", want, actions)
		}
	}
	r = e.do("GET", "/v1/audit?action=renew&deviceId="+other, e.manager, nil)
	if n := len(r.json(t)["items"].([]any)); n != 0 {
		t.Fatalf("events filtered by another device: %d", n)
	}
}

func TestLoginErrors(t *testing.T) {
	e := newEnv(t, func(c *auth.Config) { c.MinAppVersion = "3.0.0"; c.AccountFailures = 3 })
	e.fleet()
	login := func(user, pw string, dev map[string]any) response {
		return e.do("POST", "/v1/auth/login", "", map[string]any{"username": user, "password": pw, "device": dev})
	}
	wrong := wantProblem(t, login("walter", "wrong password", handset("490154203237518")), 401, "invalid_credentials")
	unknown := wantProblem(t, login("nobody", "wrong password", handset("490154203237518")), 401, "invalid_credentials")
	if wrong["detail"] != unknown["detail"] || wrong["title"] != unknown["title"] {
		t.Fatalf("unknown user and wrong password differ: %v / %v", wrong, unknown)
	}
	wantProblem(t, login("walter", "correct horse", handset("359881234567899")), 403, "device_not_enrolled")

	old := handset("490154203237518")
	old["appVersion"] = "2.9.9"
	p := wantProblem(t, login("walter", "correct horse", old), 426, "app_version_unsupported")
	if p["minAppVersion"] != "3.0.0" {
		t.Fatalf("426 without the minimum: %v", p)
	}
	old = handset("490154203237518")
	old["osVersion"] = map[string]any{"api": 24, "name": "7.0"}
	p = wantProblem(t, login("walter", "correct horse", old), 426, "os_version_unsupported")
	if p["minOsApi"] != float64(26) {
		t.Fatalf("426 without the minimum: %v", p)
	}
	bad := handset("490154203237519")
	bad["osVersion"] = map[string]any{"api": 34, "name": "13"}
	p = wantProblem(t, login("walter", "correct horse", bad), 400, "validation_failed")
	if got := fieldCodes(t, p); got["device.imei"] != "imei_checksum" || got["device.osVersion.name"] != "os_name_mismatch" {
		t.Fatalf("bad payload fields: %v", got)
	}
	p = wantProblem(t, login("walter", "correct horse", nil), 400, "validation_failed")
	if fieldCodes(t, p)["device"] != "device_required" {
		t.Fatal(p)
	}

	// The right password above reset the count; three wrong ones lock the
	// account: 429 with Retry-After, even for the right password, and the
	// same for an unknown account.
	for range 3 {
		login("walter", "wrong password", handset("490154203237518"))
	}
	r := login("walter", "correct horse", handset("490154203237518"))
	wantProblem(t, r, 429, "too_many_attempts")
	if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 || n > 900 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	login("nobody", "x", nil)
	login("nobody", "x", nil)
	wantProblem(t, login("nobody", "wrong password", handset("490154203237518")), 429, "too_many_attempts")
	if strings.Contains(e.logs.String(), "correct horse") || strings.Contains(e.logs.String(), "wrong password") {
		t.Fatal("a password reached the log")
	}
}

func TestManagerBearerAndSessions(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	worker := e.loginWorker()

	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "maria", "password": "correct horse"})
	if r.status != 200 || r.json(t)["deviceId"] != nil {
		t.Fatalf("manager login without a handset: %d %s", r.status, r.body)
	}
	boss := r.json(t)["accessToken"].(string)

	// The manager's token opens the manager API, not the admin one.
	if r := e.do("GET", "/v1/devices", boss, nil); r.status != 200 {
		t.Fatalf("manager token on /v1/devices: %d", r.status)
	}
	wantProblem(t, e.do("POST", "/v1/admin/keys/rotate", boss, nil), 403, "forbidden")

	r = e.do("GET", "/v1/sessions?deviceId="+phone, boss, nil)
	items := r.json(t)["items"].([]any)
	if r.status != 200 || len(items) != 1 || items[0].(map[string]any)["id"] != worker["sessionId"] {
		t.Fatalf("sessions on the phone: %s", r.body)
	}
	if r := e.do("DELETE", "/v1/sessions/"+worker["sessionId"].(string), boss, nil); r.status != 204 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", worker["accessToken"].(string), nil), 401, "session_revoked")
	r = e.do("GET", "/v1/sessions?deviceId="+phone, boss, nil)
	if n := len(r.json(t)["items"].([]any)); n != 0 {
		t.Fatalf("%d live sessions after revoking", n)
	}
	r = e.do("GET", "/v1/sessions?deviceId="+phone+"&live=all", boss, nil)
	if items := r.json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["revokeReason"] != "revoked" {
		t.Fatalf("all sessions: %s", r.body)
	}
	wantProblem(t, e.do("DELETE", "/v1/sessions/ses_missing", boss, nil), 404, "not_found")

	worker = e.loginWorker()
	userID := worker["user"].(map[string]any)["id"].(string)
	r = e.do("POST", "/v1/users/"+userID+"/logout-all", boss, nil)
	if r.status != 200 || r.json(t)["revoked"] != float64(1) {
		t.Fatalf("logout-all: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", worker["accessToken"].(string), nil), 401, "session_revoked")

	// Disabling the manager cuts their own token off.
	mariaID := e.do("GET", "/v1/users?q=maria", e.admin, nil).json(t)["items"].([]any)[0].(map[string]any)["id"].(string)
	if r := e.do("PATCH", "/v1/users/"+mariaID, e.admin, map[string]any{"disabled": true}); r.status != 200 {
		t.Fatal(r.status)
	}
	wantProblem(t, e.do("GET", "/v1/devices", boss, nil), 401, "session_revoked")

	// logout takes a user's token, not an API key.
	wantProblem(t, e.do("POST", "/v1/auth/logout", e.manager, nil), 403, "forbidden")
	worker = e.loginWorker()
	if r := e.do("POST", "/v1/auth/logout", worker["accessToken"].(string), nil); r.status != 204 {
		t.Fatalf("logout: %d", r.status)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", worker["accessToken"].(string), nil), 401, "session_revoked")
}

func TestIntrospectAndJWKS(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	tok := e.loginWorker()

	r := e.do("POST", "/v1/auth/introspect", e.introspect, map[string]any{"token": tok["accessToken"]})
	in := r.json(t)
	if r.status != 200 || in["active"] != true || in["did"] != phone || in["sid"] != tok["sessionId"] || in["username"] != "walter" {
		t.Fatalf("introspect: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/v1/auth/introspect", e.introspect, map[string]any{"token": "nonsense"})
	if r.status != 200 || string(r.body) != `{"active":false}` {
		t.Fatalf("introspect nonsense: %s", r.body)
	}
	// Managers' keys and users' tokens may not introspect.
	wantProblem(t, e.do("POST", "/v1/auth/introspect", e.manager, map[string]any{"token": "x"}), 403, "forbidden")
	wantProblem(t, e.do("POST", "/v1/auth/introspect", tok["accessToken"].(string), map[string]any{"token": "x"}), 403, "forbidden")
	wantProblem(t, e.do("POST", "/v1/auth/introspect", "", map[string]any{"token": "x"}), 401, "token_invalid")

	r = e.do("GET", "/.well-known/jwks.json", "", nil)
	keys := r.json(t)["keys"].([]any)
	kinds := map[string]string{}
	for _, k := range keys {
		k := k.(map[string]any)
		kinds[fmt.Sprint(k["alg"])] = fmt.Sprint(k["kty"], " ", k["crv"], " ", k["use"])
	}
	want := map[string]string{"EdDSA": "OKP Ed25519 sig", "ES256": "EC P-256 sig", "RS256": "RSA <nil> sig"}
	if r.status != 200 || len(keys) != 3 || !maps.Equal(kinds, want) {
		t.Fatalf("jwks: got %v; want %v", kinds, want)
	}
	r = e.do("POST", "/v1/admin/keys/rotate", e.admin, nil)
	kids, _ := r.json(t)["kids"].(map[string]any)
	if r.status != 200 || r.json(t)["kid"] == "" || r.json(t)["kid"] != kids["EdDSA"] || len(kids) != 3 {
		t.Fatalf("rotate: %d %s; want the new key of each algorithm, and the EdDSA one as kid", r.status, r.body)
	}
	if n := len(e.do("GET", "/.well-known/jwks.json", "", nil).json(t)["keys"].([]any)); n != 6 {
		t.Fatalf("jwks after rotation: got %d keys; want 6", n)
	}
	if r := e.do("GET", "/v1/auth/me", tok["accessToken"].(string), nil); r.status != 200 {
		t.Fatalf("old-key token after rotation: %d", r.status)
	}
}

func TestEnrollmentCodes(t *testing.T) {
	e := newEnv(t, func(c *auth.Config) { c.EnrollmentMode = auth.EnrollCode })
	r := e.do("POST", "/v1/enrollment-codes", e.manager, map[string]any{"expiresIn": "2h", "maxUses": 1, "label": "spare", "group": "south"})
	if r.status != 201 {
		t.Fatalf("create code: %d %s", r.status, r.body)
	}
	code := r.json(t)
	secret := code["code"].(string)
	if len(secret) != 19 || code["usable"] != true || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("code: %s", r.body)
	}
	r = e.do("GET", "/v1/enrollment-codes", e.manager, nil)
	if strings.Contains(string(r.body), secret) || len(r.json(t)["items"].([]any)) != 1 {
		t.Fatalf("list shows the secret or not the code: %s", r.body)
	}

	r = e.do("POST", "/v1/enroll", "", map[string]any{"code": secret, "device": handset("359881234567899")})
	if r.status != 201 || r.json(t)["label"] != "spare" || r.json(t)["group"] != "south" {
		t.Fatalf("enroll: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("POST", "/v1/enroll", "", map[string]any{"code": secret, "device": handset("352099001761481")}), 401, "invalid_credentials")
	p := wantProblem(t, e.do("POST", "/v1/enroll", "", map[string]any{"code": "x", "device": map[string]any{"imei": "1"}}), 400, "validation_failed")
	if fieldCodes(t, p)["device.imei"] != "imei_length" {
		t.Fatal(p)
	}
	wantProblem(t, e.do("POST", "/v1/enrollment-codes", e.manager, map[string]any{"expiresIn": "soon"}), 400, "invalid_request")
	p = wantProblem(t, e.do("POST", "/v1/enrollment-codes", e.manager, map[string]any{"expiresIn": "9999h", "maxUses": 0}), 400, "validation_failed")
	if fieldCodes(t, p)["expiresIn"] != "expires_in_range" {
		t.Fatal(p)
	}
	if r := e.do("DELETE", "/v1/enrollment-codes/"+code["id"].(string), e.manager, nil); r.status != 204 {
		t.Fatalf("revoke: %d", r.status)
	}
	wantProblem(t, e.do("DELETE", "/v1/enrollment-codes/enc_missing", e.manager, nil), 404, "not_found")

	off := newEnv(t)
	wantProblem(t, off.do("POST", "/v1/enroll", "", map[string]any{"code": secret, "device": handset("352099001761481")}), 403, "forbidden")
}

// TestEnrollmentCodeWarnings: creating a code succeeds whatever the
// settings, and warns when a handset could not enroll with it: where
// self-enrollment is off, and when its enroll URL (without --public-url,
// the address the request came to) is this machine.
func TestEnrollmentCodeWarnings(t *testing.T) {
	code := newEnv(t, func(c *auth.Config) { c.EnrollmentMode = auth.EnrollCode })
	public := newEnv(t, func(c *auth.Config) { c.EnrollmentMode = auth.EnrollCode }, func(o *api.Options) { o.PublicURL = "https://tether.example.com" })
	off := newEnv(t, func(o *api.Options) { o.PublicURL = "https://tether.example.com" })
	for _, c := range []struct {
		name string
		e    *env
		host string
		want []string // codes, then settings
	}{
		{"self-enrollment on, a public host", code, "tether.example.com", nil},
		{"self-enrollment on, a LAN address", code, "192.168.1.20:8080", nil},
		{"self-enrollment on, localhost", code, "localhost:8080", []string{"enroll_url_unreachable", "--public-url"}},
		{"self-enrollment on, loopback", code, "", []string{"enroll_url_unreachable", "--public-url"}},
		{"self-enrollment on, IPv6 loopback", code, "[::1]:8080", []string{"enroll_url_unreachable", "--public-url"}},
		{"--public-url, from localhost", public, "localhost:8080", nil},
		{"self-enrollment off", off, "", []string{"self_enrollment_off", "--enrollment-mode"}},
	} {
		req, err := http.NewRequest("POST", c.e.url()+"/v1/enrollment-codes", strings.NewReader(`{"label": "spare"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+c.e.manager)
		if c.host != "" {
			req.Host = c.host
		}
		resp, err := c.e.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Code     string `json:"code"`
			Warnings []struct {
				Code, Message, Setting string
			} `json:"warnings"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 201 || body.Code == "" {
			t.Fatalf("%s: %d, %v; want a new code", c.name, resp.StatusCode, err)
		}
		var got, settings []string
		for _, w := range body.Warnings {
			got, settings = append(got, w.Code), append(settings, w.Setting)
			if !strings.Contains(w.Message, w.Setting) {
				t.Errorf("%s: warning %q does not name its setting %s", c.name, w.Message, w.Setting)
			}
		}
		if got = append(got, settings...); !slices.Equal(got, c.want) {
			t.Errorf("%s: warnings %v; want %v", c.name, got, c.want)
		}
	}
}

func TestAuditQuery(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	wantProblem(t, e.do("GET", "/v1/audit?from=yesterday", e.manager, nil), 400, "invalid_request")
	wantProblem(t, e.do("GET", "/v1/audit", e.introspect, nil), 403, "forbidden")
	r := e.do("GET", "/v1/audit?action=device.register&limit=1", e.manager, nil)
	page := r.json(t)
	if r.status != 200 || len(page["items"].([]any)) != 1 || page["nextCursor"] == nil {
		t.Fatalf("audit page: %s", r.body)
	}
	r = e.do("GET", "/v1/audit?action=device.register&limit=1&cursor="+page["nextCursor"].(string), e.manager, nil)
	if items := r.json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["actor"] == "" {
		t.Fatalf("second page: %s", r.body)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	r = e.do("GET", "/v1/audit?from="+future, e.manager, nil)
	if n := len(r.json(t)["items"].([]any)); n != 0 {
		t.Fatalf("%d events from the future", n)
	}

	// order=desc walks the same events from the newest back, page by page;
	// asc is the default.
	walk := func(query string) []string {
		var ids []string
		for cursor := ""; ; {
			r := e.do("GET", "/v1/audit?limit=2"+query+"&cursor="+cursor, e.manager, nil)
			if r.status != 200 {
				t.Fatalf("audit%s: %d %s", query, r.status, r.body)
			}
			page := r.json(t)
			for _, item := range page["items"].([]any) {
				ids = append(ids, item.(map[string]any)["id"].(string))
			}
			next, _ := page["nextCursor"].(string)
			if next == "" || len(ids) > 100 {
				return ids
			}
			cursor = next
		}
	}
	oldest := walk("")
	if asc := walk("&order=asc"); !slices.Equal(asc, oldest) || len(oldest) < 5 {
		t.Fatalf("order=asc: got %v; want the default order %v", asc, oldest)
	}
	newest := walk("&order=desc")
	slices.Reverse(oldest)
	if !slices.Equal(newest, oldest) {
		t.Fatalf("order=desc: got %v; want %v", newest, oldest)
	}
	r = e.do("GET", "/v1/audit?order=desc&limit=1&action=user.create", e.manager, nil)
	if items := r.json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["username"] != "maria" {
		t.Fatalf("the newest user.create: %s; want maria's", r.body)
	}
	wantProblem(t, e.do("GET", "/v1/audit?order=newest", e.manager, nil), 400, "invalid_request")
}

func TestEnrollmentQR(t *testing.T) {
	e := newEnv(t, func(c *auth.Config) { c.EnrollmentMode = auth.EnrollCode })
	r := e.do("POST", "/v1/enrollment-codes", e.manager, map[string]any{"label": "spare"})
	code := r.json(t)
	secret, qrPath := code["code"].(string), code["qrPath"].(string)
	if code["enrollUrl"] != "http://example.com/v1/enroll?code="+secret {
		t.Fatalf("enrollUrl %v", code["enrollUrl"])
	}
	r = e.do("GET", qrPath, e.manager, nil)
	if r.status != 200 || r.header.Get("Content-Type") != "image/png" {
		t.Fatalf("QR: %d %s", r.status, r.header)
	}
	img, err := png.Decode(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("QR is not a PNG: %v", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrreader.NewQRCodeReader().Decode(bmp, pureQR)
	if err != nil {
		t.Fatalf("QR does not decode: %v", err)
	}
	if res.GetText() != code["enrollUrl"] {
		t.Fatalf("QR holds %q; want %q", res.GetText(), code["enrollUrl"])
	}
	// What the QR holds enrolls a handset.
	u, err := url.Parse(res.GetText())
	if err != nil {
		t.Fatal(err)
	}
	r = e.do("POST", u.Path, "", map[string]any{"code": u.Query().Get("code"), "device": handset("359881234567899")})
	if r.status != 201 {
		t.Fatalf("enrolling with the scanned code: %d %s", r.status, r.body)
	}

	wantProblem(t, e.do("GET", strings.Replace(qrPath, secret, "AAAA-BBBB-CCCC-DDDD", 1), e.manager, nil), 404, "not_found")
	wantProblem(t, e.do("GET", "/v1/enrollment-codes/enc_missing/qr.png?code="+secret, e.manager, nil), 404, "not_found")
	wantProblem(t, e.do("GET", qrPath, "", nil), 401, "token_invalid")
}

// TestTrustedProxies checks which address the audit trail (and throttling)
// sees. Requests made with app.Test come from 0.0.0.0.
func TestTrustedProxies(t *testing.T) {
	lastIP := func(e *env) string {
		t.Helper()
		items := e.do("GET", "/v1/audit?action=login", e.manager, nil).json(t)["items"].([]any)
		return items[len(items)-1].(map[string]any)["clientIp"].(string)
	}
	login := func(e *env, xff string) {
		t.Helper()
		e.do("POST", "/v1/auth/login", "", map[string]any{"username": "maria", "password": "correct horse"}, "X-Forwarded-For", xff)
	}

	direct := newEnv(t)
	direct.fleet()
	login(direct, "6.6.6.6")
	if ip := lastIP(direct); ip != "0.0.0.0" {
		t.Fatalf("without trusted proxies the header was believed: %s", ip)
	}

	proxied := newEnv(t, func(o *api.Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/32"), netip.MustParsePrefix("10.0.0.0/8")}
	})
	proxied.fleet()
	for xff, want := range map[string]string{
		"203.0.113.9":                      "203.0.113.9",
		"6.6.6.6, 203.0.113.9, 10.1.2.3":   "203.0.113.9", // the client's own claim (6.6.6.6) is not believed
		"10.9.9.9":                         "10.9.9.9",    // every hop trusted: the farthest
		"nonsense, 198.51.100.4":           "198.51.100.4",
		"":                                 "0.0.0.0",
		"198.51.100.4, ::ffff:203.0.113.7": "203.0.113.7",
	} {
		login(proxied, xff)
		if ip := lastIP(proxied); ip != want {
			t.Errorf("X-Forwarded-For %q: client %s; want %s", xff, ip, want)
		}
	}
}

// TestLoginBodyErrorsSayWhat: a login without its credentials names what
// is missing (and is no failed login), and an unknown member is named in
// the server's words, not the JSON decoder's.
func TestLoginBodyErrorsSayWhat(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	for range 6 {
		p := wantProblem(t, e.do("POST", "/v1/auth/login", "", `{}`), 400, "validation_failed")
		codes := fieldCodes(t, p)
		if codes["username"] != "username_required" || codes["password"] != "password_required" {
			t.Fatalf("{}: %v; want username and password named as required", codes)
		}
	}
	p := wantProblem(t, e.do("POST", "/v1/auth/login", "", `{"username":"  ","password":"correct horse"}`), 400, "validation_failed")
	if codes := fieldCodes(t, p); codes["username"] != "username_required" || len(codes) != 1 {
		t.Fatalf("a blank username: %v", codes)
	}
	// None of that counted against the account or the address.
	if r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "maria", "password": "correct horse"}); r.status != 200 {
		t.Fatalf("login after the empty bodies: %d %s", r.status, r.body)
	}
	p = wantProblem(t, e.do("POST", "/v1/auth/login", "", `{"username":"maria","password":"correct horse","remember":true}`), 400, "invalid_request")
	if d := p["detail"].(string); strings.Contains(d, "json:") || !strings.Contains(d, `"remember"`) {
		t.Fatalf("unknown member: %q; want it named in the server's words", d)
	}
}
