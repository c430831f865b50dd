package api_test

import (
	"net/http"
	"testing"
)

// TestAPIKeyAllowFrom: a key limited to networks works from them and is
// refused from elsewhere, as a wrong key is; bad networks are refused at
// creation, every bad one named.
func TestAPIKeyAllowFrom(t *testing.T) {
	e := newEnv(t)
	base := e.url()
	create := func(nets ...string) string {
		r := e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "manager", "name": "depot scripts", "allowFrom": nets})
		if r.status != 201 {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		return r.json(t)["key"].(string)
	}
	use := func(key string) int {
		req, _ := http.NewRequest("GET", base+"/v1/devices", nil)
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The test's requests come from 127.0.0.1.
	for _, c := range []struct {
		nets []string
		want int
	}{
		{nil, 200},
		{[]string{"127.0.0.0/8"}, 200},
		{[]string{"10.0.0.0/8", "127.0.0.1"}, 200},
		{[]string{"::ffff:127.0.0.1/128"}, 200},
		{[]string{"10.0.0.0/8"}, 401},
		{[]string{"2001:db8::/32", "192.168.0.0/16"}, 401},
	} {
		if got := use(create(c.nets...)); got != c.want {
			t.Errorf("a key limited to %v, used from 127.0.0.1: %d; want %d", c.nets, got, c.want)
		}
	}
	// The list shows the networks, canonical.
	r := e.do("GET", "/v1/api-keys", e.admin, nil)
	found := false
	for _, k := range r.json(t)["items"].([]any) {
		if nets, _ := k.(map[string]any)["allowFrom"].([]any); len(nets) == 2 && nets[0] == "10.0.0.0/8" && nets[1] == "127.0.0.1/32" {
			found = true
		}
	}
	if !found {
		t.Errorf("the key list does not show [10.0.0.0/8 127.0.0.1/32]: %s", r.body)
	}
	p := wantProblem(t, e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "manager", "allowFrom": []string{"10.0.0.0/33", "nowhere"}}), 400, "validation_failed")
	if codes := fieldCodes(t, p); codes["allowFrom[0]"] != "network_invalid" || codes["allowFrom[1]"] != "network_invalid" {
		t.Errorf("bad networks: %v; want allowFrom[0] named", codes)
	}
}
