package device

import (
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
