package api

// The compatibility dialects: the five login and renewal APIs in
// ../shared/seeds, served at their own paths with their own shapes, each a
// thin adapter over the same auth.Service the native API uses. No rule is
// written here; only names, shapes and status codes are.

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"mime"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"tether"
)

// HeaderDeviceID names the handset a dialect request binds to, for the
// dialects whose bodies carry none: an enrolled handset's id or IMEI.
const HeaderDeviceID = "X-Device-Id"

// deviceHeader returns the X-Device-Id of a request.
func deviceHeader(c *fiber.Ctx) string {
	return strings.TrimSpace(utils.CopyString(c.Get(HeaderDeviceID)))
}

// dotnetTime formats a time as the .NET servers behind the seeds did:
// 2024-05-20T04:23:26.0970256+00:00.
func dotnetTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.0000000-07:00")
}

var (
	errDoctype = tether.NewError(tether.CodeInvalidRequest, "XML with a DOCTYPE is not accepted")
	errBadXML  = tether.NewError(tether.CodeInvalidRequest, "the XML body is malformed")
	errBadForm = tether.NewError(tether.CodeInvalidRequest, "the form body is malformed")
)

// bodyKinds says which request formats a dialect endpoint takes besides JSON.
type bodyKinds struct {
	xml  bool
	form bool
}

// decodeLoose reads a dialect's body as the .NET servers did: field names
// in any case, unknown fields ignored, an empty body as all fields empty. It
// takes JSON, and XML or a form where the seed documents them; anything else
// is a 415.
func decodeLoose(c *fiber.Ctx, v any, kinds bodyKinds) error {
	body := c.Body()
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if !utf8.Valid(body) {
		return errBadUTF8
	}
	mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil {
		mt = ""
	}
	switch {
	case mt == fiber.MIMEApplicationJSON || mt == mimeTextJSON:
		if err := refuseRepeatedMembers(body); err != nil {
			return err
		}
		if err := json.Unmarshal(body, v); err != nil {
			return describeJSONError(err)
		}
		return nil
	case kinds.xml && (mt == fiber.MIMEApplicationXML || mt == fiber.MIMETextXML):
		lowered, err := lowerXML(body)
		if err != nil {
			return err
		}
		if err := xml.Unmarshal(lowered, v); err != nil {
			return errBadXML
		}
		return nil
	case kinds.form && mt == fiber.MIMEApplicationForm:
		return decodeForm(body, v)
	}
	return kinds.unsupported()
}

// unsupported is the 415 of a body in a format the endpoint does not take,
// naming the ones it does.
func (k bodyKinds) unsupported() error {
	types := []string{fiber.MIMEApplicationJSON, mimeTextJSON}
	if k.xml {
		types = append(types, fiber.MIMEApplicationXML, fiber.MIMETextXML)
	}
	if k.form {
		types = append(types, fiber.MIMEApplicationForm)
	}
	last := len(types) - 1
	return tether.NewError(tether.CodeUnsupportedMediaType,
		"send the body as "+strings.Join(types[:last], ", ")+" or "+types[last])
}

// lowerXML rewrites an XML document with every element name in lower case
// and without namespaces or attributes, so structs tagged with lower-case
// names read it whatever the client's casing and namespace prefixes.
// Documents with a DOCTYPE are refused outright.
func lowerXML(body []byte) ([]byte, error) {
	dec := xml.NewDecoder(bytes.NewReader(body))
	var out bytes.Buffer
	enc := xml.NewEncoder(&out)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errBadXML
		}
		switch t := tok.(type) {
		case xml.StartElement:
			tok = xml.StartElement{Name: xml.Name{Local: strings.ToLower(t.Name.Local)}}
		case xml.EndElement:
			tok = xml.EndElement{Name: xml.Name{Local: strings.ToLower(t.Name.Local)}}
		case xml.Directive:
			return nil, errDoctype
		case xml.ProcInst, xml.Comment:
			continue
		}
		if err := enc.EncodeToken(tok); err != nil {
			return nil, errBadXML
		}
	}
	if err := enc.Flush(); err != nil {
		return nil, errBadXML
	}
	return out.Bytes(), nil
}

// decodeForm reads application/x-www-form-urlencoded into v, a pointer to
// a struct, through its JSON field names: a boolean field takes "true" or
// "false" in any case (empty: left out), every other field the text as it
// is, so a password "true" stays text. A field sent twice, in any case, is
// refused as a repeated JSON member is.
func decodeForm(body []byte, v any) error {
	args := fiber.AcquireArgs()
	defer fiber.ReleaseArgs(args)
	args.ParseBytes(body)
	bools := boolFields(reflect.TypeOf(v))
	m := map[string]any{}
	names := memberNames{}
	for k, val := range args.All() {
		name, s := string(k), string(val)
		if err := names.add(name, "field"); err != nil {
			return err
		}
		if !bools[foldName(name)] {
			m[name] = s
			continue
		}
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true":
			m[name] = true
		case "false":
			m[name] = false
		case "":
		default:
			return invalidRequest("form field %q must be true or false", clip(name, maxQuotedName))
		}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return errBadForm
	}
	if err := json.Unmarshal(data, v); err != nil {
		return errBadForm
	}
	return nil
}

// boolFields returns the folded JSON names of the boolean fields of the
// struct t points to.
func boolFields(t reflect.Type) map[string]bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	out := map[string]bool{}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := range t.NumField() {
		f := t.Field(i)
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() != reflect.Bool {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = f.Name
		}
		out[foldName(name)] = true
	}
	return out
}

// profileField returns a member of a user's profile object, matched by name
// case-insensitively, or nil.
func profileField(profile json.RawMessage, name string) json.RawMessage {
	if len(profile) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(profile, &m) != nil {
		return nil
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// profileList returns a profile member that is an array, or an empty list.
func profileList(profile json.RawMessage, name string) []json.RawMessage {
	var list []json.RawMessage
	if raw := profileField(profile, name); raw != nil && json.Unmarshal(raw, &list) == nil && list != nil {
		return list
	}
	return []json.RawMessage{}
}
