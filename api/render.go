package api

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/xuri/excelize/v2"

	"tether"
	"tether/internal/codec"
)

// format is a way of writing an answer.
type format int

const (
	formatJSON format = iota
	formatXML
	formatCSV
	formatXLSX
	formatGzipJSON
)

// Media types of the formats.
const (
	mimeXLSX       = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	mimeMSExcel    = "application/vnd.ms-excel"
	mimeGzipJSON   = "application/x-compressed-json"
	mimeTextJSON   = "text/json"
	mimeTextCSV    = "text/csv"
	mimeAppXML     = "application/xml"
	mimeTextXML    = "text/xml"
	mimeAppJSON    = "application/json"
	mimeAnything   = "*/*"
	mimeAnyApp     = "application/*"
	mimeAnyText    = "text/*"
	charsetUTF8    = "; charset=utf-8"
	defaultXMLRoot = "response"
)

// formats maps each media type a client may ask for to the format and the
// content type of the answer (a client asking for text/json gets text/json).
var formats = map[string]struct {
	f  format
	ct string
}{
	mimeAppJSON:  {formatJSON, mimeAppJSON + charsetUTF8},
	mimeTextJSON: {formatJSON, mimeTextJSON + charsetUTF8},
	mimeAppXML:   {formatXML, mimeAppXML + charsetUTF8},
	mimeTextXML:  {formatXML, mimeTextXML + charsetUTF8},
	mimeTextCSV:  {formatCSV, mimeTextCSV + charsetUTF8},
	mimeXLSX:     {formatXLSX, mimeXLSX},
	mimeMSExcel:  {formatXLSX, mimeMSExcel},
	mimeGzipJSON: {formatGzipJSON, mimeGzipJSON},
	mimeAnything: {formatJSON, mimeAppJSON + charsetUTF8},
	mimeAnyApp:   {formatJSON, mimeAppJSON + charsetUTF8},
	mimeAnyText:  {formatJSON, mimeTextJSON + charsetUTF8},
}

var errNotAcceptable = tether.NewError(tether.CodeNotAcceptable,
	"the Accept header names no format this server writes: application/json, text/json, application/xml, text/xml, text/csv, "+
		mimeXLSX+" or "+mimeGzipJSON)

// negotiate picks the answer's format from an Accept header: the supported
// media type with the highest q, the first listed on a tie. No header means
// JSON; a header naming nothing supported is a 406.
func negotiate(accept string) (format, string, error) {
	if strings.TrimSpace(accept) == "" {
		return formatJSON, mimeAppJSON + charsetUTF8, nil
	}
	type choice struct {
		q   float64
		pos int
		mt  string
	}
	var choices []choice
	for i, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if raw, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(raw, 64); err != nil || q < 0 || q > 1 {
				continue
			}
		}
		if _, ok := formats[mt]; ok && q > 0 {
			choices = append(choices, choice{q, i, mt})
		}
	}
	if len(choices) == 0 {
		return 0, "", errNotAcceptable
	}
	sort.SliceStable(choices, func(a, b int) bool { return choices[a].q > choices[b].q })
	f := formats[choices[0].mt]
	return f.f, f.ct, nil
}

// answer describes how a value reads in the formats that need more than
// the value: the XML element names, and whether it is a list to export whole.
type answer struct {
	xmlRoot string
	xmlItem string
}

// renderOption adjusts an answer.
type renderOption func(*answer)

// xmlNames names the root element, and the element of each list item, of a
// value written as generic XML.
func xmlNames(root, item string) renderOption {
	return func(a *answer) { a.xmlRoot, a.xmlItem = root, item }
}

// respond writes v with status in the format the request's Accept asks
// for. Values that know their XML (they have an XMLName or marshal
// themselves) are written as they say; others go through their JSON form.
func (s *server) respond(c *fiber.Ctx, status int, v any, opts ...renderOption) error {
	f, ct, err := negotiate(c.Get(fiber.HeaderAccept))
	if err != nil && (isDialect(c.Path()) || isTokenLogin(c.Path())) {
		f, ct, err = formatJSON, mimeAppJSON+charsetUTF8, nil
	}
	if err != nil {
		return err
	}
	if f == formatJSON {
		return sendJSON(c, status, ct, v)
	}
	a := answer{xmlRoot: defaultXMLRoot, xmlItem: "item"}
	for _, opt := range opts {
		opt(&a)
	}
	body, err := render(f, v, a)
	if err != nil {
		return fmt.Errorf("render answer: %w", err)
	}
	c.Set(fiber.HeaderContentType, ct)
	c.Set(fiber.HeaderVary, fiber.HeaderAccept)
	if f == formatXLSX || f == formatCSV {
		ext := map[format]string{formatCSV: "csv", formatXLSX: "xlsx"}[f]
		c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s.%s"`, a.xmlRoot, ext))
	}
	return c.Status(status).Send(body)
}

// answerBuffers are the buffers JSON answers are written in (sendJSON).
var answerBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledAnswer is the largest buffer kept for the next answer: a
// larger one (a long audit page) is left to the collector.
const maxPooledAnswer = 1 << 20

// sendJSON answers v as JSON, written into a buffer used again and copied
// into the response: a page of 50 handsets is some 35 KB, and a fresh
// slice of that size for every page (what codec.Encode returns) cost the
// device list about 17% of its CPU under load (docs/performance.md).
func sendJSON(c *fiber.Ctx, status int, contentType string, v any) error {
	buf := answerBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledAnswer {
			answerBuffers.Put(buf)
		}
	}()
	err := codec.EncodeTo(buf, v)
	if renderCheck != nil {
		renderCheck(v, buf.Bytes(), err)
	}
	if err != nil {
		return fmt.Errorf("render answer: %w", err)
	}
	c.Set(fiber.HeaderContentType, contentType)
	c.Set(fiber.HeaderVary, fiber.HeaderAccept)
	c.Status(status)
	c.Response().SetBody(buf.Bytes()) // a copy: buf goes back to the pool
	return nil
}

// renderCheck, when set (the package's tests set it), is shown each answer
// with what the codec wrote for it, to hold that to encoding/json's bytes.
var renderCheck func(v any, data []byte, err error)

// render writes v in format f, any but plain JSON (sendJSON's), from the
// JSON the codec the stores use writes for it (internal/codec): that
// writes encoding/json's bytes in about two thirds of the time, and every
// answer the tests provoke is checked against encoding/json's
// (renderCheck).
func render(f format, v any, a answer) ([]byte, error) {
	data, err := codec.Encode(v)
	if renderCheck != nil {
		renderCheck(v, data, err)
	}
	if err != nil {
		return nil, err
	}
	switch f {
	case formatGzipJSON:
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(data); err != nil {
			return nil, err
		}
		err := zw.Close()
		return buf.Bytes(), err
	case formatXML:
		if ownsXML(v) {
			out, err := xml.Marshal(v)
			return append([]byte(xml.Header[:len(xml.Header)-1]), out...), err
		}
		tree, err := parseTree(data)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		buf.WriteString(xml.Header[:len(xml.Header)-1])
		err = writeXML(&buf, a.xmlRoot, a.xmlItem, tree)
		return buf.Bytes(), err
	case formatCSV, formatXLSX:
		tree, err := parseTree(data)
		if err != nil {
			return nil, err
		}
		var header []string
		var rows [][]*node
		if cols := columnsOf(rowType(reflect.TypeOf(v))); cols != nil {
			header, rows = tableOf(cols, tree)
		} else {
			header, rows = table(tree)
		}
		if f == formatCSV {
			return writeCSV(header, rows)
		}
		return writeXLSX(header, rows)
	}
	return nil, errors.New("unknown format")
}

// ownsXML reports whether v decides its own XML form.
func ownsXML(v any) bool {
	if _, ok := v.(xml.Marshaler); ok {
		return true
	}
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return false
	}
	_, ok := t.FieldByName("XMLName")
	return ok
}

// node is a JSON value that keeps the order of object members, so columns
// and elements come out in the order the API documents them.
type node struct {
	kind   byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	keys   []string
	vals   []*node
	items  []*node
	scalar string
}

func parseTree(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return readNode(dec)
}

func readNode(dec *json.Decoder) (*node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &node{kind: 'o'}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := readNode(dec)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, kt.(string))
				n.vals = append(n.vals, v)
			}
			_, err := dec.Token()
			return n, err
		case '[':
			n := &node{kind: 'a'}
			for dec.More() {
				v, err := readNode(dec)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, v)
			}
			_, err := dec.Token()
			return n, err
		}
	case string:
		return &node{kind: 's', scalar: t}, nil
	case json.Number:
		return &node{kind: 'n', scalar: t.String()}, nil
	case bool:
		return &node{kind: 'b', scalar: strconv.FormatBool(t)}, nil
	case nil:
		return &node{kind: 'z'}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// xmlName makes a JSON member name a valid XML element name.
func xmlName(s string) string {
	var b strings.Builder
	for i, r := range s {
		ok := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || (i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.'))
		if ok {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// writeXML writes n as element name: objects as child elements in order,
// arrays as repeated item elements, null as an empty element with
// xsi:nil-free emptiness, scalars as text.
func writeXML(w *bytes.Buffer, name, item string, n *node) error {
	name = xmlName(name)
	w.WriteString("<" + name + ">")
	switch n.kind {
	case 'o':
		for i, k := range n.keys {
			if err := writeXML(w, k, item, n.vals[i]); err != nil {
				return err
			}
		}
	case 'a':
		for _, it := range n.items {
			if err := writeXML(w, item, "item", it); err != nil {
				return err
			}
		}
	case 'z':
	default:
		if err := xml.EscapeText(w, []byte(n.scalar)); err != nil {
			return err
		}
	}
	w.WriteString("</" + name + ">")
	return nil
}

// rowType is the type of the rows of a table of a value of type t: the
// items of a list ({"items": [...]}) or a slice, or t itself.
func rowType(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return nil
	}
	if t.Kind() == reflect.Struct {
		if f, ok := t.FieldByName("Items"); ok && f.Type.Kind() == reflect.Slice && jsonName(f) == "items" {
			return f.Type.Elem()
		}
	}
	if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
		return t.Elem()
	}
	return t
}

// columnsOf is the columns of a table of rows of type t, from the type
// alone, so an export has the same columns whatever the data: a column per
// JSON member, nested objects as "a.b" columns, and anything whose members
// the type does not fix (maps, free-form JSON) as one column of JSON text.
// It is nil for a type that is no struct.
func columnsOf(t reflect.Type) [][]string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct || t == reflect.TypeOf(time.Time{}) {
		return nil
	}
	var cols [][]string
	for i := range t.NumField() {
		f := t.Field(i)
		name := jsonName(f)
		switch {
		case name == "" || !f.IsExported() && !f.Anonymous:
			continue
		case f.Anonymous && f.Tag.Get("json") == "":
			cols = append(cols, columnsOf(f.Type)...)
			continue
		}
		if sub := columnsOf(f.Type); sub != nil && !implementsJSON(f.Type) {
			for _, c := range sub {
				cols = append(cols, append([]string{name}, c...))
			}
			continue
		}
		cols = append(cols, []string{name})
	}
	return cols
}

// jsonName is the member name encoding/json gives a field, or "" for one
// it leaves out.
func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	if tag == "-" {
		return ""
	}
	if name, _, _ := strings.Cut(tag, ","); name != "" {
		return name
	}
	return f.Name
}

// implementsJSON reports whether t writes its own JSON, so its members are
// not the type's fields.
func implementsJSON(t reflect.Type) bool {
	m := reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	return t.Implements(m) || reflect.PointerTo(t).Implements(m)
}

// tableOf lays out rows under fixed columns: each row's value at each
// column's path, or an empty cell where the row has none.
func tableOf(cols [][]string, n *node) ([]string, [][]*node) {
	rows, _ := rowsOf(n)
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = strings.Join(c, ".")
	}
	out := make([][]*node, len(rows))
	for r, row := range rows {
		out[r] = make([]*node, len(cols))
		for i, c := range cols {
			if v := row.at(c); v != nil {
				out[r][i] = cellNode(v)
			}
		}
	}
	return header, out
}

// at is the member at path, or nil.
func (n *node) at(path []string) *node {
	for _, k := range path {
		if n == nil || n.kind != 'o' {
			return nil
		}
		var next *node
		for i, key := range n.keys {
			if key == k {
				next = n.vals[i]
			}
		}
		n = next
	}
	return n
}

// rowsOf is the rows of a table of n: the items of a list ({"items":
// [...]}) or an array, or n itself for an object. It reports false for a
// single value, which is a cell of its own.
func rowsOf(n *node) ([]*node, bool) {
	switch {
	case n.kind == 'a':
		return n.items, true
	case n.kind == 'o' && len(n.keys) > 0 && n.keys[0] == "items" && n.vals[0].kind == 'a':
		return n.vals[0].items, true
	}
	return []*node{n}, n.kind == 'o'
}

// table turns a value into a header and rows: a list ({"items": [...]}) or an
// array is one row per item; an object is one row; a single value is one
// cell with no header. Nested objects become "a.b" columns; arrays of
// values are joined with ";"; anything deeper is kept as JSON text.
func table(n *node) ([]string, [][]*node) {
	rows, ok := rowsOf(n)
	if !ok {
		return nil, [][]*node{{n}}
	}
	var header []string
	index := map[string]int{}
	flat := make([]map[string]*node, len(rows))
	for i, r := range rows {
		flat[i] = map[string]*node{}
		flatten("", r, func(col string, v *node) {
			if _, ok := index[col]; !ok {
				index[col] = len(header)
				header = append(header, col)
			}
			flat[i][col] = v
		})
	}
	out := make([][]*node, len(rows))
	for i := range rows {
		out[i] = make([]*node, len(header))
		for col, v := range flat[i] {
			out[i][index[col]] = v
		}
	}
	return header, out
}

func flatten(prefix string, n *node, emit func(string, *node)) {
	if n.kind != 'o' {
		emit(prefixOr(prefix, "value"), cellNode(n))
		return
	}
	for i, k := range n.keys {
		col := k
		if prefix != "" {
			col = prefix + "." + k
		}
		if v := n.vals[i]; v.kind == 'o' {
			flatten(col, v, emit)
		} else {
			emit(col, cellNode(v))
		}
	}
}

func prefixOr(prefix, dflt string) string {
	if prefix == "" {
		return dflt
	}
	return prefix
}

// cellNode turns an array into one text cell: values joined with ";", or
// JSON text when the items are not plain values; and an object into JSON
// text.
func cellNode(n *node) *node {
	if n.kind == 'o' {
		var buf bytes.Buffer
		writeJSON(&buf, n)
		return &node{kind: 's', scalar: buf.String()}
	}
	if n.kind != 'a' {
		return n
	}
	parts := make([]string, 0, len(n.items))
	for _, it := range n.items {
		if it.kind == 'o' || it.kind == 'a' {
			var buf bytes.Buffer
			writeJSON(&buf, n)
			return &node{kind: 's', scalar: buf.String()}
		}
		parts = append(parts, it.scalar)
	}
	return &node{kind: 's', scalar: strings.Join(parts, ";")}
}

func writeJSON(w io.Writer, n *node) {
	switch n.kind {
	case 'o':
		io.WriteString(w, "{")
		for i, k := range n.keys {
			if i > 0 {
				io.WriteString(w, ",")
			}
			kb, _ := json.Marshal(k)
			w.Write(kb)
			io.WriteString(w, ":")
			writeJSON(w, n.vals[i])
		}
		io.WriteString(w, "}")
	case 'a':
		io.WriteString(w, "[")
		for i, it := range n.items {
			if i > 0 {
				io.WriteString(w, ",")
			}
			writeJSON(w, it)
		}
		io.WriteString(w, "]")
	case 's':
		sb, _ := json.Marshal(n.scalar)
		w.Write(sb)
	case 'z':
		io.WriteString(w, "null")
	default:
		io.WriteString(w, n.scalar)
	}
}

// csvSafe writes a cell's value as CSV text: nothing for null, numbers and
// booleans as the server wrote them, text through csvText.
func csvSafe(n *node) string {
	if n == nil || n.kind == 'z' {
		return ""
	}
	if n.kind != 's' {
		return n.scalar
	}
	return csvText(n.scalar)
}

// csvText keeps a spreadsheet from reading any part of text as a formula
// (CSV injection). A spreadsheet may split the file on ";" (Excel does in
// many European locales, and then ignores the quoting done for ","), on ","
// or on a tab or line break, so a client's "a;=cmd…" would become a cell of
// its own; arrays joined with ";" do the same. Every segment that starts
// the text or follows one of those separators, and whose first character
// after spaces and double quotes is = + - @, a tab or a CR, gets a "'" in
// front, which makes it text. It works on bytes: every byte it looks for
// is ASCII, which UTF-8 never uses inside a longer character.
func csvText(s string) string {
	if !strings.ContainsAny(s, "=+-@\t\r") {
		return s
	}
	var b strings.Builder
	start := true
	for i := 0; i < len(s); i++ {
		if start {
			if rest := strings.TrimLeft(s[i:], ` "`); rest != "" && strings.IndexByte("=+-@\t\r", rest[0]) >= 0 {
				b.WriteByte('\'')
			}
		}
		b.WriteByte(s[i])
		start = strings.IndexByte(",;\t\r\n", s[i]) >= 0
	}
	return b.String()
}

func writeCSV(header []string, rows [][]*node) ([]byte, error) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	rec := make([]string, 0, len(header))
	if header != nil {
		// Column names come from object keys, some of them the client's
		// (profile members, audit details).
		for _, h := range header {
			rec = append(rec, csvText(h))
		}
		if err := w.Write(rec); err != nil {
			return nil, err
		}
	}
	for _, r := range rows {
		rec = rec[:0]
		for _, cell := range r {
			rec = append(rec, csvSafe(cell))
		}
		if err := w.Write(rec); err != nil {
			return nil, err
		}
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}

// writeXLSX writes one sheet: the header row, then a row per item. Numbers
// and booleans keep their types; text stays text (never a formula). An
// answer of one row at most (one value, one object) keeps its text in the
// shared-strings part, as the seeds' samples do and as some readers expect;
// lists are streamed, with their text inline, so a whole export is never
// held cell by cell in memory.
func writeXLSX(header []string, rows [][]*node) ([]byte, error) {
	if len(rows) <= 1 {
		return writeSmallXLSX(header, rows)
	}
	f := excelize.NewFile()
	defer f.Close()
	const sheet = "Sheet1"
	sw, err := f.NewStreamWriter(sheet)
	if err != nil {
		return nil, err
	}
	line := 1
	if header != nil {
		cells := make([]any, len(header))
		for i, h := range header {
			cells[i] = h
		}
		if err := sw.SetRow("A1", cells); err != nil {
			return nil, err
		}
		line++
	}
	for _, r := range rows {
		cells := make([]any, len(r))
		for i, n := range r {
			cells[i] = xlsxValue(n)
		}
		cell, err := excelize.CoordinatesToCellName(1, line)
		if err != nil {
			return nil, err
		}
		if err := sw.SetRow(cell, cells); err != nil {
			return nil, err
		}
		line++
	}
	if err := sw.Flush(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeSmallXLSX writes a sheet of a few rows cell by cell, its text in
// the shared-strings part.
func writeSmallXLSX(header []string, rows [][]*node) ([]byte, error) {
	f := excelize.NewFile()
	defer f.Close()
	const sheet = "Sheet1"
	set := func(col, line int, v any) error {
		if v == nil {
			return nil
		}
		cell, err := excelize.CoordinatesToCellName(col, line)
		if err != nil {
			return err
		}
		return f.SetCellValue(sheet, cell, v)
	}
	line := 1
	if header != nil {
		for i, h := range header {
			if err := set(i+1, line, h); err != nil {
				return nil, err
			}
		}
		line++
	}
	for _, r := range rows {
		for i, n := range r {
			if err := set(i+1, line, xlsxValue(n)); err != nil {
				return nil, err
			}
		}
		line++
	}
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func xlsxValue(n *node) any {
	if n == nil {
		return nil
	}
	switch n.kind {
	case 'n':
		if v, err := strconv.ParseFloat(n.scalar, 64); err == nil && len(n.scalar) < 16 {
			return v
		}
	case 'b':
		return n.scalar == "true"
	case 'z':
		return nil
	}
	return n.scalar
}

// timestamp is a time as a view writes it: the RFC 3339 string
// encoding/json writes for a time.Time, made when the view is (stamp), so
// the encoder writes a plain string instead of calling a method on each of
// the four times of every handset in a page. The zero time is still
// written as time.Time writes it, and left out by omitzero.
type timestamp string

// zeroStamp is the zero time.Time, as it is written.
const zeroStamp = timestamp("0001-01-01T00:00:00Z")

// stamp is t as a view writes it. Where no store's time goes, it differs
// from encoding/json: the zero time is zeroStamp in any zone, and a time
// outside the years 0 to 9999, which encoding/json refuses to write, is
// written as Go formats it.
func stamp(t time.Time) timestamp {
	if t.IsZero() {
		return zeroStamp
	}
	return timestamp(t.AppendFormat(make([]byte, 0, len(time.RFC3339Nano)), time.RFC3339Nano))
}

// IsZero reports whether t is the zero time, as omitzero asks.
func (t timestamp) IsZero() bool { return t == zeroStamp || t == "" }
