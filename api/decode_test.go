package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// decodeWith runs decode on a request carrying body as contentType.
func decodeWith(body, contentType string, decode func(*fiber.Ctx) error) error {
	app := fiber.New()
	fctx := &fasthttp.RequestCtx{}
	fctx.Request.Header.SetContentType(contentType)
	fctx.Request.SetBody([]byte(body))
	c := app.AcquireCtx(fctx)
	defer app.ReleaseCtx(c)
	return decode(c)
}

// TestRepeatedMembers sends bodies naming a member twice, or once in each
// of two objects, to the strict decoder and to the dialects' loose one.
func TestRepeatedMembers(t *testing.T) {
	type strict struct {
		Username string            `json:"username"`
		Password string            `json:"password"`
		Device   map[string]any    `json:"device"`
		Items    []json.RawMessage `json:"items"`
		Profile  json.RawMessage   `json:"profile"`
	}
	long := strings.Repeat("k", 500)
	cases := []struct {
		name, body string
		detail     string // a part of the refusal's detail; "" when accepted
	}{
		{"top level", `{"username":"walter","username":"admin"}`, `member "username" is repeated`},
		{"top level, apart", `{"username":"walter","password":"x","username":"admin"}`, `member "username" is repeated`},
		{"nested", `{"device":{"imei":"1","imei":"2"}}`, `member "imei" is repeated`},
		{"deeper", `{"device":{"osVersion":{"api":34,"name":"14","api":35}}}`, `member "api" is repeated`},
		{"in an array of objects", `{"items":[{"a":1},{"b":1,"b":2}]}`, `member "b" is repeated`},
		{"in an array in an array", `{"items":[[{"b":1}],[{"b":1,"b":2}]]}`, `member "b" is repeated`},
		{"after a value that is an object", `{"device":{"a":1},"profile":{},"device":{}}`, `member "device" is repeated`},
		{"in other case", `{"username":"walter","UserName":"admin"}`, `member "UserName" repeats "username"`},
		{"in other case, nested", `{"profile":{"Team":"a","TEAM":"b"}}`, `member "TEAM" repeats "Team"`},
		{"folded as encoding/json folds", `{"username":"walter","uſername":"admin"}`, `repeats "username"`},
		{"escaped", `{"username":"walter","\u0075sername":"admin"}`, `member "username" is repeated`},
		{"empty name", `{"profile":{"":1,"":2}}`, `member "" is repeated`},
		{"long name, clipped", `{"profile":{"` + long + `":1,"` + long + `":2}}`, `member "` + long[:64] + `…" is repeated`},
		{"after a huge number", `{"profile":{"n":1e999999,"n":2}}`, `member "n" is repeated`},
		{"same name in two objects", `{"username":"walter","device":{"username":"walter"},"profile":{"username":"w","device":{"username":"w"}}}`, ""},
		{"same name in sibling items", `{"items":[{"a":1,"b":2},{"a":1,"b":2}]}`, ""},
		{"values equal to names", `{"username":"password","password":"username"}`, ""},
		{"names only differing past folding", `{"profile":{"a":1,"á":2,"ä":3}}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var v strict
			check := func(decoder string, err error) {
				t.Helper()
				switch {
				case c.detail == "" && err != nil:
					t.Errorf("%s: %v; want it accepted", decoder, err)
				case c.detail != "" && err == nil:
					t.Errorf("%s accepted it; want %q", decoder, c.detail)
				case c.detail != "" && !strings.Contains(toProblem(err).Detail, c.detail):
					t.Errorf("%s: %q; want %q in it", decoder, toProblem(err).Detail, c.detail)
				case c.detail != "" && toProblem(err).Status != fiber.StatusBadRequest:
					t.Errorf("%s: status %d; want 400", decoder, toProblem(err).Status)
				}
			}
			check("strict", decodeWith(c.body, "application/json", func(ctx *fiber.Ctx) error { return decodeJSON(ctx, &v) }))
			check("loose", decodeWith(c.body, "text/json", func(ctx *fiber.Ctx) error { return decodeLoose(ctx, &v, bodyKinds{}) }))
		})
	}
}

// TestRepeatedFormFields sends the dialects' form decoder a field twice.
func TestRepeatedFormFields(t *testing.T) {
	cases := []struct {
		body   string
		detail string // "" when accepted
	}{
		{"username=walter&password=secret", ""},
		{"username=walter&username=admin", `field "username" is repeated`},
		{"username=walter&password=x&username=admin", `field "username" is repeated`},
		{"username=walter&UserName=admin", `field "UserName" repeats "username"`},
		{"username=walter&user%6Eame=admin", `field "username" is repeated`},
		{"username=walter&username", `field "username" is repeated`},
	}
	for _, c := range cases {
		var v tokenLoginLoginRequest
		err := decodeWith(c.body, fiber.MIMEApplicationForm, func(ctx *fiber.Ctx) error { return decodeLoose(ctx, &v, bodyKinds{form: true}) })
		switch {
		case c.detail == "" && err != nil:
			t.Errorf("%q: %v; want it accepted", c.body, err)
		case c.detail != "" && err == nil:
			t.Errorf("%q accepted as %+v; want %q", c.body, v, c.detail)
		case c.detail != "" && !strings.Contains(toProblem(err).Detail, c.detail):
			t.Errorf("%q: %q; want %q in it", c.body, toProblem(err).Detail, c.detail)
		}
	}
}
