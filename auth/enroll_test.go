package auth_test

import (
	"slices"
	"testing"

	"tether/auth"
)

// TestCodeWarnings: a code is made whatever the server's settings, but the
// manager is told when a handset could not enroll with it: self-enrollment
// is off, or its enroll URL (its QR image) points at this machine.
func TestCodeWarnings(t *testing.T) {
	for _, c := range []struct {
		mode, url string
		want      []string // codes, then settings
	}{
		{auth.EnrollCode, "https://tether.example.com/v1/enroll?code=X", nil},
		{auth.EnrollOpen, "http://192.168.1.20:8080/v1/enroll?code=X", nil},
		{auth.EnrollPreregistered, "https://tether.example.com/v1/enroll?code=X", []string{"self_enrollment_off", "--enrollment-mode"}},
		{auth.EnrollCode, "http://localhost:8080/v1/enroll?code=X", []string{"enroll_url_unreachable", "--public-url"}},
		{auth.EnrollCode, "http://LocalHost/v1/enroll?code=X", []string{"enroll_url_unreachable", "--public-url"}},
		{auth.EnrollCode, "http://tether.localhost/v1/enroll?code=X", []string{"enroll_url_unreachable", "--public-url"}},
		{auth.EnrollCode, "http://127.0.0.1:39041/v1/enroll?code=X", []string{"enroll_url_unreachable", "--public-url"}},
		{auth.EnrollCode, "http://127.8.9.10/v1/enroll?code=X", []string{"enroll_url_unreachable", "--public-url"}},
		{auth.EnrollCode, "http://[::1]:8080/v1/enroll?code=X", []string{"enroll_url_unreachable", "--public-url"}},
		{auth.EnrollCode, "http://0.0.0.0:8080/v1/enroll?code=X", []string{"enroll_url_unreachable", "--public-url"}},
		{auth.EnrollPreregistered, "http://localhost:8080/v1/enroll?code=X", []string{"self_enrollment_off", "enroll_url_unreachable", "--enrollment-mode", "--public-url"}},
	} {
		w := newWorld(t, func(cfg *auth.Config) { cfg.EnrollmentMode = c.mode })
		var got, settings []string
		for _, warn := range w.svc.CodeWarnings(c.url) {
			if warn.Message == "" {
				t.Errorf("%s, %s: warning %s has no message", c.mode, c.url, warn.Code)
			}
			got, settings = append(got, warn.Code), append(settings, warn.Setting)
		}
		if got = append(got, settings...); !slices.Equal(got, c.want) {
			t.Errorf("%s, %s: got %v; want %v", c.mode, c.url, got, c.want)
		}
	}
}
