package device

import (
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	"tether"
)

// TestXMLScan checks the scan that runs before excelize sees a part: what
// it refuses, what it counts, and that a part fed in pieces of any size
// scans alike.
func TestXMLScan(t *testing.T) {
	long := strings.Repeat("x", maxXMLToken+1)
	deep := strings.Repeat("<a>", maxXMLDepth+1) + strings.Repeat("</a>", maxXMLDepth+1)
	sheet := func(s string) string { return "<worksheet>" + s + "</worksheet>" }
	runs := func(n int) string { return strings.Repeat("<r/>", n) }
	cases := []struct {
		name, xml string
		count     string
		limit     int
		n         int    // elements counted
		code      string // "" for none
		cell      string
		rows      bool
	}{
		{"a sheet", `<?xml version="1.0"?><worksheet xmlns:x="u"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row></sheetData></worksheet>`, "", math.MaxInt, 5, "", "", false},
		{"self-closing and spaced", `<a><b/><c x="1" /><d x='/'></d></a>`, "", math.MaxInt, 4, "", "", false},
		{"attribute holding markup", `<a x="<b>/>" y='">'/>`, "", math.MaxInt, 1, "", "", false},
		{"comment, CDATA, instruction", `<!-- <a> --><a><![CDATA[<b>]]]></a><?pi <c>?>`, "", math.MaxInt, 1, "", "", false},
		{"counting by local name", `<sst><si/><x:si><t>a</t></x:si><sis/></sst>`, "si", math.MaxInt, 2, "", "", false},
		{"a text at the limit", `<t>` + long[1:] + `</t>`, "", math.MaxInt, 1, "", "", false},
		{"nesting at the limit", deep[3 : len(deep)-4], "", math.MaxInt, maxXMLDepth, "", "", false},

		{"a long text", `<t>` + long + `</t>`, "", math.MaxInt, 1, "file_cell_too_long", "", false},
		{"long CDATA", `<t><![CDATA[` + long + `]]></t>`, "", math.MaxInt, 1, "file_cell_too_long", "", false},
		{"a long CDATA of tags", `<t><![CDATA[` + strings.Repeat("<a>", maxXMLToken/3+1) + `]]></t>`, "", math.MaxInt, 1, "file_cell_too_long", "", false},
		{"a long attribute", `<c r="` + long + `"/>`, "", math.MaxInt, 0, "file_unreadable", "", false},
		{"a long attribute of tags", `<c r="` + strings.Repeat("<a>", maxXMLToken/3+1) + `"/>`, "", math.MaxInt, 0, "file_unreadable", "", false},
		{"a long comment", `<!--` + long + `-->`, "", math.MaxInt, 0, "file_unreadable", "", false},
		{"a long instruction", `<?pi ` + long + `?>`, "", math.MaxInt, 0, "file_unreadable", "", false},
		{"too deep", deep, "", math.MaxInt, maxXMLDepth, "file_unreadable", "", false},
		{"a document type", `<!DOCTYPE x [<!ENTITY a "b">]><x/>`, "", math.MaxInt, 0, "file_unreadable", "", false},
		{"cut short", `<a><b>`, "", math.MaxInt, 2, "file_unreadable", "", false},
		{"cut in a tag", `<a x="1`, "", math.MaxInt, 0, "file_unreadable", "", false},
		{"closed too often", `<a></a></a>`, "", math.MaxInt, 1, "file_unreadable", "", false},
		{"over the limit", `<sst><si/><si/><si/></sst>`, "si", 2, 2, "file_too_large", "", false},
		{"counting past a long prefix", `<sst><` + strings.Repeat("p", 100) + `:si/></sst>`, "si", math.MaxInt, 1, "", "", false},

		// What excelize decodes into one value, and gathers into one row.
		{"a cell at the limit", sheet(`<c><is>` + runs(maxCellElements-1) + `</is></c>`), "", math.MaxInt, maxCellElements + 2, "", "c", true},
		{"a cell of many runs", sheet(`<c><is>` + runs(maxCellElements) + `</is></c>`), "", math.MaxInt, 0, "file_cell_too_long", "c", true},
		{"a cell of many texts", sheet(`<c><is>` + strings.Repeat(`<t>`+long[:60<<10]+`</t>`, 5) + `</is></c>`), "", math.MaxInt, 0, "file_cell_too_long", "c", true},
		{"a shared string at the limit", `<sst><si>` + runs(maxCellElements) + `</si></sst>`, "si", math.MaxInt, 1, "", "si", false},
		{"a shared string of many runs", `<sst><si>` + runs(maxCellElements+1) + `</si></sst>`, "si", math.MaxInt, 0, "file_cell_too_long", "si", false},
		{"a row in a cell", sheet(`<sheetData><row><c><is>` + strings.Repeat(runs(2000)+`<row/>`, 3) + `</is></c></row></sheetData>`), "", math.MaxInt, 0, "file_cell_too_long", "c", true},
		{"cells after a row's end", sheet(`<sheetData><row></row>` + strings.Repeat(`<c><v>1</v></c>`, 70_000) + `</sheetData>`), "", math.MaxInt, 0, "file_too_large", "c", true},
		{"much before the rows and after", sheet(`<cols>` + strings.Repeat(`<col min="1" max="1"/>`, 100_000) + `</cols><sheetData><row/></sheetData>` +
			`<hyperlinks>` + strings.Repeat(`<hyperlink ref="A1"/>`, 100_000) + `</hyperlinks>`), "", math.MaxInt, 200_005, "", "c", true},
	}
	for _, c := range cases {
		pieces := []int{1, 7, len(c.xml)}
		if len(c.xml) > 1<<16 {
			pieces = []int{4093, len(c.xml)} // byte by byte takes long under the race detector
		}
		for _, piece := range pieces {
			s := xmlScan{count: c.count, limit: c.limit, tooMany: tooLarge("too many"), cell: c.cell, rows: c.rows}
			err := s.scan(&chunked{s: c.xml, n: piece})
			var ve *tether.ValidationError
			got := ""
			if errors.As(err, &ve) {
				got = ve.Fields[0].Code
			} else if err != nil {
				got = err.Error()
			}
			if got != c.code {
				t.Errorf("%s (pieces of %d): got %q; want %q", c.name, piece, got, c.code)
			}
			if c.code == "" && s.n != c.n {
				t.Errorf("%s (pieces of %d): counted %d; want %d", c.name, piece, s.n, c.n)
			}
		}
	}
}

// chunked reads s n bytes at a time.
type chunked struct {
	s string
	n int
}

func (p *chunked) Read(b []byte) (int, error) {
	if p.s == "" {
		return 0, io.EOF
	}
	k := copy(b[:min(len(b), p.n)], p.s)
	p.s = p.s[k:]
	return k, nil
}
