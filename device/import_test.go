package device_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/xuri/excelize/v2"

	"tether"
	"tether/device"
	"tether/storage"
)

func readFile(t *testing.T, name string) []device.ImportRow {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "import", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, warnings, err := device.ReadImport(f, device.FormatCSV)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Fatalf("warnings %+v; want none (every column is imported)", warnings)
	}
	return rows
}

// The issue's own case: three bad rows out of fifty are named exactly by a
// dry run that writes nothing; the corrected file imports all fifty.
func TestImportFiftyWithThreeBad(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.user(t, "walter")

	report, err := f.svc.Import(ctx, device.Actor{Name: "cli"}, readFile(t, "fleet-50-bad.csv"), nil, device.ImportOptions{DryRun: true}, nil)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	var got []string
	for _, e := range report.Errors {
		got = append(got, fmt.Sprintf("%d:%s:%s", e.Row, e.Field, e.Code))
	}
	want := []string{"6:imei:imei_checksum", "21:iccIds[0]:iccid_prefix", "38:assignedUsers:user_unknown"}
	if !slices.Equal(got, want) || report.Rows != 50 || report.Valid != 47 || report.Invalid != 3 || report.Created != 0 {
		t.Fatalf("dry run report %+v\nerrors %v; want %v", report, got, want)
	}
	if n := deviceCount(t, f.store); n != 0 {
		t.Fatalf("a dry run wrote %d devices", n)
	}

	// The same file for real: all or nothing, so nothing.
	_, err = f.svc.Import(ctx, device.Actor{Name: "cli"}, readFile(t, "fleet-50-bad.csv"), nil, device.ImportOptions{}, nil)
	if !errors.Is(err, device.ErrImportInvalid) {
		t.Fatalf("import with bad rows: %v", err)
	}
	if n := deviceCount(t, f.store); n != 0 {
		t.Fatalf("a refused import wrote %d devices", n)
	}

	var ticks []int
	report, err = f.svc.Import(ctx, device.Actor{Name: "apikey:ak_1"}, readFile(t, "fleet-50.csv"), nil, device.ImportOptions{}, func(done, total int) { ticks = append(ticks, done) })
	if err != nil || report.Created != 50 || len(report.Errors) != 0 {
		t.Fatalf("corrected import: %+v, %v", report, err)
	}
	if len(ticks) == 0 || ticks[len(ticks)-1] != 50 {
		t.Fatalf("progress %v; want it to reach 50", ticks)
	}
	d, err := f.store.GetDeviceByIMEI(ctx, "350000007000009")
	if err != nil || d.Label != "Van 1" || d.Group != "north" || len(d.AssignedUsers) != 1 || d.IccIDs[0] != "8944500102000000000" || d.EnrolledBy != "apikey:ak_1" {
		t.Fatalf("imported device %+v, %v", d, err)
	}
	if d, err := f.store.GetDeviceByIMEI(ctx, "350000007000074"); err != nil || d.Notes != "spare" {
		t.Fatalf("Van 8's notes: %q, %v; want the file's", d.Notes, err)
	}
	events, _ := f.store.ListEvents(ctx, storage.EventFilter{Action: "device.import"})
	if len(events.Items) != 1 || events.Items[0].Detail["created"] != "50" {
		t.Fatalf("import events %+v", events.Items)
	}

	// Importing it again: every row is already registered.
	report, err = f.svc.Import(ctx, device.Actor{Name: "cli"}, readFile(t, "fleet-50.csv"), nil, device.ImportOptions{DryRun: true}, nil)
	if err != nil || len(report.Errors) != 50 || report.Errors[0].Code != "imei_taken" {
		t.Fatalf("second import: %d errors, %v", len(report.Errors), err)
	}
}

func deviceCount(t *testing.T, s storage.Store) int {
	t.Helper()
	page, err := s.ListDevices(context.Background(), storage.DeviceFilter{Limit: storage.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Items)
}

func TestReadImport(t *testing.T) {
	cases := []struct {
		name, csv string
		rows      int
		code      string
	}{
		{"semicolons and BOM", "\ufeffImei;Label;GROUP\n490154203237518;a;b\n", 1, ""},
		{"quoted fields", "imei,label\n\"490154203237518\",\"van, seven\"\n", 1, ""},
		{"blank rows kept", "imei\n490154203237518\n\n356938035643809\n", 3, ""},
		{"ragged rows", "imei,label,group\n490154203237518\n356938035643809,a,b,c\n", 2, ""},
		{"no imei column", "label,group\na,b\n", 0, "column_missing"},
		{"column twice", "imei,IMEI\n1,2\n", 0, "column_repeated"},
		{"empty", "", 0, "file_empty"},
		{"bad quoting", "imei,label\n\"490154203237518,x\n", 0, "file_unreadable"},
	}
	for _, c := range cases {
		rows, _, err := device.ReadImport(strings.NewReader(c.csv), device.FormatCSV)
		if c.code != "" {
			if err == nil || !strings.Contains(fmt.Sprint(err), "") || fieldCode(err) != c.code {
				t.Errorf("%s: %v; want %s", c.name, err, c.code)
			}
			continue
		}
		if err != nil || len(rows) != c.rows || rows[len(rows)-1].Row != c.rows+1 {
			t.Errorf("%s: got %d rows, %v; want %d, the last numbered %d", c.name, len(rows), err, c.rows, c.rows+1)
		}
	}
	rows, warnings, err := device.ReadImport(strings.NewReader("imei,Colour,Notes\n490154203237518,red, charger missing \n"), device.FormatCSV)
	if err != nil || len(rows) != 1 || rows[0].Notes != "charger missing" || len(warnings) != 1 || warnings[0].Field != "Colour" || warnings[0].Code != "column_unknown" {
		t.Fatalf("an unknown column: rows %+v, warnings %+v, %v; want the notes read and Colour reported", rows, warnings, err)
	}
	rows, _, err = device.ReadImport(strings.NewReader("IMEI,iccids,label\n490154203237518,8944500102198304826;89012608621145279111,\"van, 7\"\n"), device.FormatCSV)
	if err != nil || len(rows) != 1 || len(rows[0].IccIDs) != 2 || rows[0].Label != "van, 7" || rows[0].Row != 2 {
		t.Fatalf("rows %+v, %v", rows, err)
	}
	tooMany := "imei\n" + strings.Repeat("490154203237518\n", device.MaxImportRows+1)
	if _, _, err := device.ReadImport(strings.NewReader(tooMany), device.FormatCSV); fieldCode(err) != "file_too_many_rows" {
		t.Fatalf("too many rows: %v", err)
	}
}

func TestReadImportXLSX(t *testing.T) {
	x := excelize.NewFile()
	defer x.Close()
	for i, row := range [][]any{
		{"IMEI", "Label", "assigned_users", "Colour"},
		{"490154203237518", "van 7", "walter; maria", "red"},
		{nil, nil, nil, nil},
		{"356938035643809", "van 8"},
	} {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := x.SetSheetRow("Sheet1", cell, &row); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := x.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	rows, warnings, err := device.ReadImport(&buf, device.FormatXLSX)
	if err != nil || len(rows) < 2 || len(warnings) != 1 || warnings[0].Field != "Colour" {
		t.Fatalf("XLSX: %+v %+v %v", rows, warnings, err)
	}
	if rows[0].IMEI != "490154203237518" || len(rows[0].AssignedUsers) != 2 || rows[len(rows)-1].Row != 4 {
		t.Fatalf("XLSX rows %+v", rows)
	}
	if _, _, err := device.ReadImport(strings.NewReader("not a zip"), device.FormatXLSX); fieldCode(err) != "file_unreadable" {
		t.Fatalf("not XLSX: %v", err)
	}
}

// TestReadImportLimits reads files at and just past each limit, as CSV
// and as XLSX: past it, the file is refused with the limit's code.
func TestReadImportLimits(t *testing.T) {
	const imei = "490154203237518"
	row := func(cells ...string) []string { return cells }
	wide := func(n int) []string {
		r := make([]string, n)
		r[0] = imei
		for i := 1; i < n; i++ {
			r[i] = "x"
		}
		return r
	}
	header := func(n int) []string {
		h := make([]string, n)
		h[0] = "imei"
		for i := 1; i < n; i++ {
			h[i] = fmt.Sprintf("extra %d", i)
		}
		return h
	}
	cell := strings.Repeat("x", device.MaxImportCell)
	var many [][]string // 2,049 rows of 8 KiB: over MaxImportBytes
	for range device.MaxImportBytes/device.MaxImportCell + 1 {
		many = append(many, row(imei, cell))
	}
	cases := []struct {
		name string
		rows [][]string // after a header of imei and label
		n    int        // rows read
		code string
	}{
		{"64 columns", [][]string{header(64), wide(64)}, 1, ""},
		{"65 columns", [][]string{header(64), wide(65)}, 0, "file_too_many_columns"},
		{"65 header columns", [][]string{header(65)}, 0, "file_too_many_columns"},
		{"a cell at the limit", [][]string{row(imei, cell)}, 1, ""},
		{"a cell over it", [][]string{row(imei, cell+"x")}, 0, "file_cell_too_long"},
		{"16 MiB of cells", many, 0, "file_too_large"},
		{"blank rows kept, trailing ones dropped", [][]string{row(imei), {}, row(imei), {}, {}}, 3, ""},
	}
	for _, c := range cases {
		records := c.rows
		if len(records) == 0 || records[0][0] != "imei" {
			records = append([][]string{row("imei", "label")}, records...)
		}
		var text bytes.Buffer
		w := csv.NewWriter(&text)
		w.WriteAll(records)
		x := excelize.NewFile()
		for i, r := range records {
			if len(r) > 0 {
				cells := make([]any, len(r))
				for j := range r {
					cells[j] = r[j]
				}
				x.SetSheetRow("Sheet1", fmt.Sprintf("A%d", i+1), &cells)
			}
		}
		var book bytes.Buffer
		if _, err := x.WriteTo(&book); err != nil {
			t.Fatal(err)
		}
		x.Close()
		for format, data := range map[string][]byte{device.FormatCSV: text.Bytes(), device.FormatXLSX: book.Bytes()} {
			rows, _, err := device.ReadImport(bytes.NewReader(data), format)
			if got := fieldCode(err); got != c.code || len(rows) != c.n {
				t.Errorf("%s (%s): got %d rows, %q (%v); want %d rows, %q", c.name, format, len(rows), got, err, c.n, c.code)
			}
		}
	}
}

// TestReadImportCSVBounds refuses CSV text that encoding/csv would hold
// whole before its record could be checked, and keeps every line that
// is not.
func TestReadImportCSVBounds(t *testing.T) {
	cases := []struct {
		name, csv string
		code      string
	}{
		{"quoted cell of doubled quotes at the limit", "imei,label\n490154203237518,\"" + strings.Repeat(`""`, device.MaxImportCell) + "\"\n", ""},
		{"quoted cell with new lines over the limit", "imei,label\n490154203237518,\"" + strings.Repeat("x\n", device.MaxImportCell) + "\"\n", "file_cell_too_long"},
		{"semicolons inside a comma-separated cell", "imei,iccids\n490154203237518," + strings.Repeat(";", 100) + "\n", ""},
		{"a line of semicolons", "imei;label\n" + strings.Repeat(";", 1<<20), "file_too_many_columns"},
		{"50,000 rows and blank ones after",
			"imei\n" + strings.Repeat("490154203237518\n", device.MaxImportRows) + strings.Repeat(",\n", 100), ""},
	}
	for _, c := range cases {
		_, _, err := device.ReadImport(strings.NewReader(c.csv), device.FormatCSV)
		if got := fieldCode(err); got != c.code {
			t.Errorf("%s: got %q (%v); want %q", c.name, got, err, c.code)
		}
	}
}

// TestReadImportXLSXRows reads sheets a spreadsheet program may write:
// rows left out and formatted rows with no cells count for their numbers;
// those after the last cell do not count at all.
func TestReadImportXLSXRows(t *testing.T) {
	data := craftXLSX(t, map[string]func(io.Writer){sheet1: sheetXML(func(w io.Writer) {
		io.WriteString(w, `<row r="1"><c r="A1" t="inlineStr"><is><t>imei</t></is></c></row>`+
			`<row r="2" ht="30" customHeight="1"/>`+
			`<row r="4"><c r="A4"><v>490154203237518</v></c></row>`)
		for r := 5; r <= device.MaxImportRows+100; r++ {
			fmt.Fprintf(w, `<row r="%d" s="1" customFormat="1"/>`, r)
		}
	})})
	rows, _, err := device.ReadImport(bytes.NewReader(data), device.FormatXLSX)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%d:%s", r.Row, r.IMEI))
	}
	if want := []string{"2:", "3:", "4:490154203237518"}; !slices.Equal(got, want) {
		t.Fatalf("got rows %v; want %v", got, want)
	}
}

// TestReadImportTempFiles reads a workbook whose sheet excelize spools to
// disk, and one that fails to open after spooling it: neither leaves a
// file behind.
func TestReadImportTempFiles(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	sheet := sheetXML(func(w io.Writer) {
		io.WriteString(w, `<row r="1"><c r="A1" t="inlineStr"><is><t>imei</t></is></c></row>`)
		for r := 2; r <= 5_000; r++ {
			fmt.Fprintf(w, `<row r="%d"><c r="B%d" t="inlineStr"><is><t>%s</t></is></c></row>`, r, r, strings.Repeat("n", 50))
		}
	})
	cases := []struct {
		name  string
		parts map[string]func(io.Writer)
		code  string
	}{
		{"read", map[string]func(io.Writer){sheet1: sheet}, ""},
		{"a broken workbook", map[string]func(io.Writer){sheet1: sheet, "xl/workbook.xml": func(w io.Writer) {
			io.WriteString(w, `<workbook><sheets></sheets></wrongbook>`)
		}}, "file_unreadable"},
	}
	for _, c := range cases {
		_, _, err := device.ReadImport(bytes.NewReader(craftXLSX(t, c.parts)), device.FormatXLSX)
		if got := fieldCode(err); got != c.code {
			t.Errorf("%s: got %q (%v); want %q", c.name, got, err, c.code)
		}
		if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
			t.Errorf("%s: left %v in the temporary directory (%v); want nothing", c.name, left, err)
		}
	}
}

// TestImportFileSlots holds both of a Service's import slots with files
// that are still arriving: a third import is refused at once with
// ErrImportBusy and when to retry, and reads nothing; once the two are
// done, an import runs.
func TestImportFileSlots(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	csv := func(n int) string {
		body := fmt.Sprintf("35%012d", n)
		return "imei\n" + body + string(device.LuhnDigit(body)) + "\n"
	}
	var (
		wg      sync.WaitGroup
		release = make(chan struct{})
		reports = make([]device.ImportReport, device.DefaultImportSlots)
		errs    = make([]error, device.DefaultImportSlots)
	)
	for i := range device.DefaultImportSlots {
		r := &heldReader{started: make(chan struct{}), release: release, rest: strings.NewReader(csv(i + 1))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i], errs[i] = f.svc.ImportFile(ctx, device.Actor{Name: "cli"}, r, device.FormatCSV, device.ImportOptions{})
		}()
		<-r.started
	}
	unread := &heldReader{started: make(chan struct{}), release: release, rest: strings.NewReader(csv(9))}
	_, err := f.svc.ImportFile(ctx, device.Actor{Name: "cli"}, unread, device.FormatCSV, device.ImportOptions{})
	var terr *tether.Error
	if !errors.Is(err, device.ErrImportBusy) || !errors.As(err, &terr) || terr.RetryAfter <= 0 {
		t.Fatalf("a third import: got %v; want ErrImportBusy with a retry time", err)
	}
	select {
	case <-unread.started:
		t.Fatal("a refused import read its file")
	default:
	}
	close(release)
	wg.Wait()
	for i := range errs {
		if errs[i] != nil || reports[i].Created != 1 {
			t.Fatalf("import %d: got %+v, %v; want one created", i, reports[i], errs[i])
		}
	}
	report, err := f.svc.ImportFile(ctx, device.Actor{Name: "cli"}, strings.NewReader(csv(9)), device.FormatCSV, device.ImportOptions{})
	if err != nil || report.Created != 1 {
		t.Fatalf("an import after: got %+v, %v; want one created", report, err)
	}
	if n := deviceCount(t, f.store); n != 3 {
		t.Fatalf("got %d devices; want 3", n)
	}
}

// heldReader is a file still arriving: its first Read says so on started
// and waits for release.
type heldReader struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
	rest    io.Reader
}

func (r *heldReader) Read(p []byte) (int, error) {
	r.once.Do(func() { close(r.started) })
	<-r.release
	return r.rest.Read(p)
}

func TestImportRowRules(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.user(t, "walter")
	rows := []device.ImportRow{
		{Row: 2, IMEI: "490154203237518", Label: "ok", AssignedUsers: []string{"walter", "WALTER"}},
		{Row: 3},
		{Row: 4, IMEI: "49015420323751-8"},
		{Row: 5, IMEI: "356938035643809", Label: strings.Repeat("x", 65), Group: "g\x00"},
		{Row: 6, IMEI: "", Label: "no imei"},
		{Row: 7, IMEI: "352099001761481", Notes: strings.Repeat("n", device.MaxNotes+1)},
		{Row: 8, Notes: "a row with notes alone is not blank"},
	}
	report, err := f.svc.Import(ctx, device.Actor{Name: "cli"}, rows, nil, device.ImportOptions{DryRun: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range report.Errors {
		got = append(got, fmt.Sprintf("%d:%s:%s", e.Row, e.Field, e.Code))
	}
	want := []string{"4:imei:imei_duplicate", "5:label:label_length", "5:group:group_chars", "6:imei:imei_required", "7:notes:notes_length", "8:imei:imei_required"}
	if !slices.Equal(got, want) || report.Skipped != 1 || report.Valid != 1 {
		t.Fatalf("errors %v (skipped %d, valid %d); want %v", got, report.Skipped, report.Valid, want)
	}
	// The summary counts rows: six problems in five rows.
	if report.Rows != 7 || report.Invalid != 5 {
		t.Fatalf("report counts %d rows, %d invalid; want 7 rows, 5 invalid (rows 4 to 8)", report.Rows, report.Invalid)
	}
}

// TestImportSkipInvalid: asked to, an import registers the valid rows in
// one transaction and reports the invalid ones; by default it stays all or
// nothing.
func TestImportSkipInvalid(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.user(t, "walter")
	opts := device.ImportOptions{DryRun: true, SkipInvalid: true}
	report, err := f.svc.Import(ctx, device.Actor{Name: "cli"}, readFile(t, "fleet-50-bad.csv"), nil, opts, nil)
	if err != nil || report.Valid != 47 || report.Invalid != 3 || report.Created != 0 || len(report.Errors) != 3 {
		t.Fatalf("dry run skipping invalid rows: %+v, %v; want 47 valid, 3 invalid, none created", report, err)
	}
	if n := deviceCount(t, f.store); n != 0 {
		t.Fatalf("a dry run wrote %d devices", n)
	}

	opts.DryRun = false
	report, err = f.svc.Import(ctx, device.Actor{Name: "apikey:ak_1"}, readFile(t, "fleet-50-bad.csv"), nil, opts, nil)
	if err != nil || report.Valid != 47 || report.Invalid != 3 || report.Created != 47 || len(report.Errors) != 3 {
		t.Fatalf("import skipping invalid rows: %+v, %v; want 47 created and the 3 invalid rows reported", report, err)
	}
	if n := deviceCount(t, f.store); n != 47 {
		t.Fatalf("%d devices after the import; want 47", n)
	}
	for _, e := range report.Errors {
		if e.Row == 6 { // its IMEI has a bad check digit; the others are valid
			continue
		}
		imei := readFile(t, "fleet-50-bad.csv")[e.Row-2].IMEI
		if _, err := f.store.GetDeviceByIMEI(ctx, imei); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("row %d (%s), invalid, was imported: %v", e.Row, imei, err)
		}
	}
	events, _ := f.store.ListEvents(ctx, storage.EventFilter{Action: "device.import"})
	if len(events.Items) != 1 || events.Items[0].Detail["created"] != "47" || events.Items[0].Detail["invalid"] != "3" {
		t.Fatalf("import events %+v", events.Items)
	}

	// Every row invalid now (all registered): nothing to create, no error.
	report, err = f.svc.Import(ctx, device.Actor{Name: "cli"}, readFile(t, "fleet-50-bad.csv"), nil, opts, nil)
	if err != nil || report.Valid != 0 || report.Invalid != 50 || report.Created != 0 {
		t.Fatalf("the same file again: %+v, %v; want 50 invalid rows and nothing created", report, err)
	}
}

// BenchmarkImport10k measures a real import of 10,000 rows: reading the
// CSV, checking every row against the store, and one commit.
func BenchmarkImport10k(b *testing.B) {
	var csv strings.Builder
	csv.WriteString("imei,label,group\n")
	for i := range 10_000 {
		body := fmt.Sprintf("35%012d", 1_000_000+i)
		csv.WriteString(body + string(device.LuhnDigit(body)) + fmt.Sprintf(",van %d,north\n", i))
	}
	data := csv.String()
	for b.Loop() {
		b.StopTimer()
		f := newFixture(b)
		b.StartTimer()
		rows, warnings, err := device.ReadImport(strings.NewReader(data), device.FormatCSV)
		if err != nil {
			b.Fatal(err)
		}
		report, err := f.svc.Import(context.Background(), device.Actor{Name: "bench"}, rows, warnings, device.ImportOptions{}, nil)
		if err != nil || report.Created != 10_000 {
			b.Fatalf("%+v %v", report.Errors[:min(3, len(report.Errors))], err)
		}
	}
}
