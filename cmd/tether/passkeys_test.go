package main

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"

	"tether/auth"
)

// TestPasskeyFlags: passkeys take the host and origin of --public-url
// unless --webauthn-rp-id and --webauthn-origins (or TETHER_WEBAUTHN_RP_ID,
// TETHER_WEBAUTHN_ORIGINS) name others; without either they are off.
func TestPasskeyFlags(t *testing.T) {
	cases := []struct {
		name      string
		args      []string
		env       map[string]string
		publicURL string
		rpID      string
		origins   []string
	}{
		{"off", nil, nil, "", "", nil},
		{"public URL", nil, nil, "https://tether.example.com/", "tether.example.com", []string{"https://tether.example.com"}},
		{"public URL with a port", nil, nil, "https://tether.example.com:8443", "tether.example.com", []string{"https://tether.example.com:8443"}},
		{"parent domain", []string{"--webauthn-rp-id", "example.com"}, nil, "https://tether.example.com", "example.com", []string{"https://tether.example.com"}},
		{"origins", []string{"--webauthn-origins", "https://a.example.com, https://b.example.com/"}, map[string]string{"TETHER_WEBAUTHN_RP_ID": "example.com"}, "https://tether.example.com",
			"example.com", []string{"https://a.example.com", "https://b.example.com"}},
		{"no public URL", []string{"--webauthn-rp-id=localhost", "--webauthn-origins=http://localhost:8080"}, nil, "", "localhost", []string{"http://localhost:8080"}},
		// An IP address is no relying party: passkeys stay off, the
		// server starts.
		{"public URL of an IP address", nil, nil, "http://127.0.0.1:8080", "", nil},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		a := auth.DefaultConfig()
		authFlags(fs, &a)
		cl := &cli{stderr: io.Discard, getenv: func(k string) string { return c.env[k] }}
		if err := cl.parse(fs, c.args); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		passkeysFromPublicURL(&a, c.publicURL)
		if a.WebAuthnRPID != c.rpID || !slices.Equal(a.WebAuthnOrigins, c.origins) {
			t.Errorf("%s: rp id %q, origins %q; want %q, %q", c.name, a.WebAuthnRPID, a.WebAuthnOrigins, c.rpID, c.origins)
		}
		if err := a.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// A server whose public URL is an IP address starts, without passkeys.
	srv := startServer(t, t.TempDir(), "--public-url", "http://127.0.0.1:8080")
	srv.stop(t) // its log is read once it has ended
	if !strings.Contains(srv.stderr.String(), "passkeys are off") {
		t.Errorf("no word of passkeys being off: %s", srv.stderr)
	}
	// A relying party id without an origin stops the start.
	r := runCLI(t, "", nil, "serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--webauthn-rp-id", "tether.example.com")
	if r.code == 0 || !strings.Contains(r.stderr, `passkeys for "tether.example.com": name the origins`) {
		t.Fatalf("--webauthn-rp-id alone: exit %d, %s", r.code, r.stderr)
	}
}
