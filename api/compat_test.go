package api_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"tether/auth"
	"tether/storage"
)

// fixture reads a seed sample from testdata/compat, with {{name}}
// placeholders filled from vars.
func fixture(t *testing.T, name string, vars map[string]string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "compat", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	if strings.Contains(s, "{{") {
		t.Fatalf("%s: unfilled placeholder in %s", name, s)
	}
	return s
}

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	}
	return fmt.Sprintf("%T", v)
}

// sameShape checks that got has the seed sample's shape: the same member
// names in the same case, each of the same JSON type (a null in the sample
// stands for "null or a string"), arrays compared by their first items.
func sameShape(t *testing.T, path string, want, got any) {
	t.Helper()
	wt, gt := jsonType(want), jsonType(got)
	if wt == "null" && (gt == "null" || gt == "string") {
		return
	}
	if wt != gt {
		t.Errorf("%s: type %s; the seed has %s", path, gt, wt)
		return
	}
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		var wk, gk []string
		for k := range w {
			wk = append(wk, k)
		}
		for k := range g {
			gk = append(gk, k)
		}
		slices.Sort(wk)
		slices.Sort(gk)
		if !slices.Equal(wk, gk) {
			t.Errorf("%s: members %v; the seed has %v", path, gk, wk)
			return
		}
		for k := range w {
			sameShape(t, path+"."+k, w[k], g[k])
		}
	case []any:
		g := got.([]any)
		if len(w) > 0 && len(g) > 0 {
			sameShape(t, path+"[0]", w[0], g[0])
		}
	}
}

func shapeAgainst(t *testing.T, sample string, body []byte) map[string]any {
	t.Helper()
	var want, got any
	if err := json.Unmarshal([]byte(fixture(t, sample, nil)), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, body)
	}
	sameShape(t, "$", want, got)
	m, _ := got.(map[string]any)
	return m
}

// xmlShape is an element's namespace and name and its children's, in
// order, with repeats folded.
type xmlShape struct {
	Name     string
	Children []xmlShape
}

func readXMLShape(t *testing.T, data []byte) xmlShape {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	var stack []*xmlShape
	var root xmlShape
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("XML: %v\n%s", err, data)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			node := xmlShape{Name: el.Name.Space + " " + el.Name.Local}
			if len(stack) == 0 {
				root = node
				stack = append(stack, &root)
				continue
			}
			parent := stack[len(stack)-1]
			if n := len(parent.Children); n > 0 && parent.Children[n-1].Name == node.Name {
				stack = append(stack, &parent.Children[n-1]) // a repeat: fold it
				continue
			}
			parent.Children = append(parent.Children, node)
			stack = append(stack, &parent.Children[len(parent.Children)-1])
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	return root
}

// worker gives walter (from fleet) names, an email, features and a profile
// with the lists GetUserToken reports, and returns his id.
func (e *env) worker(t *testing.T) string {
	t.Helper()
	profile := json.RawMessage(`{"dealerList":[{"dealerLotKey":1,"dealerName":"North lot","franchiseKey":3,"isTestDealer":false}],
		"franchiseList":[{"cos":true,"franchiseNumber":2,"franchiseKey":3,"isTestFranchise":false,"routeId":"R7"}],
		"isSyncGatewayEnabled":true}`)
	id := e.do("GET", "/v1/users?q=walter", e.admin, nil).json(t)["items"].([]any)[0].(map[string]any)["id"].(string)
	r := e.do("PATCH", "/v1/users/"+id, e.admin, map[string]any{
		"profile": profile, "firstName": "Walter", "lastName": "White", "email": "walter@example.com", "features": []string{"scan"},
	})
	if r.status != 200 {
		t.Fatalf("profile: %d %s", r.status, r.body)
	}
	return id
}

func TestGetUserToken(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	e.worker(t)
	creds := map[string]string{"username": "walter", "password": "correct horse"}
	for _, format := range []struct{ file, ctype string }{
		{"get-user-token.request.json", "application/json"},
		{"get-user-token.request.json", "text/json"},
		{"get-user-token.request.xml", "application/xml"},
		{"get-user-token.request.xml", "text/xml"},
	} {
		r := e.do("POST", "/api/User/GetUserToken", "", fixture(t, format.file, creds), "Content-Type", format.ctype)
		if r.status != 200 {
			t.Fatalf("%s as %s: %d %s", format.file, format.ctype, r.status, r.body)
		}
		got := shapeAgainst(t, "get-user-token.response.json", r.body)
		asw := got["userDetailsAsw"].(map[string]any)
		if got["message"] != "" || got["isSyncGatewayEnabled"] != true || asw["firstName"] != "Walter" ||
			asw["userKey"] != float64(1) || asw["deleted"] != false || len(asw["dealerList"].([]any)) != 1 {
			t.Fatalf("answer: %s", r.body)
		}
		if _, err := time.Parse("2006-01-02T15:04:05.0000000-07:00", got["expire"].(string)); err != nil {
			t.Fatalf("expire %q is not the .NET form: %v", got["expire"], err)
		}
		// The token is a real one.
		if r := e.do("GET", "/v1/auth/me", got["token"].(string), nil); r.status != 200 {
			t.Fatalf("token from GetUserToken: %d", r.status)
		}
	}

	post := func(body, ctype string) (int, string) {
		r := e.do("POST", "/api/User/GetUserToken", "", body, "Content-Type", ctype)
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("error answer is not UserTokenModel JSON: %s", r.body)
		}
		if m["token"] != "" || m["expire"] != nil {
			t.Fatalf("an error answer with a token: %s", r.body)
		}
		return r.status, m["message"].(string)
	}
	// Blank credentials: 401; wrong ones: 400; each with a message.
	for _, blank := range []map[string]string{{"username": "", "password": "x"}, {"username": "walter", "password": ""}} {
		if code, msg := post(fixture(t, "get-user-token.request.json", blank), "application/json"); code != 401 || msg == "" {
			t.Fatalf("blank credentials: %d %q", code, msg)
		}
	}
	if code, msg := post(fixture(t, "get-user-token.request.json", map[string]string{"username": "walter", "password": "wrong password"}), "application/json"); code != 400 || msg == "" {
		t.Fatalf("wrong password: %d %q", code, msg)
	}
	bad := strings.Replace(fixture(t, "get-user-token.request.json", creds), "490154203237518", "490154203237519", 1)
	bad = strings.Replace(bad, `"name": "14"`, `"name": "13"`, 1)
	code, msg := post(bad, "application/json")
	if code != 400 || !strings.Contains(msg, "device.imei") || !strings.Contains(msg, "device.osVersion.name") {
		t.Fatalf("bad device: %d %q", code, msg)
	}
	if code, _ := post(`{"userName":`, "application/json"); code != 400 {
		t.Fatalf("malformed JSON: %d", code)
	}
	if code, _ := post(`<UserCredentialModel><UserName>x</UserName>`, "application/xml"); code != 400 {
		t.Fatalf("malformed XML: %d", code)
	}
	// Entities are never expanded: a DOCTYPE is refused outright, so
	// neither an exponential expansion nor an external file is reached.
	for name, doc := range map[string]string{
		"internal entity": `<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><UserCredentialModel><UserName>&a;</UserName></UserCredentialModel>`,
		"billion laughs": `<?xml version="1.0"?><!DOCTYPE l [<!ENTITY l0 "lol">` +
			`<!ENTITY l1 "&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;"><!ENTITY l2 "&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;">` +
			`<!ENTITY l3 "&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;"><!ENTITY l4 "&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;">` +
			`<!ENTITY l5 "&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;"><!ENTITY l6 "&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;">` +
			`<!ENTITY l7 "&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;"><!ENTITY l8 "&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;">` +
			`]><UserCredentialModel><UserName>&l8;</UserName></UserCredentialModel>`,
		"external entity": `<!DOCTYPE x [<!ENTITY f SYSTEM "file:///etc/passwd">]><UserCredentialModel><UserName>&f;</UserName></UserCredentialModel>`,
	} {
		if code, msg := post(doc, "application/xml"); code != 400 || !strings.Contains(msg, "DOCTYPE") || strings.Contains(msg, "root:") {
			t.Fatalf("XML with %s: %d %q; want 400 naming the DOCTYPE", name, code, msg)
		}
	}
	if code, _ := post(`userName=walter`, "application/x-www-form-urlencoded"); code != 415 {
		t.Fatalf("form body: %d; want 415", code)
	}
	// A token failure is a 500, with a message and nothing more.
	e.store.Close()
	if code, msg := post(fixture(t, "get-user-token.request.json", creds), "application/json"); code != 500 || msg == "" || strings.Contains(msg, "database") {
		t.Fatalf("token failure: %d %q", code, msg)
	}
}

func TestRenewLoginToken(t *testing.T) {
	e := newEnv(t, func(c *auth.Config) { c.AccessTTL = time.Second; c.RefreshReuseGrace = 300 * time.Millisecond })
	phone, other := e.fleet()
	r := e.do("POST", "/api/Login", "", map[string]any{"username": "walter", "password": "correct horse", "deviceId": "490154203237518"})
	if r.status != 200 {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	token := shapeAgainst(t, "renew-login-token.response.json", r.body)["token"].(string)
	time.Sleep(1100 * time.Millisecond)

	renew := func(path, authtoken, device, expired string) (response, map[string]any) {
		body := fixture(t, "renew-login-token.request.json", map[string]string{"LoggedInDeviceName": device, "ExpiredTOKEN": expired})
		r := e.do("POST", path, "", body, "Authtoken", authtoken)
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("answer: %s", r.body)
		}
		return r, m
	}
	r, m := renew("/commandcenter/api/RenewLoginToken", token, phone, token)
	if r.status != 200 || m["token"] == "" || len(m["error"].(map[string]any)) != 0 {
		t.Fatalf("renew: %d %s", r.status, r.body)
	}
	shapeAgainst(t, "renew-login-token.response.json", r.body)
	fresh := m["token"].(string)
	// The same renewal again within the grace (the answer was lost): the
	// very same token; past the grace, the token is used up.
	if r, m := renew("/api/RenewLoginToken", token, phone, token); r.status != 200 || m["token"] != fresh {
		t.Fatalf("a renewal retried within the grace: %d %s; want the same token", r.status, r.body)
	}
	time.Sleep(350 * time.Millisecond)

	cases := []struct {
		name, path, authtoken, device, token string
		status                               int
		code                                 string
	}{
		{"same token again", "/api/RenewLoginToken", token, phone, token, 401, "token_already_used"},
		{"another handset", "/api/RenewLoginToken", fresh, other, fresh, 403, "device_mismatch"},
		{"no Authtoken", "/api/RenewLoginToken", "", phone, fresh, 401, "token_invalid"},
		{"wrong Authtoken", "/api/RenewLoginToken", "tak_nope", phone, fresh, 401, "token_invalid"},
		{"garbage token", "/api/RenewLoginToken", "x", phone, "x", 401, "token_invalid"},
	}
	for _, c := range cases {
		r, m := renew(c.path, c.authtoken, c.device, c.token)
		e := m["error"].(map[string]any)
		if r.status != c.status || m["token"] != "" || e["code"] != c.code || e["message"] == "" {
			t.Errorf("%s: %d %s; want %d %s", c.name, r.status, r.body, c.status, c.code)
		}
	}
	// An API key in Authtoken works too; the IMEI names the handset.
	r, m = renew("/api/RenewLoginToken", e.manager, "490154203237518", fresh)
	if r.status != 200 || m["token"] == "" {
		t.Fatalf("renew with an API key in Authtoken: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/api/Login", "", map[string]any{"username": "walter", "password": "wrong password", "deviceId": phone})
	if r.status != 401 || r.json(t)["error"].(map[string]any)["code"] != "invalid_credentials" {
		t.Fatalf("wrong password: %d %s", r.status, r.body)
	}
}

func TestTokenLogin(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	r := e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "client", "name": "field app"})
	clientKey := r.json(t)["key"].(string)
	q := "?APIKey=" + clientKey

	r = e.do("POST", "/api/v1/Authentication/Login"+q, "", map[string]any{"username": "walter", "password": "correct horse", "generateReAuthenticationToken": true}, "X-Device-Id", phone)
	if r.status != 200 {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	got := shapeAgainst(t, "token-login.response.json", r.body)
	reauth := got["ReAuthenticationToken"].(string)
	if got["Authenticated"] != true || !strings.HasPrefix(reauth, "rt_") || got["Me"].(map[string]any)["ID"] == "" {
		t.Fatalf("login answer: %s", r.body)
	}
	for _, format := range []struct{ file, ctype string }{
		{"token-login.request.json", "application/json"},
		{"token-login.request.json", "text/json"},
		{"token-login.request.form", "application/x-www-form-urlencoded"},
	} {
		body := strings.TrimSpace(fixture(t, format.file, map[string]string{"reAuthenticationToken": reauth}))
		r := e.do("POST", "/api/v1/Authentication/TokenLogin"+q, "", body, "Content-Type", format.ctype, "X-Device-Id", "490154203237518")
		if r.status != 200 {
			t.Fatalf("TokenLogin %s: %d %s", format.ctype, r.status, r.body)
		}
		got := shapeAgainst(t, "token-login.response.json", r.body)
		if got["ReAuthenticationToken"] != reauth || got["SessionToken"] == "" {
			t.Fatalf("TokenLogin %s: got %s; want the same re-authentication token and a session token", format.ctype, r.body)
		}
	}

	// fields picks members (any case, unknown names ignored); none found: all.
	r = e.do("POST", "/api/v1/Authentication/Login"+q+"&fields=sessiontoken,Nope&fields=Me", "", map[string]any{"username": "walter", "password": "correct horse"}, "X-Device-Id", phone)
	m := r.json(t)
	if len(m) != 2 || m["SessionToken"] == nil || m["Me"] == nil {
		t.Fatalf("fields: %s", r.body)
	}
	r = e.do("POST", "/api/v1/Authentication/Login"+q+"&fields=Nope", "", map[string]any{"username": "walter", "password": "correct horse"}, "X-Device-Id", phone)
	if len(r.json(t)) != 4 {
		t.Fatalf("unknown fields only: %s", r.body)
	}
	// No generateReAuthenticationToken: no re-authentication token.
	if r.json(t)["ReAuthenticationToken"] != "" {
		t.Fatalf("re-authentication token without asking: %s", r.body)
	}

	// Errors: real statuses, or 200 with suppressResponseCodes.
	bad := map[string]any{"username": "walter", "password": "wrong password"}
	r = e.do("POST", "/api/v1/Authentication/Login"+q, "", bad, "X-Device-Id", phone)
	if r.status != 401 || r.json(t)["Authenticated"] != false || r.json(t)["Error"].(map[string]any)["Code"] != "invalid_credentials" {
		t.Fatalf("wrong password: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/api/v1/Authentication/Login"+q+"&suppressResponseCodes=true", "", bad, "X-Device-Id", phone)
	if r.status != 200 || r.json(t)["Authenticated"] != false {
		t.Fatalf("suppressed: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/v1/Authentication/Login", "", bad); r.status != 401 || r.json(t)["Error"] == nil {
		t.Fatalf("no APIKey: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/v1/Authentication/Login?APIKey="+e.manager, "", bad); r.status != 403 {
		t.Fatalf("a manager key as APIKey: %d %s", r.status, r.body)
	}
	// A worker needs a handset: X-Device-Id.
	r = e.do("POST", "/api/v1/Authentication/Login"+q, "", map[string]any{"username": "walter", "password": "correct horse"})
	if r.status != 400 || r.json(t)["Error"].(map[string]any)["Code"] != "validation_failed" {
		t.Fatalf("worker without X-Device-Id: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/api/v1/Authentication/TokenLogin"+q, "", map[string]any{"reAuthenticationToken": reauth})
	if r.status != 403 || r.json(t)["Error"].(map[string]any)["Code"] != "device_mismatch" {
		t.Fatalf("TokenLogin without the handset: %d %s", r.status, r.body)
	}
}

func TestAuthLoginSession(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	e.worker(t)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("walter:correct horse"))

	for _, accept := range []string{"application/json", "text/json"} {
		r := e.do("POST", "/Auth/Login", "", nil, "Authorization", basic, "X-Device-Id", phone, "Accept", accept)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), accept) {
			t.Fatalf("%s: %d %s %s", accept, r.status, r.header.Get("Content-Type"), r.body)
		}
		got := shapeAgainst(t, "auth-login-session.response.json", r.body)
		if got["userName"] != "walter" || got["isAuthorized"] != true || got["expired"] != false || got["recordState"] != float64(1) ||
			got["userID"] != float64(1) || got["sessionID"].(float64) < 1 || !strings.HasPrefix(got["refreshToken"].(string), "rt_") ||
			!strings.Contains(got["created"].(map[string]any)["summary"].(string), "walter on ") {
			t.Fatalf("UserSessionDTO: %s", r.body)
		}
		if r := e.do("GET", "/v1/auth/me", got["userToken"].(string), nil); r.status != 200 {
			t.Fatalf("userToken: %d", r.status)
		}
	}

	r := e.do("POST", "/Auth/Login", "", nil, "Authorization", basic, "X-Device-Id", phone, "Accept", "application/xml")
	if r.status != 200 {
		t.Fatalf("XML: %d %s", r.status, r.body)
	}
	want := readXMLShape(t, []byte(fixture(t, "auth-login-session.response.xml", nil)))
	got := readXMLShape(t, r.body)
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("XML shape:\n got %+v\nwant %+v\n%s", got, want, r.body)
	}
	var dto struct {
		RecordState string `xml:"RecordState"`
		UserID      int    `xml:"UserID"`
	}
	if err := xml.Unmarshal(r.body, &dto); err != nil || dto.RecordState != "Active" || dto.UserID != 1 {
		t.Fatalf("XML values: %+v %v", dto, err)
	}

	r = e.do("POST", "/Auth/Login", "", nil, "Authorization", basic, "X-Device-Id", phone, "Accept", "application/x-compressed-json")
	zr, err := gzip.NewReader(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("compressed JSON: %v", err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	shapeAgainst(t, "auth-login-session.response.json", plain)

	for name, hdr := range map[string]string{
		"no credentials": "",
		"wrong password": "Basic " + base64.StdEncoding.EncodeToString([]byte("walter:nope")),
		"not base64":     "Basic !!!",
		"bearer":         "Bearer x",
	} {
		r := e.do("POST", "/Auth/Login", "", nil, "Authorization", hdr, "X-Device-Id", phone)
		wantProblem(t, r, 401, "invalid_credentials")
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: WWW-Authenticate %q", name, r.header.Get("WWW-Authenticate"))
		}
	}
	wantProblem(t, e.do("POST", "/Auth/Login", "", nil, "Authorization", basic), 400, "validation_failed")
	wantProblem(t, e.do("POST", "/Auth/Login", "", nil, "Authorization", basic, "X-Device-Id", "359881234567899"), 403, "device_not_enrolled")
}

func TestRegenerateToken(t *testing.T) {
	// Renewal takes live tokens as well as expired ones, so the test need
	// not wait for expiry (TestLoginRenewRefreshWalk does that).
	e := newEnv(t, func(c *auth.Config) { c.RefreshReuseGrace = 300 * time.Millisecond })
	phone, other := e.fleet()
	e.worker(t)
	login := func() string {
		r := e.do("POST", "/api/Login", "", map[string]any{"username": "walter", "password": "correct horse", "deviceId": phone})
		return r.json(t)["token"].(string)
	}
	vars := func(token string) map[string]string {
		return map[string]string{"email": "walter@example.com", "password": "correct horse", "accessToken": token}
	}
	for _, format := range []struct{ file, ctype, accept string }{
		{"regenerate-token.request.json", "application/json", "application/json"},
		{"regenerate-token.request.json", "text/json", "text/json"},
		{"regenerate-token.request.xml", "application/xml", "application/xml"},
		{"regenerate-token.request.xml", "text/xml", "text/csv"},
		{"regenerate-token.request.json", "application/json", mimeXLSX},
	} {
		token := login()
		r := e.do("POST", "/api/session/regeneratetoken", "", fixture(t, format.file, vars(token)),
			"Content-Type", format.ctype, "Accept", format.accept, "X-Device-Id", phone)
		if r.status != 200 {
			t.Fatalf("%s → %s: %d %s", format.ctype, format.accept, r.status, r.body)
		}
		var fresh string
		switch format.accept {
		case "application/json", "text/json":
			shapeAgainst(t, "regenerate-token.response.json", r.body)
			json.Unmarshal(r.body, &fresh)
		case "application/xml":
			if !reflect.DeepEqual(readXMLShape(t, r.body), readXMLShape(t, []byte(fixture(t, "regenerate-token.response.xml", nil)))) {
				t.Fatalf("XML: %s", r.body)
			}
			var s struct {
				Value string `xml:",chardata"`
			}
			xml.Unmarshal(r.body, &s)
			fresh = s.Value
		case "text/csv":
			recs := readCSV(t, r.body)
			if len(recs) != 1 || len(recs[0]) != 1 {
				t.Fatalf("CSV is not one cell: %q", recs)
			}
			fresh = recs[0][0]
		default:
			rows := readXLSX(t, r.body)
			if len(rows) != 1 || len(rows[0]) != 1 {
				t.Fatalf("XLSX is not one cell: %q", rows)
			}
			fresh = rows[0][0]
		}
		if r := e.do("GET", "/v1/auth/me", fresh, nil); r.status != 200 {
			t.Fatalf("regenerated token (%s): %d %s %q", format.accept, r.status, r.body, fresh)
		}
	}
	// The client's claims about itself are in the audit trail.
	r := e.do("GET", "/v1/audit?action=renew", e.manager, nil)
	items := r.json(t)["items"].([]any)
	detail, _ := items[len(items)-1].(map[string]any)["detail"].(map[string]any)
	if detail["client.machineName"] != "sample string 9" || detail["client.platform"] != "sample string 10" {
		t.Fatalf("audit detail: %v", detail)
	}

	token := login()
	wantProblem(t, e.do("POST", "/api/session/regeneratetoken", "", fixture(t, "regenerate-token.request.json", vars(token)), "X-Device-Id", other), 403, "device_mismatch")
	wantProblem(t, e.do("POST", "/api/session/regeneratetoken", "", fixture(t, "regenerate-token.request.json", vars(token))), 403, "device_mismatch")
	wrong := vars(token)
	wrong["email"] = "someone@else.com"
	wantProblem(t, e.do("POST", "/api/session/regeneratetoken", "", fixture(t, "regenerate-token.request.json", wrong), "X-Device-Id", phone), 401, "token_invalid")
	first := e.do("POST", "/api/session/regeneratetoken", "", fixture(t, "regenerate-token.request.json", vars(token)), "X-Device-Id", phone)
	if first.status != 200 {
		t.Fatalf("the refused attempts used the token up: %d %s", first.status, first.body)
	}
	// A retry within the grace gets the same token; past it, used up.
	if r := e.do("POST", "/api/session/regeneratetoken", "", fixture(t, "regenerate-token.request.json", vars(token)), "X-Device-Id", phone); r.status != 200 || string(r.body) != string(first.body) {
		t.Fatalf("a regeneration retried within the grace: %d %s; want %s", r.status, r.body, first.body)
	}
	time.Sleep(350 * time.Millisecond)
	wantProblem(t, e.do("POST", "/api/session/regeneratetoken", "", fixture(t, "regenerate-token.request.json", vars(token)), "X-Device-Id", phone), 401, "token_already_used")
	wantProblem(t, e.do("POST", "/api/session/regeneratetoken", "", "email: x", "Content-Type", "text/plain"), 415, "unsupported_media_type")
}

// TestOneUserEveryDialect logs one user in through the native API and every
// dialect: each makes a session that GET /v1/sessions shows and DELETE
// /v1/sessions/{id} ends.
func TestOneUserEveryDialect(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	userID := e.worker(t)
	r := e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "client"})
	clientKey := r.json(t)["key"].(string)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("walter:correct horse"))

	logins := map[string]func() string{
		"native": func() string { return e.loginWorker()["accessToken"].(string) },
		"GetUserToken": func() string {
			return e.do("POST", "/api/User/GetUserToken", "", fixture(t, "get-user-token.request.json", map[string]string{"username": "walter", "password": "correct horse"})).json(t)["token"].(string)
		},
		"api/Login": func() string {
			return e.do("POST", "/api/Login", "", map[string]any{"username": "walter", "password": "correct horse", "deviceId": phone}).json(t)["token"].(string)
		},
		"Authentication/Login": func() string {
			return e.do("POST", "/api/v1/Authentication/Login?APIKey="+clientKey, "", map[string]any{"username": "walter", "password": "correct horse"}, "X-Device-Id", phone).json(t)["SessionToken"].(string)
		},
		"Auth/Login": func() string {
			return e.do("POST", "/Auth/Login", "", nil, "Authorization", basic, "X-Device-Id", phone).json(t)["userToken"].(string)
		},
	}
	for name, login := range logins {
		token := login()
		me := e.do("GET", "/v1/auth/me", token, nil)
		if me.status != 200 {
			t.Fatalf("%s: token refused: %d", name, me.status)
		}
		sid := me.json(t)["session"].(map[string]any)["id"].(string)
		sessions := e.do("GET", "/v1/sessions?userId="+userID, e.manager, nil).json(t)["items"].([]any)
		found := false
		for _, s := range sessions {
			found = found || s.(map[string]any)["id"] == sid
		}
		if !found {
			t.Fatalf("%s: session %s not in GET /v1/sessions", name, sid)
		}
		if r := e.do("DELETE", "/v1/sessions/"+sid, e.manager, nil); r.status != 204 {
			t.Fatalf("%s: revoke: %d", name, r.status)
		}
		wantProblem(t, e.do("GET", "/v1/auth/me", token, nil), 401, "session_revoked")
	}
	all, err := e.store.ListSessions(t.Context(), storage.SessionFilter{UserID: userID})
	if err != nil || len(all.Items) != len(logins) {
		t.Fatalf("%d sessions; want one per login (%d)", len(all.Items), len(logins))
	}
}

// TestDialectsIgnoreCase sends field names and paths in other cases, as the
// .NET clients of these APIs may.
func TestDialectsIgnoreCase(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	body := `{"USERNAME": "walter", "PassWord": "correct horse", "DEVICEID": "` + phone + `", "extra": 1}`
	r := e.do("POST", "/API/login", "", body)
	if r.status != 200 || r.json(t)["token"] == "" {
		t.Fatalf("upper-case fields and path: %d %s", r.status, r.body)
	}
	xmlBody := `<usercredentialmodel><username>walter</username><PASSWORD>correct horse</PASSWORD><imei>490154203237518</imei>` +
		`<hasicccard>true</hasicccard><iccids><string>89445001021983048261</string></iccids><OSVERSION><API>34</API><NAME>14</NAME></OSVERSION>` +
		`<deviceinfo><manufacturer>samsung</manufacturer><model>SM-G991B</model></deviceinfo><rapidlotversion>3.2.1</rapidlotversion></usercredentialmodel>`
	r = e.do("POST", "/api/user/getusertoken", "", xmlBody, "Content-Type", "text/xml")
	if r.status != 200 || r.json(t)["token"] == "" {
		t.Fatalf("lower-case XML: %d %s", r.status, r.body)
	}
}

// TestDialectsRefuseRepeatedMembers sends each dialect a body naming a
// member (or a form field) twice: every one refuses it with a 400 that says
// so, in its own shape, and nobody is logged in.
func TestDialectsRefuseRepeatedMembers(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	r := e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "client", "name": "field app"})
	q := "?APIKey=" + r.json(t)["key"].(string)
	cases := []struct {
		path, ctype, body, detail string
	}{
		{"/api/Login", "application/json", `{"username":"mallory","username":"walter","password":"correct horse","deviceId":"` + phone + `"}`, `member \"username\" is repeated`},
		{"/api/Login", "text/json", `{"username":"mallory","USERNAME":"walter","password":"correct horse","deviceId":"` + phone + `"}`, `member \"USERNAME\" repeats \"username\"`},
		{"/api/RenewLoginToken", "application/json", `{"deviceId":"a","sessionId":"b","sessionId":"c"}`, `member \"sessionId\" is repeated`},
		{"/api/User/GetUserToken", "text/json", `{"UserName":"mallory","userName":"walter","Password":"correct horse","Imei":"490154203237518"}`, `member \"userName\" repeats \"UserName\"`},
		{"/api/session/regeneratetoken", "application/json", `{"email":"a","email":"b"}`, `member \"email\" is repeated`},
		{"/api/v1/Authentication/Login" + q, "application/json", `{"username":"walter","password":"correct horse","password":"x"}`, `member \"password\" is repeated`},
		{"/api/v1/Authentication/Login" + q, "application/x-www-form-urlencoded", `username=mallory&password=correct+horse&username=walter`, `field \"username\" is repeated`},
		{"/api/v1/Authentication/TokenLogin" + q, "application/x-www-form-urlencoded", `reAuthenticationToken=a&ReAuthenticationToken=b`, `field \"ReAuthenticationToken\" repeats \"reAuthenticationToken\"`},
	}
	for _, c := range cases {
		r := e.do("POST", c.path, "", c.body, "Content-Type", c.ctype, "X-Device-Id", phone)
		if r.status != 400 || !strings.Contains(string(r.body), c.detail) {
			t.Errorf("%s %s: %d %s; want 400 with %s", c.path, c.ctype, r.status, r.body, c.detail)
		}
	}
	sessions, err := e.store.ListSessions(t.Context(), storage.SessionFilter{})
	if err != nil || len(sessions.Items) != 0 {
		t.Fatalf("%d sessions after repeated members, %v; want none", len(sessions.Items), err)
	}
}
