package device

import (
	"fmt"
	"strconv"
	"strings"
)

// AppVersion is a field app's version: MAJOR.MINOR[.PATCH][-suffix].
// Versions compare numerically; the suffix is kept but not compared.
type AppVersion struct {
	Major, Minor, Patch int
	Suffix              string
}

// ParseAppVersion reads "3.2.1", "3.2" or "3.2.1-beta.2".
func ParseAppVersion(s string) (AppVersion, error) {
	core, suffix, hasSuffix := strings.Cut(s, "-")
	if hasSuffix && !validSuffix(suffix) {
		return AppVersion{}, fmt.Errorf("app version %q: bad suffix", s)
	}
	parts := strings.Split(core, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return AppVersion{}, fmt.Errorf("app version %q: want MAJOR.MINOR[.PATCH]", s)
	}
	var nums [3]int
	for i, p := range parts {
		if p == "" || len(p) > 9 || !allDigits(p) {
			return AppVersion{}, fmt.Errorf("app version %q: %q is not a number", s, p)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return AppVersion{}, fmt.Errorf("app version %q: %w", s, err)
		}
		nums[i] = n
	}
	return AppVersion{Major: nums[0], Minor: nums[1], Patch: nums[2], Suffix: suffix}, nil
}

func validSuffix(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '-' || r == '+' || r == '_') {
			return false
		}
	}
	return true
}

// Compare returns -1, 0 or 1 as v is older than, the same as, or newer than
// w, by number alone.
func (v AppVersion) Compare(w AppVersion) int {
	for _, d := range [...]int{v.Major - w.Major, v.Minor - w.Minor, v.Patch - w.Patch} {
		switch {
		case d < 0:
			return -1
		case d > 0:
			return 1
		}
	}
	return 0
}

func (v AppVersion) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Suffix != "" {
		s += "-" + v.Suffix
	}
	return s
}
