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

// TestDialectsAnswerAnyAccept: a dialect route answers JSON to an Accept it
// cannot serve, as the ASP.NET servers the documents describe did; the
// native API still answers 406.
func TestDialectsAnswerAnyAccept(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	for path := range dialectRoutesForTest {
		r := e.do("POST", path, "", `{}`, "Accept", "text/html")
		if ct := r.header.Get("Content-Type"); r.status == 406 || !strings.HasPrefix(ct, "application/") || !strings.Contains(ct, "json") {
			t.Errorf("%s with Accept: text/html: %d %s %s; want a JSON answer", path, r.status, r.header.Get("Content-Type"), r.body)
		}
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", `{}`, "Accept", "text/html"), 406, "not_acceptable")
}

// dialectRoutesForTest are the dialects' paths, as their documents name
// them.
var dialectRoutesForTest = map[string]bool{
	"/api/User/GetUserToken": true, "/api/Login": true, "/commandcenter/api/Login": true,
	"/api/RenewLoginToken": true, "/commandcenter/api/RenewLoginToken": true,
	"/api/v1/Authentication/Login": true, "/api/v1/Authentication/TokenLogin": true,
	"/Auth/Login": true, "/api/session/regeneratetoken": true,
}

// TestSuppressResponseCodesEverywhere: with suppressResponseCodes=true the
// token-login document's API answers 200 with the error in its LoginData,
// whatever went wrong, even where no handler ran: an unknown path, a wrong
// method, a body over the limit, a media type it does not read, an Accept
// it cannot serve. Without it, the status is the error's, in the same
// shape.
func TestSuppressResponseCodesEverywhere(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	clientKey := e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "client"}).json(t)["key"].(string)
	q := "?suppressResponseCodes=true&APIKey=" + clientKey
	for _, c := range []struct {
		name, method, path, ctype, accept, body, code string
		status                                        int
	}{
		{"unknown path", "POST", "/api/v1/Authentication/Nope", "application/json", "", `{}`, "not_found", 404},
		{"wrong method", "GET", "/api/v1/Authentication/Login", "", "", "", "method_not_allowed", 405},
		{"body over the limit", "POST", "/api/v1/Authentication/Login", "application/json", "", `{"username":"` + strings.Repeat("x", bodyLimit) + `"}`, "payload_too_large", 413},
		{"media type", "POST", "/api/v1/Authentication/Login", "text/plain", "", "walter", "unsupported_media_type", 415},
		{"wrong password", "POST", "/api/v1/Authentication/Login", "application/json", "text/html", `{"username":"walter","password":"nope"}`, "invalid_credentials", 401},
	} {
		for _, suppress := range []bool{true, false} {
			path := c.path + q
			if !suppress {
				path = c.path + "?APIKey=" + clientKey
			}
			headers := []string{}
			if c.ctype != "" {
				headers = append(headers, "Content-Type", c.ctype)
			}
			if c.accept != "" {
				headers = append(headers, "Accept", c.accept)
			}
			var body any
			if c.body != "" {
				body = c.body
			}
			r := e.do(c.method, path, "", body, headers...)
			want := c.status
			if suppress {
				want = 200
			}
			var m struct {
				Authenticated bool
				Error         struct{ Code, Message string }
			}
			if r.status != want || json.Unmarshal(r.body, &m) != nil || m.Error.Code != c.code || m.Authenticated {
				t.Errorf("%s (suppress %v): %d %s; want %d with error %s in the LoginData", c.name, suppress, r.status, r.body, want, c.code)
			}
		}
	}
}
