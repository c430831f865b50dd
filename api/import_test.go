package api_test

import (
	"bytes"
	"mime/multipart"
	"os"
	"path/filepath"
	"testing"

	"github.com/xuri/excelize/v2"
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
	if w := report["warnings"].([]any); len(w) != 1 || w[0].(map[string]any)["field"] != "Notes" {
		t.Fatalf("warnings: %v", w)
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
	p = wantProblem(t, e.do("POST", "/v1/devices/import", e.manager, "label\nx\n", "Content-Type", "text/csv"), 400, "validation_failed")
	if fieldCodes(t, p)["file"] != "column_missing" {
		t.Fatal(p)
	}
	wantProblem(t, e.do("POST", "/v1/devices/import", e.manager, "PK\x03\x04 not really", "Content-Type", mimeXLSX), 400, "validation_failed")
	wantProblem(t, e.do("POST", "/v1/devices/import", e.introspect, "imei\n", "Content-Type", "text/csv"), 403, "forbidden")
}
