package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/golang-jwt/jwt/v5"

	"tether"
	"tether/auth"
	"tether/device"
	"tether/storage"
)

// clock is a settable clock shared by the service under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type world struct {
	t       testing.TB
	ctx     context.Context
	svc     *auth.Service
	store   storage.Store
	clock   *clock
	devices *device.Service
	users   *auth.Users
	worker  storage.User
	boss    storage.User
	phone   storage.Device
	other   storage.Device
}

const password = "correct horse battery"

func validatorFor(t testing.TB) *validator.Validate {
	t.Helper()
	v, err := auth.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newWorld(t testing.TB, mutate ...func(*auth.Config)) *world {
	t.Helper()
	return newWorldOn(t, newStore(t), mutate...)
}

// newWorldOn is newWorld on a store of the caller's.
func newWorldOn(t testing.TB, store storage.Store, mutate ...func(*auth.Config)) *world {
	t.Helper()
	v := validatorFor(t)
	clk := &clock{t: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)}
	cfg := auth.DefaultConfig()
	// Checks are not shed for their wait here, however loaded the machine
	// running the tests (TestHashGateSheds tests the shedding).
	cfg.HashMaxWait = time.Hour
	for _, m := range mutate {
		m(&cfg)
	}
	h := auth.NewHasher(cheap)
	ctx := tether.WithOrigin(context.Background(), tether.Origin{IP: "198.51.100.7", UserAgent: "field-app/3.2.1"})
	svc, err := auth.NewService(ctx, cfg, store, h, v, auth.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, ctx: ctx, svc: svc, store: store, clock: clk,
		devices: device.NewService(store, v, device.WithClock(clk.Now)),
		users:   auth.NewUsers(store, h, v, auth.WithUsersClock(clk.Now))}
	w.worker = w.user("walter", storage.RoleWorker)
	w.boss = w.user("maria", storage.RoleManager)
	w.phone = w.register("490154203237518")
	w.other = w.register("356938035643809")
	return w
}

func (w *world) user(name string, role storage.Role) storage.User {
	w.t.Helper()
	u, err := w.users.Create(w.ctx, auth.CLI, auth.NewUser{Username: name, Password: password, Role: role})
	if err != nil {
		w.t.Fatal(err)
	}
	return u
}

func (w *world) register(imei string) storage.Device {
	w.t.Helper()
	d, err := w.devices.Register(w.ctx, device.Actor{Name: "cli"}, device.Registration{Payload: device.Payload{IMEI: imei, IccIDs: []string{"89445001021983048261"}}})
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

func ptr[T any](v T) *T { return &v }

func payload(imei string) *device.Payload {
	return &device.Payload{
		IMEI: imei, HasIccCard: ptr(true), IccIDs: []string{"89445001021983048261"},
		OSVersion:  &device.OSVersion{API: 34, Name: "14"},
		DeviceInfo: &device.Info{Manufacturer: "samsung", Model: "SM-G991B"},
		AppVersion: ptr("3.2.1"),
	}
}

func (w *world) login(username string, p *device.Payload) (auth.Grant, error) {
	w.t.Helper()
	return w.svc.Login(w.ctx, auth.LoginRequest{Username: username, Password: password, Device: p, Persistent: true})
}

func (w *world) mustLogin() auth.Grant {
	w.t.Helper()
	g, err := w.login("walter", payload(w.phone.IMEI))
	if err != nil {
		w.t.Fatalf("login: %v", err)
	}
	return g
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v; want %v", err, want)
	}
}

// verifyWithJWKS checks a token as a resource server would: with nothing but
// the published keys and a standard JWT library, the algorithm pinned to
// the one its key's JWK names.
func (w *world) verifyWithJWKS(token string) jwt.MapClaims {
	w.t.Helper()
	keys := jwkKeys(w.t, w.svc.Keys().JWKS())
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		k, ok := keys[t.Header["kid"].(string)]
		if !ok || t.Method.Alg() != k.alg {
			return nil, fmt.Errorf("no %v key %v in the JWKS", t.Header["alg"], t.Header["kid"])
		}
		return k.pub, nil
	}, jwt.WithValidMethods(auth.Algorithms()), jwt.WithTimeFunc(w.clock.Now))
	if err != nil {
		w.t.Fatalf("token does not verify against the JWKS: %v", err)
	}
	return claims
}

// jwkKey is a public key read back from its JWK.
type jwkKey struct {
	alg string
	pub crypto.PublicKey
}

// jwkKeys reads the keys of a JWKS back, by key id, from their JWK members
// alone (RFC 7517, 7518 and 8037), failing the test on a member missing,
// wrong or extra.
func jwkKeys(t testing.TB, jwks []auth.JWK) map[string]jwkKey {
	t.Helper()
	b64 := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			t.Fatalf("JWK member %q: %v", s, err)
		}
		return b
	}
	keys := map[string]jwkKey{}
	for _, k := range jwks {
		if k.Use != "sig" || k.Kid == "" {
			t.Fatalf("JWK %+v: want use sig and a kid", k)
		}
		var pub crypto.PublicKey
		switch {
		case k.Alg == auth.EdDSA && k.Kty == "OKP" && k.Crv == "Ed25519" && k.Y+k.N+k.E == "":
			x := b64(k.X)
			if len(x) != ed25519.PublicKeySize {
				t.Fatalf("Ed25519 JWK x of %d bytes", len(x))
			}
			pub = ed25519.PublicKey(x)
		case k.Alg == auth.ES256 && k.Kty == "EC" && k.Crv == "P-256" && k.N+k.E == "":
			x, y := b64(k.X), b64(k.Y)
			if len(x) != 32 || len(y) != 32 {
				t.Fatalf("P-256 JWK x of %d bytes and y of %d; want 32 each", len(x), len(y))
			}
			p, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				t.Fatalf("P-256 JWK: %v", err)
			}
			pub = p
		case k.Alg == auth.RS256 && k.Kty == "RSA" && k.Crv+k.X+k.Y == "":
			p := &rsa.PublicKey{N: new(big.Int).SetBytes(b64(k.N)), E: int(new(big.Int).SetBytes(b64(k.E)).Int64())}
			if p.N.BitLen() < 2048 || p.E != 65537 {
				t.Fatalf("RSA JWK of %d bits, e %d", p.N.BitLen(), p.E)
			}
			pub = p
		default:
			t.Fatalf("JWK %+v: members do not fit its algorithm", k)
		}
		keys[k.Kid] = jwkKey{alg: k.Alg, pub: pub}
	}
	return keys
}

func TestLogin(t *testing.T) {
	w := newWorld(t)
	g := w.mustLogin()
	claims := w.verifyWithJWKS(g.AccessToken)
	for k, want := range map[string]any{
		"iss": "tether", "sub": w.worker.ID, "sid": g.Session.ID, "did": w.phone.ID, "role": "worker",
	} {
		if claims[k] != want {
			t.Errorf("claim %s = %v; want %v", k, claims[k], want)
		}
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != "tether" {
		t.Errorf("aud = %v", claims["aud"])
	}
	if !g.AccessExpiresAt.Equal(w.clock.Now().Add(15*time.Minute)) || !strings.HasPrefix(g.RefreshToken, "rt_") {
		t.Fatalf("grant %+v", g)
	}
	d, _ := w.store.GetDevice(w.ctx, w.phone.ID)
	if !d.LastSeenAt.Equal(w.clock.Now()) || d.OSAPI != 34 || d.AppVersion != "3.2.1" || d.Model != "SM-G991B" {
		t.Fatalf("device after login: %+v", d)
	}
	page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "login"})
	if len(page.Items) != 1 || page.Items[0].Outcome != "success" || page.Items[0].SessionID != g.Session.ID ||
		page.Items[0].ClientIP != "198.51.100.7" || page.Items[0].DeviceID != w.phone.ID {
		t.Fatalf("login events: %+v", page.Items)
	}
	if _, err := w.svc.Authenticate(w.ctx, g.AccessToken); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
}

func TestLoginFailures(t *testing.T) {
	w := newWorld(t)
	suspended := w.register("352099001761481")
	if _, err := w.devices.Suspend(w.ctx, device.Actor{Name: "cli"}, suspended.ID, "lost"); err != nil {
		t.Fatal(err)
	}
	retired := w.register("012345678901237")
	if _, err := w.devices.Retire(w.ctx, device.Actor{Name: "cli"}, retired.ID, ""); err != nil {
		t.Fatal(err)
	}
	assigned := w.register("867584030000009")
	if _, err := w.devices.Update(w.ctx, device.Actor{Name: "cli"}, assigned.ID, device.Patch{AssignedUsers: &[]string{"maria"}}); err != nil {
		t.Fatal(err)
	}
	disabled := w.user("dora", storage.RoleWorker)
	if _, err := w.users.Update(w.ctx, auth.CLI, disabled.ID, auth.UserPatch{Disabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	oldOS := payload(w.phone.IMEI)
	oldOS.OSVersion = &device.OSVersion{API: 25, Name: "7.1.1"}

	cases := []struct {
		name     string
		user, pw string
		p        *device.Payload
		want     error
	}{
		{"wrong password", "walter", "wrong password!", payload(w.phone.IMEI), auth.ErrInvalidCredentials},
		{"unknown user", "nobody", password, payload(w.phone.IMEI), auth.ErrInvalidCredentials},
		{"empty password", "walter", "", payload(w.phone.IMEI), auth.ErrInvalidCredentials},
		{"disabled", "dora", password, payload(w.phone.IMEI), auth.ErrAccountDisabled},
		{"not enrolled", "walter", password, payload("359881234567899"), auth.ErrDeviceNotEnrolled},
		{"suspended", "walter", password, payload(suspended.IMEI), auth.ErrDeviceSuspended},
		{"retired", "walter", password, payload(retired.IMEI), auth.ErrDeviceRetired},
		{"not assigned", "walter", password, payload(assigned.IMEI), auth.ErrDeviceNotAssigned},
		{"old Android", "walter", password, oldOS, auth.ErrOSVersion},
	}
	for _, c := range cases {
		_, err := w.svc.Login(w.ctx, auth.LoginRequest{Username: c.user, Password: c.pw, Device: c.p})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v; want %v", c.name, err, c.want)
		}
	}
	// The 426 says what the minimum is.
	_, err := w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, Device: oldOS})
	var te *tether.Error
	if !errors.As(err, &te) || te.Extra["minOsApi"] != 26 {
		t.Fatalf("426 extra: %+v", te)
	}
	// A worker must bring a handset.
	_, err = w.login("walter", nil)
	var ve *tether.ValidationError
	if !errors.As(err, &ve) || ve.Fields[0].Field != "device" {
		t.Fatalf("worker without device: %v", err)
	}
	// A bad payload names every field and is not a failed login.
	bad := payload("490154203237519")
	bad.AppVersion = ptr("3.2\x00")
	_, err = w.login("walter", bad)
	if !errors.As(err, &ve) || len(ve.Fields) != 2 {
		t.Fatalf("bad payload: %v", err)
	}
	sessions, _ := w.store.ListSessions(w.ctx, storage.SessionFilter{})
	if len(sessions.Items) != 0 {
		t.Fatalf("%d sessions after failed logins", len(sessions.Items))
	}
	failures, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "login"})
	reasons := map[string]bool{}
	for _, e := range failures.Items {
		reasons[e.Reason] = e.Outcome == "failure"
	}
	for _, r := range []string{"invalid_credentials", "account_disabled", "device_not_enrolled", "device_suspended", "device_not_assigned", "os_version_unsupported"} {
		if !reasons[r] {
			t.Errorf("no failed-login event with reason %s", r)
		}
	}
}

func TestLoginPolicies(t *testing.T) {
	t.Run("min app version", func(t *testing.T) {
		w := newWorld(t, func(c *auth.Config) { c.MinAppVersion = "3.10.0" })
		_, err := w.login("walter", payload(w.phone.IMEI))
		var te *tether.Error
		if !errors.As(err, &te) || te.Code != tether.CodeAppVersionOld || te.Extra["minAppVersion"] != "3.10.0" {
			t.Fatalf("old app: %v", err)
		}
		p := payload(w.phone.IMEI)
		p.AppVersion = ptr("3.10.0")
		if _, err := w.login("walter", p); err != nil {
			t.Fatalf("app at the minimum: %v", err)
		}
	})
	swapped := func() *device.Payload {
		p := payload("490154203237518")
		p.IccIDs = []string{"89012608621145279111"}
		return p
	}
	t.Run("sim block", func(t *testing.T) {
		w := newWorld(t, func(c *auth.Config) { c.SIMPolicy = auth.SIMBlock })
		_, err := w.login("walter", swapped())
		wantErr(t, err, auth.ErrSimChanged)
	})
	t.Run("sim audit", func(t *testing.T) {
		w := newWorld(t)
		if _, err := w.login("walter", swapped()); err != nil {
			t.Fatal(err)
		}
		page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "device.sim_changed"})
		if len(page.Items) != 1 || !strings.Contains(page.Items[0].Detail["reported"], "89012608621145279111") {
			t.Fatalf("sim change events: %+v", page.Items)
		}
		d, _ := w.store.GetDevice(w.ctx, w.phone.ID)
		if d.IccIDs[0] != "89012608621145279111" {
			t.Fatalf("enrolled SIMs not updated: %v", d.IccIDs)
		}
	})
	t.Run("sim allow", func(t *testing.T) {
		w := newWorld(t, func(c *auth.Config) { c.SIMPolicy = auth.SIMAllow })
		if _, err := w.login("walter", swapped()); err != nil {
			t.Fatal(err)
		}
		page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "device.sim_changed"})
		if len(page.Items) != 0 {
			t.Fatal("allow still audited the SIM change")
		}
	})
	t.Run("open enrollment", func(t *testing.T) {
		w := newWorld(t, func(c *auth.Config) { c.EnrollmentMode = auth.EnrollOpen })
		g, err := w.login("walter", payload("359881234567899"))
		if err != nil || g.Device == nil || g.Device.Status != storage.DeviceEnrolled {
			t.Fatalf("open enrollment login: %+v, %v", g.Device, err)
		}
		if d, err := w.store.GetDeviceByIMEI(w.ctx, "359881234567899"); err != nil || d.EnrolledBy != "user:"+w.worker.ID {
			t.Fatalf("enrolled device: %+v, %v", d, err)
		}
	})
	t.Run("manager without device", func(t *testing.T) {
		w := newWorld(t)
		g, err := w.login("maria", nil)
		if err != nil || g.Session.DeviceID != "" {
			t.Fatalf("manager login: %+v, %v", g.Session, err)
		}
		if c := w.verifyWithJWKS(g.AccessToken); c["did"] != nil || c["role"] != "manager" {
			t.Fatalf("manager claims: %v", c)
		}
		// No handset: it renews only from a request that names none.
		_, err = w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
		wantErr(t, err, auth.ErrDeviceMismatch)
		if _, err := w.svc.Renew(w.ctx, g.AccessToken, ""); err != nil {
			t.Fatalf("renewing a session without a handset: %v", err)
		}
	})
	t.Run("worker without device allowed", func(t *testing.T) {
		w := newWorld(t, func(c *auth.Config) { c.RequireDevice = false })
		if _, err := w.login("walter", nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSessionPerDevice(t *testing.T) {
	w := newWorld(t)
	first := w.mustLogin()
	second := w.mustLogin()
	_, err := w.svc.Authenticate(w.ctx, first.AccessToken)
	wantErr(t, err, auth.ErrSessionRevoked)
	_, err = w.svc.Refresh(w.ctx, first.RefreshToken, w.phone.ID)
	wantErr(t, err, auth.ErrSessionRevoked)
	if _, err := w.svc.Authenticate(w.ctx, second.AccessToken); err != nil {
		t.Fatal(err)
	}
}

func TestSessionLifetimes(t *testing.T) {
	w := newWorld(t)
	g, err := w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, Device: payload(w.phone.IMEI), Persistent: false})
	if err != nil {
		t.Fatal(err)
	}
	if !g.Session.ExpiresAt.Equal(w.clock.Now().Add(24*time.Hour)) || g.Session.IdleTimeout != 12*time.Hour {
		t.Fatalf("short session: %v %v", g.Session.ExpiresAt, g.Session.IdleTimeout)
	}
	w.clock.Advance(13 * time.Hour)
	_, err = w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
	wantErr(t, err, auth.ErrTokenExpired)
}

func TestRefresh(t *testing.T) {
	w := newWorld(t, func(c *auth.Config) { c.RefreshReuseGrace = 10 * time.Second })
	g := w.mustLogin()
	w.clock.Advance(time.Minute)
	r1, err := w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if r1.RefreshToken == g.RefreshToken || r1.AccessToken == g.AccessToken {
		t.Fatal("refresh did not rotate")
	}
	// The IMEI names the handset as well as its id.
	w.clock.Advance(time.Second)
	again, err := w.svc.Refresh(w.ctx, g.RefreshToken, "49-015420-323751-8")
	if err != nil || again.AccessToken != r1.AccessToken || again.RefreshToken != r1.RefreshToken {
		t.Fatalf("retry within the grace: %v; want the very same pair", err)
	}
	// From another handset: refused, and it ends nothing.
	_, err = w.svc.Refresh(w.ctx, g.RefreshToken, w.other.ID)
	wantErr(t, err, auth.ErrDeviceMismatch)
	_, err = w.svc.Refresh(w.ctx, r1.RefreshToken, "")
	wantErr(t, err, auth.ErrDeviceMismatch)

	r2, err := w.svc.Refresh(w.ctx, r1.RefreshToken, w.phone.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The first token again after the grace: two generations old, reused.
	w.clock.Advance(11 * time.Second)
	_, err = w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
	wantErr(t, err, auth.ErrRefreshTokenReused)
	_, err = w.svc.Refresh(w.ctx, r2.RefreshToken, w.phone.ID)
	wantErr(t, err, auth.ErrSessionRevoked)
	_, err = w.svc.Authenticate(w.ctx, r2.AccessToken)
	wantErr(t, err, auth.ErrSessionRevoked)
	page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "refresh_token_reused"})
	if len(page.Items) != 1 || page.Items[0].SessionID != g.Session.ID {
		t.Fatalf("reuse events: %+v", page.Items)
	}
	for _, bad := range []string{"", "rt_", "rt_short", g.RefreshToken + "x", "rt_" + strings.Repeat("A", 64), strings.Replace(g.RefreshToken, "rt_", "at_", 1)} {
		_, err := w.svc.Refresh(w.ctx, bad, w.phone.ID)
		wantErr(t, err, auth.ErrTokenInvalid)
	}
}

func TestRefreshReusedRightAfterGrace(t *testing.T) {
	w := newWorld(t)
	g := w.mustLogin()
	if _, err := w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(11 * time.Second)
	_, err := w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
	wantErr(t, err, auth.ErrRefreshTokenReused)
	s, _ := w.store.GetSession(w.ctx, g.Session.ID)
	if s.RevokeReason != "refresh_token_reused" {
		t.Fatalf("session after reuse: %q", s.RevokeReason)
	}
}

// onStores runs a test on the embedded store and, where there is one to
// test against, PostgreSQL: the races below are settled by the store.
func onStores(t *testing.T, test func(t *testing.T, w *world)) {
	t.Run("bbolt", func(t *testing.T) { test(t, newWorld(t)) })
	t.Run("postgres", func(t *testing.T) { test(t, newWorldOn(t, pgStore(t))) })
}

func TestConcurrentRefresh(t *testing.T) { onStores(t, testConcurrentRefresh) }

func testConcurrentRefresh(t *testing.T, w *world) {
	g := w.mustLogin()
	const n = 12
	results := make([]auth.Grant, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("refresh %d: %v", i, errs[i])
		}
		if results[i].RefreshToken != results[0].RefreshToken || results[i].AccessToken != results[0].AccessToken {
			t.Fatal("concurrent refreshes of one token got different pairs: more than one rotation")
		}
	}
	page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "refresh"})
	rotations := 0
	for _, e := range page.Items {
		if e.Outcome == "success" && e.Reason == "" {
			rotations++
		}
	}
	if rotations != 1 {
		t.Fatalf("%d rotations; want exactly 1", rotations)
	}
	if _, err := w.svc.Refresh(w.ctx, results[0].RefreshToken, w.phone.ID); err != nil {
		t.Fatalf("the one new token: %v", err)
	}
}

func TestRenew(t *testing.T) {
	w := newWorld(t)
	g := w.mustLogin()
	w.clock.Advance(20 * time.Minute) // expired
	_, err := w.svc.Authenticate(w.ctx, g.AccessToken)
	wantErr(t, err, auth.ErrTokenExpired)

	// From another enrolled handset: refused and audited.
	_, err = w.svc.Renew(w.ctx, g.AccessToken, w.other.ID)
	wantErr(t, err, auth.ErrDeviceMismatch)
	page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "renew"})
	if len(page.Items) != 1 || page.Items[0].Reason != "device_mismatch" {
		t.Fatalf("mismatch events: %+v", page.Items)
	}

	r, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.IMEI)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if r.RefreshToken != "" || !r.AccessExpiresAt.Equal(w.clock.Now().Add(15*time.Minute)) {
		t.Fatalf("renewal grant %+v", r)
	}
	if _, err := w.svc.Authenticate(w.ctx, r.AccessToken); err != nil {
		t.Fatal(err)
	}
	// The same renewal again within the grace (a retry after a lost
	// answer): the very same answer, and no new token.
	w.clock.Advance(9 * time.Second)
	again, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
	if err != nil || again.AccessToken != r.AccessToken || !again.AccessExpiresAt.Equal(r.AccessExpiresAt) {
		t.Fatalf("a retry within the grace: %v; want the same token", err)
	}
	// From another handset, even within the grace: refused.
	_, err = w.svc.Renew(w.ctx, g.AccessToken, w.other.ID)
	wantErr(t, err, auth.ErrDeviceMismatch)
	// After the grace: renewed already.
	w.clock.Advance(2 * time.Second)
	_, err = w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
	wantErr(t, err, auth.ErrTokenAlreadyUsed)
	// The renewed token renews on (once), and the first cannot come back
	// as a retry of that.
	r2, err := w.svc.Renew(w.ctx, r.AccessToken, w.phone.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
	wantErr(t, err, auth.ErrTokenAlreadyUsed)
	r = r2

	// A refresh makes the renewed token old too, retries included.
	if _, err := w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID); err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.Renew(w.ctx, r.AccessToken, w.phone.ID)
	wantErr(t, err, auth.ErrTokenAlreadyUsed)
}

func TestRenewWindow(t *testing.T) {
	w := newWorld(t)
	g := w.mustLogin()
	w.clock.Advance(15*time.Minute + 24*time.Hour + time.Second)
	_, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
	wantErr(t, err, auth.ErrRenewalWindowPassed)
}

// TestConcurrentRenew: of renewals of one token at once, one makes a new
// token and the others, retries within the grace, get that same token;
// only one new token ever exists.
func TestConcurrentRenew(t *testing.T) { onStores(t, testConcurrentRenew) }

func testConcurrentRenew(t *testing.T, w *world) {
	g := w.mustLogin()
	const n = 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	tokens := map[string]int{}
	for range n {
		wg.Go(func() {
			r, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
			if err != nil {
				t.Errorf("renew: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			tokens[r.AccessToken]++
		})
	}
	wg.Wait()
	if len(tokens) != 1 {
		t.Fatalf("%d renewals at once made %d different tokens; want 1", n, len(tokens))
	}
	for tok := range tokens {
		if _, err := w.svc.Authenticate(w.ctx, tok); err != nil {
			t.Fatalf("the renewed token: %v", err)
		}
	}
	w.clock.Advance(11 * time.Second)
	_, err := w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
	wantErr(t, err, auth.ErrTokenAlreadyUsed)
}

func TestCutOff(t *testing.T) {
	t.Run("suspend", func(t *testing.T) {
		w := newWorld(t)
		g := w.mustLogin()
		if _, err := w.devices.Suspend(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, "lost"); err != nil {
			t.Fatal(err)
		}
		_, err := w.svc.Authenticate(w.ctx, g.AccessToken)
		wantErr(t, err, auth.ErrSessionRevoked)
		s, _ := w.store.GetSession(w.ctx, g.Session.ID)
		if s.RevokeReason != "device_suspended" {
			t.Fatalf("revoke reason %q", s.RevokeReason)
		}
		// Reinstating does not bring the session back.
		if _, err := w.devices.Reinstate(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, ""); err != nil {
			t.Fatal(err)
		}
		_, err = w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
		wantErr(t, err, auth.ErrSessionRevoked)
	})
	t.Run("disable", func(t *testing.T) {
		w := newWorld(t)
		g := w.mustLogin()
		if _, err := w.users.Update(w.ctx, auth.CLI, w.worker.ID, auth.UserPatch{Disabled: ptr(true)}); err != nil {
			t.Fatal(err)
		}
		_, err := w.svc.Authenticate(w.ctx, g.AccessToken)
		wantErr(t, err, auth.ErrSessionRevoked)
	})
	t.Run("logout", func(t *testing.T) {
		w := newWorld(t)
		g := w.mustLogin()
		id, err := w.svc.Authenticate(w.ctx, g.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.svc.Logout(w.ctx, id); err != nil {
			t.Fatal(err)
		}
		_, err = w.svc.Authenticate(w.ctx, g.AccessToken)
		wantErr(t, err, auth.ErrSessionRevoked)
		_, err = w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
		wantErr(t, err, auth.ErrSessionRevoked)
	})
	t.Run("logout all and revoke", func(t *testing.T) {
		w := newWorld(t)
		g := w.mustLogin()
		other, err := w.login("walter", payload(w.other.IMEI))
		if err != nil {
			t.Fatal(err)
		}
		manager := auth.Principal{Kind: auth.KindUser, ID: w.boss.ID, Role: storage.RoleManager}
		if err := w.svc.RevokeSession(w.ctx, manager, g.Session.ID); err != nil {
			t.Fatal(err)
		}
		_, err = w.svc.Authenticate(w.ctx, g.AccessToken)
		wantErr(t, err, auth.ErrSessionRevoked)
		n, err := w.svc.LogoutAll(w.ctx, manager, w.worker.ID)
		if err != nil || n != 1 {
			t.Fatalf("LogoutAll = %d, %v; want 1", n, err)
		}
		_, err = w.svc.Authenticate(w.ctx, other.AccessToken)
		wantErr(t, err, auth.ErrSessionRevoked)
		admin := w.user("root", storage.RoleAdmin)
		_, err = w.svc.LogoutAll(w.ctx, manager, admin.ID)
		wantErr(t, err, auth.ErrForbidden)
	})
}

func TestKeyRotation(t *testing.T) {
	w := newWorld(t)
	before := w.mustLogin()
	kids, err := w.svc.RotateKeys(w.ctx, auth.CLI, false)
	if err != nil {
		t.Fatal(err)
	}
	kid := kids[auth.EdDSA]
	after := w.mustLogin()
	if got := headerKid(t, after.AccessToken); got != kid {
		t.Fatalf("new token kid %s; want the new key %s", got, kid)
	}
	if headerKid(t, before.AccessToken) == kid {
		t.Fatal("old token has the new kid")
	}
	if n := len(w.svc.Keys().JWKS()); n != 6 {
		t.Fatalf("JWKS has %d keys; want 6 (two of each algorithm) while old tokens live", n)
	}
	w.verifyWithJWKS(before.AccessToken)
	// The old token was replaced by the later login on the same handset, so
	// use a handset-less token to show old-key tokens still verify.
	w2 := newWorld(t)
	old, err := w2.login("maria", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.svc.RotateKeys(w2.ctx, auth.CLI, false); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.svc.Authenticate(w2.ctx, old.AccessToken); err != nil {
		t.Fatalf("token of the retired key: %v", err)
	}
	// Past the longest life of its tokens, the old key is dropped.
	w2.clock.Advance(15*time.Minute + 24*time.Hour + time.Minute)
	if _, err := w2.svc.RotateKeys(w2.ctx, auth.CLI, false); err != nil {
		t.Fatal(err)
	}
	if n := len(w2.svc.Keys().JWKS()); n != 6 {
		t.Fatalf("JWKS has %d keys after the first ones' life; want 6", n)
	}
	_, err = w2.svc.Renew(w2.ctx, old.AccessToken, "")
	wantErr(t, err, auth.ErrTokenInvalid)
	if _, err := w.svc.RotateKeys(w.ctx, auth.Principal{Kind: auth.KindAPIKey, Role: storage.RoleManager}, false); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("manager rotating keys: %v", err)
	}
}

func headerKid(t *testing.T, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Header["kid"].(string)
}

func TestEnrollment(t *testing.T) {
	manager := auth.Principal{Kind: auth.KindAPIKey, ID: "ak_m", Role: storage.RoleManager}
	t.Run("off in preregistered mode", func(t *testing.T) {
		w := newWorld(t)
		_, err := w.svc.Enroll(w.ctx, "ANY", *payload("359881234567899"))
		wantErr(t, err, auth.ErrSelfEnrollmentOff)
	})
	w := newWorld(t, func(c *auth.Config) { c.EnrollmentMode = auth.EnrollCode })
	code, rec, err := w.svc.CreateEnrollmentCode(w.ctx, manager, auth.NewCode{MaxUses: 2, Label: "spare", Group: "south", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(code) != 19 || strings.Count(code, "-") != 3 || rec.MaxUses != 2 {
		t.Fatalf("code %q, record %+v", code, rec)
	}
	d, err := w.svc.Enroll(w.ctx, strings.ToLower(code), *payload("359881234567899"))
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	if d.Label != "spare" || d.Group != "south" || d.EnrolledBy != "code:"+rec.ID || d.Status != storage.DeviceEnrolled {
		t.Fatalf("enrolled %+v", d)
	}
	if _, err := w.login("walter", payload("359881234567899")); err != nil {
		t.Fatalf("login from the self-enrolled handset: %v", err)
	}
	_, err = w.svc.Enroll(w.ctx, code, *payload("359881234567899"))
	if !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("enrolling the same handset again: %v", err)
	}
	if _, err := w.svc.Enroll(w.ctx, strings.ReplaceAll(code, "-", " "), *payload("352099001761481")); err != nil {
		t.Fatalf("second use: %v", err)
	}
	_, err = w.svc.Enroll(w.ctx, code, *payload("012345678901237"))
	wantErr(t, err, auth.ErrEnrollmentCode)
	_, err = w.svc.Enroll(w.ctx, "WRONG-CODE-0000-0000", *payload("012345678901237"))
	wantErr(t, err, auth.ErrEnrollmentCode)

	code2, rec2, err := w.svc.CreateEnrollmentCode(w.ctx, manager, auth.NewCode{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.svc.RevokeEnrollmentCode(w.ctx, manager, rec2.ID); err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.Enroll(w.ctx, code2, *payload("012345678901237"))
	wantErr(t, err, auth.ErrEnrollmentCode)

	code3, _, err := w.svc.CreateEnrollmentCode(w.ctx, manager, auth.NewCode{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(2 * time.Minute)
	_, err = w.svc.Enroll(w.ctx, code3, *payload("012345678901237"))
	wantErr(t, err, auth.ErrEnrollmentCode)
	if _, err := w.store.GetDeviceByIMEI(w.ctx, "012345678901237"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal("a refused enrollment left a device")
	}

	_, _, err = w.svc.CreateEnrollmentCode(w.ctx, manager, auth.NewCode{TTL: time.Second, MaxUses: -1})
	var ve *tether.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 2 {
		t.Fatalf("bad code request: %v", err)
	}
}

func TestIntrospect(t *testing.T) {
	w := newWorld(t)
	g := w.mustLogin()
	in := w.svc.Introspect(w.ctx, g.AccessToken)
	if !in.Active || in.Claims.SID != g.Session.ID || in.Username != "walter" {
		t.Fatalf("introspect: %+v", in)
	}
	if w.svc.Introspect(w.ctx, "garbage").Active {
		t.Fatal("garbage is active")
	}
	w.clock.Advance(time.Hour)
	if w.svc.Introspect(w.ctx, g.AccessToken).Active {
		t.Fatal("an expired token is active")
	}
}

func TestLoginByDeviceRef(t *testing.T) {
	w := newWorld(t, func(c *auth.Config) { c.MinAppVersion = "3.0.0" })
	for _, ref := range []string{w.phone.ID, w.phone.IMEI, "49-0154-2032-3751-8"} {
		g, err := w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, DeviceRef: ref})
		if err != nil || g.Session.DeviceID != w.phone.ID {
			t.Fatalf("login naming %q: %+v, %v", ref, g.Session, err)
		}
	}
	_, err := w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, DeviceRef: "359881234567899"})
	wantErr(t, err, auth.ErrDeviceNotEnrolled)
	_, err = w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, DeviceRef: "dev_NOPE"})
	wantErr(t, err, auth.ErrDeviceNotEnrolled)

	// What the handset last reported must meet the policies.
	old := payload(w.other.IMEI)
	old.AppVersion = ptr("3.1.0")
	if _, err := w.login("walter", old); err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.UpdateDevice(w.ctx, w.other.ID, func(d storage.Device) (storage.Device, error) {
		d.AppVersion = "2.0.0"
		return d, nil
	}); err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, DeviceRef: w.other.IMEI})
	wantErr(t, err, auth.ErrAppVersion)

	if _, err := w.devices.Suspend(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, ""); err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, DeviceRef: w.phone.IMEI})
	wantErr(t, err, auth.ErrDeviceSuspended)
}

func TestSweep(t *testing.T) {
	w := newWorld(t, func(c *auth.Config) { c.AuditRetention = 30 * 24 * time.Hour })
	old := w.mustLogin() // replaced by the next login: ended now
	w.mustLogin()
	manager := auth.Principal{Kind: auth.KindAPIKey, ID: "ak_m", Role: storage.RoleManager}
	if _, _, err := w.svc.CreateEnrollmentCode(w.ctx, manager, auth.NewCode{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	r, err := w.svc.Sweep(w.ctx)
	if err != nil || r != (auth.SweepReport{}) {
		t.Fatalf("first sweep: %+v, %v; want nothing removed yet", r, err)
	}
	w.clock.Advance(8 * 24 * time.Hour)
	r, err = w.svc.Sweep(w.ctx)
	if err != nil || r.Sessions != 1 || r.Codes != 1 || r.Events != 0 {
		t.Fatalf("a week on: %+v, %v; want the replaced session and the expired code", r, err)
	}
	if _, err := w.store.GetSession(w.ctx, old.Session.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the ended session is still there: %v", err)
	}
	w.clock.Advance(30 * 24 * time.Hour)
	r, err = w.svc.Sweep(w.ctx)
	if err != nil || r.Events == 0 {
		t.Fatalf("past the retention: %+v, %v; want the old events gone", r, err)
	}
	if page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{}); len(page.Items) != 0 {
		t.Fatalf("%d events past the retention", len(page.Items))
	}
}

// TestLoginWithDeviceName: a client may name its device with any string
// that is not a handset's id or IMEI (the renew-login-token seed's "device
// name from where login API was called"); the session is bound to that
// exact string, under the rules of a login without a handset. An id or
// IMEI keeps every handset rule.
func TestLoginWithDeviceName(t *testing.T) {
	w := newWorld(t)
	login := func(name, ref string) (auth.Grant, error) {
		return w.svc.Login(w.ctx, auth.LoginRequest{Username: name, Password: password, DeviceRef: ref, Persistent: true})
	}
	g, err := login("maria", "Front desk PC")
	if err != nil {
		t.Fatalf("a manager with a device name: %v", err)
	}
	if g.Session.DeviceID != "" || g.Session.DeviceName != "Front desk PC" {
		t.Fatalf("session %+v; want no handset, the name", g.Session)
	}
	for _, other := range []string{"front desk pc", "Front desk PC ", "", w.phone.IMEI, w.phone.ID} {
		_, err := w.svc.Renew(w.ctx, g.AccessToken, other)
		wantErr(t, err, auth.ErrDeviceMismatch)
		_, err = w.svc.Refresh(w.ctx, g.RefreshToken, other)
		wantErr(t, err, auth.ErrDeviceMismatch)
	}
	r, err := w.svc.Renew(w.ctx, g.AccessToken, "Front desk PC")
	if err != nil {
		t.Fatalf("renewal with the same name: %v", err)
	}
	if _, err := w.svc.Refresh(w.ctx, g.RefreshToken, "Front desk PC"); err != nil {
		t.Fatalf("refresh with the same name: %v", err)
	}
	_ = r

	// A session without a name renews only without one.
	plain, err := login("maria", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.Renew(w.ctx, plain.AccessToken, "Front desk PC")
	wantErr(t, err, auth.ErrDeviceMismatch)

	// Workers need a handset unless --require-device=false.
	_, err = login("walter", "Front desk PC")
	wantErr(t, err, auth.ErrDeviceNotEnrolled)
	loose := newWorld(t, func(c *auth.Config) { c.RequireDevice = false })
	if g, err := loose.svc.Login(loose.ctx, auth.LoginRequest{Username: "walter", Password: password, DeviceRef: "pos-12"}); err != nil || g.Session.DeviceName != "pos-12" {
		t.Fatalf("a worker with a device name, handsets not required: %+v, %v", g.Session, err)
	}
	// An IMEI or id of no enrolled handset is a handset, not a name.
	for _, ref := range []string{"356938035643817", "35-693803-564381-7", "dev_01NOSUCHDEVICE0000000000"} {
		_, err := login("maria", ref)
		wantErr(t, err, auth.ErrDeviceNotEnrolled)
	}
	// A name that is not printable text is the client's mistake.
	if _, err := login("maria", "pos\x00"); fieldCode(err, "deviceId") != "device_name_invalid" {
		t.Fatalf("a name with a NUL: %v", err)
	}
}

// TestRefreshRacesSuspension: refreshes and renewals racing a manager
// suspending the handset either finish before the suspension, whose
// revocation then ends the session they wrote, or are refused; none
// leaves a live session or a usable token behind.
func TestRefreshRacesSuspension(t *testing.T) { onStores(t, testRefreshRacesSuspension) }

func testRefreshRacesSuspension(t *testing.T, w *world) {
	for round := range 8 {
		g := w.mustLogin()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var issued []string
		for i := range 8 {
			wg.Go(func() {
				var r auth.Grant
				var err error
				if i%2 == 0 {
					r, err = w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
				} else {
					r, err = w.svc.Renew(w.ctx, g.AccessToken, w.phone.ID)
				}
				if err == nil {
					mu.Lock()
					issued = append(issued, r.AccessToken)
					mu.Unlock()
				}
			})
		}
		wg.Go(func() {
			if _, err := w.devices.Suspend(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, "lost"); err != nil {
				t.Errorf("suspend: %v", err)
			}
		})
		wg.Wait()
		s, err := w.store.GetSession(w.ctx, g.Session.ID)
		if err != nil || !s.Revoked() {
			t.Fatalf("round %d: the session after the suspension: revoked %v, %v", round, s.Revoked(), err)
		}
		for _, tok := range append(issued, g.AccessToken) {
			if _, err := w.svc.Authenticate(w.ctx, tok); err == nil {
				t.Fatalf("round %d: a token still authenticates after the suspension", round)
			}
		}
		if _, err := w.devices.Reinstate(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
}
