package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"tether/storage"
)

// mfaOf is username's second factors in the store, as JSON.
func (e *env) mfaOf(t *testing.T, username string) string {
	t.Helper()
	u, err := e.store.GetUserByUsername(t.Context(), username)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(u.MFA)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestPasskeysOff: without a relying party id (no --public-url), the
// passkey endpoints say passkeys are off, and the factors say so too.
func TestPasskeysOff(t *testing.T) {
	clk := &stepClock{}
	e := newEnv(t, clk)
	a := e.enrolledUser(t, clk, "ada", "admin")
	p := wantProblem(t, e.do("POST", "/v1/auth/factors/webauthn", a.access(), map[string]any{"code": a.codes[0]}), 404, "not_found")
	if !strings.Contains(p["detail"].(string), "--public-url") {
		t.Fatalf("the refusal says %q; want --public-url named", p["detail"])
	}
	wantProblem(t, e.do("POST", "/v1/auth/factors/webauthn/confirm", a.access(), map[string]any{"credential": map[string]any{"id": "x"}}), 404, "not_found")
	tok := wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "ada", "password": "correct horse"}), 401, "mfa_required")["mfaToken"]
	wantProblem(t, e.do("POST", "/v1/auth/mfa/webauthn", "", map[string]any{"mfaToken": tok}), 404, "not_found")
	wantProblem(t, e.do("POST", "/v1/auth/mfa/webauthn/finish", "", map[string]any{"mfaToken": tok, "credential": map[string]any{"id": "x"}}), 404, "not_found")
	if r := e.do("GET", "/v1/auth/factors", a.access(), nil); r.status != 200 || r.json(t)["passkeys"] != false {
		t.Fatalf("factors: %d %s", r.status, r.body)
	}
	if got := a.codes[0]; !strings.Contains(e.mfaOf(t, "ada"), `"recoveryCodes"`) || got == "" {
		t.Fatal("the refused requests used up the recovery code")
	}
}

// TestPasskeyBadInput sends each passkey endpoint what is not a request of
// it: not JSON (415), members of the wrong type or missing, a credential that is
// no object or no WebAuthn credential, one too large, a body over the
// limit, a name too long. Each is a 400 (or 413, 415) that names what was
// wrong, and nothing is written: no factor pending or added, no step
// completed, no failed sign-in counted.
func TestPasskeyBadInput(t *testing.T) {
	clk := &stepClock{}
	e := newEnv(t, oauthOn{}, passkeysOn, clk)
	a := e.enrolledUser(t, clk, "ada", "admin")
	tok := wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "ada", "password": "correct horse"}), 401, "mfa_required")["mfaToken"].(string)
	before := e.mfaOf(t, "ada")

	huge := map[string]any{"id": strings.Repeat("A", 40<<10), "type": "public-key"}
	cases := []struct {
		name, path, key string
		body            any
		status          int
		code, field     string
	}{
		{"options: not JSON", "/v1/auth/mfa/webauthn", "", "mfaToken=x", 415, "unsupported_media_type", ""},
		{"options: no token", "/v1/auth/mfa/webauthn", "", map[string]any{}, 400, "validation_failed", "mfaToken"},
		{"options: token a number", "/v1/auth/mfa/webauthn", "", `{"mfaToken": 5}`, 400, "invalid_request", ""},
		{"options: unknown member", "/v1/auth/mfa/webauthn", "", map[string]any{"mfaToken": tok, "code": "1"}, 400, "invalid_request", ""},
		{"options: a credential too early", "/v1/auth/mfa/webauthn", "", map[string]any{"mfaToken": tok, "credential": map[string]any{}}, 400, "validation_failed", "credential"},
		{"options: a forged token", "/v1/auth/mfa/webauthn", "", map[string]any{"mfaToken": "stp_x.y"}, 401, "token_invalid", ""},
		{"options: no passkey", "/v1/auth/mfa/webauthn", "", map[string]any{"mfaToken": tok}, 409, "conflict", ""},
		{"finish: no credential", "/v1/auth/mfa/webauthn/finish", "", map[string]any{"mfaToken": tok}, 400, "validation_failed", "credential"},
		{"finish: null credential", "/v1/auth/mfa/webauthn/finish", "", `{"mfaToken": "` + tok + `", "credential": null}`, 400, "validation_failed", "credential"},
		{"finish: credential a string", "/v1/auth/mfa/webauthn/finish", "", map[string]any{"mfaToken": tok, "credential": "eyJ0eXBlIjoi"}, 400, "validation_failed", "credential"},
		{"finish: credential an array", "/v1/auth/mfa/webauthn/finish", "", map[string]any{"mfaToken": tok, "credential": []int{1}}, 400, "validation_failed", "credential"},
		{"finish: credential empty", "/v1/auth/mfa/webauthn/finish", "", map[string]any{"mfaToken": tok, "credential": map[string]any{}}, 400, "validation_failed", "credential"},
		{"finish: credential not WebAuthn", "/v1/auth/mfa/webauthn/finish", "", map[string]any{"mfaToken": tok, "credential": map[string]any{
			"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": map[string]any{"clientDataJSON": "!!", "authenticatorData": "x", "signature": "y"}}}, 400, "validation_failed", "credential"},
		{"finish: credential too large", "/v1/auth/mfa/webauthn/finish", "", map[string]any{"mfaToken": tok, "credential": huge}, 400, "validation_failed", "credential"},
		{"finish: body over the limit", "/v1/auth/mfa/webauthn/finish", "", map[string]any{"mfaToken": tok, "credential": map[string]any{"id": strings.Repeat("A", 70<<10)}}, 413, "payload_too_large", ""},
		{"enroll: no token", "/v1/auth/mfa/enroll/webauthn", "", map[string]any{}, 400, "validation_failed", "enrollmentToken"},
		{"enroll: a code", "/v1/auth/mfa/enroll/webauthn", "", map[string]any{"enrollmentToken": "stp_x.y", "code": "123456"}, 400, "validation_failed", "code"},
		{"enroll: a forged token", "/v1/auth/mfa/enroll/webauthn", "", map[string]any{"enrollmentToken": "stp_x.y"}, 401, "token_invalid", ""},
		{"enroll: an mfaToken", "/v1/auth/mfa/enroll/webauthn", "", map[string]any{"enrollmentToken": tok}, 401, "token_invalid", ""},
		{"enroll confirm: credential a string", "/v1/auth/mfa/enroll/webauthn/confirm", "", map[string]any{"enrollmentToken": tok, "credential": "x"}, 400, "validation_failed", "credential"},
		{"enroll confirm: no credential", "/v1/auth/mfa/enroll/webauthn/confirm", "", map[string]any{"enrollmentToken": tok}, 400, "validation_failed", "credential"},
		{"enroll confirm: not WebAuthn", "/v1/auth/mfa/enroll/webauthn/confirm", "", map[string]any{"enrollmentToken": tok, "credential": map[string]any{"id": "AAAA"}}, 401, "token_invalid", ""},
		{"begin: not JSON", "/v1/auth/factors/webauthn", a.access(), "name=x", 415, "unsupported_media_type", ""},
		{"begin: name a number", "/v1/auth/factors/webauthn", a.access(), `{"code": "123456", "name": 7}`, 400, "invalid_request", ""},
		{"begin: name too long", "/v1/auth/factors/webauthn", a.access(), map[string]any{"code": a.codes[0], "name": strings.Repeat("n", 65)}, 400, "validation_failed", "name"},
		{"begin: name with a control", "/v1/auth/factors/webauthn", a.access(), map[string]any{"code": a.codes[0], "name": "a\u0007b"}, 400, "validation_failed", "name"},
		{"begin: no proof", "/v1/auth/factors/webauthn", a.access(), map[string]any{"name": "laptop"}, 400, "validation_failed", "code"},
		{"confirm: no credential", "/v1/auth/factors/webauthn/confirm", a.access(), map[string]any{}, 400, "validation_failed", "credential"},
		{"confirm: credential a number", "/v1/auth/factors/webauthn/confirm", a.access(), map[string]any{"credential": 3}, 400, "validation_failed", "credential"},
		{"confirm: credential not WebAuthn", "/v1/auth/factors/webauthn/confirm", a.access(), map[string]any{"credential": map[string]any{"id": "AAAA", "type": "public-key"}}, 400, "validation_failed", "credential"},
		{"confirm: credential too large", "/v1/auth/factors/webauthn/confirm", a.access(), map[string]any{"credential": huge}, 400, "validation_failed", "credential"},
		{"confirm: not JSON", "/v1/auth/factors/webauthn/confirm", a.access(), "credential", 415, "unsupported_media_type", ""},
		{"begin: a worker", "/v1/auth/factors/webauthn", "", map[string]any{"password": "correct horse"}, 403, "forbidden", ""},
	}
	worker := ""
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.withT(t)
			key := c.key
			if c.name == "begin: a worker" {
				if worker == "" {
					e.fleet()
					worker = e.loginWorker()["accessToken"].(string)
				}
				key = worker
			}
			var r response
			if s, ok := c.body.(string); ok && !strings.HasPrefix(s, "{") {
				r = e.do("POST", c.path, key, s, "Content-Type", "application/x-www-form-urlencoded")
			} else {
				r = e.do("POST", c.path, key, c.body)
			}
			p := wantProblem(t, r, c.status, c.code)
			if c.field != "" {
				found := false
				for _, fe := range p["errors"].([]any) {
					found = found || fe.(map[string]any)["field"] == c.field
				}
				if !found {
					t.Fatalf("the problem names no field %s: %v", c.field, p)
				}
			}
		})
	}
	if after := e.mfaOf(t, "ada"); after != before {
		t.Fatalf("bad requests changed ada's factors:\n%s\n%s", before, after)
	}
	if r := e.do("GET", "/v1/lockouts", e.admin, nil); r.status != 200 || len(r.json(t)["items"].([]any)) != 0 {
		t.Fatalf("bad requests were counted as failed sign-ins: %s", r.body)
	}
	// Nothing pending: a confirmation finds no registration begun.
	wantProblem(t, e.do("POST", "/v1/auth/factors/webauthn/confirm", a.access(), map[string]any{"credential": map[string]any{
		"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": map[string]any{"clientDataJSON": "e30", "attestationObject": "oA"}}}), 400, "validation_failed")
	if u, err := e.store.GetUserByUsername(t.Context(), "ada"); err != nil || u.MFA.Pending != nil || len(u.MFA.Factors) != 1 || u.MFA.Factors[0].Kind != storage.FactorTOTP {
		t.Fatalf("ada after the bad requests: %+v, %v", u.MFA, err)
	}
	// And she signs in with her app as before.
	e.signIn(t, clk, a)
}
