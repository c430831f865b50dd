package device

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/xuri/excelize/v2"

	"tether"
)

// Limits on an XLSX package, checked before excelize opens it (checkPackage).
// excelize (v2.11) keeps every part of a package in memory, but for
// worksheets and the shared string table larger than its UnzipXMLSizeLimit,
// which it spools to temporary files. Opening a workbook decodes the
// workbook, styles, theme and formula chain whole; reading the first
// shared-string cell decodes the shared string table whole, or, when it was
// spooled, indexes every string in it; reading a row gathers every column
// up to its last cell, each cell decoded whole, rich text and all; and the
// XML decoder holds each token whole, and a stack entry per level of
// nesting. Each limit here and in xmlScan bounds one of those.
const (
	// maxUnzipped bounds the file, and what it unpacks to (on disk, mostly).
	maxUnzipped = 128 << 20
	// maxResidentPart is excelize's UnzipXMLSizeLimit: worksheets and shared
	// string tables larger are spooled to disk and read from there.
	maxResidentPart = 256 << 10
	// maxResident bounds the parts held in memory together; reading one
	// may briefly take three times its size.
	maxResident = 4 << 20
	// maxSharedStrings bounds the shared string table, whose index costs
	// some fifty bytes a string however short: a distinct text for each of
	// the five fields of every row.
	maxSharedStrings = 5 * MaxImportRows
	// maxElements bounds the elements of the other parts, which are decoded
	// whole into structs of up to some hundred bytes each; a workbook's
	// styles and theme hold some hundreds.
	maxElements = 50_000
	// maxXMLToken bounds a tag, a text or a comment, each of which the
	// decoder holds whole; a cell of MaxImportCell fits escaped.
	maxXMLToken = 64 << 10
	// maxXMLDepth bounds nesting; spreadsheet parts nest a dozen levels.
	maxXMLDepth = 64
)

var (
	errXLSXUnreadable  = tether.Invalid("file", "file_unreadable", "the file is not a readable XLSX workbook")
	errSheetUnreadable = tether.Invalid("file", "file_unreadable", "the first sheet cannot be read")
)

func tooLarge(format string, args ...any) error {
	return tether.Invalid("file", "file_too_large", fmt.Sprintf(format, args...))
}

// readXLSX reads the first sheet of a workbook as a stream, passing each
// row to add as it is read.
func readXLSX(r io.Reader, add func([]string) error) error {
	data, err := io.ReadAll(io.LimitReader(r, maxUnzipped+1))
	if err != nil {
		return err
	}
	if len(data) > maxUnzipped {
		return tooLarge("an XLSX file is at most %d MiB", maxUnzipped>>20)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return errXLSXUnreadable
	}
	if err := checkPackage(zr); err != nil {
		return err
	}
	// excelize spools parts to TmpDir, and leaves them behind when opening
	// fails part way: a directory of the import's own goes whatever happens.
	dir, err := os.MkdirTemp("", "tether-import-")
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer os.RemoveAll(dir)
	f, err := excelize.OpenReader(bytes.NewReader(data), excelize.Options{
		UnzipSizeLimit: maxUnzipped, UnzipXMLSizeLimit: maxResidentPart, TmpDir: dir,
	})
	if f != nil {
		defer f.Close()
	}
	if err != nil {
		return errXLSXUnreadable
	}
	sheets := f.GetSheetList()
	if len(sheets) == 0 {
		return tether.Invalid("file", "file_empty", "the workbook has no sheet")
	}
	rows, err := f.Rows(sheets[0])
	if err != nil {
		return errSheetUnreadable
	}
	defer rows.Close()
	// Next steps over the rows a sheet leaves out one at a time, with
	// nothing to read: they come back as blank records.
	for rows.Next() {
		cells, err := rows.Columns()
		if err != nil {
			return errSheetUnreadable
		}
		if err := add(cells); err != nil {
			return err
		}
	}
	switch err := rows.Error(); {
	case errors.Is(err, excelize.ErrMaxRows):
		return errTooManyRows
	case err != nil:
		return errSheetUnreadable
	}
	return nil
}

// checkPackage looks through every part of an XLSX package before
// excelize opens it, decompressing each XML part as a stream, and refuses
// the file if opening or reading it would cost more than the limits above.
func checkPackage(zr *zip.Reader) error {
	var unpacked, resident uint64
	elements := 0
	for _, zf := range zr.File {
		size := zf.UncompressedSize64
		if unpacked += size; size > maxUnzipped || unpacked > maxUnzipped {
			return tooLarge("the workbook unpacks to more than %d MiB", maxUnzipped>>20)
		}
		// Which parts excelize spools, as its ReadZipReader decides.
		name := strings.ToLower(strings.ReplaceAll(zf.Name, `\`, "/"))
		sheet := strings.HasPrefix(name, "xl/worksheets/sheet")
		shared := name == "xl/sharedstrings.xml"
		if !sheet && !shared || size <= maxResidentPart {
			if resident += size; resident > maxResident {
				return tooLarge("the workbook's parts other than its sheets unpack to more than %d MiB", maxResident>>20)
			}
		}
		if !strings.HasSuffix(name, ".xml") && !strings.HasSuffix(name, ".rels") {
			continue
		}
		s := xmlScan{limit: math.MaxInt}
		switch {
		case sheet:
			// Read as a stream: the rows' limits apply as they are read.
			s.cell, s.rows = "c", true
		case shared:
			s.cell, s.count, s.limit = "si", "si", maxSharedStrings
			s.tooMany = tooLarge("the workbook holds more than %d shared texts", maxSharedStrings)
		default:
			s.limit = maxElements - elements
			s.tooMany = tooLarge("the workbook's styles and other parts hold more than %d XML elements", maxElements)
		}
		rc, err := zf.Open()
		if err != nil {
			return errXLSXUnreadable
		}
		err = s.scan(rc)
		if cerr := rc.Close(); err == nil && cerr != nil {
			err = errXLSXUnreadable
		}
		if err != nil {
			return err
		}
		if !sheet && !shared {
			elements += s.n
		}
	}
	return nil
}

// The states of xmlScan.
const (
	xText    = iota
	xOpen    // after '<'
	xName    // a start tag's name
	xTag     // the rest of a start tag
	xQuote   // an attribute value
	xEnd     // an end tag
	xBang    // after "<!"
	xComment // until "-->"
	xCDATA   // until "]]>"
	xPI      // until "?>"
)

// xmlScan reads one XML part as a stream and refuses it if decoding it
// would hold too much at once: a token (tag, text, comment) longer than
// maxXMLToken, nesting deeper than maxXMLDepth, a document type
// declaration (which no spreadsheet writes), or more than limit elements
// named count (any element if count is "").
//
// excelize decodes each cell of a worksheet (element c) and each shared
// string (si) whole, runs of rich text and all, so elements named cell
// hold at most maxCellElements elements and maxCellBytes bytes. For a
// worksheet (rows), what follows a row up to the next, where excelize
// gathers the row's cells, is at most maxRowBytes, from the first row to
// the end of sheetData, where it stops. The scan checks no more of the
// XML than that: excelize's decoder does the rest.
type xmlScan struct {
	count   string
	limit   int
	tooMany error
	n       int // elements counted
	cell    string
	rows    bool

	state  int
	off    int64 // of the part's byte at the start of what feed is given
	tag    int64 // where the tag being read starts
	tok    int   // bytes of the token so far
	depth  int
	name   []byte // a tag's local name, up to 64 bytes of it
	quote  byte
	slash  bool    // the start tag's last byte but spaces was '/'
	bang   []byte  // what follows "<!", until it tells a comment from CDATA
	prev   [2]byte // the last two bytes of a comment, CDATA or instruction
	inCell int     // the depth of the open cell element, or 0
	cellAt int64   // where it starts
	cellN  int     // elements in it
	inRows bool    // between the first row and the end of sheetData
	rowAt  int64   // where the last row starts
}

// Bounds on what excelize decodes into one value or one row.
const (
	maxCellElements = 4096
	maxCellBytes    = 256 << 10
	maxRowBytes     = 1 << 20
)

var (
	errXMLText = tether.Invalid("file", "file_cell_too_long",
		fmt.Sprintf("the workbook holds a text of more than %d KiB; a cell holds at most %d bytes", maxXMLToken>>10, MaxImportCell))
	errXMLCell = tether.Invalid("file", "file_cell_too_long",
		fmt.Sprintf("a cell of the workbook holds more than %d XML elements or %d KiB", maxCellElements, maxCellBytes>>10))
	errXMLRow     = tether.Invalid("file", "file_too_large", fmt.Sprintf("a row of the workbook takes more than %d MiB", maxRowBytes>>20))
	errXMLTag     = tether.Invalid("file", "file_unreadable", fmt.Sprintf("the workbook holds XML markup longer than %d KiB", maxXMLToken>>10))
	errXMLDepth   = tether.Invalid("file", "file_unreadable", fmt.Sprintf("the workbook's XML nests deeper than %d levels", maxXMLDepth))
	errXMLDoctype = tether.Invalid("file", "file_unreadable", "the workbook's XML has a document type declaration")
	errXMLCut     = tether.Invalid("file", "file_unreadable", "the workbook's XML is cut short")
)

func (s *xmlScan) scan(r io.Reader) error {
	s.name, s.bang = make([]byte, 0, 64), make([]byte, 0, 8)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if ferr := s.feed(buf[:n]); ferr != nil {
			return ferr
		}
		if errors.Is(err, io.EOF) {
			if s.state != xText || s.depth != 0 {
				return errXMLCut
			}
			return nil
		}
		if err != nil {
			return errXLSXUnreadable
		}
	}
}

func (s *xmlScan) feed(p []byte) error {
	defer func() { s.off += int64(len(p)) }()
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch s.state {
		case xText:
			// Skip to the next tag at once: texts are most of a sheet.
			j := bytes.IndexByte(p[i:], '<')
			if j < 0 {
				j = len(p) - i
			}
			if s.tok += j; s.tok > maxXMLToken {
				return errXMLText
			}
			if i += j; i == len(p) {
				return nil
			}
			s.state, s.tok, s.tag = xOpen, 1, s.off+int64(i)
			continue
		case xOpen:
			s.name = s.name[:0]
			switch c {
			case '/':
				s.state = xEnd
			case '!':
				s.state, s.bang = xBang, s.bang[:0]
			case '?':
				s.state, s.prev = xPI, [2]byte{}
			default:
				s.state, s.slash = xName, false
				i-- // the name's first byte
			}
		case xName:
			switch {
			case c == '>' || c == '/' || c == ' ' || c == '\t' || c == '\r' || c == '\n':
				s.state = xTag
				i-- // ends the name; xTag takes it
			case c == ':':
				s.name = s.name[:0] // the prefix; the local name follows
			case len(s.name) < cap(s.name):
				s.name = append(s.name, c)
			}
		case xTag:
			switch c {
			case '"', '\'':
				s.state, s.quote, s.slash = xQuote, c, false
			case '/':
				s.slash = true
			case '>':
				if err := s.start(s.off + int64(i)); err != nil {
					return err
				}
				continue
			case ' ', '\t', '\r', '\n':
			default:
				s.slash = false
			}
		case xQuote:
			if c == s.quote {
				s.state = xTag
			}
		case xEnd:
			switch {
			case c == '>':
				if err := s.end(s.off + int64(i)); err != nil {
					return err
				}
				continue
			case c == ':':
				s.name = s.name[:0]
			case c != ' ' && c != '\t' && c != '\r' && c != '\n' && len(s.name) < cap(s.name):
				s.name = append(s.name, c)
			}
		case xBang:
			s.bang = append(s.bang, c)
			switch string(s.bang) {
			case "--":
				s.state, s.prev = xComment, [2]byte{}
			case "[CDATA[":
				s.state, s.prev = xCDATA, [2]byte{}
			default:
				if !strings.HasPrefix("--", string(s.bang)) && !strings.HasPrefix("[CDATA[", string(s.bang)) {
					return errXMLDoctype
				}
			}
		case xComment, xCDATA, xPI:
			if c == '>' && (s.state == xComment && s.prev == [2]byte{'-', '-'} ||
				s.state == xCDATA && s.prev == [2]byte{']', ']'} || s.state == xPI && s.prev[1] == '?') {
				s.state, s.tok = xText, 0
				continue
			}
			s.prev = [2]byte{s.prev[1], c}
		}
		if s.tok++; s.tok > maxXMLToken {
			if s.state == xCDATA {
				return errXMLText
			}
			return errXMLTag
		}
	}
	return nil
}

// start ends a start tag, whose '>' is at.
func (s *xmlScan) start(at int64) error {
	s.state, s.tok = xText, 0
	name := string(s.name)
	if s.count == "" || name == s.count {
		if s.n++; s.n > s.limit {
			return s.tooMany
		}
	}
	if s.inCell > 0 {
		if s.cellN++; s.cellN > maxCellElements || at-s.cellAt > maxCellBytes {
			return errXMLCell
		}
	} else {
		if s.rows && name == "row" {
			s.inRows, s.rowAt = true, s.tag
		}
		if name == s.cell && !s.slash {
			s.inCell, s.cellAt, s.cellN = s.depth+1, s.tag, 0
		}
	}
	if s.inRows && at-s.rowAt > maxRowBytes {
		return errXMLRow
	}
	if !s.slash {
		if s.depth++; s.depth > maxXMLDepth {
			return errXMLDepth
		}
	}
	return nil
}

// end ends an end tag, whose '>' is at.
func (s *xmlScan) end(at int64) error {
	s.state, s.tok = xText, 0
	if s.inCell > 0 && at-s.cellAt > maxCellBytes {
		return errXMLCell
	}
	if s.inRows && at-s.rowAt > maxRowBytes {
		return errXMLRow
	}
	if s.depth--; s.depth < 0 {
		return errXMLCut
	}
	switch {
	case s.inCell > 0:
		if s.depth < s.inCell {
			s.inCell = 0
		}
	case string(s.name) == "sheetData":
		s.inRows = false
	}
	return nil
}
