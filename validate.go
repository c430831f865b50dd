package tether

import (
	"errors"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"
)

// NewValidator returns the validator every package registers its rules on.
// It names fields by their JSON names, as clients send them.
func NewValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		if name == "" {
			return f.Name
		}
		return name
	})
	return v
}

// Describe turns one failed rule into a stable code and a message. field is
// the JSON name of the failing field ("imei", or "iccIds" for "iccIds[2]"),
// tag the rule that failed.
type Describe func(field, tag, param string) (code, message string)

// FromValidator converts the errors of validator.Struct into a
// *ValidationError naming every bad field, with paths under prefix
// ("device." gives "device.imei"). Other errors are returned unchanged.
func FromValidator(err error, prefix string, describe Describe) error {
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		return err
	}
	out := &ValidationError{Fields: make([]FieldError, 0, len(verrs))}
	for _, fe := range verrs {
		// The namespace starts with the Go type name of the root struct.
		_, path, _ := strings.Cut(fe.Namespace(), ".")
		name := fe.Field()
		if i := strings.IndexByte(name, '['); i >= 0 {
			name = name[:i]
		}
		code, msg := describe(name, fe.Tag(), fe.Param())
		out.Fields = append(out.Fields, FieldError{Field: prefix + path, Code: code, Message: msg})
	}
	return out
}

// Join merges validation errors into one, in order. Nil arguments are
// skipped; the result is nil when there is nothing to report.
func Join(errs ...*ValidationError) *ValidationError {
	var out *ValidationError
	for _, e := range errs {
		if e == nil || len(e.Fields) == 0 {
			continue
		}
		if out == nil {
			out = &ValidationError{}
		}
		out.Fields = append(out.Fields, e.Fields...)
	}
	return out
}

// Printable reports whether s is valid UTF-8 made only of printable
// characters: spaces count, control and format characters do not.
func Printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
