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
	errDoctype  = tether.NewError(tether.CodeInvalidRequest, "XML with a DOCTYPE is not accepted")
	errBadXML   = tether.NewError(tether.CodeInvalidRequest, "the XML body is malformed")
	errBadForm  = tether.NewError(tether.CodeInvalidRequest, "the form body is malformed")
	errJSONOnly = tether.NewError(tether.CodeUnsupportedMediaType, "send the body as application/json or text/json")
	errJSONXML  = tether.NewError(tether.CodeUnsupportedMediaType, "send the body as application/json, text/json, application/xml or text/xml")
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
	case kinds.xml:
		return errJSONXML
	}
	return errJSONOnly
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

// decodeForm reads application/x-www-form-urlencoded into v through its
// JSON field names ("true" and "false" as booleans). A field sent twice, in
// any case, is refused as a repeated JSON member is.
func decodeForm(body []byte, v any) error {
	args := fiber.AcquireArgs()
	defer fiber.ReleaseArgs(args)
	args.ParseBytes(body)
	m := map[string]any{}
	names := memberNames{}
	for k, val := range args.All() {
		if err := names.add(string(k), "field"); err != nil {
			return err
		}
		s := string(val)
		switch strings.ToLower(s) {
		case "true":
			m[string(k)] = true
		case "false":
			m[string(k)] = false
		default:
			m[string(k)] = s
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
