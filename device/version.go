package device

import (
	"fmt"
	"strings"
)

// AppVersion is the number a field app's version name (its Android
// versionName, any text) starts with: its leading numeric parts, "3.2.1.145"
// is 3.2.1.145, "2024.05-beta" is 2024.5, "7" is 7, "3.2.1 (145)" is 3.2.1.
// Versions compare part by part, numerically, a missing part counting as 0;
// what follows the number is kept but not compared.
type AppVersion struct {
	// parts are the numeric parts, in decimal without leading zeros, so
	// that numbers of any length compare without overflow.
	parts []string
	// Suffix is what follows the number ("-beta", " (145)").
	Suffix string
}

// ParseAppVersion reads the leading numeric parts of a version name. It
// fails only for a name that does not start with a digit ("nightly",
// "v3.2", ""), which has no number to compare: such a version counts as
// below any minimum.
func ParseAppVersion(s string) (AppVersion, error) {
	s = strings.TrimSpace(s)
	if s == "" || !isDigit(s[0]) {
		return AppVersion{}, fmt.Errorf("app version %q does not start with a number", s)
	}
	var v AppVersion
	rest := s
	for {
		n := 0
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		v.parts = append(v.parts, strings.TrimLeft(rest[:n], "0"))
		rest = rest[n:]
		// Another part only after a dot followed by a digit: "3.2." is 3.2.
		if len(rest) < 2 || rest[0] != '.' || !isDigit(rest[1]) {
			break
		}
		rest = rest[1:]
	}
	v.Suffix = rest
	return v, nil
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// Compare returns -1, 0 or 1 as v is older than, the same as, or newer than
// w, by number alone.
func (v AppVersion) Compare(w AppVersion) int {
	for i := range max(len(v.parts), len(w.parts)) {
		if c := compareDigits(part(v.parts, i), part(w.parts, i)); c != 0 {
			return c
		}
	}
	return 0
}

// part is the i-th part, "" (zero) past the end.
func part(parts []string, i int) string {
	if i < len(parts) {
		return parts[i]
	}
	return ""
}

// compareDigits compares two decimal numbers written without leading
// zeros ("" is zero): the longer is the larger, else the first to differ.
func compareDigits(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// String writes the number, then the suffix: "3.2.1.145", "2024.5-beta".
func (v AppVersion) String() string {
	parts := make([]string, len(v.parts))
	for i, p := range v.parts {
		if p == "" {
			p = "0"
		}
		parts[i] = p
	}
	return strings.Join(parts, ".") + v.Suffix
}
