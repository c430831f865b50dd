package api_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/api"
	"tether/auth"
	"tether/auth/dpop"
)

// host is where app.Test's requests go.
const host = "http://example.com"

func proofFor(t *testing.T, k dpop.Key, method, path, token string) string {
	t.Helper()
	p, err := k.Proof(method, host+path, token)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDPoPOverHTTP walks a handset with a key through the API: it enrolls
// the key at its first login and gets DPoP tokens carrying cnf.jkt; every
// later use needs a proof by that key, on the handset's own endpoints too;
// a manager sees the key and can clear it, which ends its sessions.
func TestDPoPOverHTTP(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	k, err := dpop.NewKey("EC")
	if err != nil {
		t.Fatal(err)
	}
	payload := handset("490154203237518")
	payload["publicKey"] = json.RawMessage(k.PublicJWK())
	login := map[string]any{"username": "walter", "password": "correct horse", "device": payload, "persistent": true}

	wantProblem(t, e.do("POST", "/v1/auth/login", "", login), 401, "proof_required")
	r := e.do("POST", "/v1/auth/login", "", login, "DPoP", proofFor(t, k, "POST", "/v1/auth/login", ""))
	if r.status != 200 {
		t.Fatalf("login with a proof: %d %s", r.status, r.body)
	}
	g := r.json(t)
	access := g["accessToken"].(string)
	var claims struct {
		Cnf struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
		jwt.RegisteredClaims
	}
	if _, _, err := jwt.NewParser().ParseUnverified(access, &claims); err != nil {
		t.Fatal(err)
	}
	if g["tokenType"] != "DPoP" || claims.Cnf.JKT != k.Thumbprint() {
		t.Fatalf("token type %v, cnf.jkt %q; want DPoP bound to %s", g["tokenType"], claims.Cnf.JKT, k.Thumbprint())
	}

	// Its own endpoints: the token with a proof bound to it, under the
	// DPoP scheme only (RFC 9449 section 7.1).
	wantProblem(t, e.do("GET", "/v1/auth/me", "", nil, "Authorization", "DPoP "+access), 401, "proof_required")
	asBearer := wantProblem(t, e.do("GET", "/v1/auth/me", access, nil, "DPoP", proofFor(t, k, "GET", "/v1/auth/me", access)), 401, "token_invalid")
	if !strings.Contains(asBearer["detail"].(string)+asBearer["title"].(string), "DPoP") {
		t.Fatalf("a bound token as Bearer: %v; want it told to use the DPoP scheme", asBearer)
	}
	if r := e.do("GET", "/v1/auth/me", "", nil, "Authorization", "DPoP "+access, "DPoP", proofFor(t, k, "GET", "/v1/auth/me", access)); r.status != 200 {
		t.Fatalf("me with a proof: %d %s", r.status, r.body)
	}
	p := proofFor(t, k, "GET", "/v1/auth/me", access)
	wantProblem(t, e.doHeaders("GET", "/v1/auth/me", [][2]string{{"Authorization", "DPoP " + access}, {"DPoP", p}, {"DPoP", p}}), 401, "proof_invalid")

	refresh := map[string]any{"refreshToken": g["refreshToken"], "deviceId": phone}
	wantProblem(t, e.do("POST", "/v1/auth/refresh", "", refresh), 401, "proof_required")
	r = e.do("POST", "/v1/auth/refresh", "", refresh, "DPoP", proofFor(t, k, "POST", "/v1/auth/refresh", ""))
	if r.status != 200 || r.json(t)["tokenType"] != "DPoP" {
		t.Fatalf("refresh with a proof: %d %s", r.status, r.body)
	}
	next := r.json(t)
	renew := map[string]any{"accessToken": next["accessToken"], "deviceId": phone}
	if r := e.do("POST", "/v1/auth/renew", "", renew, "DPoP", proofFor(t, k, "POST", "/v1/auth/refresh", "")); r.status != 401 || r.json(t)["code"] != "proof_invalid" {
		t.Fatalf("renew with a proof for another URL: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/auth/renew", "", renew, "DPoP", proofFor(t, k, "POST", "/v1/auth/renew", "")); r.status != 200 {
		t.Fatalf("renew with a proof: %d %s", r.status, r.body)
	}

	// Resource servers learn the binding from introspection.
	r = e.do("POST", "/v1/auth/introspect", e.introspect, map[string]any{"token": next["accessToken"]})
	in := r.json(t)
	if in["token_type"] != "DPoP" || in["cnf"].(map[string]any)["jkt"] != k.Thumbprint() {
		t.Fatalf("introspection: %s", r.body)
	}

	// A manager sees the key, and clears it: the handset's sessions end.
	r = e.do("GET", "/v1/devices/"+phone, e.manager, nil)
	if key, _ := r.json(t)["key"].(map[string]any); key["thumbprint"] != k.Thumbprint() || key["type"] != "P-256" {
		t.Fatalf("the device as managers see it: %s", r.body)
	}
	if r := e.do("PATCH", "/v1/devices/"+phone, e.manager, map[string]any{"publicKey": nil}); r.status != 200 || strings.Contains(string(r.body), `"key"`) {
		t.Fatalf("clearing the key: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", "", nil, "Authorization", "DPoP "+next["accessToken"].(string), "DPoP", proofFor(t, k, "GET", "/v1/auth/me", next["accessToken"].(string))), 401, "session_revoked")
	p2 := wantProblem(t, e.do("PATCH", "/v1/devices/"+phone, e.manager, map[string]any{"publicKey": map[string]any{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}}), 400, "validation_failed")
	if fieldCodes(t, p2)["publicKey"] != "public_key_invalid" {
		t.Fatalf("a bad key: %v", p2)
	}

	// The bound token verifies with a standard JOSE library, and its
	// cnf.jkt is the thumbprint that library computes for the key.
	joseCheck(t, e, access, k)
}

// joseCheck verifies a key-bound token with the jose library for
// JavaScript and compares its cnf.jkt with jose's thumbprint of the key.
func joseCheck(t *testing.T, e *env, token string, k dpop.Key) {
	t.Helper()
	node, dir := joseTool(t)
	tmp := t.TempDir()
	jwks, jwk := filepath.Join(tmp, "jwks.json"), filepath.Join(tmp, "jwk.json")
	if err := os.WriteFile(jwks, e.do("GET", "/.well-known/jwks.json", "", nil).body, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jwk, k.PublicJWK(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, filepath.Join(dir, "verify.mjs"), jwks, token).CombinedOutput()
	if err != nil {
		t.Fatalf("jose refused the bound token: %v\n%s", err, out)
	}
	var got struct {
		Claims struct {
			Cnf struct {
				JKT string `json:"jkt"`
			} `json:"cnf"`
		} `json:"claims"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	thumb, err := exec.Command(node, filepath.Join(dir, "thumbprint.mjs"), jwk).CombinedOutput()
	if err != nil {
		t.Fatalf("jose thumbprint: %v\n%s", err, thumb)
	}
	if got.Claims.Cnf.JKT == "" || got.Claims.Cnf.JKT != strings.TrimSpace(string(thumb)) {
		t.Fatalf("cnf.jkt %q; jose's thumbprint of the key %q", got.Claims.Cnf.JKT, thumb)
	}
}

// doHeaders sends a request without a body with headers that may repeat.
func (e *env) doHeaders(method, path string, headers [][2]string) response {
	e.t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for _, h := range headers {
		req.Header.Add(h[0], h[1])
	}
	resp, err := e.app.Test(req, -1)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

func TestEnrollChallenge(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1/enroll/challenge", "", nil)
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("challenge: %d %s", r.status, r.body)
	}
	c := r.json(t)
	raw, err := base64.RawURLEncoding.DecodeString(c["challenge"].(string))
	if err != nil || len(raw) < 32 || len(raw) > 128 {
		t.Fatalf("challenge %v: %d bytes, %v; Android takes up to 128", c["challenge"], len(raw), err)
	}
	exp, err := time.Parse(time.RFC3339, c["expiresAt"].(string))
	if err != nil || time.Until(exp) < 9*time.Minute || time.Until(exp) > 11*time.Minute {
		t.Fatalf("expiresAt %v", c["expiresAt"])
	}
	if other := e.do("POST", "/v1/enroll/challenge", "", nil).json(t)["challenge"]; other == c["challenge"] {
		t.Fatal("two challenges alike")
	}
}

// TestDialectsTakeProofs: a handset with a key renews through a dialect
// too, with the same DPoP header; without it the dialect answers its own
// error with proof_required.
func TestDialectsTakeProofs(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	k, err := dpop.NewKey("OKP")
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do("PATCH", "/v1/devices/"+phone, e.manager, map[string]any{"publicKey": json.RawMessage(k.PublicJWK())}); r.status != 200 {
		t.Fatalf("register the key: %d %s", r.status, r.body)
	}
	login := map[string]any{"username": "walter", "password": "correct horse", "deviceId": "490154203237518"}
	if r := e.do("POST", "/api/Login", "", login); r.status != 401 || !strings.Contains(string(r.body), "proof_required") {
		t.Fatalf("dialect login without a proof: %d %s", r.status, r.body)
	}
	r := e.do("POST", "/api/Login", "", login, "DPoP", proofFor(t, k, "POST", "/api/Login", ""))
	if r.status != 200 {
		t.Fatalf("dialect login with a proof: %d %s", r.status, r.body)
	}
	token := r.json(t)["token"].(string)
	body := fixture(t, "renew-login-token.request.json", map[string]string{"LoggedInDeviceName": phone, "ExpiredTOKEN": token})
	if r := e.do("POST", "/api/RenewLoginToken", "", body, "Authtoken", token); r.status != 401 || !strings.Contains(string(r.body), "proof_required") {
		t.Fatalf("dialect renewal without a proof: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/RenewLoginToken", "", body, "Authtoken", token, "DPoP", proofFor(t, k, "POST", "/api/RenewLoginToken", "")); r.status != 200 {
		t.Fatalf("dialect renewal with a proof: %d %s", r.status, r.body)
	}
}

func TestNonceHeader(t *testing.T) {
	e := newEnv(t, func(c *auth.Config) { c.DPoPNonce = true })
	e.fleet()
	k, err := dpop.NewKey("EC")
	if err != nil {
		t.Fatal(err)
	}
	payload := handset("490154203237518")
	payload["publicKey"] = json.RawMessage(k.PublicJWK())
	login := map[string]any{"username": "walter", "password": "correct horse", "device": payload}
	r := e.do("POST", "/v1/auth/login", "", login, "DPoP", proofFor(t, k, "POST", "/v1/auth/login", ""))
	nonce := r.header.Get("DPoP-Nonce")
	if r.status != 401 || nonce == "" || !strings.Contains(string(r.body), "nonce") {
		t.Fatalf("a proof without the nonce: %d, DPoP-Nonce %q, %s", r.status, nonce, r.body)
	}
	p, err := k.Proof("POST", host+"/v1/auth/login", "", dpop.Options{Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do("POST", "/v1/auth/login", "", login, "DPoP", p); r.status != 200 {
		t.Fatalf("with the nonce: %d %s", r.status, r.body)
	}
}

// TestProofURLFromTrustedProxiesOnly: without --public-url, a proof's htu
// is checked against the URL the request came to, whose scheme and host
// the client may not choose with X-Forwarded-Proto and X-Forwarded-Host;
// a trusted proxy may.
func TestProofURLFromTrustedProxiesOnly(t *testing.T) {
	k, err := dpop.NewKey("EC")
	if err != nil {
		t.Fatal(err)
	}
	loginWith := func(e *env, htu string, headers ...string) response {
		t.Helper()
		payload := handset("490154203237518")
		payload["publicKey"] = json.RawMessage(k.PublicJWK())
		p, err := k.Proof("POST", htu, "")
		if err != nil {
			t.Fatal(err)
		}
		return e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": "correct horse", "device": payload},
			append([]string{"DPoP", p}, headers...)...)
	}
	direct := newEnv(t)
	direct.fleet()
	for name, c := range map[string]struct {
		htu     string
		headers []string
	}{
		"X-Forwarded-Proto":          {"https://example.com/v1/auth/login", []string{"X-Forwarded-Proto", "https"}},
		"X-Forwarded-Host":           {"http://evil.example/v1/auth/login", []string{"X-Forwarded-Host", "evil.example"}},
		"X-Forwarded-Proto and Host": {"https://evil.example/v1/auth/login", []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil.example"}},
	} {
		if r := loginWith(direct, c.htu, c.headers...); r.status != 401 || r.json(t)["code"] != "proof_invalid" {
			t.Errorf("%s from a client: %d %s; want proof_invalid", name, r.status, r.body)
		}
	}
	proxied := newEnv(t, func(o *api.Options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/32")} })
	proxied.fleet()
	if r := loginWith(proxied, "https://tether.example/v1/auth/login", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "tether.example"); r.status != 200 {
		t.Fatalf("through a trusted proxy: %d %s", r.status, r.body)
	}
}
