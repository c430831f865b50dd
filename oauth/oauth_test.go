package oauth

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"tether/storage"
)

// The protocol's pure rules, one table each: redirect-URI registration
// and matching, PKCE, user codes, scopes, at_hash, client key sets,
// repeated parameters, the issuer. The endpoints themselves are tested
// over HTTP in api/.

func TestCheckRedirectURI(t *testing.T) {
	for _, c := range []struct {
		uri string
		ok  bool
	}{
		{"https://app.example.com/cb", true},
		{"https://app.example.com/cb?tenant=a", true},
		{"https://app.example.com:8443/cb", true},
		{"http://127.0.0.1/cb", true},
		{"http://127.0.0.1:7777/cb", true},
		{"http://[::1]:7777/cb", true},
		{"com.example.app:/oauth", true},
		{"com.example.app://oauth", true},
		{"http://localhost:7777/cb", false},
		{"http://app.example.com/cb", false},
		{"http://127.0.0.1.example.com/cb", false},
		{"https://app.example.com/cb#frag", false},
		{"https://app.example.com/cb#", false},
		{"https://user@app.example.com/cb", false},
		{"https://user:pw@app.example.com/cb", false},
		{"https:///cb", false},
		{"/cb", false},
		{"cb", false},
		{"", false},
		{"javascript:alert(1)", false},
		{"JavaScript:alert(1)", false},
		{"data:text/html,x", false},
		{"file:///etc/passwd", false},
		{"vbscript:x", false},
		{"ws://127.0.0.1/cb", false},
		{"myapp:/cb", false},
		{"https://app.example.com/a b", false},
		{"https://app.example.com/\tb", false},
		{"https://app.example.com/\x00", false},
		{"https://app.example.com/" + strings.Repeat("a", maxURI), false},
	} {
		err := checkRedirectURI(c.uri)
		if (err == nil) != c.ok {
			t.Errorf("checkRedirectURI(%q) = %v; want ok %t", c.uri, err, c.ok)
		}
	}
}

func TestMatchRedirect(t *testing.T) {
	registered := []string{"https://app.example.com/cb", "http://127.0.0.1:7777/cb", "http://[::1]/native", "com.example.app:/oauth"}
	for _, c := range []struct {
		uri string
		ok  bool
	}{
		{"https://app.example.com/cb", true},
		{"http://127.0.0.1:7777/cb", true},
		{"http://127.0.0.1:5555/cb", true},
		{"http://127.0.0.1/cb", true},
		{"http://[::1]:61000/native", true},
		{"com.example.app:/oauth", true},
		// Another port is the loopback's privilege only.
		{"https://app.example.com:8443/cb", false},
		{"https://app.example.com:443/cb", false},
		{"https://app.example.com/c", false},
		{"https://app.example.com/cb/", false},
		{"https://app.example.com/cb/x", false},
		{"https://app.example.com/cb?x=1", false},
		{"https://app.example.com/cb#x", false},
		{"https://APP.example.com/cb", false},
		{"https://app.example.com/CB", false},
		{"https://x@app.example.com/cb", false},
		{"http://localhost:7777/cb", false},
		{"http://127.0.0.2:7777/cb", false},
		{"http://[::1]:7777/cb", false},
		{"http://127.0.0.1:7777/cb/", false},
		{"http://127.0.0.1:7777/cb?x=1", false},
		{"http://127.0.0.1:7777/cb#x", false},
		{"http://x@127.0.0.1:7777/cb", false},
		{"http://127.0.0.1:65536/cb", false},
		{"http://127.0.0.1:7a/cb", false},
		{"https://127.0.0.1:7777/cb", false},
		{"http://127.0.0.1:7777/%63b", false},
		{"com.example.app:/oauth/", false},
		{"COM.example.app:/oauth", false},
		{"", false},
	} {
		if got := matchRedirect(registered, c.uri); got != c.ok {
			t.Errorf("matchRedirect(%q) = %t; want %t", c.uri, got, c.ok)
		}
	}
}

func TestPKCE(t *testing.T) {
	// RFC 7636 Appendix B.
	if got := codeChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Fatalf("codeChallenge = %q; want RFC 7636's E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", got)
	}
	for v, ok := range map[string]bool{
		strings.Repeat("a", 43):        true,
		strings.Repeat("a", 128):       true,
		strings.Repeat("a", 42):        false,
		strings.Repeat("a", 129):       false,
		strings.Repeat("-._~Az09", 6):  true,
		strings.Repeat("a", 42) + "+":  false,
		strings.Repeat("a", 42) + "/":  false,
		strings.Repeat("a", 42) + "=":  false,
		strings.Repeat("a", 42) + " ":  false,
		strings.Repeat("a", 42) + "é":  false,
		strings.Repeat("a", 42) + "\n": false,
	} {
		if validVerifier(v) != ok {
			t.Errorf("validVerifier(%q) = %t; want %t", v, !ok, ok)
		}
	}
	for s, ok := range map[string]bool{
		"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM":  true,
		"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c":   false,
		"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM=": false,
		"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM":  false,
	} {
		if isB64Hash(s) != ok {
			t.Errorf("isB64Hash(%q) = %t; want %t", s, !ok, ok)
		}
	}
}

func TestUserCodes(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		c := newUserCode()
		if len(c) != userCodeLen || strings.Trim(c, userCodeAlphabet) != "" || strings.ContainsAny(c, "AEIOUY") {
			t.Fatalf("user code %q: want %d letters of %s", c, userCodeLen, userCodeAlphabet)
		}
		seen[c] = true
	}
	if len(seen) < 199 {
		t.Fatalf("%d distinct codes of 200", len(seen))
	}
	for in, want := range map[string]string{
		"BCDF-GHJK":     "BCDFGHJK",
		"bcdf ghjk":     "BCDFGHJK",
		" bc-df_gh.jk ": "BCDFGHJK",
		"BCDF-GHJ1":     "BCDFGHJ",
		"bcdf-ghjkl":    "BCDFGHJKL",
	} {
		if got := NormalizeUserCode(in); got != want {
			t.Errorf("NormalizeUserCode(%q) = %q; want %q", in, got, want)
		}
	}
	if got := FormatUserCode("BCDFGHJK"); got != "BCDF-GHJK" {
		t.Errorf("FormatUserCode = %q; want BCDF-GHJK", got)
	}
	if got := FormatUserCode("BCD"); got != "BCD" {
		t.Errorf("FormatUserCode of a short code = %q; want it unchanged", got)
	}
}

func TestGrantScope(t *testing.T) {
	all := storage.OAuthClient{}
	narrow := storage.OAuthClient{Scopes: []string{ScopeOpenID, ScopeOfflineAccess}}
	for _, c := range []struct {
		client storage.OAuthClient
		asked  string
		want   string
		err    bool
	}{
		{all, "", "openid profile email", false},
		{all, "openid offline_access", "openid offline_access", false},
		{all, "openid  openid\tprofile", "openid profile", false},
		{all, "openid admin", "", true},
		{all, "OPENID", "", true},
		{all, strings.Repeat("openid ", 17), "", true},
		{narrow, "", "openid", false},
		{narrow, "offline_access", "offline_access", false},
		{narrow, "openid profile", "", true},
	} {
		got, err := grantScope(c.client, c.asked)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("grantScope(%v, %q) = %q, %v; want %q, error %t", c.client.Scopes, c.asked, got, err, c.want, c.err)
		}
		if err != nil && err.Code != CodeInvalidScope {
			t.Errorf("grantScope(%q): %s; want invalid_scope", c.asked, err.Code)
		}
	}
}

func TestHalfHash(t *testing.T) {
	// OpenID Connect Core 1.0, Appendix A.3.
	if got := halfHash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", "RS256"); got != "77QmUPtjPfzWtF2AnpK9RQ" {
		t.Fatalf("at_hash = %q; want OpenID Connect's 77QmUPtjPfzWtF2AnpK9RQ", got)
	}
	if es, ed := halfHash("x", "ES256"), halfHash("x", "EdDSA"); len(es) != 22 || len(ed) != 43 {
		t.Fatalf("at_hash lengths ES256 %d, EdDSA %d; want 22 (SHA-256) and 43 (SHA-512)", len(es), len(ed))
	}
}

func TestParseJWKS(t *testing.T) {
	rsa2048 := `{"kty":"RSA","kid":"r","n":"` + strings.Repeat("u", 342) + `w","e":"AQAB"}`
	for _, c := range []struct {
		name string
		jwks string
		keys int
		err  bool
	}{
		{"an RSA key", `{"keys":[` + rsa2048 + `]}`, 1, false},
		{"a P-256 key", `{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}`, 1, false},
		{"an encryption key, skipped", `{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}`, 0, false},
		{"an unknown type, skipped", `{"keys":[{"kty":"oct","k":"AAAA"}]}`, 0, false},
		{"a small RSA key", `{"keys":[{"kty":"RSA","n":"` + strings.Repeat("u", 170) + `w","e":"AQAB"}]}`, 0, true},
		{"an even exponent", `{"keys":[{"kty":"RSA","n":"` + strings.Repeat("u", 342) + `w","e":"Ag"}]}`, 0, true},
		{"a private RSA key", `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}]}`, 0, true},
		{"a private EC key", `{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"AA"}]}`, 0, true},
		{"an EC point off the curve", `{"keys":[{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`, 0, true},
		{"not a set", `[` + rsa2048 + `]`, 0, true},
		{"too many keys", `{"keys":[` + strings.TrimSuffix(strings.Repeat(rsa2048+",", 21), ",") + `]}`, 0, true},
	} {
		keys, err := parseJWKS(json.RawMessage(c.jwks))
		if (err != nil) != c.err || len(keys) != c.keys {
			t.Errorf("%s: %d keys, %v; want %d keys, error %t", c.name, len(keys), err, c.keys, c.err)
		}
	}
}

func TestSingle(t *testing.T) {
	f := url.Values{"a": {"1"}, "b": {"1", "2"}, "c": {"", ""}}
	if v, err := single(f, "a"); v != "1" || err != nil {
		t.Errorf("single(a) = %q, %v", v, err)
	}
	if v, err := single(f, "missing"); v != "" || err != nil {
		t.Errorf("single(missing) = %q, %v", v, err)
	}
	for _, name := range []string{"b", "c"} {
		if _, err := single(f, name); err == nil || err.Code != CodeInvalidRequest {
			t.Errorf("single(%s) = %v; want invalid_request", name, err)
		}
	}
}

func TestValidateIssuer(t *testing.T) {
	for issuer, ok := range map[string]bool{
		"https://tether.example.com":      true,
		"https://tether.example.com/":     true,
		"https://tether.example.com/auth": true,
		"http://127.0.0.1:8080":           true,
		"http://localhost:8080":           true,
		"http://[::1]:8080":               true,
		"http://tether.example.com":       false,
		"https://tether.example.com?x=1":  false,
		"https://tether.example.com#x":    false,
		"https://tether.example.com#":     false,
		"https://u@tether.example.com":    false,
		"https://":                        false,
		"tether.example.com":              false,
		"ftp://tether.example.com":        false,
		"":                                false,
	} {
		if err := ValidateIssuer(issuer); (err == nil) != ok {
			t.Errorf("ValidateIssuer(%q) = %v; want ok %t", issuer, err, ok)
		}
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	m := Metadata{
		ClientName: "Dispatch", RedirectURIs: []string{"https://a.example/cb", "https://a.example/cb"},
		GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken, GrantRefreshToken}, Scope: "openid openid email",
		IDTokenSignedAlg: "ES256", ApplicationType: "web", DPoPBoundAccessTokens: true,
	}
	rec, oe := m.record()
	if oe != nil {
		t.Fatal(oe)
	}
	if rec.Public || rec.TokenEndpointAuthMethod != AuthClientSecretBasic || len(rec.RedirectURIs) != 1 || len(rec.GrantTypes) != 2 || len(rec.Scopes) != 2 || !rec.DPoPBound {
		t.Fatalf("record %+v: want duplicates dropped, client_secret_basic by default", rec)
	}
	back := metadataOf(rec)
	if back.ClientName != m.ClientName || back.TokenEndpointAuthMethod != AuthClientSecretBasic || back.Scope != "openid email" ||
		len(back.ResponseTypes) != 1 || back.ResponseTypes[0] != "code" || back.IDTokenSignedAlg != "ES256" || !back.DPoPBoundAccessTokens {
		t.Fatalf("metadata back %+v", back)
	}
	pub, oe := Metadata{TokenEndpointAuthMethod: AuthNone, GrantTypes: []string{GrantPassword}}.record()
	if oe != nil || !pub.Public || pub.IDTokenAlg != "RS256" {
		t.Fatalf("a public client: %+v, %v; want public with RS256 ID tokens", pub, oe)
	}
}
