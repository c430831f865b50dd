package device_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

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
	if len(warnings) != 1 || warnings[0].Code != "column_unknown" || warnings[0].Field != "Notes" {
		t.Fatalf("warnings %+v; want the Notes column reported", warnings)
	}
	return rows
}

// The issue's own case: three bad rows out of fifty are named exactly by a
// dry run that writes nothing; the corrected file imports all fifty.
func TestImportFiftyWithThreeBad(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.user(t, "walter")

	report, err := f.svc.Import(ctx, "cli", readFile(t, "fleet-50-bad.csv"), nil, true, nil)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	var got []string
	for _, e := range report.Errors {
		got = append(got, fmt.Sprintf("%d:%s:%s", e.Row, e.Field, e.Code))
	}
	want := []string{"6:imei:imei_checksum", "21:iccIds[0]:iccid_prefix", "38:assignedUsers:user_unknown"}
	if !slices.Equal(got, want) || report.Rows != 50 || report.Valid != 47 || report.Created != 0 {
		t.Fatalf("dry run report %+v\nerrors %v; want %v", report, got, want)
	}
	if n := deviceCount(t, f.store); n != 0 {
		t.Fatalf("a dry run wrote %d devices", n)
	}

	// The same file for real: all or nothing, so nothing.
	_, err = f.svc.Import(ctx, "cli", readFile(t, "fleet-50-bad.csv"), nil, false, nil)
	if !errors.Is(err, device.ErrImportInvalid) {
		t.Fatalf("import with bad rows: %v", err)
	}
	if n := deviceCount(t, f.store); n != 0 {
		t.Fatalf("a refused import wrote %d devices", n)
	}

	var ticks []int
	report, err = f.svc.Import(ctx, "apikey:ak_1", readFile(t, "fleet-50.csv"), nil, false, func(done, total int) { ticks = append(ticks, done) })
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
	events, _ := f.store.ListEvents(ctx, storage.EventFilter{Action: "device.import"})
	if len(events.Items) != 1 || events.Items[0].Detail["created"] != "50" {
		t.Fatalf("import events %+v", events.Items)
	}

	// Importing it again: every row is already registered.
	report, err = f.svc.Import(ctx, "cli", readFile(t, "fleet-50.csv"), nil, true, nil)
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
		{"blank rows kept", "imei\n490154203237518\n\n356938035643809\n", 2, ""},
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
		if err != nil || len(rows) < c.rows {
			t.Errorf("%s: %d rows, %v", c.name, len(rows), err)
		}
	}
	rows, _, err := device.ReadImport(strings.NewReader("IMEI,iccids,label\n490154203237518,8944500102198304826;89012608621145279111,\"van, 7\"\n"), device.FormatCSV)
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
	}
	report, err := f.svc.Import(ctx, "cli", rows, nil, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range report.Errors {
		got = append(got, fmt.Sprintf("%d:%s:%s", e.Row, e.Field, e.Code))
	}
	want := []string{"4:imei:imei_duplicate", "5:label:label_length", "5:group:group_chars", "6:imei:imei_required"}
	if !slices.Equal(got, want) || report.Skipped != 1 || report.Valid != 1 {
		t.Fatalf("errors %v (skipped %d, valid %d); want %v", got, report.Skipped, report.Valid, want)
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
		report, err := f.svc.Import(context.Background(), "bench", rows, warnings, false, nil)
		if err != nil || report.Created != 10_000 {
			b.Fatalf("%+v %v", report.Errors[:min(3, len(report.Errors))], err)
		}
	}
}
