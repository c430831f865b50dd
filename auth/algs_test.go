package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/auth"
	"tether/storage"
)

func headerAlg(t *testing.T, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Header["alg"].(string)
}

// activeKeys is the id of each algorithm's active key in the store, and
// fails the test if an algorithm has none or more than one.
func activeKeys(t *testing.T, store storage.SigningKeys) map[string]string {
	t.Helper()
	keys, err := store.ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	active := map[string]string{}
	for _, k := range keys {
		if !k.RetiredAt.IsZero() {
			continue
		}
		if other, ok := active[k.Algorithm()]; ok {
			t.Fatalf("two active %s keys: %s and %s", k.Algorithm(), other, k.ID)
		}
		active[k.Algorithm()] = k.ID
	}
	if len(active) != len(auth.Algorithms()) {
		t.Fatalf("active keys %v; want one of each of %v", active, auth.Algorithms())
	}
	return active
}

// TestAccessTokensPerAlgorithm: with each --token-alg, a login's access
// token is signed with the active key of that algorithm, verifies with the
// JWKS alone, renews and refreshes into tokens of the same algorithm, and
// is refused once the keys are revoked, while the session refreshes into a
// token of the new key of its algorithm.
func TestAccessTokensPerAlgorithm(t *testing.T) {
	for _, alg := range auth.Algorithms() {
		t.Run(alg, func(t *testing.T) {
			w := newWorld(t, func(c *auth.Config) { c.TokenAlg = alg })
			active := activeKeys(t, w.store)
			g := w.mustLogin()
			signedBy := func(what, token, kid string) {
				t.Helper()
				if got := headerAlg(t, token); got != alg {
					t.Fatalf("%s signed %s; want %s", what, got, alg)
				}
				if got := headerKid(t, token); got != kid {
					t.Fatalf("%s signed by key %s; want %s", what, got, kid)
				}
				w.verifyWithJWKS(token)
				if _, err := w.svc.Authenticate(w.ctx, token); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			signedBy("the login's token", g.AccessToken, active[alg])
			if claims := w.verifyWithJWKS(g.AccessToken); claims["sid"] != g.Session.ID || claims["sub"] != w.worker.ID {
				t.Fatalf("claims %v; want the session's", claims)
			}

			renewed, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
			if err != nil {
				t.Fatal(err)
			}
			signedBy("the renewed token", renewed.AccessToken, active[alg])
			refreshed, err := w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
			if err != nil {
				t.Fatal(err)
			}
			signedBy("the refreshed token", refreshed.AccessToken, active[alg])

			kids, err := w.svc.RotateKeys(w.ctx, auth.CLI, true)
			if err != nil {
				t.Fatal(err)
			}
			for _, tok := range []string{renewed.AccessToken, refreshed.AccessToken} {
				_, err := w.svc.Authenticate(w.ctx, tok)
				wantErr(t, err, auth.ErrTokenInvalid)
				_, err = w.svc.Renew(w.ctx, tok, w.phone.ID)
				wantErr(t, err, auth.ErrTokenInvalid)
			}
			next, err := w.svc.Refresh(w.ctx, refreshed.RefreshToken, w.phone.ID)
			if err != nil {
				t.Fatalf("refresh after the revocation: %v", err)
			}
			signedBy("the token refreshed after the revocation", next.AccessToken, kids[alg])
			if got := activeKeys(t, w.store); got[alg] != kids[alg] {
				t.Fatalf("active %s key %s; want the new %s", alg, got[alg], kids[alg])
			}
		})
	}
}

func TestTokenAlgConfig(t *testing.T) {
	for _, c := range []struct {
		alg string
		ok  bool
	}{
		{"", true}, {"EdDSA", true}, {"ES256", true}, {"RS256", true},
		{"es256", false}, {"HS256", false}, {"none", false}, {"PS256", false}, {"ES384", false},
	} {
		cfg := auth.DefaultConfig()
		cfg.TokenAlg = c.alg
		if err := cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("TokenAlg %q: Validate got %v; want ok %v", c.alg, err, c.ok)
		}
	}
	if got := auth.DefaultConfig().TokenAlg; got != auth.EdDSA {
		t.Fatalf("default TokenAlg %q; want EdDSA", got)
	}
	w := newWorld(t, func(c *auth.Config) { c.TokenAlg = "" })
	if got := w.svc.Config().TokenAlg; got != auth.EdDSA {
		t.Fatalf("TokenAlg %q when empty; want EdDSA", got)
	}
	if got := headerAlg(t, w.mustLogin().AccessToken); got != auth.EdDSA {
		t.Fatalf("token signed %s with an empty TokenAlg; want EdDSA", got)
	}
}

// TestSignJWT: tokens of any algorithm for other uses (ID tokens), with
// the header members asked for, verify with the JWKS; an algorithm of no
// key, or a header naming the key or algorithm, is refused.
func TestSignJWT(t *testing.T) {
	w := newWorld(t)
	active := activeKeys(t, w.store)
	for _, alg := range auth.Algorithms() {
		claims := jwt.RegisteredClaims{Issuer: "tether", Subject: w.worker.ID, Audience: jwt.ClaimStrings{"client-1"}}
		tok, err := w.svc.SignJWT(claims, alg, map[string]any{"typ": "JWT", "x-test": "yes"})
		if err != nil {
			t.Fatal(err)
		}
		parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
		if err != nil {
			t.Fatal(err)
		}
		if parsed.Header["alg"] != alg || parsed.Header["kid"] != active[alg] || parsed.Header["x-test"] != "yes" {
			t.Fatalf("header %v; want alg %s, kid %s and x-test", parsed.Header, alg, active[alg])
		}
		if got := w.verifyWithJWKS(tok); got["aud"].([]any)[0] != "client-1" {
			t.Fatalf("claims %v", got)
		}
		// Not an access token: another audience, no session.
		_, err = w.svc.Authenticate(w.ctx, tok)
		wantErr(t, err, auth.ErrTokenInvalid)
	}
	for _, alg := range []string{"", "HS256", "none", "PS256", "es256"} {
		if _, err := w.svc.SignJWT(jwt.RegisteredClaims{}, alg, nil); !errors.Is(err, auth.ErrUnsupportedAlgorithm) {
			t.Errorf("SignJWT with %q: got %v; want ErrUnsupportedAlgorithm", alg, err)
		}
	}
	for _, name := range []string{"alg", "kid"} {
		if _, err := w.svc.SignJWT(jwt.RegisteredClaims{}, auth.ES256, map[string]any{name: "x"}); err == nil {
			t.Errorf("SignJWT with a %q header: no error", name)
		}
	}
}

// TestAlgorithmsAcrossInstances: instances on one store, each signing
// access tokens with another algorithm, verify each other's tokens; a
// revocation on one reaches the tokens of every algorithm on the others,
// and each goes on signing with the new key of its own algorithm.
func TestAlgorithmsAcrossInstances(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) storage.Store
	}{
		{"bolt", func(t *testing.T) storage.Store { return newStore(t) }},
		{"postgres", pgStore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorldOn(t, tc.store(t))
			services := map[string]*auth.Service{auth.EdDSA: w.svc}
			for _, alg := range []string{auth.ES256, auth.RS256} {
				cfg := auth.DefaultConfig()
				cfg.TokenAlg = alg
				svc, err := auth.NewService(w.ctx, cfg, w.store, auth.NewHasher(cheap), validatorFor(t), auth.WithClock(w.clock.Now))
				if err != nil {
					t.Fatal(err)
				}
				services[alg] = svc
			}
			grants := map[string]auth.Grant{}
			for alg, svc := range services {
				// A user of its own: a login replaces the user's session
				// without a handset.
				u := w.user(strings.ToLower(alg), storage.RoleManager)
				g, err := svc.Login(w.ctx, auth.LoginRequest{Username: u.Username, Password: password})
				if err != nil {
					t.Fatal(err)
				}
				if got := headerAlg(t, g.AccessToken); got != alg {
					t.Fatalf("instance of %s signed %s", alg, got)
				}
				grants[alg] = g
			}
			for alg, g := range grants {
				for other, svc := range services {
					if _, err := svc.Authenticate(w.ctx, g.AccessToken); err != nil {
						t.Fatalf("a %s token on the %s instance: %v", alg, other, err)
					}
				}
			}

			kids, err := services[auth.RS256].RotateKeys(w.ctx, auth.CLI, true)
			if err != nil {
				t.Fatal(err)
			}
			for alg, g := range grants {
				for other, svc := range services {
					if _, err := svc.Authenticate(w.ctx, g.AccessToken); !errors.Is(err, auth.ErrTokenInvalid) {
						t.Errorf("a %s token of a revoked key on the %s instance: got %v; want token_invalid", alg, other, err)
					}
				}
			}
			for alg, svc := range services {
				next, err := svc.Refresh(w.ctx, grants[alg].RefreshToken, "")
				if err != nil {
					t.Fatalf("%s instance refreshing after the revocation: %v", alg, err)
				}
				if got := headerKid(t, next.AccessToken); got != kids[alg] {
					t.Fatalf("%s instance signed with %s after the revocation; want the new key %s", alg, got, kids[alg])
				}
				for other, svc := range services {
					if _, err := svc.Authenticate(w.ctx, next.AccessToken); err != nil {
						t.Fatalf("a new %s token on the %s instance: %v", alg, other, err)
					}
				}
			}
		})
	}
}

// TestUpgradeFromEdDSAOnly: a store of a version that had only Ed25519
// keys (no algorithm in the record) gets an ES256 and an RS256 key at the
// first start, one of each however many instances start on it together;
// its Ed25519 key is left as it was and goes on signing EdDSA tokens.
// Sealed or not, on the embedded store and on PostgreSQL.
func TestUpgradeFromEdDSAOnly(t *testing.T) {
	for _, tc := range []struct {
		name   string
		store  func(t *testing.T) storage.Store
		sealed bool
	}{
		{"bolt", func(t *testing.T) storage.Store { return newStore(t) }, false},
		{"bolt, sealed", func(t *testing.T) storage.Store { return newStore(t) }, true},
		{"postgres", pgStore, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := tc.store(t)
			ctx := context.Background()
			var opts []auth.ServiceOption
			if tc.sealed {
				// The master key is given at the upgrade: the old key is
				// sealed in place, the new ones are made sealed.
				master, err := auth.NewMasterKey(make([]byte, 32))
				if err != nil {
					t.Fatal(err)
				}
				opts = append(opts, auth.WithMasterKey(master))
			}
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			old := storage.SigningKey{ID: storage.NewID(storage.PrefixKey), Private: priv.Seed(), Public: pub, CreatedAt: time.Now().UTC()}
			if err := store.RotateSigningKeys(ctx, []storage.SigningKey{old}); err != nil {
				t.Fatal(err)
			}
			before, err := store.ListSigningKeys(ctx)
			if err != nil || len(before) != 1 || before[0].Alg != "" {
				t.Fatalf("the old store: %+v, %v; want one key with no algorithm", before, err)
			}

			users := auth.NewUsers(store, auth.NewHasher(cheap), validatorFor(t))
			for i := range 6 {
				if _, err := users.Create(ctx, auth.CLI, auth.NewUser{Username: fmt.Sprint("user", i), Password: password, Role: storage.RoleManager}); err != nil {
					t.Fatal(err)
				}
			}

			// Instances start together, each with another algorithm.
			services := make([]*auth.Service, 6)
			errs := make([]error, len(services))
			var wg sync.WaitGroup
			for i := range services {
				wg.Go(func() {
					cfg := auth.DefaultConfig()
					cfg.TokenAlg = auth.Algorithms()[i%3]
					services[i], errs[i] = auth.NewService(ctx, cfg, store, auth.NewHasher(cheap), validatorFor(t), opts...)
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			keys, err := store.ListSigningKeys(ctx)
			if err != nil || len(keys) != 3 {
				t.Fatalf("%d keys after the upgrade, %v; want 3", len(keys), err)
			}
			if k := keys[0]; k.ID != old.ID || k.Alg != "" || string(k.Public) != string(pub) || !k.RetiredAt.IsZero() ||
				k.Sealed != tc.sealed || (string(k.Private) == string(old.Private)) == tc.sealed {
				t.Fatalf("the old key after the upgrade: %+v; want it as it was (sealed %v)", k, tc.sealed)
			}
			active := activeKeys(t, store)
			if active[auth.EdDSA] != old.ID {
				t.Fatalf("active EdDSA key %s; want the old one %s", active[auth.EdDSA], old.ID)
			}
			for _, k := range keys[1:] {
				if k.Sealed != tc.sealed {
					t.Fatalf("new %s key sealed %v; want %v", k.Alg, k.Sealed, tc.sealed)
				}
			}

			for i, svc := range services {
				alg := auth.Algorithms()[i%3]
				g, err := svc.Login(ctx, auth.LoginRequest{Username: fmt.Sprint("user", i), Password: password})
				if err != nil {
					t.Fatal(err)
				}
				if headerAlg(t, g.AccessToken) != alg || headerKid(t, g.AccessToken) != active[alg] {
					t.Fatalf("instance %d signed with %s %s; want %s %s", i, headerAlg(t, g.AccessToken), headerKid(t, g.AccessToken), alg, active[alg])
				}
				for _, other := range services {
					if _, err := other.Authenticate(ctx, g.AccessToken); err != nil {
						t.Fatalf("a %s token of instance %d elsewhere: %v", alg, i, err)
					}
				}
			}
			if n := len(services[0].Keys().JWKS()); n != 3 {
				t.Fatalf("JWKS of %d keys; want 3", n)
			}
		})
	}
}

// TestJWKSMembers: the JWKS has a key of each algorithm, each with the
// members of its kind (jwkKeys reads each back from them alone) and no
// private member.
func TestJWKSMembers(t *testing.T) {
	w := newWorld(t)
	jwks := w.svc.Keys().JWKS()
	kinds := map[string]string{}
	for _, k := range jwks {
		kinds[k.Alg] = k.Kty + " " + k.Crv
	}
	want := map[string]string{auth.EdDSA: "OKP Ed25519", auth.ES256: "EC P-256", auth.RS256: "RSA "}
	if len(kinds) != 3 || kinds[auth.EdDSA] != want[auth.EdDSA] || kinds[auth.ES256] != want[auth.ES256] || kinds[auth.RS256] != want[auth.RS256] {
		t.Fatalf("JWKS kinds %v; want %v", kinds, want)
	}
	jwkKeys(t, jwks)
	data, err := json.Marshal(jwks)
	if err != nil {
		t.Fatal(err)
	}
	for _, private := range []string{`"d"`, `"p"`, `"q"`, `"dp"`, `"dq"`, `"qi"`} {
		if strings.Contains(string(data), private) {
			t.Fatalf("the JWKS holds the private member %s: %s", private, data)
		}
	}
}
