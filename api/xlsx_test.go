package api

import (
	"archive/zip"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
)

// TestRenderXLSXSharedStrings checks where XLSX answers keep their text: one
// value or one object in the shared-strings part (as the seeds' samples
// do), a list inline (streamed); either way text that looks like a formula
// stays text, and numbers stay numbers.
func TestRenderXLSXSharedStrings(t *testing.T) {
	cases := []struct {
		name   string
		v      any
		shared []string // the shared strings; nil: the text is inline
		cell   string   // a cell holding "=1+1", which must be no formula
	}{
		{"one value", "=1+1", []string{"=1+1"}, "A1"},
		{"one object", map[string]any{"a": "=1+1", "n": 7, "ok": true}, []string{"a", "n", "ok", "=1+1"}, "A2"},
		{"a list", []map[string]any{{"a": "=1+1", "n": 1}, {"a": "x", "n": 2}}, nil, "A2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := render(formatXLSX, c.v, answer{})
			if err != nil {
				t.Fatal(err)
			}
			zr, err := zip.NewReader(bytes.NewReader(out), int64(len(out)))
			if err != nil {
				t.Fatal(err)
			}
			parts := map[string]string{}
			for _, f := range zr.File {
				rc, err := f.Open()
				if err != nil {
					t.Fatal(err)
				}
				data, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				parts[f.Name] = string(data)
			}
			sst := parts["xl/sharedStrings.xml"]
			for _, s := range c.shared {
				if !strings.Contains(sst, "<t>"+s+"</t>") {
					t.Errorf("shared strings %q; want %q among them", sst, s)
				}
			}
			if c.shared == nil && !strings.Contains(parts["xl/worksheets/sheet1.xml"], "inlineStr") {
				t.Errorf("a list's sheet has no inline text: %s", parts["xl/worksheets/sheet1.xml"])
			}
			f, err := excelize.OpenReader(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if formula, err := f.GetCellFormula("Sheet1", c.cell); err != nil || formula != "" {
				t.Errorf("cell %s: got formula %q, %v; want none", c.cell, formula, err)
			}
			if v, _ := f.GetCellValue("Sheet1", c.cell); v != "=1+1" {
				t.Errorf("cell %s: got %q; want =1+1", c.cell, v)
			}
			if c.name == "one object" {
				if typ, _ := f.GetCellType("Sheet1", "B2"); typ != excelize.CellTypeNumber && typ != excelize.CellTypeUnset {
					t.Errorf("a number became %v", typ)
				}
			}
		})
	}
}
