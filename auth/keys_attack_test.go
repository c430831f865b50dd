package auth_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/auth"
	"tether/storage"
)

// stolenKey is the active Ed25519 signing key as a thief with the store
// file has it: its id and private key.
func stolenKey(t *testing.T, store storage.SigningKeys) (string, ed25519.PrivateKey) {
	t.Helper()
	keys, err := store.ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.RetiredAt.IsZero() && k.Algorithm() == auth.EdDSA {
			return k.ID, ed25519.NewKeyFromSeed(k.Private)
		}
	}
	t.Fatal("no active EdDSA key")
	return "", nil
}

// TestStolenSigningKey is the attack of a signing key taken from the store
// file: tokens forged with it, with any expiry. A token claiming to live
// longer than the access lifetime is refused outright; after an emergency
// rotation (revoke) nothing the old key signed verifies, at once, on every
// server sharing the store, while the sessions go on by refreshing. On the
// embedded store with two services sharing it, and on PostgreSQL with two
// servers.
func TestStolenSigningKey(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) storage.Store
	}{
		{"bolt", func(t *testing.T) storage.Store { return newStore(t) }},
		{"postgres", pgStore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorldOn(t, tc.store(t))
			other, err := auth.NewService(w.ctx, auth.DefaultConfig(), w.store, auth.NewHasher(cheap), validatorFor(t), auth.WithClock(w.clock.Now))
			if err != nil {
				t.Fatal(err)
			}
			g := w.mustLogin()
			kid, priv := stolenKey(t, w.store)
			now := w.clock.Now()
			forged := func(life time.Duration) string {
				return forge(t, g.AccessToken, jwt.SigningMethodEdDSA, priv, func(c jwt.MapClaims, h map[string]any) {
					h["kid"] = kid
					c["iat"], c["exp"] = now.Unix(), now.Add(life).Unix()
				})
			}
			forever := forged(10 * 365 * 24 * time.Hour)
			usual := forged(15 * time.Minute)
			for name, svc := range map[string]*auth.Service{"this server": w.svc, "the other": other} {
				if _, err := svc.Authenticate(w.ctx, forever); !errors.Is(err, auth.ErrTokenInvalid) {
					t.Fatalf("%s: a forged token living ten years: %v; want token_invalid", name, err)
				}
				if _, err := svc.Renew(w.ctx, forever, w.phone.ID); !errors.Is(err, auth.ErrTokenInvalid) {
					t.Fatalf("%s: renewing a forged token living ten years: %v; want token_invalid", name, err)
				}
				// A forgery within the lifetime verifies while the key is
				// live: that is what the emergency rotation is for.
				if _, err := svc.Authenticate(w.ctx, usual); err != nil {
					t.Fatalf("%s: the forged token before the rotation: %v", name, err)
				}
			}

			// Two more servers that will see nothing of the revocation but
			// what a refresh or a login reads.
			var stale []*auth.Service
			for range 2 {
				svc, err := auth.NewService(w.ctx, auth.DefaultConfig(), w.store, auth.NewHasher(cheap), validatorFor(t), auth.WithClock(w.clock.Now))
				if err != nil {
					t.Fatal(err)
				}
				stale = append(stale, svc)
			}
			kids, err := w.svc.RotateKeys(w.ctx, auth.CLI, true)
			if err != nil {
				t.Fatal(err)
			}
			newKid := kids[auth.EdDSA]
			// At once, on both servers: the other never reloaded on its own.
			for name, svc := range map[string]*auth.Service{"this server": w.svc, "the other": other} {
				if _, err := svc.Authenticate(w.ctx, usual); !errors.Is(err, auth.ErrTokenInvalid) {
					t.Errorf("%s: the forged token after the revocation: %v; want token_invalid", name, err)
				}
				if _, err := svc.Authenticate(w.ctx, g.AccessToken); !errors.Is(err, auth.ErrTokenInvalid) {
					t.Errorf("%s: a real token of the revoked key: %v; want token_invalid", name, err)
				}
				if _, err := svc.Renew(w.ctx, usual, w.phone.ID); !errors.Is(err, auth.ErrTokenInvalid) {
					t.Errorf("%s: renewing the forged token: %v; want token_invalid", name, err)
				}
				for _, k := range svc.Keys().JWKS() {
					if k.Kid == kid {
						t.Errorf("%s still publishes the revoked key", name)
					}
				}
			}
			// The session goes on: its refresh token needs no signing key,
			// and a server that has seen nothing since signs with the new
			// key only.
			next, err := stale[0].Refresh(w.ctx, g.RefreshToken, w.phone.ID)
			if err != nil {
				t.Fatalf("refresh after the revocation: %v", err)
			}
			if headerKid(t, next.AccessToken) != newKid {
				t.Fatalf("new token signed by %s; want the new key %s", headerKid(t, next.AccessToken), newKid)
			}
			if _, err := w.svc.Authenticate(w.ctx, next.AccessToken); err != nil {
				t.Fatalf("the new token: %v", err)
			}
			login, err := stale[1].Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, Device: payload(w.other.IMEI)})
			if err != nil {
				t.Fatal(err)
			}
			if headerKid(t, login.AccessToken) != newKid {
				t.Fatalf("a login's token signed by %s; want the new key %s", headerKid(t, login.AccessToken), newKid)
			}
			events, err := w.svc.Events(w.ctx, storage.EventFilter{Action: "keys.rotate"})
			if err != nil || len(events.Items) != 1 || events.Items[0].Reason != "old keys revoked" {
				t.Fatalf("the revocation's audit event: %+v, %v", events.Items, err)
			}
		})
	}
}

// TestRetiredKeyDroppedOnTime: a retired key stops verifying the moment
// its last token is past renewal, not at the next reload of the keys.
func TestRetiredKeyDroppedOnTime(t *testing.T) {
	w := newWorld(t)
	g := w.mustLogin()
	kid, priv := stolenKey(t, w.store)
	if _, err := w.svc.RotateKeys(w.ctx, auth.CLI, false); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(15*time.Minute + 24*time.Hour + time.Second)
	now := w.clock.Now()
	late := forge(t, g.AccessToken, jwt.SigningMethodEdDSA, priv, func(c jwt.MapClaims, h map[string]any) {
		h["kid"] = kid
		c["iat"], c["exp"] = now.Unix(), now.Add(15*time.Minute).Unix()
	})
	if _, err := w.svc.Authenticate(w.ctx, late); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Fatalf("a token of a key retired past its life: %v; want token_invalid", err)
	}
	for _, k := range w.svc.Keys().JWKS() {
		if k.Kid == kid {
			t.Fatal("a key past its life is still published")
		}
	}
}
