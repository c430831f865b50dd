package api_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"
)

// shareRack makes phone a shared handset of group rack-1 through the API,
// with the given shifts (nil for none).
func (e *env) shareRack(phone string, shifts map[string]any) {
	e.t.Helper()
	body := map[string]any{"mode": "shared"}
	if shifts != nil {
		body["shifts"] = shifts
	}
	if r := e.do("PUT", "/v1/groups/rack-1", e.manager, body); r.status != 200 {
		e.t.Fatalf("PUT group: %d %s", r.status, r.body)
	}
	if r := e.do("PATCH", "/v1/devices/"+phone, e.manager, map[string]any{"group": "rack-1", "mode": "group"}); r.status != 200 {
		e.t.Fatalf("PATCH device: %d %s", r.status, r.body)
	}
}

func (e *env) loginOn(username, imei string) map[string]any {
	e.t.Helper()
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": username, "password": "correct horse", "device": handset(imei), "persistent": true})
	if r.status != 200 {
		e.t.Fatalf("login of %s: %d %s", username, r.status, r.body)
	}
	return r.json(e.t)
}

func TestGroupsAPI(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "nora", "password": "correct horse", "role": "worker"}); r.status != 201 {
		t.Fatal(r.status, string(r.body))
	}
	body := map[string]any{
		"mode": "shared", "roster": []string{"nora"}, "suspendUnreturnedAfterMinutes": 90,
		"shifts": map[string]any{"timeZone": "Europe/Berlin", "boundaries": []string{"06:00", "14:00", "22:00"}, "graceMinutes": 15},
	}
	r := e.do("PUT", "/v1/groups/rack-1", e.manager, body)
	if r.status != 200 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	g := r.json(t)
	shifts := g["shifts"].(map[string]any)
	if g["name"] != "rack-1" || g["mode"] != "shared" || fmt.Sprint(g["roster"]) != "[nora]" || g["suspendUnreturnedAfterMinutes"] != float64(90) ||
		shifts["timeZone"] != "Europe/Berlin" || shifts["graceMinutes"] != float64(15) || g["updatedBy"] == "" || g["updatedByName"] != "manager" {
		t.Fatalf("PUT answer %s", r.body)
	}
	if r := e.do("GET", "/v1/groups/rack-1", e.manager, nil); r.status != 200 || !bytes.Equal(r.body, e.do("GET", "/v1/groups/rack-1", e.manager, nil).body) {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	// A name with a space, escaped in the path.
	if r := e.do("PUT", "/v1/groups/North%20Depot", e.manager, map[string]any{"mode": "shared"}); r.status != 200 || r.json(t)["name"] != "North Depot" {
		t.Fatalf("PUT a name with a space: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/groups/north", e.manager, nil); r.status != 200 || r.json(t)["mode"] != "personal" || r.json(t)["shifts"] != nil || r.json(t)["hasSettings"] != false {
		t.Fatalf("GET a group without settings: %d %s", r.status, r.body)
	}
	// The list: the groups with settings and those handsets are in.
	if r := e.do("PATCH", "/v1/devices/490154203237518", e.manager, map[string]any{"group": "depot 7"}); r.status != 200 {
		t.Fatal(r.status, string(r.body))
	}
	r = e.do("GET", "/v1/groups", e.manager, nil)
	var listed []string
	for _, it := range r.json(t)["items"].([]any) {
		g := it.(map[string]any)
		listed = append(listed, fmt.Sprint(g["name"], " ", g["hasSettings"]))
	}
	if r.status != 200 || strings.Join(listed, "|") != "North Depot true|depot 7 false|rack-1 true" {
		t.Fatalf("GET list: %d %q", r.status, listed)
	}
	audit := e.do("GET", "/v1/audit?action=group.update", e.manager, nil)
	if items := audit.json(t)["items"].([]any); len(items) != 2 {
		t.Fatalf("group.update events: %s", audit.body)
	}

	// Bad input: a clear error, nothing written.
	bad := []struct {
		name, path string
		body       any
		status     int
		code       string
	}{
		{"wrong type", "/v1/groups/rack-1", map[string]any{"mode": 5}, 400, "invalid_request"},
		{"unknown member", "/v1/groups/rack-1", map[string]any{"mode": "shared", "colour": "red"}, 400, "invalid_request"},
		{"bad mode", "/v1/groups/rack-1", map[string]any{"mode": "communal"}, 400, "validation_failed"},
		{"group mode for a group", "/v1/groups/rack-1", map[string]any{"mode": "group"}, 400, "validation_failed"},
		{"unknown roster user", "/v1/groups/rack-1", map[string]any{"roster": []string{"nobody"}}, 400, "validation_failed"},
		{"roster too long", "/v1/groups/rack-1", map[string]any{"roster": slices.Repeat([]string{"nora"}, 101)}, 400, "validation_failed"},
		{"bad zone", "/v1/groups/rack-1", map[string]any{"shifts": map[string]any{"timeZone": "../../etc/localtime", "boundaries": []string{"06:00"}}}, 400, "validation_failed"},
		{"bad boundary", "/v1/groups/rack-1", map[string]any{"shifts": map[string]any{"timeZone": "UTC", "boundaries": []string{"6am"}}}, 400, "validation_failed"},
		{"huge grace", "/v1/groups/rack-1", map[string]any{"shifts": map[string]any{"timeZone": "UTC", "boundaries": []string{"06:00"}, "graceMinutes": int64(1) << 60}}, 400, "validation_failed"},
		{"negative suspension", "/v1/groups/rack-1", map[string]any{"suspendUnreturnedAfterMinutes": -1}, 400, "validation_failed"},
		{"overflowing suspension", "/v1/groups/rack-1", map[string]any{"suspendUnreturnedAfterMinutes": int64(1) << 62}, 400, "validation_failed"},
		{"name too long", "/v1/groups/" + strings.Repeat("g", 65), map[string]any{"mode": "shared"}, 400, "validation_failed"},
		{"NUL in the name", "/v1/groups/a%00b", map[string]any{"mode": "shared"}, 400, "validation_failed"},
		{"spaces around the name", "/v1/groups/%20rack-1", map[string]any{"mode": "shared"}, 400, "validation_failed"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			r := e.withT(t).do("PUT", c.path, e.manager, c.body)
			wantProblem(t, r, c.status, c.code)
		})
	}
	if r := e.do("GET", "/v1/groups/rack-1", e.manager, nil); r.json(t)["mode"] != "shared" || r.json(t)["shifts"] == nil {
		t.Fatalf("a refused PUT changed the group: %s", r.body)
	}
	r = e.do("PUT", "/v1/groups/rack-1", e.manager, "not an object")
	wantProblem(t, r, 400, "invalid_request")

	// Concurrent PUTs: each answer is whole; the last write is what is
	// stored, never a mix.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mode := []string{"shared", "personal"}[i%2]
			if r := e.do("PUT", "/v1/groups/busy", e.manager, map[string]any{"mode": mode, "suspendUnreturnedAfterMinutes": i}); r.status != 200 {
				t.Errorf("concurrent PUT: %d %s", r.status, r.body)
			}
		}()
	}
	wg.Wait()
	got := e.do("GET", "/v1/groups/busy", e.manager, nil).json(t)
	if n := int(got["suspendUnreturnedAfterMinutes"].(float64)); []string{"shared", "personal"}[n%2] != got["mode"] {
		t.Fatalf("after concurrent PUTs the group mixes two writes: %v", got)
	}

	if r := e.do("DELETE", "/v1/groups/rack-1", e.manager, nil); r.status != 204 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("DELETE", "/v1/groups/rack-1", e.manager, nil), 404, "not_found")
}

// TestGroupsScoped: a scoped manager's key sets and reads only its own
// groups, and sees only its racks.
func TestGroupsScoped(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	r := e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "manager", "name": "north desk", "scopes": []string{"north"}})
	if r.status != 201 {
		t.Fatalf("scoped key: %d %s", r.status, r.body)
	}
	north := r.json(t)["key"].(string)
	if r := e.do("PUT", "/v1/groups/north", north, map[string]any{"mode": "shared"}); r.status != 200 {
		t.Fatalf("own group: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("PUT", "/v1/groups/south", north, map[string]any{"mode": "shared"}), 403, "scope_exceeded")
	if r := e.do("PUT", "/v1/groups/south", e.manager, map[string]any{"mode": "personal", "suspendUnreturnedAfterMinutes": 5}); r.status != 200 {
		t.Fatal(r.status, string(r.body))
	}
	wantProblem(t, e.do("PUT", "/v1/groups/south", north, map[string]any{"mode": "shared"}), 403, "scope_exceeded")
	if g := e.do("GET", "/v1/groups/south", e.manager, nil).json(t); g["mode"] != "personal" || g["suspendUnreturnedAfterMinutes"] != float64(5) {
		t.Fatalf("a refused PUT of another's group changed it: %v", g)
	}
	wantProblem(t, e.do("GET", "/v1/groups/south", north, nil), 404, "not_found")
	wantProblem(t, e.do("DELETE", "/v1/groups/south", north, nil), 404, "not_found")
	if items := e.do("GET", "/v1/groups", north, nil).json(t)["items"].([]any); len(items) != 1 {
		t.Fatalf("a scoped manager's groups: %v", items)
	}
}

func TestSharedHandsetAPI(t *testing.T) {
	e := newEnv(t)
	phone, other := e.fleet()
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "anna", "password": "correct horse", "role": "worker"}); r.status != 201 {
		t.Fatal(r.status, string(r.body))
	}
	e.shareRack(phone, nil)
	d := e.do("GET", "/v1/devices/"+phone, e.manager, nil).json(t)
	if d["mode"] != "shared" || d["modeSource"] != "group" {
		t.Fatalf("a handset of a shared group: mode %v from %v", d["mode"], d["modeSource"])
	}
	if d := e.do("GET", "/v1/devices/"+other, e.manager, nil).json(t); d["mode"] != "personal" || d["modeSource"] != "group" {
		t.Fatalf("a handset in no group: mode %v from %v", d["mode"], d["modeSource"])
	}
	wantProblem(t, e.do("PATCH", "/v1/devices/"+phone, e.manager, map[string]any{"mode": "lent"}), 400, "validation_failed")

	walter := e.loginOn("walter", "490154203237518")
	anna := e.loginOn("anna", "490154203237518")
	p := wantProblem(t, e.do("GET", "/v1/auth/me", walter["accessToken"].(string), nil), 401, "session_ended_by_handover")
	if p["reason"] != "handover" {
		t.Fatalf("problem %v; want reason handover", p)
	}
	wantProblem(t, e.do("POST", "/v1/auth/refresh", "", map[string]any{"refreshToken": walter["refreshToken"], "deviceId": phone}), 401, "session_ended_by_handover")
	if r := e.do("GET", "/v1/auth/me", anna["accessToken"].(string), nil); r.status != 200 {
		t.Fatalf("the new holder: %d %s", r.status, r.body)
	}
	audit := e.do("GET", "/v1/audit?action=device.handover", e.manager, nil).json(t)["items"].([]any)
	if len(audit) != 1 || audit[0].(map[string]any)["detail"].(map[string]any)["fromUserId"] != walter["user"].(map[string]any)["id"] {
		t.Fatalf("handover events %v", audit)
	}

	// The rack: anna holds it; the other handset is personal, not in it.
	rack := e.do("GET", "/v1/rack", e.manager, nil)
	items := rack.json(t)["items"].([]any)
	if rack.status != 200 || len(items) != 1 {
		t.Fatalf("rack: %d %s", rack.status, rack.body)
	}
	slot := items[0].(map[string]any)
	if slot["deviceId"] != phone || slot["state"] != "in_use" || slot["username"] != "anna" || slot["since"] == "" {
		t.Fatalf("rack slot %v", slot)
	}
	if r := e.do("GET", "/v1/rack?group=elsewhere", e.manager, nil); len(r.json(t)["items"].([]any)) != 0 {
		t.Fatalf("rack of another group: %s", r.body)
	}
	// As CSV and XLSX, read back with other people's readers.
	r := e.do("GET", "/v1/rack", e.manager, nil, "Accept", "text/csv")
	rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("rack as CSV: %v, %q", err, r.body)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	if rows[1][col["state"]] != "in_use" || rows[1][col["username"]] != "anna" || rows[1][col["imei"]] != "490154203237518" {
		t.Fatalf("rack as CSV: %q", rows)
	}
	r = e.do("GET", "/v1/rack", e.manager, nil, "Accept", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
	f, err := excelize.OpenReader(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("rack as XLSX: %v", err)
	}
	sheet, err := f.GetRows(f.GetSheetName(0))
	if err != nil || len(sheet) != 2 || !slices.Contains(sheet[1], "anna") || !slices.Contains(sheet[1], "in_use") {
		t.Fatalf("rack as XLSX: %q, %v", sheet, err)
	}

	// Anna ends her shift: the handset is free, her session over.
	if r := e.do("POST", "/v1/auth/end-shift", anna["accessToken"].(string), nil); r.status != 204 {
		t.Fatalf("end-shift: %d %s", r.status, r.body)
	}
	p = wantProblem(t, e.do("GET", "/v1/auth/me", anna["accessToken"].(string), nil), 401, "session_revoked")
	if p["reason"] != "shift_ended" {
		t.Fatalf("after the end of the shift: %v", p)
	}
	if slot := e.do("GET", "/v1/rack", e.manager, nil).json(t)["items"].([]any)[0].(map[string]any); slot["state"] != "free" || slot["username"] != nil {
		t.Fatalf("rack after the end of the shift: %v", slot)
	}
	// A session on no handset has no shift to end.
	e.do("POST", "/v1/users", e.admin, map[string]any{"username": "desk", "password": "correct horse", "role": "manager"})
	desk := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "desk", "password": "correct horse"}).json(t)
	wantProblem(t, e.do("POST", "/v1/auth/end-shift", desk["accessToken"].(string), nil), 400, "validation_failed")
	wantProblem(t, e.do("POST", "/v1/auth/end-shift", "", nil), 401, "token_invalid")
}

// TestDialectHandsOver: a login through a seed dialect on a shared
// handset hands it over as a native one does.
func TestDialectHandsOver(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "anna", "password": "correct horse", "role": "worker"}); r.status != 201 {
		t.Fatal(r.status, string(r.body))
	}
	e.shareRack(phone, nil)
	walter := e.loginOn("walter", "490154203237518")
	r := e.do("POST", "/api/Login", "", map[string]any{"username": "anna", "password": "correct horse", "deviceId": phone})
	if r.status != 200 {
		t.Fatalf("dialect login: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", walter["accessToken"].(string), nil), 401, "session_ended_by_handover")
	if items := e.do("GET", "/v1/audit?action=device.handover", e.manager, nil).json(t)["items"].([]any); len(items) != 1 {
		t.Fatalf("handover events after a dialect login: %v", items)
	}
}

// TestHandoverRaceHTTP: workers log in on one shared handset at the same
// instant, over HTTP, on bbolt and on PostgreSQL: exactly one session
// remains.
func TestHandoverRaceHTTP(t *testing.T) {
	for _, on := range []struct {
		name string
		opts []any
	}{{"bbolt", nil}, {"postgres", []any{onPostgres{}}}} {
		t.Run(on.name, func(t *testing.T) {
			e := newEnv(t, on.opts...)
			phone, _ := e.fleet()
			e.shareRack(phone, map[string]any{"timeZone": "UTC", "boundaries": []string{"00:00"}})
			const workers = 8
			for i := range workers {
				if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": fmt.Sprintf("racer%d", i), "password": "correct horse", "role": "worker"}); r.status != 201 {
					t.Fatal(r.status, string(r.body))
				}
			}
			start := make(chan struct{})
			tokens := make([]string, workers)
			var wg sync.WaitGroup
			for i := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": fmt.Sprintf("racer%d", i), "password": "correct horse", "device": handset("490154203237518")})
					if r.status != 200 {
						t.Errorf("login %d: %d %s", i, r.status, r.body)
						return
					}
					tokens[i] = r.json(t)["accessToken"].(string)
				}()
			}
			close(start)
			wg.Wait()
			live := 0
			for _, tok := range tokens {
				r := e.do("GET", "/v1/auth/me", tok, nil)
				switch {
				case r.status == 200:
					live++
				default:
					wantProblem(t, r, 401, "session_ended_by_handover")
				}
			}
			sessions := e.do("GET", "/v1/sessions?deviceId="+url.QueryEscape(phone), e.manager, nil).json(t)["items"].([]any)
			if live != 1 || len(sessions) != 1 {
				t.Fatalf("%d tokens work, %d sessions live; want 1 and 1", live, len(sessions))
			}
		})
	}
}

// TestUnreturnedEverywhere: a shared handset whose worker's shift ran out
// without a handover shows as unreturned in the rack, the audit trail and
// the metrics, and its app is told why its session ended.
func TestUnreturnedEverywhere(t *testing.T) {
	clock := &stepClock{at: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)}
	e := newEnv(t, clock)
	phone, _ := e.fleet()
	e.shareRack(phone, map[string]any{"timeZone": "UTC", "boundaries": []string{"14:00"}, "graceMinutes": 10})
	walter := e.loginOn("walter", "490154203237518")
	if exp := walter["refreshExpiresAt"]; exp != "2026-06-01T14:10:00Z" || walter["shiftEnd"] != "2026-06-01T14:00:00Z" {
		t.Fatalf("refresh token of a shift until %v, shift end %v; want the deadline 2026-06-01T14:10:00Z, 14:00", exp, walter["shiftEnd"])
	}
	me := e.do("GET", "/v1/auth/me", walter["accessToken"].(string), nil).json(t)
	if me["session"].(map[string]any)["shiftEnd"] != "2026-06-01T14:00:00Z" {
		t.Fatalf("/v1/auth/me session %v; want its shift end", me["session"])
	}
	clock.mu.Lock()
	clock.off = 5*time.Hour + 11*time.Minute // 14:11
	clock.mu.Unlock()
	p := wantProblem(t, e.do("POST", "/v1/auth/refresh", "", map[string]any{"refreshToken": walter["refreshToken"], "deviceId": phone}), 401, "session_revoked")
	if p["reason"] != "shift_over" {
		t.Fatalf("refresh past the deadline: %v; want reason shift_over", p)
	}
	if r, err := e.auth.WatchShifts(context.Background()); err != nil || r.Noted != 1 || r.Unreturned != 1 {
		t.Fatalf("shift watch: %+v, %v", r, err)
	}
	slot := e.do("GET", "/v1/rack", e.manager, nil).json(t)["items"].([]any)[0].(map[string]any)
	if slot["state"] != "unreturned" || slot["username"] != "walter" || slot["deadline"] != "2026-06-01T14:10:00Z" || slot["shiftEnd"] != "2026-06-01T14:00:00Z" {
		t.Fatalf("rack slot %v", slot)
	}
	if items := e.do("GET", "/v1/audit?action=device.unreturned", e.manager, nil).json(t)["items"].([]any); len(items) != 1 {
		t.Fatalf("device.unreturned events %v", items)
	}
	body := e.do("GET", "/metrics", "", nil).body
	// A manager who finds it ends the session: the handset is free.
	if r := e.do("DELETE", "/v1/sessions/"+walter["sessionId"].(string), e.manager, nil); r.status != 204 {
		t.Fatalf("DELETE session: %d %s", r.status, r.body)
	}
	if slot := e.do("GET", "/v1/rack", e.manager, nil).json(t)["items"].([]any)[0].(map[string]any); slot["state"] != "free" {
		t.Fatalf("rack after the manager ended the unreturned session: %v", slot)
	}
	for series, want := range map[string]float64{
		"tether_handsets_unreturned": 1,
		`tether_auth_events_total{action="device.unreturned",outcome="success",reason=""}`: 1,
	} {
		if got := metric(t, body, series); got != want {
			t.Errorf("%s = %v; want %v", series, got, want)
		}
	}
}

// TestOAuthHandsOver: the OAuth token endpoint hands a shared handset over
// as the native login does, both ways, and a client whose session was
// handed over hears it as invalid_grant at its refresh.
func TestOAuthHandsOver(t *testing.T) {
	e := newEnv(t, oauthOn{})
	phone, _ := e.fleet()
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "anna", "password": "correct horse", "role": "worker"}); r.status != 201 {
		t.Fatal(r.status, string(r.body))
	}
	e.shareRack(phone, nil)
	field, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password", "refresh_token"}})
	walter := e.loginOn("walter", "490154203237518")
	anna := wantTokens(t, e.tokenReq(vals("grant_type", "password", "client_id", field, "username", "anna", "password", "correct horse",
		"device", devicePayload(phoneIMEI), "scope", "openid offline_access")))
	wantProblem(t, e.do("GET", "/v1/auth/me", walter["accessToken"].(string), nil), 401, "session_ended_by_handover")
	// Back to walter, natively: anna's OAuth session ends.
	e.loginOn("walter", "490154203237518")
	wantProblem(t, e.do("GET", "/v1/auth/me", anna["access_token"].(string), nil), 401, "session_ended_by_handover")
	d := wantOAuthError(t, e.tokenReq(vals("grant_type", "refresh_token", "client_id", field, "refresh_token", anna["refresh_token"].(string))), 400, "invalid_grant")
	if !strings.Contains(fmt.Sprint(d["error_description"]), "another worker") {
		t.Fatalf("refresh of a handed-over session: %v; want it said", d)
	}
}
