package api_test

import (
	"testing"
)

// TestAnswersNamePeopleAndHandsets checks that sessions, audit events and
// devices carry the names people know (usernames, API key names, IMEIs and
// labels) beside the ids, which stay.
func TestAnswersNamePeopleAndHandsets(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	if r := e.do("PATCH", "/v1/devices/"+phone, e.manager, map[string]any{"label": "van 7"}); r.status != 200 {
		t.Fatalf("label the phone: %d %s", r.status, r.body)
	}
	worker := e.loginWorker()
	walterID := worker["user"].(map[string]any)["id"].(string)
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "maria", "password": "correct horse"})
	if r.status != 200 {
		t.Fatalf("maria: %d %s", r.status, r.body)
	}
	maria := r.json(t)["accessToken"].(string)
	mariaID := r.json(t)["user"].(map[string]any)["id"].(string)
	// A change made with maria's token, one with the manager key, and an
	// event that records a user id alone.
	r = e.do("POST", "/v1/devices", maria, map[string]any{"imei": "359881234567899"})
	if r.status != 201 {
		t.Fatalf("register as maria: %d %s", r.status, r.body)
	}
	spare := r.json(t)["id"].(string)
	if r := e.do("POST", "/v1/devices/"+spare+"/suspend", e.manager, map[string]any{"reason": "spare"}); r.status != 200 {
		t.Fatalf("suspend: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/users/"+walterID+"/logout-all", maria, nil); r.status != 200 {
		t.Fatalf("logout-all: %d %s", r.status, r.body)
	}
	worker = e.loginWorker()

	// field returns the string member of an answer.
	field := func(m map[string]any, name string) string {
		s, _ := m[name].(string)
		return s
	}

	r = e.do("GET", "/v1/sessions?deviceId="+phone, e.manager, nil)
	sessions := r.json(t)["items"].([]any)
	if len(sessions) != 1 {
		t.Fatalf("sessions on the phone: %s", r.body)
	}
	sess := sessions[0].(map[string]any)
	for name, want := range map[string]string{"userId": walterID, "username": "walter", "deviceId": phone, "deviceImei": "490154203237518", "deviceLabel": "van 7"} {
		if got := field(sess, name); got != want {
			t.Errorf("session %s: got %q; want %q", name, got, want)
		}
	}
	me := e.do("GET", "/v1/auth/me", worker["accessToken"].(string), nil).json(t)["session"].(map[string]any)
	if field(me, "username") != "walter" || field(me, "deviceImei") != "490154203237518" || field(me, "deviceLabel") != "van 7" {
		t.Errorf("me's session: got %v; want walter's, on van 7", me)
	}

	// The newest event of each action, with its names.
	events := map[string]map[string]any{}
	for _, item := range e.do("GET", "/v1/audit?order=desc&limit=1000", e.manager, nil).json(t)["items"].([]any) {
		ev := item.(map[string]any)
		if events[field(ev, "action")] == nil {
			events[field(ev, "action")] = ev
		}
	}
	for _, c := range []struct {
		action string
		want   map[string]string
	}{
		{"login", map[string]string{"actor": "", "username": "walter", "deviceId": phone, "deviceImei": "490154203237518", "deviceLabel": "van 7"}},
		{"device.register", map[string]string{"actor": "user:" + mariaID, "actorName": "maria", "deviceId": spare, "deviceImei": "359881234567899", "deviceLabel": ""}},
		{"device.suspend", map[string]string{"actorName": "manager", "deviceImei": "359881234567899"}},
		{"user.logout_all", map[string]string{"actorName": "maria", "userId": walterID, "username": "walter"}},
		{"user.create", map[string]string{"actorName": "admin", "username": "maria"}},
	} {
		ev := events[c.action]
		if ev == nil {
			t.Fatalf("no %s event", c.action)
		}
		for name, want := range c.want {
			if got := field(ev, name); got != want {
				t.Errorf("%s event %s: got %q; want %q", c.action, name, got, want)
			}
		}
	}

	for _, c := range []struct {
		id   string
		want map[string]string
	}{
		{spare, map[string]string{"enrolledBy": "user:" + mariaID, "enrolledByName": "maria", "statusChangedByName": "manager"}},
		{phone, map[string]string{"enrolledByName": "manager", "statusChangedByName": ""}},
	} {
		d := e.do("GET", "/v1/devices/"+c.id, e.manager, nil).json(t)
		for name, want := range c.want {
			if got := field(d, name); got != want {
				t.Errorf("device %s %s: got %q; want %q", c.id, name, got, want)
			}
		}
	}
}
