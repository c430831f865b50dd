package device

import (
	"strconv"
	"strings"
)

// MinAndroidAPI is the oldest Android API level a payload may name
// (Android 5.0).
const MinAndroidAPI = 21

// release is the version number an API level ships as.
type release struct {
	major, minor int
	// alias is another spelling of the same release, such as "12L".
	alias string
}

// androidReleases maps each API level Tether knows to its release. A level
// above the newest here is accepted with any name, so a new Android release
// never locks a fleet out: add it here when it ships.
var androidReleases = map[int]release{
	21: {5, 0, ""},
	22: {5, 1, ""},
	23: {6, 0, ""},
	24: {7, 0, ""},
	25: {7, 1, ""},
	26: {8, 0, ""},
	27: {8, 1, ""},
	28: {9, 0, ""},
	29: {10, 0, ""},
	30: {11, 0, ""},
	31: {12, 0, ""},
	32: {12, 0, "12l"}, // 12L devices report "12" or "12L"
	33: {13, 0, ""},
	34: {14, 0, ""},
	35: {15, 0, ""},
	36: {16, 0, ""},
	37: {17, 0, ""},
}

// NewestKnownAPI is the highest API level in the table.
var NewestKnownAPI = func() int {
	newest := 0
	for api := range androidReleases {
		newest = max(newest, api)
	}
	return newest
}()

// ReleaseName returns the version name of an API level ("8.1", "14"), or ""
// for a level Tether does not know.
func ReleaseName(api int) string {
	r, ok := androidReleases[api]
	if !ok {
		return ""
	}
	if r.minor == 0 && r.major >= 9 {
		return strconv.Itoa(r.major)
	}
	return strconv.Itoa(r.major) + "." + strconv.Itoa(r.minor)
}

// normalizeOSName trims a version name and drops an "Android" prefix, so
// "Android 14" and " 14 " are both "14".
func normalizeOSName(name string) string {
	name = strings.TrimSpace(name)
	if len(name) >= len("android") && strings.EqualFold(name[:len("android")], "android") {
		name = strings.TrimSpace(name[len("android"):])
	}
	return name
}

// parseOSName reads the leading version number of a normalised name:
// "14.0.1" is (14, 0, true); "8.1" is (8, 1, true); "9" is (9, 0, false).
// ok is false for a name that is not a version number.
func parseOSName(name string) (major, minor int, hasMinor, ok bool) {
	parts := strings.Split(name, ".")
	if len(parts) > 4 {
		return 0, 0, false, false
	}
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || p == "" || p[0] == '+' || p[0] == '-' {
			return 0, 0, false, false
		}
		nums[i] = n
	}
	if len(nums) > 1 {
		return nums[0], nums[1], true, true
	}
	return nums[0], 0, false, true
}

// osNameValid reports whether a normalised name is a version number at all
// (or a known alias such as "12L").
func osNameValid(name string) bool {
	if _, _, _, ok := parseOSName(name); ok {
		return true
	}
	for _, r := range androidReleases {
		if r.alias != "" && strings.EqualFold(name, r.alias) {
			return true
		}
	}
	return false
}

// osNameMatches reports whether a normalised name is the release of api:
// its leading version number must be that level's ("14", "14.0", "14.0.1"
// for 34; "8.1" or "8.1.0" for 27). A level newer than the table matches
// every name.
func osNameMatches(api int, name string) bool {
	r, known := androidReleases[api]
	if !known {
		return api > NewestKnownAPI
	}
	if r.alias != "" && strings.EqualFold(name, r.alias) {
		return true
	}
	major, minor, hasMinor, ok := parseOSName(name)
	if !ok || major != r.major {
		return false
	}
	if hasMinor {
		return minor == r.minor
	}
	return r.minor == 0
}
