package auth_test

import (
	"errors"
	"testing"

	"tether"
	"tether/auth"
	"tether/storage"
)

// TestMinAppVersionAnyVersionName: --min-app-version compares the leading
// numeric parts of any versionName, wherever a version is judged: a login
// with the payload, a login naming the handset (what it last reported),
// and self-enrollment. A version with no leading number is below the
// minimum; without a minimum, it is no concern.
func TestMinAppVersionAnyVersionName(t *testing.T) {
	cases := []struct {
		min, version string
		ok           bool
	}{
		{"", "nightly", true},
		{"", "7", true},
		{"3.0", "3.2.1.145", true},
		{"3.0", "2024.05-beta", true},
		{"3.0", "3", true},
		{"3.0", "2.99.99.99", false},
		{"3.0", "nightly", false},
		{"2024.05", "2024.5.1-rc1", true},
		{"2024.05", "2024.4.30", false},
	}
	manager := auth.Principal{Kind: auth.KindAPIKey, ID: "ak_m", Role: storage.RoleManager}
	for _, c := range cases {
		t.Run(c.version+" against "+c.min, func(t *testing.T) {
			w := newWorld(t, func(cfg *auth.Config) { cfg.MinAppVersion = c.min; cfg.EnrollmentMode = auth.EnrollCode })
			check := func(what string, err error) {
				t.Helper()
				var te *tether.Error
				switch {
				case c.ok && err != nil:
					t.Errorf("%s: got %v; want it admitted", what, err)
				case !c.ok && (!errors.As(err, &te) || te.Code != tether.CodeAppVersionOld || te.Extra["minAppVersion"] != c.min):
					t.Errorf("%s: got %v; want app_version_unsupported naming %s", what, err, c.min)
				}
			}
			p := payload(w.phone.IMEI)
			p.AppVersion = ptr(c.version)
			_, err := w.login("walter", p)
			check("login with the payload", err)

			if _, err := w.store.UpdateDevice(w.ctx, w.other.ID, func(d storage.Device) (storage.Device, error) {
				d.AppVersion = c.version
				return d, nil
			}); err != nil {
				t.Fatal(err)
			}
			_, err = w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, DeviceRef: w.other.IMEI})
			check("login naming the handset", err)

			code, _, err := w.svc.CreateEnrollmentCode(w.ctx, manager, auth.NewCode{})
			if err != nil {
				t.Fatal(err)
			}
			p = payload("359881234567899")
			p.AppVersion = ptr(c.version)
			_, err = w.svc.Enroll(w.ctx, code, *p)
			check("self-enrollment", err)
		})
	}
}

// TestMinAppVersionMustHaveANumber: a minimum with no number to compare
// is refused when the server starts.
func TestMinAppVersionMustHaveANumber(t *testing.T) {
	for _, min := range []string{"nightly", "v3", " "} {
		cfg := auth.DefaultConfig()
		cfg.MinAppVersion = min
		if err := cfg.Validate(); err == nil {
			t.Errorf("minimum %q: got no error; want one", min)
		}
	}
	cfg := auth.DefaultConfig()
	cfg.MinAppVersion = "2024.05-beta"
	if err := cfg.Validate(); err != nil {
		t.Errorf("minimum 2024.05-beta: got %v; want none", err)
	}
}
