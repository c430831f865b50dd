package device

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"tether"
)

// FuzzPayload feeds arbitrary JSON through decoding, normalising and
// validation. Nothing may panic, every rejection must be a validation error
// with a code on each field, and a payload that passes must pass again
// after a second normalisation (normalising is idempotent).
func FuzzPayload(f *testing.F) {
	for _, seed := range []string{
		`{"imei":"490154203237518","hasIccCard":true,"iccIds":["89445001021983048261"],"osVersion":{"api":34,"name":"14"},"deviceInfo":{"manufacturer":"samsung","model":"SM-G991B"},"appVersion":"3.2.1"}`,
		`{"imei":"49-0154-2032-3751-8","iccIds":["8944500102198304826F","8944500102198304826F"]}`,
		`{"imei":"","osVersion":{"api":32,"name":"Android 12L"},"appVersion":"1.0.0-rc.1"}`,
		`{"imei":"000000000000000","hasIccCard":false,"iccIds":[],"deviceInfo":{"manufacturer":"\u0000","model":""}}`,
		`{"imei":"४९०१५४२०३२३७५१८","osVersion":{"api":99,"name":"x.y"}}`,
	} {
		f.Add([]byte(seed), true)
	}
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
	for _, seed := range []string{
		"imei,label\n490154203237518,van\n",
		"\ufeffIMEI;ICCIDs;Group\n490154203237518;8944500102198304826;north\n",
		"imei\n\"unterminated\n", "label\nx\n", "", "PK\x03\x04not a zip",
		"imei,imei\n1,2\n", "imei,assigned_users\n1,a;b;;c\n",
	} {
		f.Add([]byte(seed))
	}
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
