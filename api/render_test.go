package api

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"tether/internal/codec"
)

func TestNegotiate(t *testing.T) {
	cases := []struct {
		accept string
		want   format
		ct     string
		bad    bool
	}{
		{"", formatJSON, "application/json; charset=utf-8", false},
		{"application/json", formatJSON, "application/json; charset=utf-8", false},
		{"text/json", formatJSON, "text/json; charset=utf-8", false},
		{"application/xml", formatXML, "application/xml; charset=utf-8", false},
		{"text/xml", formatXML, "text/xml; charset=utf-8", false},
		{"text/csv", formatCSV, "text/csv; charset=utf-8", false},
		{mimeXLSX, formatXLSX, mimeXLSX, false},
		{"application/vnd.ms-excel", formatXLSX, "application/vnd.ms-excel", false},
		{"application/x-compressed-json", formatGzipJSON, "application/x-compressed-json", false},
		{"*/*", formatJSON, "application/json; charset=utf-8", false},
		{"text/html, application/xml;q=0.9, */*;q=0.8", formatXML, "application/xml; charset=utf-8", false},
		{"application/json;q=0.2, text/csv", formatCSV, "text/csv; charset=utf-8", false},
		{"text/html", 0, "", true},
		{"application/json;q=0", 0, "", true},
		{"image/png, application/pdf", 0, "", true},
		{";;;", 0, "", true},
	}
	for _, c := range cases {
		f, ct, err := negotiate(c.accept)
		if (err != nil) != c.bad || (!c.bad && (f != c.want || ct != c.ct)) {
			t.Errorf("negotiate(%q) = %v %q %v; want %v %q bad=%v", c.accept, f, ct, err, c.want, c.ct, c.bad)
		}
	}
}

type sample struct {
	Items []sampleItem `json:"items"`
	Next  string       `json:"nextCursor,omitempty"`
}

type sampleItem struct {
	ID    string            `json:"id"`
	N     int               `json:"n"`
	OK    bool              `json:"ok"`
	Tags  []string          `json:"tags"`
	Inner map[string]string `json:"inner,omitempty"`
	Note  string            `json:"note"`
}

var sampleList = sample{Items: []sampleItem{
	{ID: "a", N: 1, OK: true, Tags: []string{"x", "y"}, Inner: map[string]string{"k": "v"}, Note: "=cmd|' /C calc'!A0"},
	{ID: "b<&>", N: 2, Tags: []string{}, Note: "plain"},
}}

func TestRenderCSV(t *testing.T) {
	out, err := render(formatCSV, sampleList, answer{})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not read back: %v\n%s", err, out)
	}
	want := [][]string{
		{"id", "n", "ok", "tags", "inner", "note"},
		{"a", "1", "true", "x;y", `{"k":"v"}`, "'=cmd|' /C calc'!A0"},
		{"b<&>", "2", "false", "", "", "plain"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records; want %d:\n%s", len(recs), len(want), out)
	}
	for i := range want {
		if strings.Join(recs[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("row %d = %q; want %q", i, recs[i], want[i])
		}
	}
	// A single value is one cell, no header.
	out, err = render(formatCSV, "just a token", answer{})
	if err != nil || string(out) != "just a token\n" {
		t.Fatalf("single value CSV %q, %v", out, err)
	}
}

func TestRenderXLSX(t *testing.T) {
	out, err := render(formatXLSX, sampleList, answer{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := excelize.OpenReader(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("XLSX does not open: %v", err)
	}
	defer f.Close()
	sheets := f.GetSheetList()
	if len(sheets) != 1 {
		t.Fatalf("sheets %v; want one", sheets)
	}
	rows, err := f.GetRows(sheets[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || strings.Join(rows[0], "|") != "id|n|ok|tags|inner|note" || rows[1][0] != "a" || rows[2][0] != "b<&>" {
		t.Fatalf("rows %q", rows)
	}
	// Text that looks like a formula stays text.
	formula, err := f.GetCellFormula(sheets[0], "F2")
	if err != nil || formula != "" {
		t.Fatalf("cell F2 has formula %q, %v", formula, err)
	}
	if typ, _ := f.GetCellType(sheets[0], "B2"); typ != excelize.CellTypeNumber && typ != excelize.CellTypeUnset {
		t.Fatalf("a number became %v", typ)
	}
}

func TestRenderXMLAndGzip(t *testing.T) {
	out, err := render(formatXML, sampleList, answer{xmlRoot: "things", xmlItem: "thing"})
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		XMLName xml.Name `xml:"things"`
		Items   struct {
			Thing []struct {
				ID   string `xml:"id"`
				Tags struct {
					Item []string `xml:"item"`
				} `xml:"tags"`
			} `xml:"thing"`
		} `xml:"items"`
	}
	if err := xml.Unmarshal(out, &back); err != nil {
		t.Fatalf("XML does not read back: %v\n%s", err, out)
	}
	if len(back.Items.Thing) != 2 || back.Items.Thing[1].ID != "b<&>" || len(back.Items.Thing[0].Tags.Item) != 2 {
		t.Fatalf("XML read back as %+v\n%s", back, out)
	}
	out, err = render(formatGzipJSON, sampleList, answer{})
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !strings.HasPrefix(string(plain), `{"items":[{"id":"a"`) {
		t.Fatalf("gunzipped %q, %v", plain, err)
	}
}

// TestTimestampWritesAsTime holds timestamp to what time.Time writes,
// omitzero included, for every time a store can hold; the zero time in
// another zone is written as the zero time, and a year encoding/json
// refuses is written as Go formats it.
func TestTimestampWritesAsTime(t *testing.T) {
	type asTime struct {
		A time.Time `json:"a"`
		B time.Time `json:"b,omitzero"`
	}
	type asTimestamp struct {
		A timestamp `json:"a"`
		B timestamp `json:"b,omitzero"`
	}
	zone := time.FixedZone("", -(9*3600 + 30*60))
	for _, at := range []time.Time{
		{}, time.Date(2026, 11, 30, 9, 41, 7, 123456789, time.UTC), time.Date(2026, 3, 29, 2, 30, 0, 0, zone),
		time.Now(), time.Unix(0, 0), time.Date(0, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, zone),
		time.Date(2026, 12, 4, 0, 0, 0, 0, time.FixedZone("", 14*3600)), time.Date(2026, 12, 4, 1, 2, 3, 4000, time.Local),
	} {
		want, wantErr := json.Marshal(asTime{at, at})
		for _, enc := range []func(any) ([]byte, error){json.Marshal, codec.Encode} {
			got, gotErr := enc(asTimestamp{stamp(at), stamp(at)})
			if gotErr != nil || wantErr != nil || string(got) != string(want) {
				t.Errorf("%v: got %s, %v; want %s, %v", at, got, gotErr, want, wantErr)
			}
		}
	}
	for at, want := range map[time.Time]string{
		time.Time{}.In(zone):                         `{"a":"0001-01-01T00:00:00Z"}`,
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC): `{"a":"10000-01-01T00:00:00Z","b":"10000-01-01T00:00:00Z"}`,
	} {
		if got, err := codec.Encode(asTimestamp{stamp(at), stamp(at)}); err != nil || string(got) != want {
			t.Errorf("%v: got %s, %v; want %s", at, got, err, want)
		}
	}
}
