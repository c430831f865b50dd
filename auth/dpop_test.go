package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether"
	"tether/auth"
	"tether/auth/dpop"
	"tether/device"
	"tether/storage"
)

const base = "https://tether.example"

func newKey(t testing.TB, kind string) dpop.Key {
	t.Helper()
	k, err := dpop.NewKey(kind)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// prove returns w's context carrying a proof by k for method and path (and
// the access token sent, if any), made now by w's clock unless o says.
func (w *world) prove(k dpop.Key, method, path, token string, o ...dpop.Options) context.Context {
	w.t.Helper()
	opt := dpop.Options{}
	if len(o) > 0 {
		opt = o[0]
	}
	if opt.IssuedAt.IsZero() {
		opt.IssuedAt = w.clock.Now()
	}
	p, err := k.Proof(method, base+path, token, opt)
	if err != nil {
		w.t.Fatal(err)
	}
	return auth.WithProof(w.ctx, auth.Proof{JWT: p, Method: method, URL: base + path})
}

// keyedPayload is the phone's payload offering k.
func (w *world) keyedPayload(k dpop.Key) *device.Payload {
	p := payload(w.phone.IMEI)
	p.PublicKey = k.PublicJWK()
	return p
}

// keyedLogin logs walter in from the phone, enrolling k at the first time.
func (w *world) keyedLogin(k dpop.Key) auth.Grant {
	w.t.Helper()
	g, err := w.svc.Login(w.prove(k, "POST", "/v1/auth/login", ""), auth.LoginRequest{
		Username: "walter", Password: password, Device: w.keyedPayload(k), Persistent: true,
	})
	if err != nil {
		w.t.Fatalf("login with a key: %v", err)
	}
	return g
}

func cnfOf(t *testing.T, token string) string {
	t.Helper()
	var c auth.Claims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		t.Fatal(err)
	}
	if c.Cnf == nil {
		return ""
	}
	return c.Cnf.JKT
}

func TestKeyEnrolledAtFirstLogin(t *testing.T) {
	for _, kind := range []string{"EC", "OKP"} {
		t.Run(kind, func(t *testing.T) {
			w := newWorld(t)
			k := newKey(t, kind)
			g := w.keyedLogin(k)
			if g.Session.JKT != k.Thumbprint() || cnfOf(t, g.AccessToken) != k.Thumbprint() {
				t.Fatalf("session jkt %q, token cnf %q; want %q", g.Session.JKT, cnfOf(t, g.AccessToken), k.Thumbprint())
			}
			d, err := w.store.GetDevice(w.ctx, w.phone.ID)
			if err != nil || d.Key == nil || d.Key.Thumbprint != k.Thumbprint() || d.Key.EnrolledBy != "user:"+w.worker.ID {
				t.Fatalf("device key %+v, %v", d.Key, err)
			}
			page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "device.key_enrolled"})
			if len(page.Items) != 1 || page.Items[0].Detail["thumbprint"] != k.Thumbprint() {
				t.Fatalf("key enrollment events %+v", page.Items)
			}
			// The handset goes on working: refresh, renew, and its own
			// endpoints, each with a new proof.
			next, err := w.svc.Refresh(w.prove(k, "POST", "/v1/auth/refresh", ""), g.RefreshToken, w.phone.ID)
			if err != nil || cnfOf(t, next.AccessToken) != k.Thumbprint() {
				t.Fatalf("refresh: %v", err)
			}
			if _, err := w.svc.Renew(w.prove(k, "POST", "/v1/auth/renew", ""), next.AccessToken, w.phone.ID); err != nil {
				t.Fatalf("renew: %v", err)
			}
			if _, err := w.svc.Authenticate(w.prove(k, "GET", "/v1/auth/me", next.AccessToken), next.AccessToken); err != nil {
				t.Fatalf("a key-bound token with its proof: %v", err)
			}
			// A proof must be bound to the token it comes with.
			if _, err := w.svc.Authenticate(w.prove(k, "GET", "/v1/auth/me", g.AccessToken), next.AccessToken); !errors.Is(err, auth.ErrProofInvalid) {
				t.Fatalf("a proof for another token: %v; want proof_invalid", err)
			}
		})
	}
}

// TestStolenCredentialsWithoutTheKey is what handset keys are for: a
// thief holding the refresh token, an access token, the device id, the
// IMEI and even the password, but not the handset's key, gets nothing,
// under the optional policy (this handset has a key) and the required
// one; the real handset goes on working.
func TestStolenCredentialsWithoutTheKey(t *testing.T) {
	for _, policy := range []auth.DeviceProof{auth.ProofOptional, auth.ProofRequired} {
		t.Run(string(policy), func(t *testing.T) {
			w := newWorld(t, func(c *auth.Config) { c.DeviceProof = policy })
			handset := newKey(t, "EC")
			var g auth.Grant
			if policy == auth.ProofRequired {
				// Under required the key is enrolled at registration.
				if _, err := w.devices.Update(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, device.Patch{PublicKey: ptr(handset.PublicJWK())}); err != nil {
					t.Fatal(err)
				}
				var err error
				g, err = w.svc.Login(w.prove(handset, "POST", "/v1/auth/login", ""), auth.LoginRequest{Username: "walter", Password: password, Device: payload(w.phone.IMEI), Persistent: true})
				if err != nil {
					t.Fatal(err)
				}
			} else {
				g = w.keyedLogin(handset)
			}
			thief := newKey(t, "EC")
			stolen := map[string]func(ctx context.Context) error{
				"refresh token": func(ctx context.Context) error {
					_, err := w.svc.Refresh(ctx, g.RefreshToken, w.phone.ID)
					return err
				},
				"access token, renewed": func(ctx context.Context) error {
					_, err := w.svc.Renew(ctx, g.AccessToken, w.phone.IMEI)
					return err
				},
				"access token, used": func(ctx context.Context) error {
					_, err := w.svc.Authenticate(ctx, g.AccessToken)
					return err
				},
				"password and IMEI": func(ctx context.Context) error {
					_, err := w.svc.Login(ctx, auth.LoginRequest{Username: "walter", Password: password, Device: payload(w.phone.IMEI)})
					return err
				},
				"password, IMEI and the thief's own key": func(ctx context.Context) error {
					p := payload(w.phone.IMEI)
					p.PublicKey = thief.PublicJWK()
					_, err := w.svc.Login(ctx, auth.LoginRequest{Username: "walter", Password: password, Device: p})
					return err
				},
			}
			for name, use := range stolen {
				if err := use(w.ctx); !errors.Is(err, auth.ErrProofRequired) && !errors.Is(err, auth.ErrProofInvalid) {
					t.Errorf("%s without a proof: %v; want proof_required", name, err)
				}
				if err := use(w.prove(thief, "POST", "/v1/auth/refresh", "")); !errors.Is(err, auth.ErrProofInvalid) {
					t.Errorf("%s with the thief's key: %v; want proof_invalid", name, err)
				}
			}
			// None of that cost the handset its session.
			next, err := w.svc.Refresh(w.prove(handset, "POST", "/v1/auth/refresh", ""), g.RefreshToken, w.phone.ID)
			if err != nil {
				t.Fatalf("the handset's own refresh after the attempts: %v", err)
			}
			if _, err := w.svc.Authenticate(w.prove(handset, "GET", "/v1/auth/me", next.AccessToken), next.AccessToken); err != nil {
				t.Fatalf("the handset's own token: %v", err)
			}
		})
	}
}

// TestBadProofs: every way a proof can be wrong is refused, and a refusal
// costs the handset nothing.
func TestBadProofs(t *testing.T) {
	w := newWorld(t)
	k := newKey(t, "OKP")
	g := w.keyedLogin(k)
	const path = "/v1/auth/renew"
	now := w.clock.Now()
	used := w.prove(k, "POST", path, "")
	if _, err := w.svc.Renew(used, g.AccessToken, w.phone.ID); err != nil {
		t.Fatal(err)
	}
	g, _ = w.svc.Refresh(w.prove(k, "POST", "/v1/auth/refresh", ""), g.RefreshToken, w.phone.ID)
	other := newKey(t, "OKP")
	ec := newKey(t, "EC")
	cases := map[string]context.Context{
		"replayed":         used,
		"another method":   auth.WithProof(w.ctx, auth.Proof{JWT: mustProof(t, k, "PUT", base+path, now), Method: "POST", URL: base + path}),
		"another URL":      auth.WithProof(w.ctx, auth.Proof{JWT: mustProof(t, k, "POST", base+"/v1/auth/refresh", now), Method: "POST", URL: base + path}),
		"another host":     auth.WithProof(w.ctx, auth.Proof{JWT: mustProof(t, k, "POST", "https://evil.example"+path, now), Method: "POST", URL: base + path}),
		"stale iat":        w.prove(k, "POST", path, "", dpop.Options{IssuedAt: now.Add(-2 * time.Minute)}),
		"future iat":       w.prove(k, "POST", path, "", dpop.Options{IssuedAt: now.Add(time.Minute)}),
		"another key":      w.prove(other, "POST", path, ""),
		"another key type": w.prove(ec, "POST", path, ""),
		"no typ":           w.prove(k, "POST", path, "", dpop.Options{Header: func(h map[string]any) { delete(h, "typ") }}),
		"typ jwt":          w.prove(k, "POST", path, "", dpop.Options{Header: func(h map[string]any) { h["typ"] = "JWT" }}),
		"no jwk":           w.prove(k, "POST", path, "", dpop.Options{Header: func(h map[string]any) { delete(h, "jwk") }}),
		"jwk of another":   w.prove(k, "POST", path, "", dpop.Options{Header: func(h map[string]any) { h["jwk"] = other.JWK }}),
		"private jwk": w.prove(k, "POST", path, "", dpop.Options{Header: func(h map[string]any) {
			h["jwk"] = map[string]any{"kty": "OKP", "crv": "Ed25519", "x": k.JWK.X, "d": "AAAA"}
		}}),
		"no jti":            w.prove(k, "POST", path, "", dpop.Options{Claims: func(c jwt.MapClaims) { delete(c, "jti") }}),
		"no iat":            w.prove(k, "POST", path, "", dpop.Options{Claims: func(c jwt.MapClaims) { delete(c, "iat") }}),
		"garbage":           auth.WithProof(w.ctx, auth.Proof{JWT: "not.a.proof", Method: "POST", URL: base + path}),
		"alg none":          auth.WithProof(w.ctx, auth.Proof{JWT: noneProof(t, k, path, now), Method: "POST", URL: base + path}),
		"signature cut off": auth.WithProof(w.ctx, auth.Proof{JWT: cut(mustProof(t, k, "POST", base+path, now)), Method: "POST", URL: base + path}),
	}
	for name, ctx := range cases {
		if _, err := w.svc.Renew(ctx, g.AccessToken, w.phone.ID); !errors.Is(err, auth.ErrProofInvalid) {
			t.Errorf("%s: %v; want proof_invalid", name, err)
		}
	}
	if _, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID); !errors.Is(err, auth.ErrProofRequired) {
		t.Errorf("no proof: %v; want proof_required", err)
	}
	if _, err := w.svc.Renew(w.prove(k, "POST", path, ""), g.AccessToken, w.phone.ID); err != nil {
		t.Fatalf("a good proof after the bad ones: %v", err)
	}
}

func mustProof(t *testing.T, k dpop.Key, method, url string, at time.Time) string {
	t.Helper()
	p, err := k.Proof(method, url, "", dpop.Options{IssuedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func cut(p string) string { return p[:len(p)-10] }

func noneProof(t *testing.T, k dpop.Key, path string, at time.Time) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"htm": "POST", "htu": base + path, "iat": at.Unix(), "jti": "x"})
	tok.Header["typ"], tok.Header["jwk"] = "dpop+jwt", k.JWK
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestKeySwapRefused: a handset whose key is enrolled cannot swap it at a
// login; only a manager replaces a key, and that ends its sessions.
func TestKeySwapRefused(t *testing.T) {
	w := newWorld(t)
	k := newKey(t, "EC")
	g := w.keyedLogin(k)
	swapped := newKey(t, "EC")
	_, err := w.svc.Login(w.prove(swapped, "POST", "/v1/auth/login", ""), auth.LoginRequest{Username: "walter", Password: password, Device: w.keyedPayload(swapped)})
	if !errors.Is(err, auth.ErrProofInvalid) {
		t.Fatalf("login offering another key: %v; want proof_invalid", err)
	}
	if _, err := w.devices.Update(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, device.Patch{PublicKey: ptr(swapped.PublicJWK())}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.Refresh(w.prove(k, "POST", "/v1/auth/refresh", ""), g.RefreshToken, w.phone.ID); !errors.Is(err, auth.ErrSessionRevoked) {
		t.Fatalf("the old key's session after the manager replaced the key: %v", err)
	}
	if _, err := w.svc.Login(w.prove(swapped, "POST", "/v1/auth/login", ""), auth.LoginRequest{Username: "walter", Password: password, Device: payload(w.phone.IMEI)}); err != nil {
		t.Fatalf("login with the replacement key: %v", err)
	}
	page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "device.key_replaced"})
	if len(page.Items) != 1 || page.Items[0].Actor != "cli" {
		t.Fatalf("key replacement events %+v", page.Items)
	}
}

// TestProofPolicies: off ignores keys and proofs; required refuses
// handsets without a key but not managers without a handset.
func TestProofPolicies(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		w := newWorld(t, func(c *auth.Config) { c.DeviceProof = auth.ProofOff })
		g, err := w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, Device: w.keyedPayload(newKey(t, "EC"))})
		if err != nil || g.Session.JKT != "" || cnfOf(t, g.AccessToken) != "" {
			t.Fatalf("login under off: %+v, %v", g.Session, err)
		}
	})
	t.Run("required", func(t *testing.T) {
		w := newWorld(t, func(c *auth.Config) { c.DeviceProof = auth.ProofRequired })
		_, err := w.login("walter", payload(w.phone.IMEI))
		var te *tether.Error
		if !errors.As(err, &te) || te.Code != tether.CodeProofRequired {
			t.Fatalf("a handset without a key: %v; want proof_required", err)
		}
		if _, err := w.login("maria", nil); err != nil {
			t.Fatalf("a manager without a handset: %v", err)
		}
		w.keyedLogin(newKey(t, "OKP"))
	})
	t.Run("per group", func(t *testing.T) {
		w := newWorld(t, func(c *auth.Config) {
			c.DeviceProofGroups = map[string]auth.DeviceProof{"vault": auth.ProofRequired, "lab": auth.ProofOff}
		})
		if _, err := w.login("walter", payload(w.phone.IMEI)); err != nil {
			t.Fatalf("a handset of no group under optional: %v", err)
		}
		if _, err := w.devices.Update(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, device.Patch{Group: ptr("vault")}); err != nil {
			t.Fatal(err)
		}
		_, err := w.login("walter", payload(w.phone.IMEI))
		var te *tether.Error
		if !errors.As(err, &te) || te.Code != tether.CodeProofRequired {
			t.Fatalf("a keyless handset of a required group: %v; want proof_required", err)
		}
		if _, err := w.devices.Update(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, device.Patch{Group: ptr("lab")}); err != nil {
			t.Fatal(err)
		}
		g, err := w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, Device: w.keyedPayload(newKey(t, "EC"))})
		if err != nil || g.Session.JKT != "" {
			t.Fatalf("a handset of a group with proofs off, offering a key without a proof: %+v, %v", g.Session, err)
		}
	})
	t.Run("validate", func(t *testing.T) {
		cfg := auth.DefaultConfig()
		cfg.DeviceProof = "sometimes"
		if cfg.Validate() == nil {
			t.Fatal("an unknown policy passed")
		}
		cfg = auth.DefaultConfig()
		cfg.DeviceProofGroups = map[string]auth.DeviceProof{"north": "never"}
		if cfg.Validate() == nil {
			t.Fatal("an unknown group policy passed")
		}
	})
}

func TestThumbprintRFC8037(t *testing.T) {
	// RFC 8037 appendix A.3.
	jwk, _, err := device.ParseJWK([]byte(`{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := jwk.Thumbprint(); got != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Fatalf("thumbprint %s", got)
	}
}

// TestServerNonce: with nonces on, a proof without the server's nonce is
// refused, one with the nonce handed out now or in the window before is
// taken, an older or made-up one is refused.
func TestServerNonce(t *testing.T) {
	w := newWorld(t, func(c *auth.Config) { c.DPoPNonce = true })
	k := newKey(t, "EC")
	login := func(nonce string) error {
		_, err := w.svc.Login(w.prove(k, "POST", "/v1/auth/login", "", dpop.Options{Nonce: nonce}), auth.LoginRequest{Username: "walter", Password: password, Device: w.keyedPayload(k)})
		return err
	}
	if err := login(""); !errors.Is(err, auth.ErrProofInvalid) {
		t.Fatalf("no nonce: %v; want proof_invalid", err)
	}
	if err := login("made-up"); !errors.Is(err, auth.ErrProofInvalid) {
		t.Fatalf("a made-up nonce: %v; want proof_invalid", err)
	}
	n := w.svc.Nonce()
	if err := login(n); err != nil {
		t.Fatalf("the server's nonce: %v", err)
	}
	w.clock.Advance(5 * time.Minute)
	if err := login(n); err != nil {
		t.Fatalf("the last window's nonce: %v", err)
	}
	w.clock.Advance(10 * time.Minute)
	if err := login(n); !errors.Is(err, auth.ErrProofInvalid) {
		t.Fatalf("a nonce two windows old: %v; want proof_invalid", err)
	}
}
