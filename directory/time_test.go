package directory

import (
	"testing"
	"time"
)

func TestPasswordTime(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"20261203141500Z", time.Date(2026, 12, 3, 14, 15, 0, 0, time.UTC)},
		{"20261203141500.5Z", time.Date(2026, 12, 3, 14, 15, 0, 500_000_000, time.UTC)},
		{"20261203161500+0200", time.Date(2026, 12, 3, 14, 15, 0, 0, time.UTC)},
		{"134092449000000000", time.Date(2025, 12, 3, 14, 15, 0, 0, time.UTC)}, // a Windows file time
		{"0", time.Time{}}, // Active Directory: must change at next sign-in
		{"", time.Time{}}, {"yesterday", time.Time{}},
	} {
		if got := passwordTime(c.in); !got.Equal(c.want) {
			t.Errorf("passwordTime(%q) = %v; want %v", c.in, got, c.want)
		}
	}
}
