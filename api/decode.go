package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"tether"
)

var (
	errUnsupportedMedia = tether.NewError(tether.CodeUnsupportedMediaType, "send the body as application/json")
	errEmptyBody        = tether.NewError(tether.CodeInvalidRequest, "the request body is empty")
	errBadUTF8          = tether.NewError(tether.CodeInvalidRequest, "the request body is not valid UTF-8")
	errTrailingData     = tether.NewError(tether.CodeInvalidRequest, "unexpected data after the JSON value")
)

func invalidRequest(format string, args ...any) error {
	return tether.NewError(tether.CodeInvalidRequest, fmt.Sprintf(format, args...))
}

// isJSON reports whether a Content-Type names JSON.
func isJSON(contentType string) bool {
	if contentType == fiber.MIMEApplicationJSON || contentType == fiber.MIMEApplicationJSONCharsetUTF8 {
		return true // what nearly every client sends, without parsing
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch mt {
	case fiber.MIMEApplicationJSON, "text/json":
		return true
	}
	return false
}

// decodeJSON reads the body into v strictly: JSON only, valid UTF-8, one
// value, no unknown fields, every type as declared. Each failure is a 400
// (or 415) that says what was wrong. The decoder copies every string out of
// the request's memory, which Fiber reuses after the handler returns.
func decodeJSON(c *fiber.Ctx, v any) error {
	return decodeBody(c, v, true)
}

// decodeBody is decodeJSON; strict refuses members v does not have, which
// are otherwise ignored.
func decodeBody(c *fiber.Ctx, v any, strict bool) error {
	if !isJSON(c.Get(fiber.HeaderContentType)) {
		return errUnsupportedMedia
	}
	body := c.Body()
	if len(bytes.TrimSpace(body)) == 0 {
		return errEmptyBody
	}
	if !utf8.Valid(body) {
		return errBadUTF8
	}
	if err := refuseRepeatedMembers(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errTrailingData
	}
	return nil
}

// refuseRepeatedMembers refuses a JSON body in which one object, at any
// depth, names a member twice. encoding/json would keep the last value
// silently, so a proxy, a log or a WAF reading the first would see another
// request than the handler. Names are compared as encoding/json matches
// them to struct fields, ignoring case, so "username" and "UserName" are the
// same member. A body that is not valid JSON is left to the decoder that
// follows, which says what is wrong with it.
func refuseRepeatedMembers(body []byte) error {
	if repeated, ok := plainRepeats(body); ok && !repeated {
		return nil
	}
	return findRepeatedMembers(body)
}

// plainRepeats is refuseRepeatedMembers' quick look, for the bodies apps
// send: it walks the JSON without decoding it and reports whether an
// object names a member twice, ok only when every member name is plain
// ASCII without escapes (their folded forms are then their upper case)
// and the body is well formed as far as the walk can tell. Otherwise, or
// when it finds a name repeated, findRepeatedMembers has the last word and
// says what is wrong.
func plainRepeats(body []byte) (repeated, ok bool) {
	// names holds the member names of every object open, innermost
	// last; start where each object's begin (-1 for an array).
	var names [][]byte
	var start []int
	i, n := 0, len(body)
	space := func() {
		for i < n && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
			i++
		}
	}
	// str moves past the string at body[i], and reports whether it was
	// plain (no escape, no byte past ASCII).
	str := func() (plain, ok bool) {
		plain = true
		for i++; i < n; i++ {
			switch c := body[i]; {
			case c == '"':
				i++
				return plain, true
			case c == '\\':
				plain = false
				i++
			case c < 0x20:
				return false, false
			case c >= 0x80:
				plain = false
			}
		}
		return false, false
	}
	expectValue := true
	for {
		space()
		if i == n {
			return false, len(start) == 0 && !expectValue
		}
		inObject := len(start) > 0 && start[len(start)-1] >= 0
		switch c := body[i]; {
		case expectValue && c == '{':
			start = append(start, len(names))
			i++
			space()
			if i < n && body[i] == '}' {
				i++
				start = start[:len(start)-1]
				expectValue = false
				continue
			}
			if i == n || body[i] != '"' {
				return false, false
			}
			fallthrough
		case !expectValue && inObject && c == ',':
			if c == ',' {
				i++
				space()
			}
			from := i
			if plain, ok := str(); !ok || !plain {
				return false, false
			}
			name := body[from+1 : i-1]
			first := start[len(start)-1]
			if len(names)-first >= 64 {
				return false, false // a long object: the map of the slow path
			}
			for _, seen := range names[first:] {
				if bytes.EqualFold(seen, name) {
					return true, true
				}
			}
			names = append(names, name)
			space()
			if i == n || body[i] != ':' {
				return false, false
			}
			i++
			expectValue = true
		case expectValue && c == '[':
			start = append(start, -1)
			i++
			space()
			if i < n && body[i] == ']' {
				i++
				start = start[:len(start)-1]
				expectValue = false
			}
		case !expectValue && !inObject && len(start) > 0 && c == ',':
			i++
			expectValue = true
		case !expectValue && len(start) > 0 && (c == '}' && inObject || c == ']' && !inObject):
			if inObject {
				names = names[:start[len(start)-1]]
			}
			start = start[:len(start)-1]
			i++
		case expectValue && c == '"':
			if _, ok := str(); !ok {
				return false, false
			}
			expectValue = false
		case expectValue && (c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n'):
			for i < n && (body[i] == '-' || body[i] == '+' || body[i] == '.' || body[i] >= '0' && body[i] <= '9' || body[i] >= 'a' && body[i] <= 'z' || body[i] == 'E') {
				i++
			}
			expectValue = false
		default:
			return false, false
		}
		if !expectValue && len(start) == 0 {
			space()
			return false, i == n
		}
	}
}

// findRepeatedMembers is refuseRepeatedMembers the thorough way: every
// name decoded and folded as encoding/json folds it.
func findRepeatedMembers(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // no number is out of range; the walk goes on past it
	type open struct {
		names memberNames // nil in an array
		name  bool        // the next token in this object is a member name
	}
	var stack []open
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		top := len(stack) - 1
		switch {
		case top >= 0 && stack[top].name && tok != json.Delim('}'):
			stack[top].name = false
			name, _ := tok.(string) // the decoder allows nothing else here
			if err := stack[top].names.add(name, "member"); err != nil {
				return err
			}
			continue
		case tok == json.Delim('{'):
			stack = append(stack, open{names: memberNames{}, name: true})
			continue
		case tok == json.Delim('['):
			stack = append(stack, open{})
			continue
		case tok == json.Delim('}') || tok == json.Delim(']'):
			stack = stack[:top]
		}
		// A value ended: the first one is the whole body; in an object, a
		// member name or the end comes next.
		if len(stack) == 0 {
			return nil
		}
		stack[len(stack)-1].name = stack[len(stack)-1].names != nil
	}
}

// memberNames are the member names of one object, or the field names of
// one form, seen so far, by their folded form.
type memberNames map[string]string

// maxQuotedName bounds how much of a client's name an error quotes.
const maxQuotedName = 64

// add records name, or refuses it when one seen before matches it in any
// case; noun says what a name is ("member", "field"). Errors quote only
// the client's own names.
func (m memberNames) add(name, noun string) error {
	key := foldName(name)
	first, seen := m[key]
	if !seen {
		m[key] = name
		return nil
	}
	if first == name {
		return invalidRequest("%s %q is repeated", noun, clip(name, maxQuotedName))
	}
	return invalidRequest("%s %q repeats %q: names are matched ignoring case", noun, clip(name, maxQuotedName), clip(first, maxQuotedName))
}

// foldName folds s as encoding/json does when it matches a member to a
// struct field: each rune to the smallest of its case-folding set, so
// that "ſ" (long s) folds with "s" and "S", which strings.ToLower misses.
func foldName(s string) string {
	return strings.Map(func(r rune) rune {
		for {
			// SimpleFold steps up through the set and wraps to its smallest.
			f := unicode.SimpleFold(r)
			if f <= r {
				return f
			}
			r = f
		}
	}, s)
}

// clip shortens s to at most n bytes without splitting a character.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func describeJSONError(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		return invalidRequest("malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return invalidRequest("the body must be a JSON %s", jsonKind(typ.Type.Kind().String()))
		}
		return invalidRequest("field %q must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalidRequest("the JSON body ends too soon")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return invalidRequest("member %s is not one this endpoint takes (see /openapi.json)", clip(name, maxQuotedName+2))
	}
	// The decoder's remaining errors are "json: unknown field "x"" and
	// the like: they quote only the client's own input.
	return invalidRequest("%s", err.Error())
}

func jsonKind(goKind string) string {
	switch goKind {
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "ptr":
		return "a value of another type"
	}
	return "a number"
}

// param returns a route parameter as a string of its own.
func param(c *fiber.Ctx, name string) string {
	return utils.CopyString(c.Params(name))
}

// query returns a query parameter as a string of its own.
func query(c *fiber.Ctx, name string) string {
	return utils.CopyString(c.Query(name))
}

// queryLimit reads the limit query parameter: absent is 0 (the store's
// default); otherwise 1 to 1000.
func queryLimit(c *fiber.Ctx) (int, error) {
	raw := c.Query("limit")
	if raw == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > 1000 {
		return 0, tether.Invalid("limit", "limit_invalid", "limit must be a whole number from 1 to 1000")
	}
	return n, nil
}
