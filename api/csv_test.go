package api

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"strings"
	"testing"
)

// liveFormulas reads a CSV as spreadsheets may: split on "," honouring its
// quotes, and split on ";" (Excel in many European locales). It returns each
// field that, after leading spaces and double quotes, starts with = + - @, a
// tab or a CR: a cell a spreadsheet could run as a formula.
func liveFormulas(body []byte) ([]string, error) {
	var live []string
	for _, sep := range []rune{',', ';'} {
		r := csv.NewReader(bytes.NewReader(body))
		r.Comma, r.LazyQuotes, r.FieldsPerRecord = sep, true, -1
		recs, err := r.ReadAll()
		if err != nil {
			return nil, fmt.Errorf("split on %q: %w", sep, err)
		}
		for _, rec := range recs {
			for _, f := range rec {
				if s := strings.TrimLeft(f, ` "`); s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
					live = append(live, fmt.Sprintf("%q (split on %q)", f, sep))
				}
			}
		}
	}
	return live, nil
}

// LiveFormulas is liveFormulas for the end-to-end export tests of package
// api_test.
var LiveFormulas = liveFormulas

// hostileText is text a client can put in an exported value or column name
// that a spreadsheet could run.
var hostileText = []string{
	"=cmd|' /C calc'!A0",
	"a;=cmd|' /C calc'!A0",
	"x,+1",
	"ua; -2+3",
	`ua;"=1"`,
	`a; "=1"`,
	`"=1"`,
	"a;\tb",
	"a\t=1",
	"a;\r=1",
	"line\n=1",
	"a\r\n-1",
	"a;@SUM(1)",
	"@SUM(1)",
	"a;;=1",
	"a,;+1",
	"-",
}

// TestCSVNeutralisesEverySegment renders hostile text as values, in lists
// joined with ";", and as column names (top-level and nested keys: audit
// details and profiles are client-influenced), each alone and all together,
// and reads the CSV back split on "," and on ";".
func TestCSVNeutralisesEverySegment(t *testing.T) {
	row := func(i int, h string) map[string]any {
		return map[string]any{
			"note": h, "tags": []string{"ok", h, h}, "n": i, h: "v",
			"detail": map[string]string{h: h, "k" + h: "v"},
		}
	}
	var all []map[string]any
	for i, h := range hostileText {
		all = append(all, row(i, h))
		wantNoLiveFormulas(t, h, []map[string]any{row(i, h)})
	}
	wantNoLiveFormulas(t, "all together", all)
}

func wantNoLiveFormulas(t *testing.T, name string, items []map[string]any) {
	t.Helper()
	out, err := render(formatCSV, map[string]any{"items": items}, answer{})
	if err != nil {
		t.Fatal(err)
	}
	live, err := liveFormulas(out)
	if err != nil {
		t.Fatalf("%q: CSV does not read back: %v\n%s", name, err, out)
	}
	for _, f := range live {
		t.Errorf("%q: live formula %s; want none", name, f)
	}
}

func TestCSVSafe(t *testing.T) {
	cases := []struct {
		kind    byte // 0 for no value at all
		in, out string
	}{
		{0, "", ""},
		{'z', "", ""},
		{'n', "-5", "-5"},
		{'b', "true", "true"},
		{'s', "", ""},
		{'s', "plain", "plain"},
		{'s', "2024-05-20T04:23:26Z", "2024-05-20T04:23:26Z"},
		{'s', "Mozilla/5.0 (Linux; Android 14; SM-G991B)", "Mozilla/5.0 (Linux; Android 14; SM-G991B)"},
		{'s', "a-b;c+d,e@f", "a-b;c+d,e@f"},
		{'s', "a;", "a;"},
		{'s', "=1", "'=1"},
		{'s', "a;=1", "a;'=1"},
		{'s', "x,+1", "x,'+1"},
		{'s', "ua; -2+3", "ua;' -2+3"},
		{'s', `a;"=1"`, `a;'"=1"`},
		{'s', `a; " @x`, `a;' " @x`},
		{'s', "a;\tb", "a;'\tb"},
		{'s', "a\t=1", "a\t'=1"},
		{'s', "a\r\n@x", "a\r\n'@x"},
		{'s', "a\n\rx", "a\n'\rx"},
		{'s', "=1;=2,+3", "'=1;'=2,'+3"},
	}
	for _, c := range cases {
		var n *node
		if c.kind != 0 {
			n = &node{kind: c.kind, scalar: c.in}
		}
		if got := csvSafe(n); got != c.out {
			t.Errorf("csvSafe(%c %q) = %q; want %q", c.kind, c.in, got, c.out)
		}
	}
}
