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

	"github.com/xuri/excelize/v2"

	"tether"
	"tether/storage"
)

// Import limits.
const (
	// MaxImportRows is the most data rows one file may hold.
	MaxImportRows = 50_000
	// maxUnzipped bounds what an XLSX file may unpack to, so a small
	// hostile file cannot expand into gigabytes.
	maxUnzipped = 128 << 20
)

// The columns an import file may have. Header names match in any case,
// and with or without spaces, dashes and underscores.
var importColumns = map[string]string{
	"imei": "imei", "iccids": "iccIds", "iccid": "iccIds", "label": "label",
	"group": "group", "assignedusers": "assignedUsers", "users": "assignedUsers",
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
}

// ImportIssue is one problem of an import: of a row and field, or of the
// file as a whole (Row 0).
type ImportIssue struct {
	Row     int    `json:"row"`
	Field   string `json:"field,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ImportReport says what an import did, or would do.
type ImportReport struct {
	DryRun bool `json:"dryRun"`
	// Rows counts the data rows read; Skipped the blank ones among them.
	Rows    int `json:"rows"`
	Skipped int `json:"skipped"`
	// Valid counts the rows that would be created; Created those that were.
	Valid   int `json:"valid"`
	Created int `json:"created"`
	// Errors stop an import: with any, nothing is written.
	Errors []ImportIssue `json:"errors"`
	// Warnings do not, such as a column the import does not know.
	Warnings []ImportIssue `json:"warnings"`
}

// ErrImportInvalid is returned by Import when a row has errors: the
// report names them, and nothing was written.
var ErrImportInvalid = tether.NewError(tether.CodeValidationFailed, "the import file has errors: nothing was imported")

// Import formats.
const (
	FormatCSV  = "csv"
	FormatXLSX = "xlsx"
)

// ReadImport reads an import file: a header row, then a row per handset.
// Blank rows are kept (as rows with every field empty) so row numbers match
// the file; unknown columns come back as warnings.
func ReadImport(r io.Reader, format string) ([]ImportRow, []ImportIssue, error) {
	var records [][]string
	switch format {
	case FormatCSV:
		var err error
		if records, err = readCSV(r); err != nil {
			return nil, nil, err
		}
	case FormatXLSX:
		f, err := excelize.OpenReader(r, excelize.Options{UnzipSizeLimit: maxUnzipped, UnzipXMLSizeLimit: maxUnzipped / 4})
		if err != nil {
			return nil, nil, tether.Invalid("file", "file_unreadable", "the file is not a readable XLSX workbook")
		}
		defer f.Close()
		sheets := f.GetSheetList()
		if len(sheets) == 0 {
			return nil, nil, tether.Invalid("file", "file_empty", "the workbook has no sheet")
		}
		if records, err = f.GetRows(sheets[0]); err != nil {
			return nil, nil, tether.Invalid("file", "file_unreadable", "the first sheet cannot be read")
		}
	default:
		return nil, nil, fmt.Errorf("import format %q", format)
	}
	if len(records) == 0 {
		return nil, nil, tether.Invalid("file", "file_empty", "the file has no header row")
	}
	if len(records)-1 > MaxImportRows {
		return nil, nil, tether.Invalid("file", "file_too_many_rows", fmt.Sprintf("at most %d rows per file", MaxImportRows))
	}

	cols := map[string]int{}
	var warnings []ImportIssue
	for i, h := range records[0] {
		key := strings.ToLower(strings.NewReplacer(" ", "", "-", "", "_", "", "\ufeff", "").Replace(strings.TrimSpace(h)))
		name, ok := importColumns[key]
		switch {
		case key == "":
		case !ok:
			warnings = append(warnings, ImportIssue{Row: 1, Field: h, Code: "column_unknown", Message: fmt.Sprintf("column %q is not imported", h)})
		case cols[name] != 0:
			return nil, nil, tether.Invalid("file", "column_repeated", fmt.Sprintf("column %q appears twice", h))
		default:
			cols[name] = i + 1 // 1-based, so 0 means absent
		}
	}
	if cols["imei"] == 0 {
		return nil, nil, tether.Invalid("file", "column_missing", "the header row has no imei column")
	}
	cell := func(rec []string, name string) string {
		if i := cols[name] - 1; i >= 0 && i < len(rec) {
			return strings.TrimSpace(rec[i])
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
	rows := make([]ImportRow, 0, len(records)-1)
	for i, rec := range records[1:] {
		rows = append(rows, ImportRow{
			Row: i + 2, IMEI: cell(rec, "imei"), IccIDs: list(cell(rec, "iccIds")),
			Label: cell(rec, "label"), Group: cell(rec, "group"), AssignedUsers: list(cell(rec, "assignedUsers")),
		})
	}
	return rows, warnings, nil
}

// readCSV reads comma- or semicolon-separated values (spreadsheets in many
// locales write the latter), with or without a byte-order mark.
func readCSV(r io.Reader) ([][]string, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(4096)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	firstLine, _, _ := bytes.Cut(head, []byte("\n"))
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	if bytes.Count(firstLine, []byte(";")) > bytes.Count(firstLine, []byte(",")) {
		cr.Comma = ';'
	}
	var records [][]string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return records, nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, tether.Invalid("file", "file_unreadable", fmt.Sprintf("CSV row %d: %v", pe.StartLine, pe.Err))
			}
			return nil, err
		}
		if len(records) > MaxImportRows+1 {
			return nil, tether.Invalid("file", "file_too_many_rows", fmt.Sprintf("at most %d rows per file", MaxImportRows))
		}
		records = append(records, rec)
	}
}

func (r ImportRow) blank() bool {
	return r.IMEI == "" && len(r.IccIDs) == 0 && r.Label == "" && r.Group == "" && len(r.AssignedUsers) == 0
}

// Import checks every row of an import and, unless dryRun, registers every
// handset in one transaction. Any row error (a bad field, an IMEI twice in
// the file or already registered, an unknown user) stops the import: the
// report names every one, nothing is written, and the error is
// ErrImportInvalid. progress, if not nil, is told how many rows are
// checked.
func (s *Service) Import(ctx context.Context, actor string, rows []ImportRow, warnings []ImportIssue, dryRun bool, progress func(done, total int)) (ImportReport, error) {
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
		issues, d, err := s.importRow(ctx, row, seen, users)
		if err != nil {
			return report, err
		}
		if len(issues) > 0 {
			report.Errors = append(report.Errors, issues...)
			continue
		}
		seen[d.IMEI] = row.Row
		d.ID, d.Status, d.EnrolledAt, d.EnrolledBy, d.UpdatedAt = storage.NewID(storage.PrefixDevice), storage.DeviceEnrolled, now, actor, now
		devices = append(devices, d)
	}
	report.Valid = len(devices)
	if len(report.Errors) > 0 {
		if dryRun {
			return report, nil
		}
		return report, ErrImportInvalid
	}
	if dryRun || len(devices) == 0 {
		return report, nil
	}
	ev := storage.NewEvent(ctx, now, "device.import", "success", actor)
	ev.Detail = map[string]string{"created": fmt.Sprint(len(devices)), "rows": fmt.Sprint(len(rows))}
	if err := s.store.CreateDevices(ctx, devices, storage.WithEvents(ev)); err != nil {
		return report, fmt.Errorf("import: %w", err)
	}
	report.Created = len(devices)
	return report, nil
}

// importRow checks one row and returns its device, or its issues.
func (s *Service) importRow(ctx context.Context, row ImportRow, seen map[string]int, users map[string]string) ([]ImportIssue, storage.Device, error) {
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
	label, group := strings.TrimSpace(row.Label), strings.TrimSpace(row.Group)
	for _, ve := range []*tether.ValidationError{checkText("label", label, MaxLabel), checkText("group", group, MaxGroup)} {
		if ve != nil {
			add(ve.Fields[0].Field, ve.Fields[0].Code, ve.Fields[0].Message)
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
			resolved, verr, err := s.resolveUsers(ctx, []string{ref})
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
	d := storage.Device{Label: label, Group: group, AssignedUsers: ids}
	Apply(&d, p)
	return nil, d, nil
}
