package device

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/xuri/excelize/v2"

	"tether"
)

// The seed corpora are in testdata/fuzz/<target>/, in go test's own format;
// go test runs them every time, and a finding of go test -fuzz lands there
// as a new case.

// FuzzPayload feeds arbitrary JSON through decoding, normalising and
// validation. Nothing may panic, every rejection must be a validation error
// with a code on each field, and a payload that passes must pass again
// after a second normalisation (normalising is idempotent).
func FuzzPayload(f *testing.F) {
	v := tether.NewValidator()
	if err := RegisterValidations(v); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, complete bool) {
		var p Payload
		if json.Unmarshal(data, &p) != nil {
			return
		}
		p.Normalize()
		err := Validate(v, p, "device.", complete)
		if err != nil {
			var ve *tether.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) == 0 {
				t.Fatalf("rejection is not a validation error: %v", err)
			}
			for _, fe := range ve.Fields {
				if fe.Code == "" || fe.Field == "" || fe.Message == "" {
					t.Fatalf("incomplete field error %+v", fe)
				}
			}
			return
		}
		p.Normalize()
		if err := Validate(v, p, "device.", complete); err != nil {
			t.Fatalf("valid payload became invalid after normalising again: %v", err)
		}
	})
}

// FuzzReadImport feeds arbitrary files to the import reader, as CSV and as
// XLSX: nothing panics, and every refusal names the file.
func FuzzReadImport(f *testing.F) {
	f.Add(xlsxSeed(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []string{FormatCSV, FormatXLSX} {
			rows, _, err := ReadImport(bytes.NewReader(data), format)
			if err != nil {
				var ve *tether.ValidationError
				if !errors.As(err, &ve) || ve.Fields[0].Field != "file" {
					t.Fatalf("%s: refusal %v does not name the file", format, err)
				}
				continue
			}
			for i, r := range rows {
				if r.Row != i+2 {
					t.Fatalf("%s: row %d numbered %d", format, i, r.Row)
				}
			}
		}
	})
}

// xlsxSeed is a real spreadsheet for FuzzReadImport to mutate.
func xlsxSeed(f *testing.F) []byte {
	x := excelize.NewFile()
	defer x.Close()
	for i, row := range [][]any{{"IMEI", "Label", "ICCIDs"}, {"490154203237518", "van 7", "89445001021983048261"}} {
		if err := x.SetSheetRow("Sheet1", fmt.Sprintf("A%d", i+1), &row); err != nil {
			f.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := x.WriteTo(&buf); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}
