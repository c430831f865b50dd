package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"tether/device"
	"tether/storage"
)

func importFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "import", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestImportRoute(t *testing.T) {
	e := newEnv(t)
	e.fleet() // walter exists; two handsets are registered

	r := e.do("POST", "/v1/devices/import?dryRun=true", e.manager, importFixture(t, "fleet-50-bad.csv"), "Content-Type", "text/csv")
	report := r.json(t)
	errs := report["errors"].([]any)
	if r.status != 200 || report["dryRun"] != true || len(errs) != 3 || report["valid"] != float64(47) {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	if first := errs[0].(map[string]any); first["row"] != float64(6) || first["field"] != "imei" || first["code"] != "imei_checksum" {
		t.Fatalf("first error: %v", first)
	}
	if w := report["warnings"].([]any); len(w) != 0 {
		t.Fatalf("warnings: %v; want none (the Notes column is imported)", w)
	}
	if n := e.deviceCount(); n != 2 {
		t.Fatalf("dry run wrote: %d devices", n)
	}

	p := wantProblem(t, e.do("POST", "/v1/devices/import", e.manager, importFixture(t, "fleet-50-bad.csv"), "Content-Type", "text/csv"), 400, "validation_failed")
	if rep, ok := p["report"].(map[string]any); !ok || len(rep["errors"].([]any)) != 3 {
		t.Fatalf("refused import carries no report: %v", p)
	}
	if n := e.deviceCount(); n != 2 {
		t.Fatalf("a refused import wrote: %d devices", n)
	}

	// The corrected file, as a browser uploads it.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "fleet-50.csv")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(importFixture(t, "fleet-50.csv"))
	mw.Close()
	r = e.do("POST", "/v1/devices/import", e.manager, body.Bytes(), "Content-Type", mw.FormDataContentType())
	if r.status != 200 || r.json(t)["created"] != float64(50) {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	if n := e.deviceCount(); n != 52 {
		t.Fatalf("%d devices after import; want 52", n)
	}

	// XLSX, as the body.
	x := excelize.NewFile()
	x.SetSheetRow("Sheet1", "A1", &[]any{"imei", "label"})
	x.SetSheetRow("Sheet1", "A2", &[]any{"359881234567899", "from a sheet"})
	var xb bytes.Buffer
	x.WriteTo(&xb)
	x.Close()
	r = e.do("POST", "/v1/devices/import", e.manager, xb.Bytes(), "Content-Type", mimeXLSX)
	if r.status != 200 || r.json(t)["created"] != float64(1) {
		t.Fatalf("XLSX import: %d %s", r.status, r.body)
	}

	wantProblem(t, e.do("POST", "/v1/devices/import", e.manager, `{"imei":"1"}`, "Content-Type", "application/json"), 415, "unsupported_media_type")
	wantProblem(t, e.do("POST", "/v1/devices/import?dryRun=maybe", e.manager, "imei\n", "Content-Type", "text/csv"), 400, "invalid_request")
	wantProblem(t, e.do("POST", "/v1/devices/import?skipInvalid=1", e.manager, "imei\n", "Content-Type", "text/csv"), 400, "invalid_request")
	p = wantProblem(t, e.do("POST", "/v1/devices/import", e.manager, "label\nx\n", "Content-Type", "text/csv"), 400, "validation_failed")
	if fieldCodes(t, p)["file"] != "column_missing" {
		t.Fatal(p)
	}
	wantProblem(t, e.do("POST", "/v1/devices/import", e.manager, "PK\x03\x04 not really", "Content-Type", mimeXLSX), 400, "validation_failed")
	wantProblem(t, e.do("POST", "/v1/devices/import", e.introspect, "imei\n", "Content-Type", "text/csv"), 403, "forbidden")
}

// TestImportSkipInvalid: skipInvalid=true imports the valid rows and lists
// the invalid ones, whose count is of rows, not problems.
func TestImportSkipInvalid(t *testing.T) {
	e := newEnv(t)
	e.fleet() // walter exists; two handsets are registered
	// Row 3 has two problems; row 4 repeats a registered IMEI.
	file := "imei,label,assignedUsers\n" +
		"359881234567899,ok,walter\n" +
		"490154203237519,bad check digit,nobody\n" +
		"490154203237518,taken,\n" +
		"352099001761481,ok too,\n"
	for _, c := range []struct {
		query                           string
		status                          int
		valid, invalid, created, errors int
		devices                         int
	}{
		{"?dryRun=true", 200, 2, 2, 0, 3, 2},
		{"?dryRun=true&skipInvalid=true", 200, 2, 2, 0, 3, 2},
		{"", 400, 2, 2, 0, 3, 2},
		{"?skipInvalid=false", 400, 2, 2, 0, 3, 2},
		{"?skipInvalid=true", 200, 2, 2, 2, 3, 4},
	} {
		r := e.do("POST", "/v1/devices/import"+c.query, e.manager, file, "Content-Type", "text/csv")
		var report map[string]any
		if c.status == 200 {
			if r.status != 200 {
				t.Fatalf("%q: %d %s", c.query, r.status, r.body)
			}
			report = r.json(t)
		} else {
			report, _ = wantProblem(t, r, c.status, "validation_failed")["report"].(map[string]any)
		}
		got := fmt.Sprintf("rows %v, valid %v, invalid %v, created %v, %d errors", report["rows"], report["valid"], report["invalid"], report["created"], len(report["errors"].([]any)))
		want := fmt.Sprintf("rows 4, valid %d, invalid %d, created %d, %d errors", c.valid, c.invalid, c.created, c.errors)
		if got != want {
			t.Fatalf("%q: got %s; want %s", c.query, got, want)
		}
		if n := e.deviceCount(); n != c.devices {
			t.Fatalf("%q: %d devices; want %d", c.query, n, c.devices)
		}
	}
}

// heldStore is the device service's store, but each IMEI lookup says so on
// entered and then waits for release: an import checking its rows holds
// its slot until then.
type heldStore struct {
	device.Store
	entered chan struct{}
	release chan struct{}
}

func (s *heldStore) GetDeviceByIMEI(ctx context.Context, imei string) (storage.Device, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.Store.GetDeviceByIMEI(ctx, imei)
}

// TestImportBusy fires more imports at once than the server runs: while
// as many as it runs are held mid-check, the others are answered at once
// with 503 server_busy and a Retry-After, and write nothing; the held ones
// then finish, and a later import succeeds.
func TestImportBusy(t *testing.T) {
	held := &heldStore{entered: make(chan struct{}, 64), release: make(chan struct{})}
	e := newEnv(t, func(s device.Store) device.Store { held.Store = s; return held })
	send := func(n int) (response, error) {
		req := httptest.NewRequest("POST", "/v1/devices/import", strings.NewReader("imei\n"+imei(n)+"\n"))
		req.Header.Set("Content-Type", "text/csv")
		req.Header.Set("Authorization", "Bearer "+e.manager)
		resp, err := e.app.Test(req, -1)
		if err != nil {
			return response{}, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, header: resp.Header, body: body}, err
	}
	wait := func(what string, done <-chan struct{}) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still waiting after 10s", what)
		}
	}
	// Fire them all at once: a busy answer must not wait for a slot.
	const excess = 6
	answers := make([]response, device.DefaultImportSlots+excess)
	errs := make([]error, len(answers))
	var heldDone, busyDone sync.WaitGroup
	for i := range answers {
		wg := &busyDone
		if i < device.DefaultImportSlots {
			wg = &heldDone
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], errs[i] = send(1000 + i)
		}()
		if i == device.DefaultImportSlots-1 {
			for range device.DefaultImportSlots {
				wait("the imports that fit to reach their check", held.entered)
			}
		}
	}
	busy := make(chan struct{})
	go func() { busyDone.Wait(); close(busy) }()
	wait("the busy answers", busy)
	for i, r := range answers[device.DefaultImportSlots:] {
		if errs[device.DefaultImportSlots+i] != nil {
			t.Fatal(errs[device.DefaultImportSlots+i])
		}
		wantProblem(t, r, 503, "server_busy")
		if got := r.header.Get("Retry-After"); got == "" || got == "0" {
			t.Fatalf("Retry-After %q; want a number of seconds", got)
		}
	}
	if n := e.deviceCount(); n != 0 {
		t.Fatalf("got %d devices while the imports are held; want 0", n)
	}

	close(held.release)
	done := make(chan struct{})
	go func() { heldDone.Wait(); close(done) }()
	wait("the held imports", done)
	for i, r := range answers[:device.DefaultImportSlots] {
		if errs[i] != nil || r.status != 200 || r.json(t)["created"] != float64(1) {
			t.Fatalf("held import %d: got %d %s (%v); want one created", i, r.status, r.body, errs[i])
		}
	}
	r := e.do("POST", "/v1/devices/import", e.manager, "imei\n"+imei(2000)+"\n", "Content-Type", "text/csv")
	if r.status != 200 || r.json(t)["created"] != float64(1) {
		t.Fatalf("import after: got %d %s; want one created", r.status, r.body)
	}
	if n := e.deviceCount(); n != device.DefaultImportSlots+1 {
		t.Fatalf("got %d devices; want %d: the refused imports wrote some", n, device.DefaultImportSlots+1)
	}
}
