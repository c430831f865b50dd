package api_test

import (
	"encoding/json"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// otplibCodes has otplib read uri as an authenticator app does and make
// the TOTP code of each time in at; it returns what otplib read.
func otplibCodes(t *testing.T, uri string, at ...time.Time) otplibAnswer {
	t.Helper()
	node, dir := nodePackage(t, "otplib", "otplib")
	args := []string{filepath.Join(dir, "totp.mjs"), uri}
	for _, a := range at {
		args = append(args, strconv.FormatInt(a.Unix(), 10))
	}
	out, err := exec.Command(node, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("otplib: %v\n%s", err, out)
	}
	var got otplibAnswer
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("otplib's answer: %v\n%s", err, out)
	}
	if len(got.Codes) != len(at) {
		t.Fatalf("otplib made %d codes; want %d", len(got.Codes), len(at))
	}
	return got
}

type otplibAnswer struct {
	Type      string   `json:"type"`
	Label     string   `json:"label"`
	Issuer    string   `json:"issuer"`
	Algorithm string   `json:"algorithm"`
	Digits    int      `json:"digits"`
	Period    int      `json:"period"`
	Codes     []string `json:"codes"`
}

// TestTOTPWithOtplib enrolls an authenticator app through the API and
// makes its codes with otplib (npm), an implementation of RFC 6238 other
// than the server's, from the otpauth URI alone: the first code confirms
// the factor; at the next sign-in a code of the step after the server's
// is taken (one step of skew), as is one of the step before, while codes
// two steps away are refused, and so are a code used already and a code
// of a step at or before one used. The server's clock stands still
// between the steps the test moves it by, so no step ends mid-test.
// .ci/run installs otplib (testdata/otplib); elsewhere the test skips
// without it.
func TestTOTPWithOtplib(t *testing.T) {
	nodePackage(t, "otplib", "otplib")
	// Ten seconds into a step.
	now := time.Now().Truncate(30 * time.Second).Add(10 * time.Second)
	clk := &stepClock{at: now}
	e := newEnv(t, clk)
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "ada", "password": "correct horse", "role": "admin"}); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	p := wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "ada", "password": "correct horse"}), 401, "mfa_enrollment_required")
	tok := p["enrollmentToken"]
	setup := e.do("POST", "/v1/auth/mfa/enroll", "", map[string]any{"enrollmentToken": tok})
	if setup.status != 200 {
		t.Fatalf("enroll: %d %s", setup.status, setup.body)
	}
	uri := setup.json(t)["otpauthUri"].(string)
	step := 30 * time.Second
	at := func(n int) time.Time { return clk.Now().Add(time.Duration(n) * step) }

	first := otplibCodes(t, uri, at(0))
	if first.Type != "totp" || first.Algorithm != "sha1" || first.Digits != 6 || first.Period != 30 || first.Issuer == "" || first.Label != first.Issuer+":ada" {
		t.Fatalf("otplib read the URI %s as %+v; want TOTP, SHA-1, 6 digits, 30 s, the issuer and ada", uri, first)
	}
	if u, err := url.Parse(uri); err != nil || u.Query().Get("secret") != setup.json(t)["secret"] {
		t.Fatalf("the URI %s does not hold the secret given beside it (%v)", uri, err)
	}
	if r := e.do("POST", "/v1/auth/mfa/enroll/confirm", "", map[string]any{"enrollmentToken": tok, "code": first.Codes[0]}); r.status != 200 {
		t.Fatalf("otplib's first code: %d %s", r.status, r.body)
	}

	// Step 0 was used. Two steps away either side is refused; the next
	// step's code is taken.
	codes := otplibCodes(t, uri, at(-2), at(2), at(1), at(0)).Codes
	login := func() any {
		t.Helper()
		return wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "ada", "password": "correct horse"}), 401, "mfa_required")["mfaToken"]
	}
	mfa := login()
	send := func(code string) response {
		return e.do("POST", "/v1/auth/mfa", "", map[string]any{"mfaToken": mfa, "code": code})
	}
	for i, what := range []string{"two steps before", "two steps after"} {
		if r := send(codes[i]); r.status != 401 {
			t.Fatalf("otplib's code of %s: %d; want 401\n%s", what, r.status, r.body)
		}
	}
	if r := send(codes[2]); r.status != 200 {
		t.Fatalf("otplib's code of the next step: %d %s", r.status, r.body)
	}
	// Used, the next step's code is refused; so is the current step's,
	// older than it.
	mfa = login()
	wantProblem(t, send(codes[2]), 401, "invalid_credentials")
	wantProblem(t, send(codes[3]), 401, "invalid_credentials")

	// Three steps on, the code of the step before the server's (step 2,
	// after the used step 1) is taken once.
	clk.next()
	clk.next()
	clk.next()
	prev := otplibCodes(t, uri, at(-1)).Codes[0]
	if r := send(prev); r.status != 200 {
		t.Fatalf("otplib's code of the step before: %d %s", r.status, r.body)
	}
	mfa = login()
	wantProblem(t, send(prev), 401, "invalid_credentials")
}
