package api_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"tether/storage"
)

// validDevice is a whole, valid registration body.
func validDevice(imei string) map[string]any {
	return map[string]any{
		"imei": imei, "hasIccCard": true, "iccIds": []string{"89445001021983048261"},
		"osVersion":  map[string]any{"api": 34, "name": "14"},
		"deviceInfo": map[string]any{"manufacturer": "samsung", "model": "SM-G991B"},
		"appVersion": "3.2.1", "label": "van 7", "group": "north",
	}
}

func TestRegisterDevice(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1/devices", e.manager, validDevice("490154203237518"))
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	d := r.json(t)
	id, _ := d["id"].(string)
	if !strings.HasPrefix(id, "dev_") || d["status"] != "enrolled" || d["imei"] != "490154203237518" ||
		d["label"] != "van 7" || r.header.Get("Location") != "/v1/devices/"+id {
		t.Fatalf("register answer: %s (Location %q)", r.body, r.header.Get("Location"))
	}
	if by, _ := d["enrolledBy"].(string); !strings.HasPrefix(by, "apikey:ak_") {
		t.Fatalf("enrolledBy %q; want the manager's key", by)
	}

	// By IMEI alone, with separators.
	r = e.do("POST", "/v1/devices", e.manager, map[string]any{"imei": "35-693803-564380-9"})
	if r.status != 201 || r.json(t)["imei"] != "356938035643809" {
		t.Fatalf("register by IMEI alone: %d %s", r.status, r.body)
	}

	// The same IMEI again, in another spelling: 409.
	wantProblem(t, e.do("POST", "/v1/devices", e.manager, map[string]any{"imei": "49015420 3237518"}), 409, "conflict")
	if n := e.deviceCount(); n != 2 {
		t.Fatalf("%d devices stored; want 2", n)
	}
}

func TestRegisterDeviceNamesEveryBadField(t *testing.T) {
	e := newEnv(t)
	body := validDevice("490154203237519")            // wrong check digit
	body["iccIds"] = []string{"79445001021983048261"} // no 89
	body["osVersion"] = map[string]any{"api": 34, "name": "13"}
	body["deviceInfo"] = map[string]any{"manufacturer": "samsung", "model": ""}
	p := wantProblem(t, e.do("POST", "/v1/devices", e.manager, body), 400, "validation_failed")
	got := fieldCodes(t, p)
	want := map[string]string{
		"imei": "imei_checksum", "iccIds[0]": "iccid_prefix",
		"osVersion.name": "os_name_mismatch", "deviceInfo.model": "model_length",
	}
	if len(got) != len(want) {
		t.Fatalf("fields %v; want %v", got, want)
	}
	for f, c := range want {
		if got[f] != c {
			t.Fatalf("field %s: %q; want %q (all %v)", f, got[f], c, got)
		}
	}
	if n := e.deviceCount(); n != 0 {
		t.Fatalf("a refused register stored %d devices", n)
	}
}

// TestHostileBodies sends every kind of bad body to every route that takes
// one, and checks each gets a clear 4xx and nothing is written.
func TestHostileBodies(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1/devices", e.manager, map[string]any{"imei": "356938035643809"})
	if r.status != 201 {
		t.Fatal(r.status)
	}
	devID := r.json(t)["id"].(string)
	r = e.do("POST", "/v1/users", e.manager, map[string]any{"username": "carol", "password": "long enough"})
	if r.status != 201 {
		t.Fatal(r.status)
	}
	userID := r.json(t)["id"].(string)

	routes := []struct{ method, path string }{
		{"POST", "/v1/devices"},
		{"PATCH", "/v1/devices/" + devID},
		{"POST", "/v1/devices/" + devID + "/suspend"},
		{"POST", "/v1/users"},
		{"PATCH", "/v1/users/" + userID},
		{"POST", "/v1/users/" + userID + "/password"},
		{"POST", "/v1/api-keys"},
		{"POST", "/v1/auth/login"},
		{"POST", "/v1/auth/refresh"},
		{"POST", "/v1/auth/renew"},
		{"POST", "/v1/auth/introspect"},
		{"POST", "/v1/enroll"},
		{"POST", "/v1/enrollment-codes"},
	}
	bodies := []struct {
		name   string
		body   string
		ctype  string
		status int
		code   string
		detail string // a part of the problem's detail, when it matters
	}{
		{"malformed", `{"imei": "4901`, "application/json", 400, "invalid_request", ""},
		{"not JSON", `imei=490154203237518`, "application/json", 400, "invalid_request", ""},
		{"array", `[1,2,3]`, "application/json", 400, "invalid_request", ""},
		{"string", `"hello"`, "application/json", 400, "invalid_request", ""},
		{"two values", `{} {}`, "application/json", 400, "invalid_request", ""},
		{"unknown field", `{"imei":"490154203237518","admin":true}`, "application/json", 400, "invalid_request", ""},
		{"wrong type", `{"imei":490154203237518,"label":7,"role":1,"password":false,"reason":[]}`, "application/json", 400, "invalid_request", ""},
		{"invalid UTF-8", "{\"label\":\"\xff\xfe\"}", "application/json", 400, "invalid_request", ""},
		{"empty", ``, "application/json", 400, "invalid_request", ""},
		{"deeply nested", strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000), "application/json", 400, "invalid_request", ""},
		{"form", `imei=1`, "application/x-www-form-urlencoded", 415, "unsupported_media_type", ""},
		{"XML", `<imei>1</imei>`, "application/xml", 415, "unsupported_media_type", ""},
		{"oversized", `{"label":"` + strings.Repeat("x", 70<<10) + `"}`, "application/json", 413, "payload_too_large", ""},
		{"repeated member", `{"label":"a","group":"b","label":"c"}`, "application/json", 400, "invalid_request", `member "label" is repeated`},
		{"repeated nested member", `{"osVersion":{"api":34,"api":35},"device":{"imei":"1"}}`, "application/json", 400, "invalid_request", `member "api" is repeated`},
		{"repeated member in an array of objects", `{"assignedUsers":[{"id":"a"},{"id":"b","id":"c"}]}`, "application/json", 400, "invalid_request", `member "id" is repeated`},
		{"member repeated in other case", `{"reason":"a","Reason":"b"}`, "application/json", 400, "invalid_request", `member "Reason" repeats "reason"`},
	}
	for _, rt := range routes {
		for _, b := range bodies {
			if b.name == "empty" && strings.HasSuffix(rt.path, "/suspend") {
				continue // suspend takes an optional body
			}
			t.Run(rt.method+" "+rt.path+" "+b.name, func(t *testing.T) {
				e := e.withT(t)
				key := e.manager
				switch {
				case strings.HasPrefix(rt.path, "/v1/api-keys"):
					key = e.admin
				case rt.path == "/v1/auth/introspect":
					key = e.introspect
				}
				r := e.do(rt.method, rt.path, key, b.body, "Content-Type", b.ctype)
				p := wantProblem(t, r, b.status, b.code)
				detail, _ := p["detail"].(string)
				if detail == "" {
					t.Fatal("problem without a detail")
				}
				if !strings.Contains(detail, b.detail) {
					t.Fatalf("detail %q; want %q in it", detail, b.detail)
				}
			})
		}
	}
	if n := e.deviceCount(); n != 1 {
		t.Fatalf("%d devices after hostile bodies; want 1", n)
	}
	if n := e.userCount(); n != 1 {
		t.Fatalf("%d users after hostile bodies; want 1", n)
	}
	d, err := e.store.GetDevice(t.Context(), devID)
	if err != nil || d.Label != "" || d.Status != "enrolled" {
		t.Fatalf("device changed by hostile bodies: %+v %v", d, err)
	}
	sessions, err := e.store.ListSessions(t.Context(), storage.SessionFilter{})
	if err != nil || len(sessions.Items) != 0 {
		t.Fatalf("%d sessions after hostile bodies", len(sessions.Items))
	}
	codes, err := e.store.ListEnrollmentCodes(t.Context(), storage.CodeFilter{})
	if err != nil || len(codes) != 0 {
		t.Fatalf("%d enrollment codes after hostile bodies", len(codes))
	}
}

func TestWrongTypeNamesTheField(t *testing.T) {
	e := newEnv(t)
	p := wantProblem(t, e.do("POST", "/v1/devices", e.manager, `{"imei":"490154203237518","osVersion":{"api":"34","name":"14"}}`), 400, "invalid_request")
	if !strings.Contains(p["detail"].(string), "osVersion.api") {
		t.Fatalf("detail %q does not name the field", p["detail"])
	}
}

func TestListDevices(t *testing.T) {
	e := newEnv(t)
	imeis := []string{"490154203237518", "356938035643809", "352099001761481", "012345678901237", "867584030000009"}
	var ids []string
	for i, imei := range imeis {
		body := map[string]any{"imei": imei, "label": fmt.Sprintf("Van %d", i), "group": []string{"north", "south"}[i%2]}
		r := e.do("POST", "/v1/devices", e.manager, body)
		if r.status != 201 {
			t.Fatalf("register %s: %d %s", imei, r.status, r.body)
		}
		ids = append(ids, r.json(t)["id"].(string))
	}
	if r := e.do("POST", "/v1/devices/"+ids[1]+"/suspend", e.manager, map[string]any{"reason": "lost"}); r.status != 200 {
		t.Fatalf("suspend: %d %s", r.status, r.body)
	}

	list := func(q string) ([]string, string) {
		t.Helper()
		r := e.do("GET", "/v1/devices"+q, e.manager, nil)
		if r.status != 200 {
			t.Fatalf("list %s: %d %s", q, r.status, r.body)
		}
		m := r.json(t)
		var got []string
		for _, it := range m["items"].([]any) {
			got = append(got, it.(map[string]any)["id"].(string))
		}
		next, _ := m["nextCursor"].(string)
		return got, next
	}

	if got, _ := list("?status=suspended"); len(got) != 1 || got[0] != ids[1] {
		t.Fatalf("status=suspended: %v; want [%s]", got, ids[1])
	}
	if got, _ := list("?status=enrolled&group=north"); len(got) != 3 {
		t.Fatalf("enrolled in north: %v; want 3", got)
	}
	if got, _ := list("?q=van%203"); len(got) != 1 || got[0] != ids[3] {
		t.Fatalf("q=van 3: %v", got)
	}

	// Pages of two, following the cursor, see every device once.
	var walked []string
	cursor := ""
	for range 10 {
		got, next := list("?limit=2&cursor=" + cursor)
		walked = append(walked, got...)
		if next == "" {
			break
		}
		cursor = next
	}
	if fmt.Sprint(walked) != fmt.Sprint(ids) {
		t.Fatalf("paged walk %v; want %v", walked, ids)
	}

	for _, q := range []string{"?limit=0", "?limit=1001", "?limit=x", "?limit=-1"} {
		p := wantProblem(t, e.do("GET", "/v1/devices"+q, e.manager, nil), 400, "validation_failed")
		if fieldCodes(t, p)["limit"] != "limit_invalid" {
			t.Fatalf("%s: %v", q, p)
		}
	}
	p := wantProblem(t, e.do("GET", "/v1/devices?status=lost", e.manager, nil), 400, "validation_failed")
	if fieldCodes(t, p)["status"] != "status_invalid" {
		t.Fatalf("status=lost: %v", p)
	}
}

func TestGetPatchAndLifecycle(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1/users", e.manager, map[string]any{"username": "alice", "password": "long enough"})
	if r.status != 201 {
		t.Fatal(r.status)
	}
	r = e.do("POST", "/v1/devices", e.manager, validDevice("490154203237518"))
	id := r.json(t)["id"].(string)

	for _, ref := range []string{id, "490154203237518"} {
		r := e.do("GET", "/v1/devices/"+ref, e.manager, nil)
		if r.status != 200 || r.json(t)["id"] != id {
			t.Fatalf("GET %s: %d %s", ref, r.status, r.body)
		}
	}
	wantProblem(t, e.do("GET", "/v1/devices/dev_01NOSUCHDEVICE0000000000000", e.manager, nil), 404, "not_found")
	wantProblem(t, e.do("GET", "/v1/devices/356938035643809", e.manager, nil), 404, "not_found")
	wantProblem(t, e.do("GET", "/v1/devices/..%2F..%2Fetc%2Fpasswd", e.manager, nil), 404, "not_found")

	r = e.do("PATCH", "/v1/devices/"+id, e.manager, map[string]any{"label": "van 9", "assignedUsers": []string{"ALICE"}})
	d := r.json(t)
	if r.status != 200 || d["label"] != "van 9" || d["group"] != "north" || fmt.Sprint(d["assignedUsers"]) != "[alice]" {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	p := wantProblem(t, e.do("PATCH", "/v1/devices/"+id, e.manager, map[string]any{"label": strings.Repeat("x", 65), "assignedUsers": []string{"nobody"}}), 400, "validation_failed")
	if got := fieldCodes(t, p); got["label"] != "label_length" || got["assignedUsers[0]"] != "user_unknown" {
		t.Fatalf("bad patch fields: %v", got)
	}
	r = e.do("PATCH", "/v1/devices/"+id, e.manager, map[string]any{"notes": " screen cracked "})
	if d := r.json(t); r.status != 200 || d["notes"] != "screen cracked" || d["label"] != "van 9" {
		t.Fatalf("patch notes: %d %s", r.status, r.body)
	}
	p = wantProblem(t, e.do("PATCH", "/v1/devices/"+id, e.manager, map[string]any{"notes": strings.Repeat("n", 501)}), 400, "validation_failed")
	if got := fieldCodes(t, p); got["notes"] != "notes_length" {
		t.Fatalf("long notes: %v", got)
	}
	wantProblem(t, e.do("PATCH", "/v1/devices/"+id, e.manager, map[string]any{"imei": "356938035643809"}), 400, "invalid_request")
	wantProblem(t, e.do("PATCH", "/v1/devices/dev_missing", e.manager, map[string]any{"label": "x"}), 404, "not_found")
	if r := e.do("GET", "/v1/devices/"+id, e.manager, nil); r.json(t)["label"] != "van 9" || r.json(t)["notes"] != "screen cracked" {
		t.Fatalf("refused patches changed the device: %s", r.body)
	}

	steps := []struct {
		op, want string
		status   int
	}{
		{"suspend", "suspended", 200},
		{"reinstate", "enrolled", 200},
		{"retire", "retired", 200},
		{"suspend", "retired", 409},
		{"reinstate", "enrolled", 200},
	}
	for _, st := range steps {
		r := e.do("POST", "/v1/devices/"+id+"/"+st.op, e.manager, map[string]any{"reason": "test " + st.op})
		if st.status == 409 {
			wantProblem(t, r, 409, "conflict")
		} else if r.status != st.status || r.json(t)["status"] != st.want {
			t.Fatalf("%s: %d %s", st.op, r.status, r.body)
		}
		if got := e.do("GET", "/v1/devices/"+id, e.manager, nil).json(t)["status"]; got != st.want {
			t.Fatalf("after %s: status %v; want %s", st.op, got, st.want)
		}
	}
	// No body at all is fine for a lifecycle change.
	if r := e.do("POST", "/v1/devices/"+id+"/suspend", e.manager, nil); r.status != 200 {
		t.Fatalf("suspend without a body: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("POST", "/v1/devices/dev_missing/retire", e.manager, nil), 404, "not_found")
	p = wantProblem(t, e.do("POST", "/v1/devices/"+id+"/retire", e.manager, map[string]any{"reason": strings.Repeat("r", 300)}), 400, "validation_failed")
	if fieldCodes(t, p)["reason"] != "reason_length" {
		t.Fatalf("long reason: %v", p)
	}
}

// TestUsersHandsets: a handset registered with notes and assigned users is
// listed among each of those users' handsets, by username or id.
func TestUsersHandsets(t *testing.T) {
	e := newEnv(t)
	e.fleet() // walter and maria; two handsets assigned to nobody
	r := e.do("POST", "/v1/devices", e.manager, map[string]any{"imei": "359881234567899", "assignedUsers": []string{"walter"}, "notes": "spare battery"})
	if r.status != 201 || r.json(t)["notes"] != "spare battery" {
		t.Fatalf("register with notes: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	walter := e.do("GET", "/v1/users?q=walter", e.manager, nil).json(t)["items"].([]any)[0].(map[string]any)["id"].(string)
	for _, c := range []struct {
		ref  string
		want []string
	}{
		{"walter", []string{id}},
		{walter, []string{id}},
		{"maria", nil},
		{"nobody", nil},
	} {
		r := e.do("GET", "/v1/devices?assignedUser="+c.ref, e.manager, nil)
		if r.status != 200 {
			t.Fatalf("handsets of %s: %d %s", c.ref, r.status, r.body)
		}
		var got []string
		for _, d := range r.json(t)["items"].([]any) {
			got = append(got, d.(map[string]any)["id"].(string))
		}
		if !slices.Equal(got, c.want) {
			t.Fatalf("handsets of %s: got %v; want %v", c.ref, got, c.want)
		}
	}
}

// TestDevicePathsTakeIMEI: every /v1/devices/{id} route takes the IMEI too,
// as the README's walk-through uses it.
func TestDevicePathsTakeIMEI(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	const imei = "490154203237518"
	if r := e.do("PATCH", "/v1/devices/"+imei, e.manager, map[string]any{"assignedUsers": []string{"walter"}}); r.status != 200 {
		t.Fatalf("PATCH by IMEI: %d %s", r.status, r.body)
	}
	for _, op := range []struct{ op, want string }{{"suspend", "suspended"}, {"reinstate", "enrolled"}, {"retire", "retired"}} {
		r := e.do("POST", "/v1/devices/49-0154-2032-3751-8/"+op.op, e.manager, nil)
		if r.status != 200 || r.json(t)["status"] != op.want {
			t.Fatalf("%s by IMEI: %d %s", op.op, r.status, r.body)
		}
	}
	wantProblem(t, e.do("POST", "/v1/devices/359881234567899/suspend", e.manager, nil), 404, "not_found")
}
