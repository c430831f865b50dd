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

// FuzzCurveOf holds curveOf, with its shortcut for plain JWKs, to what
// json.Unmarshal finds.
func FuzzCurveOf(f *testing.F) {
	for _, seed := range []string{
		`{"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`,
		`{"e":"AQAB","kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}`,
		`{}`, `null`, `[]`, `"crv"`, ` {"crv":"P-256"} `, `{"CRV":"P-384"}`, `{"crv":"P-256","Crv":"P-521"}`,
		`{"crv":null}`, `{"crv":1}`, `{"crv":"P-256",}`, `{"\u0063rv":"P-256"}`, `{"crv":"P\u002d256"}`,
		`{"crv":"P-256"}x`, `{"crv":"P-256","crv":"P-384","kty":"EC"}`, `{"crv":"\xff"}`, `{"crv":"P-256"`, `{"a":{"crv":"x"},"crv":"y"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, jwk []byte) {
		var want struct {
			Crv string `json:"crv"`
		}
		if json.Unmarshal(jwk, &want) != nil {
			want.Crv = ""
		}
		if got := curveOf(jwk); got != want.Crv {
			t.Fatalf("curveOf(%q) = %q; want %q", jwk, got, want.Crv)
		}
	})
}

// FuzzRepeatedMembers holds refuseRepeatedMembers, with its quick look at
// plain bodies, to the thorough walk: the same answer for every body.
func FuzzRepeatedMembers(f *testing.F) {
	for _, seed := range []string{
		`{"accessToken":"eyJ.x.y","deviceId":"dev_1"}`, `{"a":1,"A":2}`, `{"a":{"b":1,"b":2}}`, `{"a":{"b":1},"a":2}`,
		`{"a":[{"x":1},{"x":2}],"b":[1,2,{"c":true,"C":null}]}`, `{"s":1,"ſ":2}`, `{"k":1,"\u212a":2}`, `{"k":1,"K":2}`,
		`{"a\u0062":1,"ab":2}`, `{"a":"\"}","a":1}`, `{}`, `[]`, `[{}]`, `"x"`, `1`, `-1.5e+3`, `true`, `null`, `{} {}`,
		`{"a":1,}`, `{"a" 1}`, `{"a":1 "a":2}`, `{"a":tru,"a":1}`, `{"a":1,"a":x}`, `[1,,2]`, `{"a":[1,2}`, ` { "a" : 1 , "A" : 2 } `,
		`{"é":1,"É":2}`, "{\"a\":\"\x01\"}", `{"a":1}x`, `{"":1,"":2}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, want := refuseRepeatedMembers(body), findRepeatedMembers(body)
		if (got == nil) != (want == nil) || got != nil && got.Error() != want.Error() {
			t.Fatalf("%q: %v; the thorough walk says %v", body, got, want)
		}
	})
}
