package main

import (
	"flag"
	"io"
	"testing"

	"tether/auth"
)

// TestTokenLoginRotateFlag: token-login's re-authentication token rotates
// only when asked, by flag or environment.
func TestTokenLoginRotateFlag(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"default", nil, nil, false},
		{"flag", []string{"--token-login-rotate"}, nil, true},
		{"environment", nil, map[string]string{"TETHER_TOKEN_LOGIN_ROTATE": "true"}, true},
		{"flag wins", []string{"--token-login-rotate=false"}, map[string]string{"TETHER_TOKEN_LOGIN_ROTATE": "true"}, false},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var a auth.Config
		authFlags(fs, &a)
		cl := &cli{stderr: io.Discard, getenv: func(k string) string { return c.env[k] }}
		if err := cl.parse(fs, c.args); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if a.RotateReauthentication != c.want {
			t.Errorf("%s: got RotateReauthentication %v; want %v", c.name, a.RotateReauthentication, c.want)
		}
	}
}
