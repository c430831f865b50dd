package api

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"tether"
)

// The seed corpora are in testdata/fuzz/<target>/, in go test's own format;
// go test runs them every time, and a finding of go test -fuzz lands there
// as a new case.

// FuzzDecodeBody feeds arbitrary bodies and content types to the request
// decoders, strict (the v1 API) and loose (the dialects, with XML and
// forms): nothing panics, every refusal is a 400 or 415 problem, and what
// the strict decoder accepts is one valid JSON value that names no member
// twice in one object, in any case.
func FuzzDecodeBody(f *testing.F) {
	app := fiber.New()
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		fctx := &fasthttp.RequestCtx{}
		fctx.Request.Header.SetContentType(contentType)
		fctx.Request.SetBody(body)
		c := app.AcquireCtx(fctx)
		defer app.ReleaseCtx(c)

		clean := func(what string, err error) bool {
			t.Helper()
			if err == nil {
				return true
			}
			var te *tether.Error
			if !errors.As(err, &te) || (te.Code != tether.CodeInvalidRequest && te.Code != tether.CodeUnsupportedMediaType) {
				t.Fatalf("%s: %v is not a clean refusal", what, err)
			}
			if p := toProblem(err); p.Status != fiber.StatusBadRequest && p.Status != fiber.StatusUnsupportedMediaType {
				t.Fatalf("%s: %v answers %d", what, err, p.Status)
			}
			return false
		}
		var login loginRequest
		if clean("strict login", decodeJSON(c, &login)) {
			if !json.Valid(body) {
				t.Fatalf("strict decoding accepted invalid JSON %q", body)
			}
			if tree, err := parseTree(body); err != nil || repeatsAMember(tree) {
				t.Fatalf("strict decoding accepted %q, which names a member twice (%v)", body, err)
			}
		}
		var reg registerDeviceRequest
		clean("strict registration", decodeJSON(c, &reg))
		var cred userCredentialModel
		clean("loose XML", decodeLoose(c, &cred, bodyKinds{xml: true}))
		var form tokenLoginLoginRequest
		clean("loose form", decodeLoose(c, &form, bodyKinds{form: true}))
	})
}

// repeatsAMember reports whether an object in n names a member twice,
// compared as encoding/json compares them (bytes.EqualFold).
func repeatsAMember(n *node) bool {
	for i, k := range n.keys {
		for _, earlier := range n.keys[:i] {
			if strings.EqualFold(k, earlier) {
				return true
			}
		}
	}
	for _, v := range n.vals {
		if repeatsAMember(v) {
			return true
		}
	}
	for _, v := range n.items {
		if repeatsAMember(v) {
			return true
		}
	}
	return false
}

// FuzzLowerXML feeds arbitrary bytes to the dialects' XML reading: nothing
// panics, DOCTYPEs are refused, and what it accepts is well-formed XML a
// struct can be read from.
func FuzzLowerXML(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := lowerXML(data)
		if err != nil {
			var te *tether.Error
			if !errors.As(err, &te) || te.Code != tether.CodeInvalidRequest {
				t.Fatalf("lowerXML error %v is not a clean refusal", err)
			}
			return
		}
		var v userCredentialModel
		_ = xml.Unmarshal(out, &v) // may refuse; must not panic
	})
}

// FuzzNegotiate feeds arbitrary Accept headers: a format or a 406, never a
// panic.
func FuzzNegotiate(f *testing.F) {
	f.Fuzz(func(t *testing.T, accept string) {
		_, ct, err := negotiate(accept)
		if err == nil && ct == "" {
			t.Fatalf("negotiate(%q) chose no content type", accept)
		}
	})
}
