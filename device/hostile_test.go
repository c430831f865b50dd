package device_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"tether/device"
)

// craftXLSX returns excelize's blank workbook with the parts given
// replaced or added, each written by its function: what no spreadsheet
// program writes, but a hostile client may send.
func craftXLSX(tb testing.TB, parts map[string]func(w io.Writer)) []byte {
	tb.Helper()
	x := excelize.NewFile()
	defer x.Close()
	var blank bytes.Buffer
	if _, err := x.WriteTo(&blank); err != nil {
		tb.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(blank.Bytes()), int64(blank.Len()))
	if err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, flate.BestSpeed)
	})
	for _, f := range zr.File {
		if parts[f.Name] != nil {
			continue
		}
		if err := zw.Copy(f); err != nil {
			tb.Fatal(err)
		}
	}
	for name, write := range parts {
		w, err := zw.Create(name)
		if err != nil {
			tb.Fatal(err)
		}
		write(w)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// sheetXML writes a worksheet whose sheetData holds what rows writes.
func sheetXML(rows func(w io.Writer)) func(io.Writer) {
	return func(w io.Writer) {
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>`+
			`<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>`)
		rows(w)
		io.WriteString(w, `</sheetData></worksheet>`)
	}
}

// repeat writes s n times.
func repeat(w io.Writer, s string, n int) {
	chunk := strings.Repeat(s, max(1, 64<<10/len(s)))
	per := len(chunk) / len(s)
	for ; n >= per; n -= per {
		io.WriteString(w, chunk)
	}
	io.WriteString(w, strings.Repeat(s, n))
}

const (
	sheet1 = "xl/worksheets/sheet1.xml"
	sst    = "xl/sharedStrings.xml"
	styles = "xl/styles.xml"
)

// hostile is an import file built to cost the server memory, and what
// ReadImport must answer: the refusal's code, or the rows it reads.
type hostile struct {
	name   string
	format string
	data   []byte
	code   string
	rows   int
}

// hostileFiles are the import files the memory defences are measured and
// tested with: workbooks of some KiB to some hundreds of KiB and CSV of
// 4 MiB that the limits refuse, and workbooks just inside the limits. The
// slow ones, which take seconds to build and read under the race
// detector, come only if asked for.
func hostileFiles(tb testing.TB, slow bool) []hostile {
	tb.Helper()
	var files []hostile
	xlsx := func(name, code string, rows int, isSlow bool, parts map[string]func(io.Writer)) {
		if isSlow && !slow {
			return
		}
		files = append(files, hostile{name: name, format: device.FormatXLSX, data: craftXLSX(tb, parts), code: code, rows: rows})
	}
	header := sheetXML(func(w io.Writer) {
		io.WriteString(w, `<row r="1"><c r="A1" t="inlineStr"><is><t>imei</t></is></c></row>`)
	})
	rows := func(from, to int, row func(w io.Writer, r string)) func(io.Writer) {
		return sheetXML(func(w io.Writer) {
			io.WriteString(w, `<row r="1"><c r="A1" t="inlineStr"><is><t>imei</t></is></c>`+
				`<c r="B1" t="inlineStr"><is><t>label</t></is></c></row>`)
			for i := from; i <= to; i++ {
				r := strconv.Itoa(i)
				io.WriteString(w, `<row r="`+r+`">`)
				row(w, r)
				io.WriteString(w, `</row>`)
			}
		})
	}

	// The security review's kind of file: 10,000 rows whose cells all name
	// one long shared string, which reading copies into each.
	long := strings.Repeat("x", 2000)
	xlsx("shared long strings", "file_too_large", 0, false, map[string]func(io.Writer){
		sst: func(w io.Writer) {
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>`+
				`<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>`+long+`</t></si></sst>`)
		},
		sheet1: rows(2, 10_001, func(w io.Writer, r string) {
			for _, col := range []string{"A", "B", "C", "D", "E", "F", "G", "H"} {
				io.WriteString(w, `<c r="`+col+r+`" t="s"><v>0</v></c>`)
			}
		}),
	})
	// One cell in the last row and column a sheet may have.
	xlsx("cell at XFD1048576", "file_too_many_rows", 0, false, map[string]func(io.Writer){
		sheet1: rows(1048576, 1048576, func(w io.Writer, r string) {
			io.WriteString(w, `<c r="XFD`+r+`"><v>1</v></c>`)
		}),
	})
	// Rows whose second cell is in the last column: reading a row holds
	// every column up to its last cell.
	xlsx("wide rows", "file_too_many_columns", 0, false, map[string]func(io.Writer){
		sheet1: rows(2, 1001, func(w io.Writer, r string) {
			io.WriteString(w, `<c r="A`+r+`"><v>490154203237518</v></c><c r="XFD`+r+`"><v>1</v></c>`)
		}),
	})
	// One cell of 16 MiB, which the XML decoder holds whole, several times.
	xlsx("huge cell", "file_cell_too_long", 0, false, map[string]func(io.Writer){
		sheet1: rows(2, 2, func(w io.Writer, r string) {
			io.WriteString(w, `<c r="A2" t="inlineStr"><is><t>`)
			repeat(w, "x", 16<<20)
			io.WriteString(w, `</t></is></c>`)
		}),
	})
	// A cell of a million runs of rich text, decoded whole.
	xlsx("a cell of a million runs", "file_cell_too_long", 0, false, map[string]func(io.Writer){
		sheet1: rows(2, 2, func(w io.Writer, r string) {
			io.WriteString(w, `<c r="A2" t="inlineStr"><is>`)
			repeat(w, `<r><t>x</t></r>`, 1_000_000)
			io.WriteString(w, `</is></c>`)
		}),
	})
	// A million cells after a row's end, which reading gathers into it.
	xlsx("cells outside a row", "file_too_large", 0, false, map[string]func(io.Writer){
		sheet1: rows(2, 2, func(w io.Writer, r string) {
			io.WriteString(w, `</row>`)
			repeat(w, `<c><v>1</v></c>`, 1_000_000)
			io.WriteString(w, `<row>`)
		}),
	})
	// A million empty shared strings, all loaded before the first cell.
	xlsx("many shared strings", "file_too_large", 0, false, map[string]func(io.Writer){
		sst:    sharedStrings(1_000_000),
		sheet1: header,
	})
	// A million elements nested in one another: the XML decoder keeps a
	// stack entry for each.
	xlsx("deep nesting", "file_unreadable", 0, false, map[string]func(io.Writer){
		sheet1: sheetXML(func(w io.Writer) {
			repeat(w, "<a>", 1_000_000)
			repeat(w, "</a>", 1_000_000)
		}),
	})
	// Half a million cell formats, decoded whole when the workbook opens.
	xlsx("many styles", "file_too_large", 0, false, map[string]func(io.Writer){
		styles: styleSheet(500_000),
		sheet1: header,
	})

	// Just inside the limits.
	xlsx("50,000 rows", "", device.MaxImportRows, true, map[string]func(io.Writer){
		sheet1: rows(2, device.MaxImportRows+1, func(w io.Writer, r string) {
			body := fmt.Sprintf("35%012s", r)
			io.WriteString(w, `<c r="A`+r+`" t="inlineStr"><is><t>`+body+string(device.LuhnDigit(body))+`</t></is></c>`+
				`<c r="B`+r+`" t="inlineStr"><is><t>van `+r+`</t></is></c>`)
		}),
	})
	xlsx("shared strings at the limit", "", 0, true, map[string]func(io.Writer){
		sst: sharedStrings(5 * device.MaxImportRows),
		sheet1: sheetXML(func(w io.Writer) {
			io.WriteString(w, `<row r="1"><c r="A1" t="s"><v>0</v></c></row>`)
		}),
	})
	xlsx("styles at the limit", "", 0, false, map[string]func(io.Writer){
		styles: styleSheet(45_000),
		sheet1: header,
	})
	xlsx("parts in memory at the limit", "", 0, false, map[string]func(io.Writer){
		"xl/media/image1.png": func(w io.Writer) { repeat(w, "\x00", 3<<20+512<<10) },
		sheet1:                header,
	})

	// All of those at once, with 16 MiB of cells in 50,000 rows.
	pad := strings.Repeat("p", 290)
	xlsx("every limit at once", "", device.MaxImportRows, true, map[string]func(io.Writer){
		sst:                   sharedStrings(5*device.MaxImportRows - 10),
		styles:                styleSheet(45_000),
		"xl/media/image1.png": func(w io.Writer) { repeat(w, "\x00", 3<<20+512<<10) },
		sheet1: rows(2, device.MaxImportRows+1, func(w io.Writer, r string) {
			io.WriteString(w, `<c r="A`+r+`"><v>35`+r+`</v></c><c r="B`+r+`" t="inlineStr"><is><t>`+pad+r+`</t></is></c>`+
				`<c r="C`+r+`" t="s"><v>0</v></c>`) // a shared string, so the table is indexed
		}),
	})

	// CSV, whose reader holds a whole record before it returns it.
	csvFile := func(name, code string, write func(w io.Writer)) {
		var b bytes.Buffer
		write(&b)
		files = append(files, hostile{name: name, format: device.FormatCSV, data: b.Bytes(), code: code})
	}
	csvFile("CSV line of commas", "file_too_many_columns", func(w io.Writer) {
		io.WriteString(w, "imei\n")
		repeat(w, ",", 4<<20)
	})
	csvFile("CSV long cell", "file_cell_too_long", func(w io.Writer) {
		io.WriteString(w, "imei\n")
		repeat(w, "x", 4<<20)
	})
	csvFile("CSV quoted lines", "file_cell_too_long", func(w io.Writer) {
		io.WriteString(w, "imei\n\"")
		repeat(w, "x\n", 2<<20)
		io.WriteString(w, "\"\n")
	})
	return files
}

// sharedStrings writes a shared string table: "imei", then n-1 empty
// strings.
func sharedStrings(n int) func(io.Writer) {
	return func(w io.Writer) {
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>`+
			`<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>imei</t></si>`)
		repeat(w, `<si/>`, n-1)
		io.WriteString(w, `</sst>`)
	}
}

// styleSheet writes a style sheet of n cell formats.
func styleSheet(n int) func(io.Writer) {
	return func(w io.Writer) {
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>`+
			`<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><cellXfs>`)
		repeat(w, `<xf/>`, n)
		io.WriteString(w, `</cellXfs></styleSheet>`)
	}
}

// heapGrowth runs f and returns how far HeapInuse rose above where it
// stood before, at its highest (sampled every millisecond), and how much f
// allocated in all.
func heapGrowth(f func()) (peak, total uint64) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var (
		wg   sync.WaitGroup
		stop = make(chan struct{})
		top  = before.HeapInuse
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&m)
			top = max(top, m.HeapInuse)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	top = max(top, after.HeapInuse)
	return top - before.HeapInuse, after.TotalAlloc - before.TotalAlloc
}

// BenchmarkReadImportHostile reads each hostile file and reports the peak
// growth of the heap in use (peak-heap-MiB) beside -benchmem's allocations.
func BenchmarkReadImportHostile(b *testing.B) {
	for _, h := range hostileFiles(b, true) {
		b.Run(strings.ReplaceAll(h.name, " ", "_"), func(b *testing.B) {
			var peak uint64
			b.ReportAllocs()
			for b.Loop() {
				p, _ := heapGrowth(func() {
					device.ReadImport(bytes.NewReader(h.data), h.format)
				})
				peak = max(peak, p)
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(len(h.data))/(1<<10), "file-KiB")
		})
	}
}

// TestReadImportHostile reads each hostile file: it is refused with its
// code, or read whole, and the heap never grows by more than a bound
// that the files cost many times over before the limits (see
// BenchmarkReadImportHostile and docs/security.md).
func TestReadImportHostile(t *testing.T) {
	// The bound holds at the default GC pace, whatever GOGC says.
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	const bound = 64 << 20
	for _, h := range hostileFiles(t, false) {
		var (
			rows []device.ImportRow
			err  error
		)
		peak, _ := heapGrowth(func() { rows, _, err = device.ReadImport(bytes.NewReader(h.data), h.format) })
		if got := fieldCode(err); got != h.code {
			t.Errorf("%s: got %q (%v); want %q", h.name, got, err, h.code)
		}
		if len(rows) != h.rows {
			t.Errorf("%s: got %d rows; want %d", h.name, len(rows), h.rows)
		}
		t.Logf("%s: the heap grew by %d MiB", h.name, peak>>20)
		if peak > bound {
			t.Errorf("%s: the heap grew by %d MiB; want at most %d", h.name, peak>>20, bound>>20)
		}
	}
}
