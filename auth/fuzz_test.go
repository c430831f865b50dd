package auth_test

import (
	"errors"
	"strings"
	"testing"

	"tether"
	"tether/auth"
)

// FuzzAccessToken feeds arbitrary strings where access tokens go: nothing
// panics, and every refusal is token_invalid or token_expired.
func FuzzAccessToken(f *testing.F) {
	w := newWorld(f)
	g := w.mustLogin()
	parts := strings.Split(g.AccessToken, ".")
	// Seeds made from this run's real tokens; the fixed ones are in
	// testdata/fuzz/FuzzAccessToken.
	for _, seed := range []string{
		g.AccessToken, parts[0] + "." + parts[1] + ".", parts[0] + ".e30." + parts[2],
		g.RefreshToken, "Bearer " + g.AccessToken,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if _, err := w.svc.Authenticate(w.ctx, tok); err != nil &&
			!errors.Is(err, auth.ErrTokenInvalid) && !errors.Is(err, auth.ErrTokenExpired) {
			t.Fatalf("Authenticate(%q): %v", tok, err)
		}
		if w.svc.Introspect(w.ctx, tok).Active && tok != g.AccessToken {
			t.Fatalf("a forged token is active: %q", tok)
		}
	})
}

// FuzzRefreshToken feeds arbitrary strings where refresh tokens go.
func FuzzRefreshToken(f *testing.F) {
	w := newWorld(f)
	g := w.mustLogin()
	// Seeds made from this run's real tokens; the fixed ones are in
	// testdata/fuzz/FuzzRefreshToken.
	f.Add(g.RefreshToken, w.phone.ID)
	f.Add(g.RefreshToken[:len(g.RefreshToken)-1]+"A", w.phone.ID)
	f.Add(g.AccessToken, w.phone.ID)
	f.Fuzz(func(t *testing.T, tok, device string) {
		if tok == g.RefreshToken {
			return // the real one rotates; the fuzzer is after the others
		}
		_, err := w.svc.Refresh(w.ctx, tok, device)
		if err == nil {
			t.Fatalf("Refresh(%q) succeeded", tok)
		}
		// A token of the real family with another secret is a reuse and
		// ends the session: any refusal the API documents is right, an
		// internal error is not.
		var te *tether.Error
		if !errors.As(err, &te) || te.Code == tether.CodeInternal {
			t.Fatalf("Refresh(%q): %v", tok, err)
		}
	})
}
