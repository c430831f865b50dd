package device

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"tether"
	"tether/storage"
)

// Import limits. They bound what reading one file may cost in memory,
// whatever it holds, and are checked as the file is read.
const (
	// MaxImportRows is the most data rows one file may hold.
	MaxImportRows = 50_000
	// MaxImportColumns is the most columns a row may use: the import knows
	// nine names, and a sheet exported from elsewhere brings more.
	MaxImportColumns = 64
	// MaxImportCell is the longest cell, in bytes: a hundred assigned
	// users of 64 characters fit.
	MaxImportCell = 8 << 10
	// MaxImportBytes bounds the cells of a file together, those of
	// columns the import does not know included.
	MaxImportBytes = 16 << 20
)

// DefaultImportSlots is how many imports a Service reads and checks at
// once (ImportFile); each may hold some tens of MiB while it runs.
const DefaultImportSlots = 2

// importRetry is when a client refused for want of a slot should try
// again: about the time a whole import of MaxImportRows takes.
const importRetry = 2 * time.Second

// The columns an import file may have. Header names match in any case,
// and with or without spaces, dashes and underscores.
var importColumns = map[string]string{
	"imei": "imei", "iccids": "iccIds", "iccid": "iccIds", "label": "label",
	"group": "group", "assignedusers": "assignedUsers", "users": "assignedUsers",
	"notes": "notes", "note": "notes", "mode": "mode",
}

// ImportRow is one data row of an import file.
type ImportRow struct {
	// Row is the row's number in the file, the header being row 1.
	Row           int
	IMEI          string
	IccIDs        []string
	Label         string
	Group         string
	AssignedUsers []string
	Notes         string
	// Mode is "personal", "shared", or "group" or empty: the group's.
	Mode string
}

// ImportIssue is one problem of an import: of a row and field, or of the
// file as a whole (Row 0).
type ImportIssue struct {
	Row     int    `json:"row"`
	Field   string `json:"field,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ImportReport says what an import did, or would do. Its counts are of
// rows: Rows = Skipped + Valid + Invalid.
type ImportReport struct {
	DryRun bool `json:"dryRun"`
	// Rows counts the data rows read; Skipped the blank ones among them.
	Rows    int `json:"rows"`
	Skipped int `json:"skipped"`
	// Valid counts the rows that would be created, Invalid those with
	// errors (one row may have several); Created the rows that were.
	Valid   int `json:"valid"`
	Invalid int `json:"invalid"`
	Created int `json:"created"`
	// Errors are the invalid rows' problems. They stop an import (nothing
	// is written) unless it skips invalid rows.
	Errors []ImportIssue `json:"errors"`
	// Warnings do not, such as a column the import does not know.
	Warnings []ImportIssue `json:"warnings"`
}

// ImportOptions say how Import treats a file.
type ImportOptions struct {
	// DryRun checks and reports, writing nothing.
	DryRun bool
	// SkipInvalid registers the valid rows and reports the invalid ones,
	// where by default an invalid row stops the whole import.
	SkipInvalid bool
}

// ErrImportInvalid is returned by Import when a row has errors: the
// report names them, and nothing was written.
var ErrImportInvalid = tether.NewError(tether.CodeValidationFailed, "the import file has errors: nothing was imported")

// Import formats.
const (
	FormatCSV  = "csv"
	FormatXLSX = "xlsx"
)

// ErrImportBusy is returned by ImportFile when as many imports as the
// Service allows are under way. It tells the client when to try again.
var ErrImportBusy = tether.NewError(tether.CodeServerBusy,
	"other imports are under way: try again in a moment").After(importRetry)

// ReadImport reads an import file: a header row, then a row per handset.
// Blank rows are kept (as rows with every field empty) so row numbers match
// the file, except those after the last row with a value, which
// spreadsheets leave behind; unknown columns come back as warnings.
//
// The limits above are checked as the file is read, so a file that breaks
// one is refused without being read whole: the error is a
// *tether.ValidationError on the field "file", as for every file that
// cannot be read.
func ReadImport(r io.Reader, format string) ([]ImportRow, []ImportIssue, error) {
	var rd importReader
	var err error
	switch format {
	case FormatCSV:
		err = readCSV(r, rd.add)
	case FormatXLSX:
		err = readXLSX(r, rd.add)
	default:
		return nil, nil, fmt.Errorf("import format %q", format)
	}
	if err != nil {
		return nil, nil, err
	}
	if rd.records == 0 {
		return nil, nil, tether.Invalid("file", "file_empty", "the file has no header row")
	}
	return rd.rows, rd.warnings, nil
}

// importReader turns a file's records into rows one at a time, as they
// are read, so that nothing but the rows is kept.
type importReader struct {
	records  int // read so far, the header included
	cells    int // bytes of every cell read so far
	blank    int // blank records not yet kept: only if a row follows
	cols     map[string]int
	rows     []ImportRow
	warnings []ImportIssue
}

var errTooManyRows = tether.Invalid("file", "file_too_many_rows", fmt.Sprintf("at most %d rows per file", MaxImportRows))

// add takes the file's next record.
func (rd *importReader) add(rec []string) error {
	rd.records++
	n := rd.records
	empty := !slices.ContainsFunc(rec, func(c string) bool { return c != "" })
	if !empty && n-1 > MaxImportRows {
		return errTooManyRows
	}
	if len(rec) > MaxImportColumns {
		return tooManyColumns("row", n)
	}
	for i, c := range rec {
		if len(c) > MaxImportCell {
			return tether.Invalid("file", "file_cell_too_long", fmt.Sprintf("row %d, column %d: a cell holds at most %d bytes", n, i+1, MaxImportCell))
		}
		rd.cells += len(c)
	}
	if rd.cells > MaxImportBytes {
		return errTooLarge
	}
	switch {
	case n == 1:
		return rd.header(rec)
	case empty:
		rd.blank++
		return nil
	}
	for ; rd.blank > 0; rd.blank-- {
		rd.rows = append(rd.rows, ImportRow{Row: n - rd.blank})
	}
	// The cells are copied: those of a CSV record share one string, which
	// keeping one would keep whole.
	cell := func(name string) string {
		if i := rd.cols[name] - 1; i >= 0 && i < len(rec) {
			return strings.Clone(strings.TrimSpace(rec[i]))
		}
		return ""
	}
	list := func(s string) []string {
		var out []string
		for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ',' || r == '|' }) {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	}
	rd.rows = append(rd.rows, ImportRow{
		Row: n, IMEI: cell("imei"), IccIDs: list(cell("iccIds")),
		Label: cell("label"), Group: cell("group"), AssignedUsers: list(cell("assignedUsers")),
		Notes: cell("notes"), Mode: cell("mode"),
	})
	return nil
}

var errTooLarge = tether.Invalid("file", "file_too_large", fmt.Sprintf("the cells of a file hold at most %d MiB", MaxImportBytes>>20))

// tooManyColumns refuses a file at a row (XLSX) or line (CSV).
func tooManyColumns(where string, n int) error {
	return tether.Invalid("file", "file_too_many_columns", fmt.Sprintf("%s %d: at most %d columns per row", where, n, MaxImportColumns))
}

// header reads the header row: which column holds what.
func (rd *importReader) header(rec []string) error {
	rd.cols = map[string]int{}
	for i, h := range rec {
		key := strings.ToLower(strings.NewReplacer(" ", "", "-", "", "_", "", "\ufeff", "").Replace(strings.TrimSpace(h)))
		name, ok := importColumns[key]
		switch {
		case key == "":
		case !ok:
			h = strings.Clone(h)
			rd.warnings = append(rd.warnings, ImportIssue{Row: 1, Field: h, Code: "column_unknown", Message: fmt.Sprintf("column %q is not imported", h)})
		case rd.cols[name] != 0:
			return tether.Invalid("file", "column_repeated", fmt.Sprintf("column %q appears twice", h))
		default:
			rd.cols[name] = i + 1 // 1-based, so 0 means absent
		}
	}
	if rd.cols["imei"] == 0 {
		return tether.Invalid("file", "column_missing", "the header row has no imei column")
	}
	return nil
}

// readCSV reads comma- or semicolon-separated values (spreadsheets in many
// locales write the latter), with or without a byte-order mark, passing
// each record to add.
func readCSV(r io.Reader, add func([]string) error) error {
	br := bufio.NewReader(r)
	head, err := br.Peek(4096)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return err
	}
	firstLine, _, _ := bytes.Cut(head, []byte("\n"))
	sep := byte(',')
	if bytes.Count(firstLine, []byte(";")) > bytes.Count(firstLine, []byte(",")) {
		sep = ';'
	}
	cr := csv.NewReader(&csvBounds{r: br, sep: sep, line: 1})
	cr.Comma = rune(sep)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true // add copies what it keeps
	end := 0              // the line the last record ended on
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return tether.Invalid("file", "file_unreadable", fmt.Sprintf("CSV row %d: %v", pe.StartLine, pe.Err))
			}
			return err
		}
		// encoding/csv skips empty lines: after the header, each is a
		// blank row, as a spreadsheet shows it.
		if start, _ := cr.FieldPos(0); end > 0 {
			for range start - end - 1 {
				if err := add(nil); err != nil {
					return err
				}
			}
		}
		last, _ := cr.FieldPos(len(rec) - 1)
		end = last + strings.Count(rec[len(rec)-1], "\n")
		if err := add(rec); err != nil {
			return err
		}
	}
}

// csvBounds passes CSV text through to encoding/csv, which holds a whole
// record before it returns it, and refuses the text as soon as a record
// has more fields than MaxImportColumns or a field more bytes than a cell
// of MaxImportCell can take quoted: a line of commas alone would
// otherwise cost some sixty bytes of memory per byte read.
type csvBounds struct {
	r      io.Reader
	sep    byte
	quoted bool
	fields int // separators seen in this record
	field  int // bytes of this field
	line   int
	err    error
}

func (b *csvBounds) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	for i, c := range p[:n] {
		switch {
		case c == '"':
			b.quoted = !b.quoted // a doubled quote turns it back at once
			b.field++
		case b.quoted:
			b.field++
			if c == '\n' {
				b.line++
			}
		case c == b.sep:
			b.fields++
			b.field = 0
		case c == '\n':
			b.fields, b.field = 0, 0
			b.line++
		default:
			b.field++
		}
		switch {
		case b.fields >= MaxImportColumns:
			b.err = tooManyColumns("line", b.line)
		case b.field > 2*MaxImportCell+2:
			b.err = tether.Invalid("file", "file_cell_too_long", fmt.Sprintf("line %d: a cell holds at most %d bytes", b.line, MaxImportCell))
		default:
			continue
		}
		return i, b.err
	}
	return n, err
}

func (r ImportRow) blank() bool {
	return r.IMEI == "" && len(r.IccIDs) == 0 && r.Label == "" && r.Group == "" && len(r.AssignedUsers) == 0 && r.Notes == "" && r.Mode == ""
}

// Import checks every row of an import and, unless opts.DryRun, registers
// the handsets in one transaction. By default any row error (a bad field,
// an IMEI twice in the file or already registered, an unknown user) stops
// the import: the report names every one, nothing is written, and the
// error is ErrImportInvalid. With opts.SkipInvalid the valid rows are
// registered and the invalid ones reported. progress, if not nil, is told
// how many rows are checked.
//
// For a scoped actor a row's group must be one of their scope (a row
// without one goes into their only group; with several, it must name one)
// and its assigned users workers in the scope: other rows are invalid rows
// like any other (group_out_of_scope, group_required, user_unknown).
func (s *Service) Import(ctx context.Context, by Actor, rows []ImportRow, warnings []ImportIssue, opts ImportOptions, progress func(done, total int)) (ImportReport, error) {
	actor := by.Name
	dryRun := opts.DryRun
	report := ImportReport{DryRun: dryRun, Rows: len(rows), Errors: []ImportIssue{}, Warnings: warnings}
	if report.Warnings == nil {
		report.Warnings = []ImportIssue{}
	}
	now := s.now().UTC()
	seen := map[string]int{}
	users := map[string]string{} // username or id → user id; "" for unknown
	var devices []storage.Device
	for i, row := range rows {
		if progress != nil && (i%500 == 0 || i == len(rows)-1) {
			progress(i+1, len(rows))
		}
		if err := ctx.Err(); err != nil {
			return report, err
		}
		if row.blank() {
			report.Skipped++
			continue
		}
		issues, d, err := s.importRow(ctx, row, by.Scopes, seen, users)
		if err != nil {
			return report, err
		}
		if len(issues) > 0 {
			report.Errors = append(report.Errors, issues...)
			report.Invalid++
			continue
		}
		seen[d.IMEI] = row.Row
		d.ID, d.Status, d.EnrolledAt, d.EnrolledBy, d.UpdatedAt = storage.NewID(storage.PrefixDevice), storage.DeviceEnrolled, now, actor, now
		devices = append(devices, d)
	}
	report.Valid = len(devices)
	if report.Invalid > 0 && !opts.SkipInvalid {
		if dryRun {
			return report, nil
		}
		return report, ErrImportInvalid
	}
	if dryRun || len(devices) == 0 {
		return report, nil
	}
	ev := by.event(ctx, now, "device.import")
	ev.Detail = map[string]string{"created": fmt.Sprint(len(devices)), "rows": fmt.Sprint(len(rows))}
	for _, d := range devices {
		ev.Groups = append(ev.Groups, d.Group)
	}
	ev.Groups = storage.ScopeGroups(ev.Groups)
	if report.Invalid > 0 {
		ev.Detail["invalid"] = fmt.Sprint(report.Invalid)
	}
	if err := s.store.CreateDevices(ctx, devices, storage.WithEvents(ev)); err != nil {
		return report, fmt.Errorf("import: %w", err)
	}
	report.Created = len(devices)
	return report, nil
}

// ImportFile reads an import file (ReadImport) and imports its rows
// (Import, without progress), holding one of the Service's import slots
// throughout: reading and checking a file of MaxImportRows holds some tens
// of MiB, so the slots bound what imports hold together. When every slot
// is taken it fails at once with ErrImportBusy, having read nothing.
func (s *Service) ImportFile(ctx context.Context, by Actor, file io.Reader, format string, opts ImportOptions) (ImportReport, error) {
	select {
	case s.imports <- struct{}{}:
		defer func() { <-s.imports }()
	default:
		return ImportReport{}, ErrImportBusy
	}
	rows, warnings, err := ReadImport(file, format)
	if err != nil {
		return ImportReport{}, err
	}
	return s.Import(ctx, by, rows, warnings, opts, nil)
}

// importRow checks one row and returns its device, or its issues.
func (s *Service) importRow(ctx context.Context, row ImportRow, scopes []string, seen map[string]int, users map[string]string) ([]ImportIssue, storage.Device, error) {
	var issues []ImportIssue
	add := func(field, code, msg string) {
		issues = append(issues, ImportIssue{Row: row.Row, Field: field, Code: code, Message: msg})
	}
	p := Payload{IMEI: row.IMEI}
	if len(row.IccIDs) > 0 {
		p.IccIDs = row.IccIDs
	}
	p.Normalize()
	if err := Validate(s.validate, p, "", false); err != nil {
		var ve *tether.ValidationError
		if !errors.As(err, &ve) {
			return nil, storage.Device{}, err
		}
		for _, f := range ve.Fields {
			add(f.Field, f.Code, f.Message)
		}
	}
	label, group, notes := strings.TrimSpace(row.Label), strings.TrimSpace(row.Group), strings.TrimSpace(row.Notes)
	for _, ve := range []*tether.ValidationError{checkText("label", label, MaxLabel), checkText("group", group, MaxGroup), checkText("notes", notes, MaxNotes)} {
		if ve != nil {
			add(ve.Fields[0].Field, ve.Fields[0].Code, ve.Fields[0].Message)
		}
	}
	if g, err := ScopedGroup("group", group, scopes); errors.Is(err, ErrScopeExceeded) {
		add("group", "group_out_of_scope", fmt.Sprintf("group %q is not one of the groups you manage", group))
	} else if err != nil {
		add("group", "group_required", "name a group: you manage several")
	} else {
		group = g
	}
	var mode storage.DeviceMode
	if m := strings.TrimSpace(row.Mode); m != "" {
		var ve *tether.ValidationError
		if mode, ve = ParseMode("mode", strings.ToLower(m)); ve != nil {
			add("mode", ve.Fields[0].Code, ve.Fields[0].Message)
		}
	}
	if first, dup := seen[p.IMEI]; dup && p.IMEI != "" {
		add("imei", "imei_duplicate", fmt.Sprintf("IMEI %s is also in row %d", p.IMEI, first))
	} else if len(issues) == 0 {
		_, err := s.store.GetDeviceByIMEI(ctx, p.IMEI)
		switch {
		case err == nil:
			add("imei", "imei_taken", fmt.Sprintf("IMEI %s is already registered", p.IMEI))
		case !errors.Is(err, storage.ErrNotFound):
			return nil, storage.Device{}, err
		}
	}
	var ids []string
	for _, ref := range row.AssignedUsers {
		id, known := users[ref]
		if !known {
			resolved, verr, err := s.resolveUsers(ctx, []string{ref}, scopes)
			if err != nil {
				return nil, storage.Device{}, err
			}
			if verr == nil {
				id = resolved[0]
			}
			users[ref] = id
		}
		if id == "" {
			add("assignedUsers", "user_unknown", fmt.Sprintf("no user %q", ref))
			continue
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if len(ids) > MaxAssignedUsers {
		add("assignedUsers", "assigned_users_too_many", fmt.Sprintf("at most %d assigned users", MaxAssignedUsers))
	}
	if len(issues) > 0 {
		return issues, storage.Device{}, nil
	}
	d := storage.Device{Label: label, Group: group, Mode: mode, AssignedUsers: ids, Notes: notes}
	Apply(&d, p)
	return nil, d, nil
}
