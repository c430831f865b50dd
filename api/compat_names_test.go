package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestRenewLoginTokenWithADeviceName is a client written only against
// renew-login-token.txt: its deviceId is "the device name from where login
// API was called", here a PC's name, no handset's id or IMEI. It logs in
// and renews with the very requests the document shows, over a real
// connection; the session is bound to that name.
func TestRenewLoginTokenWithADeviceName(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	base := e.url()
	post := func(path, authtoken, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		if authtoken != "" {
			req.Header.Set("Authtoken", authtoken)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatalf("%s: answer is not JSON: %v", path, err)
		}
		return resp.StatusCode, m
	}
	code, login := post("/commandcenter/api/Login", "", `{"username":"maria","password":"correct horse","deviceId":"DISPATCH-PC-07"}`)
	if code != 200 || login["token"] == "" {
		t.Fatalf("login with a device name: %d %v", code, login)
	}
	token := login["token"].(string)
	code, renewed := post("/commandcenter/api/RenewLoginToken", token, `{"deviceId":"DISPATCH-PC-07","sessionId":"`+token+`"}`)
	if code != 200 || renewed["token"] == "" || len(renewed["error"].(map[string]any)) != 0 {
		t.Fatalf("renewal with the same name: %d %v", code, renewed)
	}
	next := renewed["token"].(string)
	code, refused := post("/commandcenter/api/RenewLoginToken", next, `{"deviceId":"DISPATCH-PC-08","sessionId":"`+next+`"}`)
	if code != 403 || refused["error"].(map[string]any)["code"] != "device_mismatch" {
		t.Fatalf("renewal from another name: %d %v; want 403 device_mismatch", code, refused)
	}
	// A worker needs an enrolled handset (the server's default).
	code, worker := post("/commandcenter/api/Login", "", `{"username":"walter","password":"correct horse","deviceId":"DISPATCH-PC-07"}`)
	if code != 403 || worker["error"].(map[string]any)["code"] != "device_not_enrolled" {
		t.Fatalf("a worker with a device name: %d %v", code, worker)
	}
}
