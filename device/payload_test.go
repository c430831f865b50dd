package device

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"tether"
)

func newValidator(t *testing.T) func(p Payload, complete bool) []tether.FieldError {
	t.Helper()
	v := tether.NewValidator()
	if err := RegisterValidations(v); err != nil {
		t.Fatal(err)
	}
	return func(p Payload, complete bool) []tether.FieldError {
		t.Helper()
		p.Normalize()
		err := Validate(v, p, "device.", complete)
		if err == nil {
			return nil
		}
		var ve *tether.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("Validate returned %T %v; want *tether.ValidationError", err, err)
		}
		return ve.Fields
	}
}

func ptr[T any](v T) *T { return &v }

// good is a whole, valid payload; each case changes one thing.
func good() Payload {
	return Payload{
		IMEI:       "490154203237518",
		HasIccCard: ptr(true),
		IccIDs:     []string{"89445001021983048261"},
		OSVersion:  &OSVersion{API: 34, Name: "14"},
		DeviceInfo: &Info{Manufacturer: "samsung", Model: "SM-G991B"},
		AppVersion: ptr("3.2.1"),
	}
}

func codes(fs []tether.FieldError) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Field + "=" + f.Code
	}
	slices.Sort(out)
	return out
}

func TestPayloadValidation(t *testing.T) {
	validate := newValidator(t)
	cases := []struct {
		name     string
		change   func(p *Payload)
		complete bool
		want     []string // field=code, sorted; nil means valid
	}{
		{"whole payload", func(*Payload) {}, true, nil},
		{"IMEI alone", func(p *Payload) { *p = Payload{IMEI: "490154203237518"} }, false, nil},
		{"IMEI alone for a login", func(p *Payload) { *p = Payload{IMEI: "490154203237518"} }, true, []string{
			"device.appVersion=app_version_required", "device.deviceInfo=device_info_required",
			"device.osVersion=os_version_required",
		}},

		// IMEI
		{"IMEI with separators", func(p *Payload) { p.IMEI = " 49-015420/323751 8 " }, true, nil},
		{"IMEI with leading zero", func(p *Payload) { p.IMEI = "012345678901237" }, true, nil},
		{"IMEI missing", func(p *Payload) { p.IMEI = "" }, true, []string{"device.imei=imei_required"}},
		{"IMEI letters", func(p *Payload) { p.IMEI = "49015420323751A" }, true, []string{"device.imei=imei_format"}},
		{"IMEI short", func(p *Payload) { p.IMEI = "49015420323751" }, true, []string{"device.imei=imei_length"}},
		{"IMEI long", func(p *Payload) { p.IMEI = "4901542032375180" }, true, []string{"device.imei=imei_length"}},
		{"IMEI check digit", func(p *Payload) { p.IMEI = "490154203237519" }, true, []string{"device.imei=imei_checksum"}},
		{"IMEI zeros", func(p *Payload) { p.IMEI = "000000000000000" }, true, []string{"device.imei=imei_zero"}},
		{"IMEI unicode digits", func(p *Payload) { p.IMEI = "४९०१५४२०३२३७५१८" }, true, []string{"device.imei=imei_format"}},

		// ICC IDs
		{"ICCID of 19 digits", func(p *Payload) { p.IccIDs = []string{"8944500102198304826"} }, true, nil},
		{"ICCID with F filler", func(p *Payload) { p.IccIDs = []string{"8944500102198304826F"} }, true, nil},
		{"ICCID with spaces", func(p *Payload) { p.IccIDs = []string{"8944 5001 0219 8304 8261"} }, true, nil},
		{"ICCID without 89", func(p *Payload) { p.IccIDs = []string{"79445001021983048261"} }, true, []string{"device.iccIds[0]=iccid_prefix"}},
		{"ICCID short", func(p *Payload) { p.IccIDs = []string{"894450010219830482"} }, true, []string{"device.iccIds[0]=iccid_length"}},
		{"ICCID check digit", func(p *Payload) { p.IccIDs = []string{"89445001021983048262"} }, true, []string{"device.iccIds[0]=iccid_checksum"}},
		{"ICCID letters", func(p *Payload) { p.IccIDs = []string{"8944500102198304826X"} }, true, []string{"device.iccIds[0]=iccid_format"}},
		{"ICCID empty", func(p *Payload) { p.IccIDs = []string{""} }, true, []string{"device.iccIds[0]=iccid_format"}},
		{"second ICCID bad", func(p *Payload) {
			p.IccIDs = []string{"89445001021983048261", "89012608621145279112"}
		}, true, []string{"device.iccIds[1]=iccid_checksum"}},
		{"two SIMs", func(p *Payload) {
			p.IccIDs = []string{"89445001021983048261", "89012608621145279111"}
		}, true, nil},
		{"ICCID repeated after normalising", func(p *Payload) {
			p.IccIDs = []string{"89445001021983048261", "8944-5001-0219-8304-8261"}
		}, true, []string{"device.iccIds=iccid_duplicate"}},
		{"five SIMs", func(p *Payload) {
			p.IccIDs = []string{"89445001021983048261", "89012608621145279111", "8944500102198304826", "89445001021983048261", "89445001021983048261"}
		}, true, []string{"device.iccIds=iccid_too_many"}},
		{"card without ICCID", func(p *Payload) { p.IccIDs = nil }, true, []string{"device.iccIds=iccid_missing"}},
		{"no card with ICCID", func(p *Payload) { p.HasIccCard = ptr(false) }, true, []string{"device.iccIds=iccid_unexpected"}},
		{"no card, no ICCID", func(p *Payload) { p.HasIccCard = ptr(false); p.IccIDs = nil }, true, nil},
		{"no hasIccCard, an ICCID", func(p *Payload) { p.HasIccCard = nil }, true, nil},
		{"no hasIccCard, no ICCID", func(p *Payload) { p.HasIccCard, p.IccIDs = nil, nil }, true, nil},
		{"no hasIccCard, an empty list", func(p *Payload) { p.HasIccCard, p.IccIDs = nil, []string{} }, true, nil},
		{"no hasIccCard, a bad ICCID", func(p *Payload) {
			p.HasIccCard, p.IccIDs = nil, []string{"79445001021983048261"}
		}, true, []string{"device.iccIds[0]=iccid_prefix"}},

		// OS version
		{"Android 14 spelled out", func(p *Payload) { p.OSVersion.Name = "Android 14" }, true, nil},
		{"14.0", func(p *Payload) { p.OSVersion.Name = "14.0" }, true, nil},
		{"14.0.1", func(p *Payload) { p.OSVersion.Name = "14.0.1" }, true, nil},
		{"API 34 named 13", func(p *Payload) { p.OSVersion.Name = "13" }, true, []string{"device.osVersion.name=os_name_mismatch"}},
		{"API 34 named 14.1", func(p *Payload) { p.OSVersion.Name = "14.1" }, true, []string{"device.osVersion.name=os_name_mismatch"}},
		{"27 is 8.1", func(p *Payload) { p.OSVersion = &OSVersion{API: 27, Name: "8.1"} }, true, nil},
		{"27 is 8.1.0", func(p *Payload) { p.OSVersion = &OSVersion{API: 27, Name: "8.1.0"} }, true, nil},
		{"27 is not 8", func(p *Payload) { p.OSVersion = &OSVersion{API: 27, Name: "8"} }, true, []string{"device.osVersion.name=os_name_mismatch"}},
		{"26 is 8.0", func(p *Payload) { p.OSVersion = &OSVersion{API: 26, Name: "8.0.0"} }, true, nil},
		{"21 is 5", func(p *Payload) { p.OSVersion = &OSVersion{API: 21, Name: "5"} }, true, nil},
		{"32 is 12L", func(p *Payload) { p.OSVersion = &OSVersion{API: 32, Name: "12L"} }, true, nil},
		{"32 is 12", func(p *Payload) { p.OSVersion = &OSVersion{API: 32, Name: "12"} }, true, nil},
		{"31 is not 12L", func(p *Payload) { p.OSVersion = &OSVersion{API: 31, Name: "12L"} }, true, []string{"device.osVersion.name=os_name_mismatch"}},
		{"28 is 9", func(p *Payload) { p.OSVersion = &OSVersion{API: 28, Name: "9"} }, true, nil},
		{"future level any name", func(p *Payload) { p.OSVersion = &OSVersion{API: NewestKnownAPI + 1, Name: "99"} }, true, nil},
		{"API 20", func(p *Payload) { p.OSVersion = &OSVersion{API: 20, Name: "4.4"} }, true, []string{"device.osVersion.api=os_api_invalid"}},
		{"API missing", func(p *Payload) { p.OSVersion = &OSVersion{Name: "14"} }, true, []string{"device.osVersion.api=os_api_invalid"}},
		{"name empty", func(p *Payload) { p.OSVersion.Name = "" }, true, []string{"device.osVersion.name=os_name_required"}},
		{"name words", func(p *Payload) { p.OSVersion.Name = "Upside Down Cake" }, true, []string{"device.osVersion.name=os_name_invalid"}},
		{"name negative", func(p *Payload) { p.OSVersion.Name = "-14" }, true, []string{"device.osVersion.name=os_name_invalid"}},

		// Device info and app version
		{"model empty", func(p *Payload) { p.DeviceInfo.Model = "" }, true, []string{"device.deviceInfo.model=model_length"}},
		{"model blank", func(p *Payload) { p.DeviceInfo.Model = "   " }, true, []string{"device.deviceInfo.model=model_length"}},
		{"model 64", func(p *Payload) { p.DeviceInfo.Model = string(make64('m')) }, true, nil},
		{"model 65", func(p *Payload) { p.DeviceInfo.Model = string(make64('m')) + "x" }, true, []string{"device.deviceInfo.model=model_length"}},
		{"model unicode", func(p *Payload) { p.DeviceInfo.Model = "Galaxy Ｓ23 ✓" }, true, nil},
		{"manufacturer control", func(p *Payload) { p.DeviceInfo.Manufacturer = "sam\x00sung" }, true, []string{"device.deviceInfo.manufacturer=manufacturer_chars"}},
		{"manufacturer bad UTF-8", func(p *Payload) { p.DeviceInfo.Manufacturer = "sam\xffsung" }, true, []string{"device.deviceInfo.manufacturer=manufacturer_chars"}},
		// Any Android versionName: --min-app-version reads its number.
		{"app 3.2", func(p *Payload) { p.AppVersion = ptr("3.2") }, true, nil},
		{"app with suffix", func(p *Payload) { p.AppVersion = ptr("3.2.1-beta.2") }, true, nil},
		{"app one part", func(p *Payload) { p.AppVersion = ptr("7") }, true, nil},
		{"app four parts", func(p *Payload) { p.AppVersion = ptr("3.2.1.145") }, true, nil},
		{"app calendar", func(p *Payload) { p.AppVersion = ptr("2024.05-beta") }, true, nil},
		{"app letters first", func(p *Payload) { p.AppVersion = ptr("v3.2") }, true, nil},
		{"app words", func(p *Payload) { p.AppVersion = ptr("nightly build") }, true, nil},
		{"app 64", func(p *Payload) { p.AppVersion = ptr(string(make64('7'))) }, true, nil},
		{"app 65", func(p *Payload) { p.AppVersion = ptr(string(make64('7')) + "7") }, true, []string{"device.appVersion=app_version_format"}},
		{"app empty", func(p *Payload) { p.AppVersion = ptr("") }, true, []string{"device.appVersion=app_version_format"}},
		{"app blank", func(p *Payload) { p.AppVersion = ptr("   ") }, true, []string{"device.appVersion=app_version_format"}},
		{"app control", func(p *Payload) { p.AppVersion = ptr("3.2\x00") }, true, []string{"device.appVersion=app_version_format"}},
		{"app bad UTF-8", func(p *Payload) { p.AppVersion = ptr("3.2\xff") }, true, []string{"device.appVersion=app_version_format"}},

		// Every bad field is named, never just the first.
		{"four bad fields", func(p *Payload) {
			p.IMEI = "490154203237519"
			p.IccIDs = []string{"79445001021983048261"}
			p.OSVersion = &OSVersion{API: 34, Name: "13"}
			p.DeviceInfo.Model = ""
		}, true, []string{
			"device.deviceInfo.model=model_length", "device.iccIds[0]=iccid_prefix",
			"device.imei=imei_checksum", "device.osVersion.name=os_name_mismatch",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := good()
			tc.change(&p)
			got := codes(validate(p, tc.complete))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v; want %v", got, tc.want)
			}
		})
	}
}

func make64(c byte) []byte {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return b
}

func TestFieldErrorsHaveMessages(t *testing.T) {
	validate := newValidator(t)
	p := good()
	p.IMEI = "1"
	p.OSVersion.Name = "13"
	for _, f := range validate(p, true) {
		if f.Message == "" {
			t.Errorf("%s %s has no message", f.Field, f.Code)
		}
	}
}

func TestNormalize(t *testing.T) {
	p := Payload{
		IMEI:       " 49 0154-2032/37518 ",
		IccIDs:     []string{"8944 5001 0219 8304 826f"},
		OSVersion:  &OSVersion{API: 34, Name: "  android 14 "},
		DeviceInfo: &Info{Manufacturer: " samsung ", Model: " SM-G991B\t"},
		AppVersion: ptr(" 3.2.1 "),
	}
	p.Normalize()
	if p.IMEI != "490154203237518" || p.IccIDs[0] != "8944500102198304826" || p.OSVersion.Name != "14" ||
		p.DeviceInfo.Manufacturer != "samsung" || p.DeviceInfo.Model != "SM-G991B" || *p.AppVersion != "3.2.1" {
		t.Fatalf("Normalize gave %+v %+v %+v %q", p, *p.OSVersion, *p.DeviceInfo, *p.AppVersion)
	}
}

func TestAppVersionCompare(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"3.2.1", "3.2.1", 0},
		{"3.2", "3.2.0", 0},
		{"3.10.0", "3.9.9", 1},
		{"2.99", "3.0", -1},
		{"3.2.1-beta", "3.2.1", 0},
		{"10.0.0", "9.0.0", 1},
		{"3.2.1.145", "3.2.1.100", 1},
		{"3.2.1.99", "3.2.1.100", -1},
		{"3.2.1.0", "3.2.1", 0},
		{"2024.05-beta", "2024.5", 0},
		{"2024.05-beta", "3.0", 1},
		{"7", "6.99", 1},
		{"7", "7.0.1", -1},
		{"007", "7", 0},
		{"3.2.1 (145)", "3.2.1", 0},
		{"3.2.", "3.2", 0},
		{"3..2", "3", 0},
		{"3.2b4", "3.2", 0},
		{"99999999999999999999999", "99999999999999999999998", 1},
		{"1.99999999999999999999", "2", -1},
	}
	for _, c := range cases {
		a, err := ParseAppVersion(c.a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ParseAppVersion(c.b)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.Compare(b); got != c.want {
			t.Errorf("%s vs %s: got %d; want %d", c.a, c.b, got, c.want)
		}
		if got := b.Compare(a); got != -c.want {
			t.Errorf("%s vs %s: got %d; want %d", c.b, c.a, got, -c.want)
		}
	}
}

// TestAppVersionWithoutNumber: a version name that does not start with a
// number has none to compare; callers count it below any minimum.
func TestAppVersionWithoutNumber(t *testing.T) {
	for _, s := range []string{"", "   ", "nightly", "v3.2", ".5", "-1", "beta 3"} {
		if v, err := ParseAppVersion(s); err == nil {
			t.Errorf("ParseAppVersion(%q): got %v; want an error", s, v)
		}
	}
	for s, want := range map[string]string{"3.2.1.145": "3.2.1.145", "2024.05-beta": "2024.5-beta", "007": "7", "0.0": "0.0"} {
		v, err := ParseAppVersion(s)
		if err != nil || v.String() != want {
			t.Errorf("ParseAppVersion(%q): got %v, %v; want %s", s, v, err, want)
		}
	}
}

// TestNormalizeDerivesHasIccCard: a hasIccCard left out beside iccIds is
// whether they hold any; without iccIds it stays unsaid (a manager
// registering by IMEI says nothing of SIMs).
func TestNormalizeDerivesHasIccCard(t *testing.T) {
	cases := []struct {
		name string
		in   Payload
		want *bool
	}{
		{"ICC IDs", Payload{IccIDs: []string{"8944 5001 0219 8304 8261"}}, ptr(true)},
		{"an empty list", Payload{IccIDs: []string{}}, ptr(false)},
		{"neither", Payload{}, nil},
		{"said false", Payload{HasIccCard: ptr(false), IccIDs: []string{"89445001021983048261"}}, ptr(false)},
	}
	for _, c := range cases {
		c.in.Normalize()
		switch {
		case (c.in.HasIccCard == nil) != (c.want == nil):
			t.Errorf("%s: got %v; want %v", c.name, c.in.HasIccCard, c.want)
		case c.want != nil && *c.in.HasIccCard != *c.want:
			t.Errorf("%s: got %v; want %v", c.name, *c.in.HasIccCard, *c.want)
		}
	}
}

func TestReleaseTable(t *testing.T) {
	for api := MinAndroidAPI; api <= NewestKnownAPI; api++ {
		name := ReleaseName(api)
		if name == "" {
			t.Fatalf("API %d missing from the table", api)
		}
		if !osNameMatches(api, name) {
			t.Errorf("API %d does not match its own name %q", api, name)
		}
		// No other known level answers to the same name, except 12 (31 and 32).
		for other := MinAndroidAPI; other <= NewestKnownAPI; other++ {
			if other != api && osNameMatches(other, name) && name != "12" {
				t.Errorf("name %q matches both %d and %d", name, api, other)
			}
		}
	}
	for api, want := range map[int]string{21: "5.0", 27: "8.1", 28: "9", 34: "14", 36: "16"} {
		if got := ReleaseName(api); got != want {
			t.Errorf("ReleaseName(%d) = %q; want %q", api, got, want)
		}
	}
}

// The payloads under testdata/ are the ones the README walks through: the
// good one passes whole, the bad one fails on exactly its four fields.
func TestSamplePayloads(t *testing.T) {
	validate := newValidator(t)
	read := func(name string) Payload {
		data, err := os.ReadFile(filepath.Join("..", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		var p Payload
		if err := json.Unmarshal(data, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if got := validate(read("payload.json"), true); got != nil {
		t.Fatalf("payload.json: %v", got)
	}
	got := codes(validate(read("payload-bad.json"), false))
	want := []string{"device.deviceInfo.model=model_length", "device.iccIds[0]=iccid_prefix", "device.imei=imei_checksum", "device.osVersion.name=os_name_mismatch"}
	if !slices.Equal(got, want) {
		t.Fatalf("payload-bad.json: %v; want %v", got, want)
	}
}
