package device

import (
	"encoding/json"
	"strings"
)

// Payload is what a handset says about itself on login and self-enrollment
// (API.md section 2), and what a manager gives when registering one. Pointer
// fields tell "absent" from "present but empty": an empty string is a bad
// value, not a missing one.
type Payload struct {
	IMEI       string     `json:"imei" xml:"IMEI" validate:"required,imei_digits,imei_len,imei_nonzero,imei_luhn"`
	HasIccCard *bool      `json:"hasIccCard,omitempty" xml:"HasIccCard,omitempty"`
	IccIDs     []string   `json:"iccIds,omitempty" xml:"IccIds>string,omitempty" validate:"iccid_max,iccid_unique,dive,iccid_digits,iccid_prefix,iccid_len,iccid_luhn"`
	OSVersion  *OSVersion `json:"osVersion,omitempty" xml:"OsVersion,omitempty" validate:"omitnil"`
	DeviceInfo *Info      `json:"deviceInfo,omitempty" xml:"DeviceInfo,omitempty" validate:"omitnil"`
	AppVersion *string    `json:"appVersion,omitempty" xml:"AppVersion,omitempty" validate:"omitnil,app_version"`
	// PublicKey is the public JWK (EC P-256 or Ed25519) of a key the
	// handset holds in its secure hardware, to enroll with it; Attestation
	// its Android key attestation chain, base64 DER, leaf first.
	PublicKey   json.RawMessage `json:"publicKey,omitempty" xml:"-" validate:"max=2048"`
	Attestation []string        `json:"attestation,omitempty" xml:"-" validate:"max=8,dive,max=16384"`
}

// OSVersion is the Android release: its API level and version name, which
// must agree.
type OSVersion struct {
	API  int    `json:"api" xml:"Api" validate:"android_api"`
	Name string `json:"name" xml:"Name" validate:"required,os_name"`
}

// Info is the handset's make and model.
type Info struct {
	Manufacturer string `json:"manufacturer" xml:"Manufacturer" validate:"text_len,text_printable"`
	Model        string `json:"model" xml:"Model" validate:"text_len,text_printable"`
}

// MaxSIMs is the most ICC IDs one payload may carry.
const MaxSIMs = 4

// Normalize puts every field in its canonical form: separators out of the
// IMEI and ICC IDs, the "F" filler off ICC IDs, "Android" off the version
// name, surrounding space off the rest; a hasIccCard left out beside iccIds
// is whether they hold any. Validation runs on what it leaves.
func (p *Payload) Normalize() {
	p.IMEI = stripSeparators(p.IMEI)
	for i, id := range p.IccIDs {
		id = stripSeparators(id)
		if n := len(id); n > 0 && (id[n-1] == 'F' || id[n-1] == 'f') {
			id = id[:n-1]
		}
		p.IccIDs[i] = id
	}
	if p.HasIccCard == nil && p.IccIDs != nil {
		has := len(p.IccIDs) > 0
		p.HasIccCard = &has
	}
	if p.OSVersion != nil {
		p.OSVersion.Name = normalizeOSName(p.OSVersion.Name)
	}
	if p.DeviceInfo != nil {
		p.DeviceInfo.Manufacturer = strings.TrimSpace(p.DeviceInfo.Manufacturer)
		p.DeviceInfo.Model = strings.TrimSpace(p.DeviceInfo.Model)
	}
	if p.AppVersion != nil {
		v := strings.TrimSpace(*p.AppVersion)
		p.AppVersion = &v
	}
}

// stripSeparators drops the spaces, hyphens and slashes people and
// spreadsheets put in long numbers.
func stripSeparators(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '/', '\t':
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

// LuhnDigit returns the Luhn check digit that completes a string of ASCII
// digits, as the 15th digit of an IMEI or the last of an ICCID.
func LuhnDigit(body string) byte {
	sum := 0
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if (len(body)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10)
}

// luhnValid reports whether a string of ASCII digits ends in a valid Luhn
// check digit. The caller has checked that it is all digits.
func luhnValid(digits string) bool {
	return len(digits) > 1 && LuhnDigit(digits[:len(digits)-1]) == digits[len(digits)-1]
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// LooksLikeIMEI reports whether s is an IMEI (15 digits, spaces, hyphens
// and slashes aside, with a valid check digit), enrolled or not: what a
// client names a handset by, as opposed to a free device name.
func LooksLikeIMEI(s string) bool {
	d := stripSeparators(s)
	return len(d) == 15 && allDigits(d) && luhnValid(d)
}
