package auth_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/auth"
	"tether/storage"
	"tether/storage/bolt"
)

// forge signs claims like the real token's with whatever the attacker has.
func forge(t *testing.T, real string, method jwt.SigningMethod, key any, mutate func(jwt.MapClaims, map[string]any)) string {
	t.Helper()
	claims := jwt.MapClaims{}
	tok, _, err := jwt.NewParser().ParseUnverified(real, claims)
	if err != nil {
		t.Fatal(err)
	}
	f := jwt.NewWithClaims(method, claims)
	f.Header["kid"] = tok.Header["kid"]
	if mutate != nil {
		mutate(claims, f.Header)
	}
	s, err := f.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokenAttacks(t *testing.T) {
	w := newWorld(t)
	g := w.mustLogin()
	jwks := w.svc.Keys().JWKS()
	pub, err := base64.RawURLEncoding.DecodeString(jwks[0].X)
	if err != nil {
		t.Fatal(err)
	}
	_, stranger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(g.AccessToken, ".")
	b64 := base64.RawURLEncoding.EncodeToString

	attacks := map[string]string{
		"alg none":                        forge(t, g.AccessToken, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil),
		"HS256 keyed with the public key": forge(t, g.AccessToken, jwt.SigningMethodHS256, pub, nil),
		"another key, same kid":           forge(t, g.AccessToken, jwt.SigningMethodEdDSA, stranger, nil),
		"unknown kid": forge(t, g.AccessToken, jwt.SigningMethodEdDSA, stranger, func(_ jwt.MapClaims, h map[string]any) {
			h["kid"] = "key_UNKNOWN"
		}),
		"path-like kid": forge(t, g.AccessToken, jwt.SigningMethodEdDSA, stranger, func(_ jwt.MapClaims, h map[string]any) {
			h["kid"] = "../../etc/passwd"
		}),
		"no kid": forge(t, g.AccessToken, jwt.SigningMethodEdDSA, stranger, func(_ jwt.MapClaims, h map[string]any) {
			delete(h, "kid")
		}),
		"tampered role":     parts[0] + "." + b64([]byte(strings.Replace(mustDecode(t, parts[1]), `"worker"`, `"admin"`, 1))) + "." + parts[2],
		"tampered expiry":   parts[0] + "." + b64([]byte(strings.Replace(mustDecode(t, parts[1]), `"exp":`, `"exp":9`, 1))) + "." + parts[2],
		"signature cut":     parts[0] + "." + parts[1] + ".",
		"two parts":         parts[0] + "." + parts[1],
		"empty":             "",
		"garbage":           "not.a.token",
		"huge":              strings.Repeat("A", 10000),
		"refresh as access": g.RefreshToken,
	}
	for name, tok := range attacks {
		if _, err := w.svc.Authenticate(w.ctx, tok); !errors.Is(err, auth.ErrTokenInvalid) {
			t.Errorf("%s: Authenticate = %v; want token_invalid", name, err)
		}
		if _, err := w.svc.Renew(w.ctx, tok, w.phone.ID); !errors.Is(err, auth.ErrTokenInvalid) {
			t.Errorf("%s: Renew = %v; want token_invalid", name, err)
		}
		if w.svc.Introspect(w.ctx, tok).Active {
			t.Errorf("%s: introspection says active", name)
		}
	}

	// And a genuine token stays good through all of that.
	if _, err := w.svc.Authenticate(w.ctx, g.AccessToken); err != nil {
		t.Fatalf("the real token: %v", err)
	}
	w.clock.Advance(time.Hour)
	if _, err := w.svc.Authenticate(w.ctx, g.AccessToken); !errors.Is(err, auth.ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
}

func mustDecode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestForeignIssuerOrAudience signs genuine tokens with our own keys (a
// second service on the same store) but for another issuer or audience:
// they are still not ours.
func TestForeignIssuerOrAudience(t *testing.T) {
	w := newWorld(t)
	for _, mutate := range []func(*auth.Config){
		func(c *auth.Config) { c.Issuer = "someone-else" },
		func(c *auth.Config) { c.Audience = "another-api" },
	} {
		cfg := auth.DefaultConfig()
		mutate(&cfg)
		other, err := auth.NewService(w.ctx, cfg, w.store, auth.NewHasher(cheap), validatorFor(t), auth.WithClock(w.clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		g, err := other.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, Device: payload(w.phone.IMEI)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.svc.Authenticate(w.ctx, g.AccessToken); !errors.Is(err, auth.ErrTokenInvalid) {
			t.Errorf("%s/%s token: %v; want token_invalid", cfg.Issuer, cfg.Audience, err)
		}
		if _, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID); !errors.Is(err, auth.ErrTokenInvalid) {
			t.Errorf("%s/%s renew: %v; want token_invalid", cfg.Issuer, cfg.Audience, err)
		}
	}
}

// TestStaleTokens replays genuine tokens where or when they no longer
// belong: each must be refused with the error that names why.
func TestStaleTokens(t *testing.T) {
	cases := []struct {
		name string
		// setup changes the world after the login and returns the handset
		// the tokens are presented from.
		setup                        func(w *world, g auth.Grant) string
		authenticate, renew, refresh error // nil: not a refusal this case is about
	}{
		{
			name:  "from another handset",
			setup: func(w *world, _ auth.Grant) string { return w.other.ID },
			renew: auth.ErrDeviceMismatch, refresh: auth.ErrDeviceMismatch,
		},
		{
			name:  "from another handset by its IMEI",
			setup: func(w *world, _ auth.Grant) string { return w.other.IMEI },
			renew: auth.ErrDeviceMismatch, refresh: auth.ErrDeviceMismatch,
		},
		{
			name: "after the handset was retired",
			setup: func(w *world, _ auth.Grant) string {
				if _, err := w.devices.Retire(w.ctx, "cli", w.phone.ID, "broken"); err != nil {
					w.t.Fatal(err)
				}
				return w.phone.ID
			},
			authenticate: auth.ErrSessionRevoked, renew: auth.ErrSessionRevoked, refresh: auth.ErrSessionRevoked,
		},
		{
			name: "after the user was disabled",
			setup: func(w *world, _ auth.Grant) string {
				if _, err := w.users.Update(w.ctx, auth.CLI, w.worker.ID, auth.UserPatch{Disabled: ptr(true)}); err != nil {
					w.t.Fatal(err)
				}
				return w.phone.ID
			},
			authenticate: auth.ErrSessionRevoked, renew: auth.ErrSessionRevoked, refresh: auth.ErrSessionRevoked,
		},
		{
			name: "after logout",
			setup: func(w *world, g auth.Grant) string {
				id, err := w.svc.Authenticate(w.ctx, g.AccessToken)
				if err != nil {
					w.t.Fatal(err)
				}
				if err := w.svc.Logout(w.ctx, id); err != nil {
					w.t.Fatal(err)
				}
				return w.phone.ID
			},
			authenticate: auth.ErrSessionRevoked, renew: auth.ErrSessionRevoked, refresh: auth.ErrSessionRevoked,
		},
		{
			// The signing key is dropped once the longest-lived token it
			// signed is past renewal; its tokens are then not ours at all.
			// (The refresh token does not depend on the signing key.)
			name: "signed by a key rotated out past its life",
			setup: func(w *world, _ auth.Grant) string {
				if _, err := w.svc.RotateKeys(w.ctx, auth.CLI, false); err != nil {
					w.t.Fatal(err)
				}
				w.clock.Advance(15*time.Minute + 24*time.Hour + time.Minute)
				if _, err := w.svc.RotateKeys(w.ctx, auth.CLI, false); err != nil {
					w.t.Fatal(err)
				}
				return w.phone.ID
			},
			authenticate: auth.ErrTokenInvalid, renew: auth.ErrTokenInvalid,
		},
		{
			name: "expired longer ago than the renewal window",
			setup: func(w *world, _ auth.Grant) string {
				w.clock.Advance(15*time.Minute + 24*time.Hour + time.Second)
				return w.phone.ID
			},
			authenticate: auth.ErrTokenExpired, renew: auth.ErrRenewalWindowPassed,
		},
		{
			name: "renewed already, past the retry grace",
			setup: func(w *world, g auth.Grant) string {
				if _, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID); err != nil {
					w.t.Fatal(err)
				}
				w.clock.Advance(11 * time.Second)
				return w.phone.ID
			},
			renew: auth.ErrTokenAlreadyUsed,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			g := w.mustLogin()
			from := c.setup(w, g)
			if c.authenticate != nil {
				_, err := w.svc.Authenticate(w.ctx, g.AccessToken)
				wantErr(t, err, c.authenticate)
			}
			if c.renew != nil {
				_, err := w.svc.Renew(w.ctx, g.AccessToken, from)
				wantErr(t, err, c.renew)
			}
			if c.refresh != nil {
				_, err := w.svc.Refresh(w.ctx, g.RefreshToken, from)
				wantErr(t, err, c.refresh)
			}
		})
	}
}

// TestStoreFileHoldsNoSecrets: whoever copies the store file finds no
// password, refresh token, access token, API key or enrollment code in it
// that could be replayed: passwords are argon2id hashes, the others are
// kept as SHA-256 hashes, and the answer kept for a refresh retry is
// sealed under a key derived from the refresh token that was presented.
func TestStoreFileHoldsNoSecrets(t *testing.T) {
	w := newWorld(t, func(c *auth.Config) { c.EnrollmentMode = auth.EnrollCode })
	g := w.mustLogin()
	next, err := w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
	if err != nil {
		t.Fatal(err)
	}
	// A retry within the grace seals the answer into the store.
	if _, err := w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID); err != nil {
		t.Fatal(err)
	}
	manager := auth.Principal{Kind: auth.KindUser, ID: w.boss.ID, Role: storage.RoleManager}
	code, _, err := w.svc.CreateEnrollmentCode(w.ctx, manager, auth.NewCode{})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := auth.NewAPIKeys(w.store).Create(w.ctx, auth.CLI, storage.RoleManager, "scripts")
	if err != nil {
		t.Fatal(err)
	}
	path := w.store.(*bolt.Store).Path()
	w.store.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("walter")) {
		t.Fatal("the file read is not the store, or the store is not plain bbolt")
	}
	secrets := map[string]string{
		"password": password, "refresh token": g.RefreshToken, "rotated refresh token": next.RefreshToken,
		"access token": g.AccessToken, "rotated access token": next.AccessToken,
		"enrollment code": code, "enrollment code, bare": strings.ReplaceAll(code, "-", ""), "API key": key,
	}
	for name, secret := range secrets {
		for _, form := range []string{secret, secret[len(secret)/2:]} {
			if bytes.Contains(data, []byte(form)) {
				t.Errorf("the store file holds the %s", name)
			}
		}
	}
}
