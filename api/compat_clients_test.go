package api_test

// Clients written only against the seed documents in ../shared/seeds: each
// sends what its document shows, with its field names and casing, and reads
// the answer as its document describes it.

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"tether/auth"
)

// sharedStrings reads an XLSX answer the way a reader that knows only the
// shared-strings part does: it unzips it and returns the strings of
// xl/sharedStrings.xml, and what the first cell of the sheet refers to.
func sharedStrings(t *testing.T, body []byte) (strs []string, a1 string) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("the XLSX answer is no zip: %v", err)
	}
	read := func(name string) []byte {
		for _, f := range zr.File {
			if f.Name == name {
				rc, err := f.Open()
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				data, err := io.ReadAll(rc)
				if err != nil {
					t.Fatal(err)
				}
				return data
			}
		}
		return nil
	}
	sst := read("xl/sharedStrings.xml")
	if sst == nil {
		t.Fatal("the XLSX answer has no xl/sharedStrings.xml")
	}
	var table struct {
		SI []struct {
			T string `xml:"t"`
		} `xml:"si"`
	}
	if err := xml.Unmarshal(sst, &table); err != nil {
		t.Fatalf("xl/sharedStrings.xml: %v\n%s", err, sst)
	}
	for _, si := range table.SI {
		strs = append(strs, si.T)
	}
	var sheet struct {
		Rows []struct {
			C []struct {
				R string `xml:"r,attr"`
				T string `xml:"t,attr"`
				V string `xml:"v"`
			} `xml:"c"`
		} `xml:"sheetData>row"`
	}
	if err := xml.Unmarshal(read("xl/worksheets/sheet1.xml"), &sheet); err != nil {
		t.Fatalf("xl/worksheets/sheet1.xml: %v", err)
	}
	if len(sheet.Rows) > 0 && len(sheet.Rows[0].C) > 0 {
		c := sheet.Rows[0].C[0]
		a1 = c.T + ":" + c.V
	}
	return strs, a1
}

// TestRegenerateTokenClient is a client of regenerate-token.txt: a react
// console whose user (maria, a manager) has no handset. It sends the Login
// model as JSON, XML and application/x-www-form-urlencoded (the three
// request formats the document lists), and reads the XLSX answer from its
// shared-strings part, where the document's sample keeps the value.
func TestRegenerateTokenClient(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	var id string
	for _, u := range e.do("GET", "/v1/users?q=maria", e.admin, nil).json(t)["items"].([]any) {
		id = u.(map[string]any)["id"].(string)
	}
	if r := e.do("PATCH", "/v1/users/"+id, e.admin, map[string]any{"email": "maria@example.com"}); r.status != 200 {
		t.Fatalf("email: %d %s", r.status, r.body)
	}
	login := func() string {
		r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "maria", "password": "correct horse"})
		if r.status != 200 {
			t.Fatalf("console login: %d %s", r.status, r.body)
		}
		return r.json(t)["accessToken"].(string)
	}
	// The document's fields, in its casing.
	form := func(token string) string {
		return url.Values{
			"email": {"maria@example.com"}, "password": {"correct horse"}, "persistent": {"true"},
			"redirect": {"https://console.example.com/"}, "accessToken": {token}, "browserName": {"Firefox"},
			"browserID": {"ff-7"}, "ipAddress": {"10.0.0.8"}, "machineName": {"DEPOT-PC-3"},
			"platform": {"Windows"},
		}.Encode()
	}
	jsonBody := func(token string) string {
		return fixture(t, "regenerate-token.request.json", map[string]string{"email": "maria@example.com", "password": "correct horse", "accessToken": token})
	}
	xmlBody := func(token string) string {
		return fixture(t, "regenerate-token.request.xml", map[string]string{"email": "maria@example.com", "password": "correct horse", "accessToken": token})
	}
	bareJSON := func(t *testing.T, body []byte) string {
		var s string
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("answer is not a JSON string: %s", body)
		}
		return s
	}
	shared := func(t *testing.T, body []byte) string {
		strs, a1 := sharedStrings(t, body)
		if len(strs) != 1 || a1 != "s:0" {
			t.Fatalf("shared strings %q, first cell %q; want the token alone, and A1 pointing at it (s:0)", strs, a1)
		}
		return strs[0]
	}
	cases := []struct {
		name, ctype, accept string
		body                func(string) string
		read                func(*testing.T, []byte) string
	}{
		{"JSON, XLSX answer", "application/json", mimeXLSX, jsonBody, shared},
		{"XML, XLSX answer", "text/xml", mimeXLSX, xmlBody, shared},
		{"form, XLSX answer", "application/x-www-form-urlencoded", mimeXLSX, form, shared},
		{"form, vnd.ms-excel answer", "application/x-www-form-urlencoded", "application/vnd.ms-excel", form, shared},
		{"form with charset, text/json answer", "application/x-www-form-urlencoded; charset=utf-8", "text/json", form, bareJSON},
		{"form, JSON answer", "application/x-www-form-urlencoded", "application/json", form, bareJSON},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.withT(t).do("POST", "/api/session/regeneratetoken", "", c.body(login()), "Content-Type", c.ctype, "Accept", c.accept)
			if r.status != 200 {
				t.Fatalf("got %d %s; want 200", r.status, r.body)
			}
			fresh := c.read(t, r.body)
			if r := e.withT(t).do("GET", "/v1/auth/me", fresh, nil); r.status != 200 {
				t.Fatalf("the regenerated token: got %d %s; want 200", r.status, r.body)
			}
		})
	}

	// The form's client details reach the audit trail as the JSON's do,
	// and a form that is not one is refused as malformed.
	events := e.do("GET", "/v1/audit?action=renew", e.manager, nil).json(t)["items"].([]any)
	detail, _ := events[len(events)-1].(map[string]any)["detail"].(map[string]any)
	if detail["client.browserId"] != "ff-7" || detail["client.platform"] != "Windows" {
		t.Fatalf("audit detail: got %v; want the form's browserID and platform", detail)
	}
	r := e.do("POST", "/api/session/regeneratetoken", "", "persistent=maybe&accessToken="+login(), "Content-Type", "application/x-www-form-urlencoded")
	wantProblem(t, r, 400, "invalid_request")
	if !strings.Contains(string(r.body), "persistent") {
		t.Fatalf("a bad boolean: got %s; want a message naming persistent", r.body)
	}
}

// guidPattern is an RFC 4122 UUID in the form .NET prints a Guid.
var guidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestTokenLoginClient is a client of token-login.txt: it logs in once with
// generateReAuthenticationToken, keeps the re-authentication token, and
// calls TokenLogin with that same token again and again, as an app does
// each time it starts, each call long after the refresh grace (here 0).
// Every call works until the session ends; Me.ID is a GUID, the same on
// every answer.
func TestTokenLoginClient(t *testing.T) {
	e := newEnv(t, func(c *auth.Config) { c.RefreshReuseGrace = 0 })
	phone, _ := e.fleet()
	q := "?APIKey=" + e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "client", "name": "field app"}).json(t)["key"].(string)
	cases := []struct {
		name, username string
		headers        []string
	}{
		{"a manager, no handset", "maria", nil},
		{"a worker on a handset (X-Device-Id)", "walter", []string{"X-Device-Id", phone}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.withT(t)
			login := func() map[string]any {
				body := `{"username": "` + c.username + `", "password": "correct horse", "generateReAuthenticationToken": true}`
				r := e.do("POST", "/api/v1/Authentication/Login"+q, "", body, append([]string{"Content-Type", "application/json"}, c.headers...)...)
				if r.status != 200 {
					t.Fatalf("Login: got %d %s; want 200", r.status, r.body)
				}
				return shapeAgainst(t, "token-login.response.json", r.body)
			}
			first := login()
			id, _ := first["Me"].(map[string]any)["ID"].(string)
			if !guidPattern.MatchString(id) {
				t.Fatalf("Me.ID: got %q; want a GUID, as the document's sample shows", id)
			}
			reauth := first["ReAuthenticationToken"].(string)
			for i := range 3 {
				for _, f := range []struct{ file, ctype string }{
					{"token-login.request.json", "application/json"},
					{"token-login.request.form", "application/x-www-form-urlencoded"},
				} {
					body := strings.TrimSpace(fixture(t, f.file, map[string]string{"reAuthenticationToken": reauth}))
					r := e.do("POST", "/api/v1/Authentication/TokenLogin"+q, "", body, append([]string{"Content-Type", f.ctype}, c.headers...)...)
					if r.status != 200 {
						t.Fatalf("TokenLogin %d (%s) with the token from login: got %d %s; want 200", i+1, f.ctype, r.status, r.body)
					}
					got := shapeAgainst(t, "token-login.response.json", r.body)
					if got["Authenticated"] != true || got["Me"].(map[string]any)["ID"] != id {
						t.Fatalf("TokenLogin %d: got %s; want Authenticated and Me.ID %s", i+1, r.body, id)
					}
					if got["ReAuthenticationToken"] != reauth {
						t.Errorf("TokenLogin %d: got re-authentication token %v; want the one from login, which the client keeps", i+1, got["ReAuthenticationToken"])
					}
					me := e.do("GET", "/v1/auth/me", got["SessionToken"].(string), nil)
					if me.status != 200 {
						t.Fatalf("TokenLogin %d: its SessionToken: got %d %s; want 200", i+1, me.status, me.body)
					}
				}
			}
			// Another login: another session, the same Me.ID.
			if again := login()["Me"].(map[string]any)["ID"]; again != id {
				t.Fatalf("Me.ID of a second login: got %v; want %s", again, id)
			}
		})
	}
}

// TestTokenLoginRotateFlag: with --token-login-rotate each TokenLogin hands
// out a new re-authentication token, and the first one, kept past the
// grace, ends the session, as a refresh token does.
func TestTokenLoginRotateFlag(t *testing.T) {
	e := newEnv(t, func(c *auth.Config) { c.RotateReauthentication = true; c.RefreshReuseGrace = 0 })
	e.fleet()
	q := "?APIKey=" + e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "client"}).json(t)["key"].(string)
	login := e.do("POST", "/api/v1/Authentication/Login"+q, "", `{"username": "maria", "password": "correct horse", "generateReAuthenticationToken": true}`, "Content-Type", "application/json")
	first := login.json(t)["ReAuthenticationToken"].(string)
	reauth := func(token string) response {
		return e.do("POST", "/api/v1/Authentication/TokenLogin"+q, "", `{"reAuthenticationToken": "`+token+`"}`, "Content-Type", "application/json")
	}
	r := reauth(first)
	if r.status != 200 || r.json(t)["ReAuthenticationToken"] == first {
		t.Fatalf("TokenLogin: got %d %s; want 200 and a new re-authentication token", r.status, r.body)
	}
	r = reauth(first)
	if r.status != 401 || r.json(t)["Error"].(map[string]any)["Code"] != "refresh_token_reused" {
		t.Fatalf("the first token again: got %d %s; want 401 refresh_token_reused", r.status, r.body)
	}
}
