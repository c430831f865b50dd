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

// userCredential is get-user-token.txt's UserCredentialModel as its JSON
// sample writes it, with a real handset's values.
func userCredential(password string) map[string]any {
	return map[string]any{
		"deviceInfo": map[string]any{"manufacturer": "samsung", "model": "SM-G991B"}, "hasIccCard": true,
		"iccIds": []any{"89445001021983048261"}, "imei": "490154203237518",
		"osVersion": map[string]any{"api": 34, "name": "14"}, "rapidlotVersion": "3.2.1",
		"userName": "walter", "password": password,
	}
}

// userCredentialXML writes the model as the document's XML sample does:
// PascalCase elements, in its order, leaving out what m lacks.
func userCredentialXML(m map[string]any) string {
	var b strings.Builder
	b.WriteString(`<UserCredentialModel xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">`)
	if d, ok := m["deviceInfo"].(map[string]any); ok {
		b.WriteString("<DeviceInfo><Manufacturer>" + d["manufacturer"].(string) + "</Manufacturer><Model>" + d["model"].(string) + "</Model></DeviceInfo>")
	}
	if v, ok := m["hasIccCard"].(bool); ok {
		b.WriteString("<HasIccCard>" + map[bool]string{true: "true", false: "false"}[v] + "</HasIccCard>")
	}
	if ids, ok := m["iccIds"].([]any); ok {
		b.WriteString("<IccIds>")
		for _, id := range ids {
			b.WriteString("<string>" + id.(string) + "</string>")
		}
		b.WriteString("</IccIds>")
	}
	if v, ok := m["imei"].(string); ok {
		b.WriteString("<IMEI>" + v + "</IMEI>")
	}
	if o, ok := m["osVersion"].(map[string]any); ok {
		b.WriteString("<OsVersion><Api>" + strings.TrimSpace(jsonText(o["api"])) + "</Api><Name>" + o["name"].(string) + "</Name></OsVersion>")
	}
	for _, f := range []struct{ key, el string }{{"rapidlotVersion", "RapidlotVersion"}, {"userName", "UserName"}, {"password", "Password"}} {
		if v, ok := m[f.key].(string); ok {
			var esc bytes.Buffer
			xml.EscapeText(&esc, []byte(v))
			b.WriteString("<" + f.el + ">" + esc.String() + "</" + f.el + ">")
		}
	}
	b.WriteString("</UserCredentialModel>")
	return b.String()
}

func jsonText(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}

// TestGetUserTokenClient is a client of get-user-token.txt: every field of
// UserCredentialModel is optional there ("None." under "Additional
// information"), RapidlotVersion is a plain string (the app's Android
// versionName), and a blank user name or password is a 401.
func TestGetUserTokenClient(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	e.worker(t)
	without := func(keys ...string) func(map[string]any) {
		return func(m map[string]any) {
			for _, k := range keys {
				delete(m, k)
			}
		}
	}
	set := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	cases := []struct {
		name   string
		mutate func(map[string]any)
		status int
	}{
		{"the sample's fields", func(map[string]any) {}, 200},
		{"a four-part versionName", set("rapidlotVersion", "3.2.1.145"), 200},
		{"a calendar versionName", set("rapidlotVersion", "2024.05-beta"), 200},
		{"a one-number versionName", set("rapidlotVersion", "7"), 200},
		{"a versionName with no number", set("rapidlotVersion", "nightly build"), 200},
		{"no hasIccCard: the iccIds say", without("hasIccCard"), 200},
		{"no hasIccCard, no iccIds: no SIM", without("hasIccCard", "iccIds"), 200},
		{"no osVersion, deviceInfo or rapidlotVersion: as last reported", without("osVersion", "deviceInfo", "rapidlotVersion"), 200},
		{"the credentials and the IMEI alone", without("osVersion", "deviceInfo", "rapidlotVersion", "hasIccCard", "iccIds"), 200},
		{"a password of spaces is blank", set("password", "   "), 401},
		{"no password", without("password"), 401},
		{"a user name of spaces is blank", set("userName", " \t "), 401},
	}
	for _, format := range []string{"application/json", "application/xml"} {
		for _, c := range cases {
			t.Run(format+" "+c.name, func(t *testing.T) {
				m := userCredential("correct horse")
				c.mutate(m)
				body := jsonText(m)
				if format == "application/xml" {
					body = userCredentialXML(m)
				}
				r := e.withT(t).do("POST", "/api/User/GetUserToken", "", body, "Content-Type", format)
				var got map[string]any
				if err := json.Unmarshal(r.body, &got); err != nil {
					t.Fatalf("answer is not JSON: %s", r.body)
				}
				if r.status != c.status {
					t.Fatalf("got %d %s; want %d", r.status, r.body, c.status)
				}
				if c.status == 200 {
					shapeAgainst(t, "get-user-token.response.json", r.body)
				} else if got["token"] != "" || got["message"] == "" {
					t.Fatalf("a refusal: got %s; want no token and a message", r.body)
				}
			})
		}
	}

	// What the handset reported is what the last request that had it said,
	// not erased by the requests that left parts out.
	d := e.do("GET", "/v1/devices/490154203237518", e.manager, nil).json(t)
	if d["appVersion"] != "3.2.1" || d["deviceInfo"].(map[string]any)["model"] != "SM-G991B" {
		t.Fatalf("the handset after the requests: got %v; want the app version and model last sent", d)
	}
}

// TestGetUserTokenFirstRequestIsWhole: a handset that never reported
// itself must send the parts Tether has no record of; the message names
// them.
func TestGetUserTokenFirstRequestIsWhole(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	m := userCredential("correct horse")
	delete(m, "osVersion")
	delete(m, "rapidlotVersion")
	r := e.do("POST", "/api/User/GetUserToken", "", jsonText(m))
	msg, _ := r.json(t)["message"].(string)
	if r.status != 400 || !strings.Contains(msg, "device.osVersion") || !strings.Contains(msg, "device.appVersion") {
		t.Fatalf("got %d %q; want 400 naming osVersion and appVersion", r.status, msg)
	}
}

// TestAppVersionPolicy: --min-app-version compares the leading numeric
// parts of any versionName; one with no number is below the minimum, which
// the answer names. Without a minimum any versionName logs in.
func TestAppVersionPolicy(t *testing.T) {
	cases := []struct {
		version string
		min     string
		ok      bool
	}{
		{"3.2.1.145", "", true},
		{"2024.05-beta", "", true},
		{"7", "", true},
		{"nightly", "", true},
		{"3.2.1.145", "3.2.1.100", true},
		{"3.2.1.99", "3.2.1.100", false},
		{"2024.05-beta", "3.0", true},
		{"7", "3.0", true},
		{"3", "3.0.0", true},
		{"2.99.99", "3.0", false},
		{"nightly", "3.0", false},
		{"v3.2", "3.0", false},
	}
	envs := map[string]*env{}
	for _, c := range cases {
		e := envs[c.min]
		if e == nil {
			e = newEnv(t, func(cfg *auth.Config) { cfg.MinAppVersion = c.min })
			e.fleet()
			envs[c.min] = e
		}
		name := c.version + " against minimum " + c.min
		// The native payload.
		p := handset("490154203237518")
		p["appVersion"] = c.version
		r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": "correct horse", "device": p})
		switch {
		case c.ok && r.status != 200:
			t.Errorf("native, %s: got %d %s; want 200", name, r.status, r.body)
		case !c.ok:
			if pr := wantProblem(t, r, 426, "app_version_unsupported"); pr["minAppVersion"] != c.min {
				t.Errorf("native, %s: got minAppVersion %v; want %s", name, pr["minAppVersion"], c.min)
			}
		}
		// The dialect: a refusal is a 400 whose message names the minimum.
		m := userCredential("correct horse")
		m["rapidlotVersion"] = c.version
		r = e.do("POST", "/api/User/GetUserToken", "", jsonText(m))
		msg, _ := r.json(t)["message"].(string)
		switch {
		case c.ok && r.status != 200:
			t.Errorf("GetUserToken, %s: got %d %s; want 200", name, r.status, r.body)
		case !c.ok && (r.status != 400 || !strings.Contains(msg, c.min)):
			t.Errorf("GetUserToken, %s: got %d %q; want 400 naming the minimum", name, r.status, msg)
		}
	}
}

// TestGetUserTokenXMLMembers: the XML answer carries every member of the
// JSON one, the user's dealer and franchise lists, cas and userChannel
// included, each under its name in PascalCase.
func TestGetUserTokenXMLMembers(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	e.worker(t)
	body := fixture(t, "get-user-token.request.json", map[string]string{"username": "walter", "password": "correct horse"})
	js := e.do("POST", "/api/User/GetUserToken", "", body)
	xr := e.do("POST", "/api/User/GetUserToken", "", body, "Accept", "application/xml")
	if js.status != 200 || xr.status != 200 {
		t.Fatalf("got %d and %d %s; want 200", js.status, xr.status, xr.body)
	}
	var want any
	if err := json.Unmarshal(js.body, &want); err != nil {
		t.Fatal(err)
	}
	got := readXMLTree(t, xr.body)
	if got.name != "UserTokenModel" {
		t.Fatalf("XML root: got %s; want UserTokenModel", got.name)
	}
	sameMembers(t, "$", want, got)
	// A refusal carries them too, as nil.
	xr = e.do("POST", "/api/User/GetUserToken", "", `{"userName": "walter", "password": ""}`, "Accept", "application/xml")
	js = e.do("POST", "/api/User/GetUserToken", "", `{"userName": "walter", "password": ""}`)
	if err := json.Unmarshal(js.body, &want); err != nil {
		t.Fatal(err)
	}
	sameMembers(t, "refusal", want, readXMLTree(t, xr.body))
}

// xmlTree is an element: its name, its children, its text, whether it is
// xsi:nil.
type xmlTree struct {
	name     string
	children []*xmlTree
	text     string
	null     bool
}

func readXMLTree(t *testing.T, data []byte) *xmlTree {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	var stack []*xmlTree
	var root *xmlTree
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("XML: %v\n%s", err, data)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			n := &xmlTree{name: el.Name.Local}
			for _, a := range el.Attr {
				if a.Name.Local == "nil" && a.Value == "true" {
					n.null = true
				}
			}
			if len(stack) == 0 {
				root = n
			} else {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(el)
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	return root
}

// sameMembers checks that element x holds what JSON value j does: an
// object's members as children of the same names (PascalCase), an array's
// items as children, null as xsi:nil, a value as text.
func sameMembers(t *testing.T, path string, j any, x *xmlTree) {
	t.Helper()
	switch v := j.(type) {
	case map[string]any:
		if len(x.children) != len(v) {
			names := []string{}
			for _, c := range x.children {
				names = append(names, c.name)
			}
			t.Errorf("%s: elements %v; want one per member of %v", path, names, v)
		}
		for k, val := range v {
			var child *xmlTree
			for _, c := range x.children {
				if c.name == strings.ToUpper(k[:1])+k[1:] {
					child = c
				}
			}
			if child == nil {
				t.Errorf("%s: no element for member %q", path, k)
				continue
			}
			sameMembers(t, path+"."+k, val, child)
		}
	case []any:
		if len(x.children) != len(v) {
			t.Errorf("%s: %d items; want %d", path, len(x.children), len(v))
			return
		}
		for i, it := range v {
			sameMembers(t, path+"["+x.children[i].name+"]", it, x.children[i])
		}
	case nil:
		if !x.null {
			t.Errorf("%s: got %q; want xsi:nil, as the JSON's null", path, x.text)
		}
	default:
		// Tokens and times differ from one answer to the next.
		volatile := path == "$.token" || path == "$.expire" || strings.HasSuffix(path, ".cw")
		if want := strings.Trim(jsonText(v), `"`); x.text != want && !volatile {
			t.Errorf("%s: got %q; want %q", path, x.text, want)
		}
	}
}

// TestNativePayloadWithoutHasIccCard: API.md section 2 makes hasIccCard
// optional in the native payload too: left out, it is what iccIds say.
func TestNativePayloadWithoutHasIccCard(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	cases := []struct {
		name string
		sims []string // nil: iccIds left out too
		want bool
	}{
		{"with iccIds", []string{"89445001021983048261"}, true},
		{"an empty iccIds", []string{}, false},
	}
	for _, c := range cases {
		p := handset("490154203237518")
		delete(p, "hasIccCard")
		p["iccIds"] = c.sims
		r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": "correct horse", "device": p})
		if r.status != 200 {
			t.Fatalf("%s: got %d %s; want 200", c.name, r.status, r.body)
		}
		if d := e.do("GET", "/v1/devices/"+phone, e.manager, nil).json(t); d["hasIccCard"] != c.want {
			t.Fatalf("%s: the handset's hasIccCard: got %v; want %v", c.name, d["hasIccCard"], c.want)
		}
	}
	p := handset("490154203237518")
	delete(p, "hasIccCard")
	delete(p, "iccIds")
	if r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": "correct horse", "device": p}); r.status != 200 {
		t.Fatalf("neither hasIccCard nor iccIds: got %d %s; want 200", r.status, r.body)
	}
}
