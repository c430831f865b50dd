package auth_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/auth"
	"tether/device"
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

// strangerKeys are keys of every algorithm, and of some we do not sign
// with, that are not the server's, with the method each signs with.
func strangerKeys(t *testing.T) map[string]struct {
	method jwt.SigningMethod
	key    crypto.Signer
} {
	t.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]struct {
		method jwt.SigningMethod
		key    crypto.Signer
	}{
		auth.EdDSA: {jwt.SigningMethodEdDSA, ed},
		auth.ES256: {jwt.SigningMethodES256, p256},
		auth.RS256: {jwt.SigningMethodRS256, rsaKey},
		"ES384":    {jwt.SigningMethodES384, p384},
		"PS256":    {jwt.SigningMethodPS256, rsaKey},
		"RS512":    {jwt.SigningMethodRS512, rsaKey},
	}
}

// publicKeyForms are the forms an attacker may find our public key in and
// try as an HMAC secret: the JWK's own members, the JWK, PKIX DER and PEM.
func publicKeyForms(t *testing.T, k auth.JWK) map[string][]byte {
	t.Helper()
	pub := jwkKeys(t, []auth.JWK{k})[k.Kid].pub
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string][]byte{
		"JWK": jwk, "PKIX DER": der,
		"PEM": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
	}
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		forms["raw"] = pub
	case *rsa.PublicKey:
		forms["modulus"] = pub.N.Bytes()
		forms["PKCS #1 PEM"] = pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)})
	}
	return forms
}

// TestTokenAttacks forges, tampers with and confuses the access tokens of
// each algorithm: HMAC keyed with the public key in every form it is
// published or stored in, the algorithm swapped (to another of ours, with
// a key of that algorithm, or with the genuine signature kept), and the
// usual tampering.
func TestTokenAttacks(t *testing.T) {
	strangers := strangerKeys(t)
	for _, alg := range auth.Algorithms() {
		t.Run(alg, func(t *testing.T) {
			w := newWorld(t, func(c *auth.Config) { c.TokenAlg = alg })
			g := w.mustLogin()
			kid := headerKid(t, g.AccessToken)
			var own auth.JWK
			for _, k := range w.svc.Keys().JWKS() {
				if k.Kid == kid {
					own = k
				}
			}
			if own.Alg != alg {
				t.Fatalf("the token's key %s is a %q key; want %s", kid, own.Alg, alg)
			}
			parts := strings.Split(g.AccessToken, ".")
			b64 := base64.RawURLEncoding.EncodeToString
			same := strangers[alg]

			attacks := map[string]string{
				"alg none":              forge(t, g.AccessToken, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil),
				"another key, same kid": forge(t, g.AccessToken, same.method, same.key, nil),
				"unknown kid": forge(t, g.AccessToken, same.method, same.key, func(_ jwt.MapClaims, h map[string]any) {
					h["kid"] = "key_UNKNOWN"
				}),
				"path-like kid": forge(t, g.AccessToken, same.method, same.key, func(_ jwt.MapClaims, h map[string]any) {
					h["kid"] = "../../etc/passwd"
				}),
				"no kid": forge(t, g.AccessToken, same.method, same.key, func(_ jwt.MapClaims, h map[string]any) {
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
			for form, secret := range publicKeyForms(t, own) {
				for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS512} {
					attacks[m.Alg()+" keyed with the public key, "+form] = forge(t, g.AccessToken, m, secret, nil)
				}
			}
			for other, s := range strangers {
				if other == alg {
					continue
				}
				// A key of another algorithm presented under our key's id:
				// the algorithm is the key's, not the token's.
				attacks["alg swapped to "+other] = forge(t, g.AccessToken, s.method, s.key, nil)
				header := b64([]byte(strings.Replace(mustDecode(t, parts[0]), `"alg":"`+alg+`"`, `"alg":"`+other+`"`, 1)))
				attacks["alg swapped to "+other+", signature kept"] = header + "." + parts[1] + "." + parts[2]
			}
			// Our own key of another algorithm, named by its id, with our
			// key's algorithm in the header.
			for _, k := range w.svc.Keys().JWKS() {
				if k.Alg != alg {
					attacks["kid of our "+k.Alg+" key, signed "+alg] = forge(t, g.AccessToken, same.method, same.key, func(_ jwt.MapClaims, h map[string]any) {
						h["kid"] = k.Kid
					})
				}
			}
			for name, tok := range attacks {
				if _, err := w.svc.Authenticate(w.ctx, tok); !errors.Is(err, auth.ErrTokenInvalid) {
					t.Errorf("%s: Authenticate got %v; want token_invalid", name, err)
				}
				if _, err := w.svc.Renew(w.ctx, tok, w.phone.ID); !errors.Is(err, auth.ErrTokenInvalid) {
					t.Errorf("%s: Renew got %v; want token_invalid", name, err)
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
				t.Fatalf("expired: got %v; want token_expired", err)
			}
		})
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
				if _, err := w.devices.Retire(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, "broken"); err != nil {
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
