package api_test

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"tether/api"
	"tether/device"
	"tether/storage"
)

const mimeXLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

// imei returns a valid IMEI: fourteen digits from n and a check digit.
func imei(n int) string {
	body := fmt.Sprintf("35%012d", n)
	return body + string(device.LuhnDigit(body))
}

func readXLSX(t *testing.T, body []byte) [][]string {
	t.Helper()
	f, err := excelize.OpenReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("XLSX does not open: %v", err)
	}
	defer f.Close()
	if len(f.GetSheetList()) != 1 {
		t.Fatalf("sheets %v; want one", f.GetSheetList())
	}
	rows, err := f.GetRows(f.GetSheetList()[0])
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func readCSV(t *testing.T, body []byte) [][]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not read: %v\n%s", err, body)
	}
	return recs
}

func column(t *testing.T, header []string, name string) int {
	t.Helper()
	for i, h := range header {
		if h == name {
			return i
		}
	}
	t.Fatalf("no column %q in %v", name, header)
	return -1
}

// TestExports exports every native list to CSV and XLSX, whole (past the
// default page size), and reads them back.
func TestExports(t *testing.T) {
	e := newEnv(t)
	const n = 60
	for i := range n {
		r := e.do("POST", "/v1/devices", e.manager, map[string]any{"imei": imei(i), "label": fmt.Sprintf("van %d", i), "group": "north"})
		if r.status != 201 {
			t.Fatalf("register %d: %d %s", i, r.status, r.body)
		}
	}
	e.fleet()
	e.loginWorker()

	if r := e.do("GET", "/v1/devices", e.manager, nil); len(r.json(t)["items"].([]any)) != 50 {
		t.Fatal("the JSON list is not paged")
	}
	for _, c := range []struct {
		path, col, want string
		rows            int
	}{
		{"/v1/devices", "imei", imei(0), n + 2},
		{"/v1/users", "username", "walter", 2},
		{"/v1/sessions", "userId", "usr_", 1},
		{"/v1/audit", "action", "device.register", n + 2 + 2 + 1},
	} {
		r := e.do("GET", c.path, e.manager, nil, "Accept", "text/csv")
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") || !strings.Contains(r.header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("%s as CSV: %d %v", c.path, r.status, r.header)
		}
		recs := readCSV(t, r.body)
		if len(recs)-1 < c.rows {
			t.Fatalf("%s CSV has %d rows; want at least %d", c.path, len(recs)-1, c.rows)
		}
		col := column(t, recs[0], c.col)
		found := false
		for _, rec := range recs[1:] {
			found = found || strings.HasPrefix(rec[col], c.want)
		}
		if !found {
			t.Fatalf("%s CSV: no %s starting %q", c.path, c.col, c.want)
		}

		r = e.do("GET", c.path, e.manager, nil, "Accept", mimeXLSX)
		if r.status != 200 || r.header.Get("Content-Type") != mimeXLSX {
			t.Fatalf("%s as XLSX: %d %v", c.path, r.status, r.header)
		}
		rows := readXLSX(t, r.body)
		if len(rows) != len(recs) || strings.Join(rows[0], ",") != strings.Join(recs[0], ",") {
			t.Fatalf("%s: XLSX has %d rows and header %v; CSV %d and %v", c.path, len(rows), rows[0], len(recs), recs[0])
		}
	}

	// The device export holds nested fields as columns.
	recs := readCSV(t, e.do("GET", "/v1/devices?status=enrolled&group=north", e.manager, nil, "Accept", "text/csv").body)
	if len(recs) != n+1 {
		t.Fatalf("filtered export: %d rows; want %d", len(recs)-1, n)
	}
	if i := column(t, recs[0], "label"); recs[1][i] != "van 0" {
		t.Fatalf("first label %q", recs[1][i])
	}
}

// TestExportsNeutraliseFormulas exports users and the audit trail holding
// text a spreadsheet could run, from a manager (features, profile keys) and
// from anyone (the username and User-Agent of a failed login), and reads
// each CSV split on "," and on ";": no field may start a formula.
func TestExportsNeutraliseFormulas(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	r := e.do("POST", "/v1/users", e.manager, map[string]any{
		"username": "mallory", "password": "correct horse",
		"features": []string{"ok", "a;=1+1", "@SUM(1)", "x,+1"},
		"profile":  map[string]any{"k;=1+1": "v; -2+3"},
	})
	if r.status != 201 {
		t.Fatalf("user: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/v1/auth/login", "", map[string]any{
		"username": "eve;=1+1", "password": "wrong", "device": handset("490154203237518"),
	}, "User-Agent", `ua;"=1+1"`)
	if r.status < 400 {
		t.Fatalf("hostile login: %d %s", r.status, r.body)
	}
	for _, path := range []string{"/v1/users", "/v1/audit"} {
		r := e.do("GET", path, e.manager, nil, "Accept", "text/csv")
		if r.status != 200 {
			t.Fatalf("%s as CSV: %d %s", path, r.status, r.body)
		}
		if !bytes.Contains(r.body, []byte("1+1")) {
			t.Fatalf("%s as CSV lacks the hostile text:\n%s", path, r.body)
		}
		live, err := api.LiveFormulas(r.body)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, f := range live {
			t.Errorf("%s: live formula %s; want none", path, f)
		}
	}
}

func TestFormats(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	r := e.do("GET", "/v1/devices/490154203237518", e.manager, nil, "Accept", "application/xml")
	var dev struct {
		XMLName xml.Name `xml:"device"`
		IMEI    string   `xml:"imei"`
		Status  string   `xml:"status"`
	}
	if r.status != 200 || xml.Unmarshal(r.body, &dev) != nil || dev.IMEI != "490154203237518" || dev.Status != "enrolled" {
		t.Fatalf("XML device: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/v1/devices", e.manager, nil, "Accept", "application/x-compressed-json")
	zr, err := gzip.NewReader(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("compressed JSON: %v", err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !strings.Contains(string(plain), `"imei":"490154203237518"`) {
		t.Fatalf("compressed JSON: %s %v", plain, err)
	}

	// An Accept the server cannot meet is a 406, before anything is done.
	wantProblem(t, e.do("GET", "/v1/devices", e.manager, nil, "Accept", "text/html"), 406, "not_acceptable")
	r = e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": "correct horse", "device": handset("490154203237518")}, "Accept", "image/png")
	wantProblem(t, r, 406, "not_acceptable")
	sessions, _ := e.store.ListSessions(t.Context(), storage.SessionFilter{})
	if len(sessions.Items) != 0 {
		t.Fatal("a 406 login still made a session")
	}
}

// TestExportColumnsFixed: a list exports with the same columns whatever
// its data: an empty list has its header, a member no row has is an empty
// column, and free-form members (a profile, an event's details) are one
// column of JSON text, not columns named by their keys.
func TestExportColumnsFixed(t *testing.T) {
	e := newEnv(t)
	headerOf := func(path string) []string {
		t.Helper()
		r := e.do("GET", path, e.manager, nil, "Accept", "text/csv")
		if r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		recs := readCSV(t, r.body)
		if len(recs) == 0 {
			t.Fatalf("%s: no header in %q", path, r.body)
		}
		return recs[0]
	}
	empty := map[string][]string{}
	for _, path := range []string{"/v1/users", "/v1/devices", "/v1/sessions", "/v1/audit?action=nothing", "/v1/lockouts"} {
		empty[path] = headerOf(path)
	}
	for _, want := range []string{"username", "email", "profile", "passwordChangedAt"} {
		column(t, empty["/v1/users"], want)
	}
	for _, want := range []string{"imei", "label", "assignedUsers", "key.thumbprint"} {
		column(t, empty["/v1/devices"], want)
	}
	column(t, empty["/v1/audit?action=nothing"], "detail")

	// Data of every shape: the same columns.
	e.do("POST", "/v1/users", e.admin, map[string]any{"username": "plain", "password": "correct horse"})
	e.do("POST", "/v1/users", e.admin, map[string]any{"username": "rich", "password": "correct horse", "email": "rich@example.com",
		"features": []string{"a", "b"}, "profile": map[string]any{"team": "north", "shift": map[string]any{"start": "06:00"}}})
	e.do("POST", "/v1/auth/login", "", map[string]any{"username": "ghost", "password": "wrong horse"}, "User-Agent", "probe")
	for path, before := range empty {
		if after := headerOf(path); strings.Join(after, "|") != strings.Join(before, "|") {
			t.Errorf("%s: columns %q with data; want %q as without", path, after, before)
		}
	}
	recs := readCSV(t, e.do("GET", "/v1/users", e.manager, nil, "Accept", "text/csv").body)
	col := column(t, recs[0], "profile")
	for _, rec := range recs[1:] {
		if rec[column(t, recs[0], "username")] == "rich" && rec[col] != `{"shift":{"start":"06:00"},"team":"north"}` {
			t.Fatalf("profile cell %q; want the profile as JSON", rec[col])
		}
	}
}
