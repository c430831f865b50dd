package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
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
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errTrailingData
	}
	return nil
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
