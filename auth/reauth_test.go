package auth_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"tether/auth"
	"tether/storage"
)

// TestReauthenticateReusesTheToken is token-login's client: it keeps the
// token issued at login and re-authenticates with it again and again, long
// after the refresh grace. Each use works, hands the same token back with
// a new access token, and slides the session's idle expiry, so a client in
// daily use outlives --session-idle until --session-max.
func TestReauthenticateReusesTheToken(t *testing.T) {
	w := newWorld(t, func(c *auth.Config) { c.SessionIdle = 2 * time.Hour; c.SessionMax = 8 * time.Hour })
	g := w.mustLogin()
	end := w.clock.Now().Add(8 * time.Hour)
	last := g.AccessToken
	for i := range 5 {
		w.clock.Advance(90 * time.Minute)
		r, err := w.svc.Reauthenticate(w.ctx, g.RefreshToken, w.phone.IMEI)
		if err != nil {
			t.Fatalf("use %d, %s after login: got %v; want a new access token", i+1, time.Duration(i+1)*90*time.Minute, err)
		}
		if r.RefreshToken != g.RefreshToken || r.AccessToken == last || r.Session.ID != g.Session.ID {
			t.Fatalf("use %d: got refresh %q, a new access token %v, session %s; want the login's refresh token, a new access token, session %s",
				i+1, r.RefreshToken, r.AccessToken != last, r.Session.ID, g.Session.ID)
		}
		want := w.clock.Now().Add(2 * time.Hour)
		if want.After(end) {
			want = end
		}
		if !r.Session.LastUsedAt.Equal(w.clock.Now()) || !r.RefreshExpiresAt.Equal(want) {
			t.Fatalf("use %d: got last used %s, refresh expiry %s; want now and %s", i+1, r.Session.LastUsedAt, r.RefreshExpiresAt, want)
		}
		if _, err := w.svc.Authenticate(w.ctx, r.AccessToken); err != nil {
			t.Fatalf("use %d: the new access token: %v", i+1, err)
		}
		last = r.AccessToken
	}
	page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "reauthenticate"})
	if len(page.Items) != 5 || page.Items[4].Outcome != "success" || page.Items[4].SessionID != g.Session.ID || page.Items[4].Username != "walter" {
		t.Fatalf("reauthenticate events: got %+v; want 5 successes", page.Items)
	}
	// The session's absolute limit still holds.
	w.clock.Advance(time.Hour)
	_, err := w.svc.Reauthenticate(w.ctx, g.RefreshToken, w.phone.ID)
	wantErr(t, err, auth.ErrTokenExpired)
}

// TestReauthenticateRefusals: every check a refresh makes, and what a token
// a refresh rotated away does.
func TestReauthenticateRefusals(t *testing.T) {
	cases := []struct {
		name string
		// setup runs after the login and returns the token and handset
		// to present.
		setup func(w *world, g auth.Grant) (token, device string)
		want  error
		// ended: the session is revoked afterwards.
		ended bool
	}{
		{"another handset", func(w *world, g auth.Grant) (string, string) { return g.RefreshToken, w.other.ID }, auth.ErrDeviceMismatch, false},
		{"no handset named", func(w *world, g auth.Grant) (string, string) { return g.RefreshToken, "" }, auth.ErrDeviceMismatch, false},
		{"not a refresh token", func(w *world, g auth.Grant) (string, string) { return g.AccessToken, w.phone.ID }, auth.ErrTokenInvalid, false},
		{"a token of no session", func(w *world, g auth.Grant) (string, string) {
			return "rt_" + strings.Repeat("A", 64), w.phone.ID
		}, auth.ErrTokenInvalid, false},
		// Another secret of the session's family is a token of it that is
		// not current: a reuse, as for Refresh.
		{"another secret of the session's family", func(w *world, g auth.Grant) (string, string) {
			forged := []byte(g.RefreshToken)
			if forged[len(forged)-1] == 'A' {
				forged[len(forged)-1] = 'B'
			} else {
				forged[len(forged)-1] = 'A'
			}
			return string(forged), w.phone.ID
		}, auth.ErrRefreshTokenReused, true},
		{"after logout", func(w *world, g auth.Grant) (string, string) {
			id, err := w.svc.Authenticate(w.ctx, g.AccessToken)
			if err == nil {
				err = w.svc.Logout(w.ctx, id)
			}
			if err != nil {
				w.t.Fatal(err)
			}
			return g.RefreshToken, w.phone.ID
		}, auth.ErrSessionRevoked, true},
		{"idle too long", func(w *world, g auth.Grant) (string, string) {
			w.clock.Advance(721 * time.Hour)
			return g.RefreshToken, w.phone.ID
		}, auth.ErrTokenExpired, false},
		{"rotated away by a refresh, after the grace", func(w *world, g auth.Grant) (string, string) {
			if _, err := w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID); err != nil {
				w.t.Fatal(err)
			}
			w.clock.Advance(11 * time.Second)
			return g.RefreshToken, w.phone.ID
		}, auth.ErrRefreshTokenReused, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.t = t
			g := w.mustLogin()
			token, dev := c.setup(w, g)
			_, err := w.svc.Reauthenticate(w.ctx, token, dev)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v; want %v", err, c.want)
			}
			s, err := w.store.GetSession(w.ctx, g.Session.ID)
			if err != nil {
				t.Fatal(err)
			}
			if s.Revoked() != c.ended {
				t.Fatalf("session revoked %v (%q); want %v", s.Revoked(), s.RevokeReason, c.ended)
			}
		})
	}
}

// TestReauthenticateAfterARotation: a token a refresh just rotated away,
// presented again within the grace, gets the refresh's answer again (a
// retry), as Refresh gives it; the new token then re-authenticates.
func TestReauthenticateAfterARotation(t *testing.T) {
	w := newWorld(t)
	g := w.mustLogin()
	r, err := w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
	if err != nil {
		t.Fatal(err)
	}
	again, err := w.svc.Reauthenticate(w.ctx, g.RefreshToken, w.phone.ID)
	if err != nil || again.RefreshToken != r.RefreshToken || again.AccessToken != r.AccessToken {
		t.Fatalf("within the grace: got %v; want the refresh's answer again", err)
	}
	w.clock.Advance(time.Hour)
	next, err := w.svc.Reauthenticate(w.ctx, r.RefreshToken, w.phone.ID)
	if err != nil || next.RefreshToken != r.RefreshToken {
		t.Fatalf("the rotated token: got %v; want it to re-authenticate and stay", err)
	}
}

// TestReauthenticateRotates: with RotateReauthentication a
// re-authentication is a refresh: a new token each time, and the old one
// after the grace ends the session.
func TestReauthenticateRotates(t *testing.T) {
	w := newWorld(t, func(c *auth.Config) { c.RotateReauthentication = true })
	g := w.mustLogin()
	r, err := w.svc.Reauthenticate(w.ctx, g.RefreshToken, w.phone.ID)
	if err != nil || r.RefreshToken == g.RefreshToken {
		t.Fatalf("got %v, same token %v; want a rotated token", err, r.RefreshToken == g.RefreshToken)
	}
	w.clock.Advance(11 * time.Second)
	_, err = w.svc.Reauthenticate(w.ctx, g.RefreshToken, w.phone.ID)
	wantErr(t, err, auth.ErrRefreshTokenReused)
}

// TestReauthenticateNeedsTheHandsetKey: a handset with a key proves every
// re-authentication, as every refresh; a copied token without the key gets
// nothing and ends nothing.
func TestReauthenticateNeedsTheHandsetKey(t *testing.T) {
	w := newWorld(t)
	k := newKey(t, "EC")
	g := w.keyedLogin(k)
	_, err := w.svc.Reauthenticate(w.ctx, g.RefreshToken, w.phone.ID)
	wantErr(t, err, auth.ErrProofRequired)
	_, err = w.svc.Reauthenticate(w.prove(newKey(t, "EC"), "POST", "/api/v1/Authentication/TokenLogin", ""), g.RefreshToken, w.phone.ID)
	wantErr(t, err, auth.ErrProofInvalid)
	for i := range 2 {
		r, err := w.svc.Reauthenticate(w.prove(k, "POST", "/api/v1/Authentication/TokenLogin", ""), g.RefreshToken, w.phone.ID)
		if err != nil || r.RefreshToken != g.RefreshToken || cnfOf(t, r.AccessToken) != k.Thumbprint() {
			t.Fatalf("use %d with the handset's proof: %v", i+1, err)
		}
		w.clock.Advance(time.Minute)
	}
}

// TestReauthenticateDeviceName: a session bound to a device name (a login
// naming no enrolled handset) re-authenticates only with that exact name.
func TestReauthenticateDeviceName(t *testing.T) {
	w := newWorld(t)
	g, err := w.svc.Login(w.ctx, auth.LoginRequest{Username: "maria", Password: password, DeviceRef: "DEPOT-PC-3", Persistent: true})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, device string
		want         error
	}{
		{"no name", "", auth.ErrDeviceMismatch},
		{"another name", "DEPOT-PC-4", auth.ErrDeviceMismatch},
		{"the name in another case", "depot-pc-3", auth.ErrDeviceMismatch},
		{"an enrolled handset", w.phone.ID, auth.ErrDeviceMismatch},
		{"the name", "DEPOT-PC-3", nil},
		{"the name again", "DEPOT-PC-3", nil},
	}
	for _, c := range cases {
		r, err := w.svc.Reauthenticate(w.ctx, g.RefreshToken, c.device)
		switch {
		case c.want == nil && (err != nil || r.RefreshToken != g.RefreshToken):
			t.Errorf("%s: got %v; want the same token back", c.name, err)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: got %v; want %v", c.name, err, c.want)
		}
		w.clock.Advance(time.Minute)
	}
}
