package device

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"

	"tether"
)

// RegisterValidations adds the device rules to v: the tags used on Payload
// and the checks that look at several fields at once.
func RegisterValidations(v *validator.Validate) error {
	str := func(f func(string) bool) validator.Func {
		return func(fl validator.FieldLevel) bool { return f(fl.Field().String()) }
	}
	tags := map[string]validator.Func{
		"imei_digits":  str(allDigits),
		"imei_len":     str(func(s string) bool { return len(s) == 15 }),
		"imei_nonzero": str(func(s string) bool { return s != "000000000000000" }),
		"imei_luhn":    str(luhnValid),
		"iccid_digits": str(allDigits),
		"iccid_prefix": str(func(s string) bool { return len(s) >= 2 && s[:2] == "89" }),
		"iccid_len":    str(func(s string) bool { return len(s) == 19 || len(s) == 20 }),
		"iccid_luhn":   str(luhnValid),
		"iccid_max":    func(fl validator.FieldLevel) bool { return fl.Field().Len() <= MaxSIMs },
		"iccid_unique": func(fl validator.FieldLevel) bool {
			ids, ok := fl.Field().Interface().([]string)
			if !ok {
				return false
			}
			seen := make(map[string]bool, len(ids))
			for _, id := range ids {
				if seen[id] {
					return false
				}
				seen[id] = true
			}
			return true
		},
		"android_api": func(fl validator.FieldLevel) bool { return fl.Field().Int() >= MinAndroidAPI },
		"os_name":     str(osNameValid),
		// Any versionName: --min-app-version compares its leading number,
		// and one with none is below any minimum (ParseAppVersion).
		"app_version": str(func(s string) bool {
			n := utf8.RuneCountInString(s)
			return n >= 1 && n <= maxAppVersionLen && tether.Printable(s)
		}),
		"text_len": str(func(s string) bool {
			n := utf8.RuneCountInString(s)
			return n >= 1 && n <= 64
		}),
		"text_printable": str(tether.Printable),
	}
	for tag, fn := range tags {
		if err := v.RegisterValidation(tag, fn); err != nil {
			return fmt.Errorf("register %s: %w", tag, err)
		}
	}
	v.RegisterStructValidationCtx(payloadRules, Payload{})
	v.RegisterStructValidation(osVersionRules, OSVersion{})
	return nil
}

type completeKey struct{}

// maxAppVersionLen bounds an app version, in characters.
const maxAppVersionLen = 64

// payloadRules checks what no single field can: that hasIccCard agrees with
// iccIds, and, for a login, that the payload is whole (hasIccCard aside:
// left out, it is what iccIds say).
func payloadRules(ctx context.Context, sl validator.StructLevel) {
	p := sl.Current().Interface().(Payload)
	if p.HasIccCard != nil {
		switch {
		case *p.HasIccCard && len(p.IccIDs) == 0:
			sl.ReportError(p.IccIDs, "iccIds", "IccIDs", "iccid_missing", "")
		case !*p.HasIccCard && len(p.IccIDs) > 0:
			sl.ReportError(p.IccIDs, "iccIds", "IccIDs", "iccid_unexpected", "")
		}
	}
	if complete, _ := ctx.Value(completeKey{}).(bool); complete {
		if p.OSVersion == nil {
			sl.ReportError(p.OSVersion, "osVersion", "OSVersion", "required", "")
		}
		if p.DeviceInfo == nil {
			sl.ReportError(p.DeviceInfo, "deviceInfo", "DeviceInfo", "required", "")
		}
		if p.AppVersion == nil {
			sl.ReportError(p.AppVersion, "appVersion", "AppVersion", "required", "")
		}
	}
}

// osVersionRules checks that the name agrees with the API level. A level or
// name that is bad on its own is reported by its own tag instead.
func osVersionRules(sl validator.StructLevel) {
	o := sl.Current().Interface().(OSVersion)
	if o.API < MinAndroidAPI || !osNameValid(o.Name) {
		return
	}
	if !osNameMatches(o.API, o.Name) {
		sl.ReportError(o.Name, "name", "Name", "os_name_mismatch", ReleaseName(o.API))
	}
}

// Validate checks a normalised payload and returns a *tether.ValidationError
// naming every bad field, with field paths under prefix. With complete set
// (a handset logging in) every part of the payload must be present; without
// it (a manager registering by IMEI) only the IMEI must.
func Validate(v *validator.Validate, p Payload, prefix string, complete bool) error {
	ctx := context.WithValue(context.Background(), completeKey{}, complete)
	if err := v.StructCtx(ctx, p); err != nil {
		return tether.FromValidator(err, prefix, describe)
	}
	return nil
}

// fieldStems name fields in the codes of rules that several fields share.
var fieldStems = map[string]string{
	"imei":         "imei",
	"name":         "os_name",
	"hasIccCard":   "has_icc_card",
	"osVersion":    "os_version",
	"deviceInfo":   "device_info",
	"appVersion":   "app_version",
	"manufacturer": "manufacturer",
	"model":        "model",
}

var tagCodes = map[string]struct{ code, message string }{
	"imei_digits":      {"imei_format", "IMEI must contain only digits"},
	"imei_len":         {"imei_length", "IMEI must be 15 digits"},
	"imei_nonzero":     {"imei_zero", "IMEI must not be all zeros"},
	"imei_luhn":        {"imei_checksum", "IMEI check digit is wrong"},
	"iccid_max":        {"iccid_too_many", fmt.Sprintf("at most %d ICC IDs", MaxSIMs)},
	"iccid_unique":     {"iccid_duplicate", "ICC IDs must not repeat"},
	"iccid_digits":     {"iccid_format", "ICC ID must contain only digits (and an optional trailing F)"},
	"iccid_prefix":     {"iccid_prefix", "ICC ID must start with 89"},
	"iccid_len":        {"iccid_length", "ICC ID must be 19 or 20 digits"},
	"iccid_luhn":       {"iccid_checksum", "ICC ID check digit is wrong"},
	"iccid_missing":    {"iccid_missing", "hasIccCard is true but no ICC ID was sent"},
	"iccid_unexpected": {"iccid_unexpected", "hasIccCard is false but ICC IDs were sent"},
	"android_api":      {"os_api_invalid", fmt.Sprintf("API level must be %d or higher", MinAndroidAPI)},
	"os_name":          {"os_name_invalid", `version name must be a version number such as "14" or "8.1"`},
	"app_version":      {"app_version_format", fmt.Sprintf("app version must be 1 to %d printable characters", maxAppVersionLen)},
}

func describe(field, tag, param string) (string, string) {
	if c, ok := tagCodes[tag]; ok {
		return c.code, c.message
	}
	stem := fieldStems[field]
	if stem == "" {
		stem = field
	}
	switch tag {
	case "os_name_mismatch":
		return "os_name_mismatch", fmt.Sprintf("version name does not match the API level, which is Android %s", param)
	case "required":
		return stem + "_required", field + " is required"
	case "text_len":
		return stem + "_length", field + " must be 1 to 64 characters"
	case "text_printable":
		return stem + "_chars", field + " must be printable text"
	}
	return stem + "_invalid", field + " is invalid"
}
