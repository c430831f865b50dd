package tether

import (
	"errors"
	"fmt"
	"testing"
)

func TestFromValidatorPaths(t *testing.T) {
	type inner struct {
		Name string `json:"name" validate:"required"`
	}
	type outer struct {
		Items []string `json:"items" validate:"dive,min=2"`
		In    inner    `json:"in"`
		Skip  string   `json:"-" validate:"required"`
	}
	v := NewValidator()
	err := FromValidator(v.Struct(outer{Items: []string{"ok", "x"}}), "body.", func(field, tag, param string) (string, string) {
		return field + ":" + tag, "msg"
	})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v; want *ValidationError", err)
	}
	got := fmt.Sprint(ve.Fields)
	want := "[{body.items[1] items:min msg} {body.in.name name:required msg} {body.Skip Skip:required msg}]"
	if got != want {
		t.Fatalf("got %s; want %s", got, want)
	}
	other := errors.New("not a validation error")
	if FromValidator(other, "", nil) != other {
		t.Fatal("a foreign error was not passed through")
	}
}

func TestJoin(t *testing.T) {
	if Join(nil, &ValidationError{}) != nil {
		t.Fatal("joining nothing gave an error")
	}
	j := Join(Invalid("a", "a_bad", "a"), nil, Invalid("b", "b_bad", "b"))
	if len(j.Fields) != 2 || j.Fields[0].Field != "a" || j.Fields[1].Field != "b" {
		t.Fatalf("Join = %+v", j)
	}
	if j.Error() != "validation failed: a: a_bad, b: b_bad" {
		t.Fatalf("Error() = %q", j.Error())
	}
}

func TestPrintable(t *testing.T) {
	for s, want := range map[string]bool{
		"": true, "van 7": true, "Ｓ23 ✓": true, "tab\there": false, "nul\x00": false,
		"bad\xff": false, "rtl\u202e": false, "zero\u200b": false,
	} {
		if got := Printable(s); got != want {
			t.Errorf("Printable(%q) = %v; want %v", s, got, want)
		}
	}
}
