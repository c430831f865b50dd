package auth_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"tether"
	"tether/auth"
	"tether/auth/dpop"
	"tether/device"
	"tether/storage"
	"tether/storage/postgres"
	"tether/storage/postgres/pgtest"
	"tether/storage/storagetest"
)

// from is w's context with the request coming from another address.
func (w *world) from(ip string) context.Context {
	return tether.WithOrigin(context.Background(), tether.Origin{IP: ip, UserAgent: "test"})
}

// tooMany returns the Retry-After of a throttled refusal, failing the test
// on any other answer.
func tooMany(t *testing.T, err error, what string) time.Duration {
	t.Helper()
	var te *tether.Error
	if !errors.As(err, &te) || te.Code != tether.CodeTooManyAttempts || te.RetryAfter <= 0 {
		t.Fatalf("%s: %v; want too_many_attempts with a Retry-After", what, err)
	}
	return te.RetryAfter
}

func (w *world) guess(ctx context.Context, username, pw string, p *device.Payload) error {
	_, err := w.svc.Login(ctx, auth.LoginRequest{Username: username, Password: pw, Device: p})
	return err
}

// TestThrottleDelays: from one address, five failures for an account pass
// freely; then each attempt waits, twice as long after each failure, up to
// the failure window, and the counter is forgotten a window after its
// wait. Known and unknown accounts alike.
func TestThrottleDelays(t *testing.T) {
	for _, name := range []string{"walter", "ghost"} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			attacker := w.from("203.0.113.9")
			for i := range 5 {
				if err := w.guess(attacker, name, "wrong one", payload(w.phone.IMEI)); !errors.Is(err, auth.ErrInvalidCredentials) {
					t.Fatalf("guess %d: %v; want invalid_credentials", i+1, err)
				}
			}
			wait := tooMany(t, w.guess(attacker, name, password, payload(w.phone.IMEI)), "the right password after 5 failures")
			if wait != time.Second {
				t.Fatalf("first wait %s; want 1s", wait)
			}
			// Each failure after the free ones doubles the wait.
			for want := time.Second; want < 15*time.Minute; want *= 2 {
				w.clock.Advance(want)
				if err := w.guess(attacker, name, "wrong one", payload(w.phone.IMEI)); !errors.Is(err, auth.ErrInvalidCredentials) {
					t.Fatalf("after waiting %s: %v; want the guess checked", want, err)
				}
				next := tooMany(t, w.guess(attacker, name, "wrong one", payload(w.phone.IMEI)), "right after")
				if next != min(2*want, 15*time.Minute) {
					t.Fatalf("wait after waiting %s: %s; want %s", want, next, min(2*want, 15*time.Minute))
				}
			}
			// The wait stops growing at the window, and the counter is not
			// forgotten by an attacker who keeps to it.
			w.clock.Advance(15 * time.Minute)
			if err := w.guess(attacker, name, "wrong one", payload(w.phone.IMEI)); !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Fatal(err)
			}
			if wait := tooMany(t, w.guess(attacker, name, "wrong one", payload(w.phone.IMEI)), "at the cap"); wait != 15*time.Minute {
				t.Fatalf("wait at the cap %s; want 15m", wait)
			}
			// Quiet for the wait and a window: forgotten.
			w.clock.Advance(30*time.Minute + time.Second)
			for i := range 5 {
				if err := w.guess(attacker, name, "wrong one", payload(w.phone.IMEI)); !errors.Is(err, auth.ErrInvalidCredentials) {
					t.Fatalf("after the quiet, guess %d: %v", i+1, err)
				}
			}
		})
	}
}

// TestThrottlePerAddress: failures from one address hold back only that
// address; a right password from it forgets them.
func TestThrottlePerAddress(t *testing.T) {
	w := newWorld(t)
	attacker := w.from("203.0.113.9")
	for range 5 {
		if err := w.guess(attacker, "walter", "wrong one", payload(w.phone.IMEI)); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatal(err)
		}
	}
	tooMany(t, w.guess(attacker, "walter", password, payload(w.phone.IMEI)), "the attacker's address")
	if err := w.guess(w.ctx, "walter", password, payload(w.phone.IMEI)); err != nil {
		t.Fatalf("the owner from another address: %v", err)
	}
	// Four failures and then the right password: the fifth failure later
	// is again free.
	w2 := newWorld(t)
	for range 4 {
		if err := w2.guess(w2.ctx, "walter", "wrong one", payload(w2.phone.IMEI)); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatal(err)
		}
	}
	if err := w2.guess(w2.ctx, "walter", password, payload(w2.phone.IMEI)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := w2.guess(w2.ctx, "walter", "wrong one", payload(w2.phone.IMEI)); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failure %d after a success: %v", i+1, err)
		}
	}
}

// TestNoLockoutOfTheOwner is the attack of anyone locking a worker out:
// wrong passwords for the name from many addresses. The account's own
// handset (proven by its key where it has one) still logs in; logins from
// elsewhere wait; a manager sees the account held back and clears it.
func TestNoLockoutOfTheOwner(t *testing.T) {
	w := newWorld(t)
	if _, err := w.devices.Update(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, device.Patch{AssignedUsers: &[]string{"walter"}}); err != nil {
		t.Fatal(err)
	}
	// 30 addresses, 2 guesses each, none of them enough to hold back any
	// one address: after 20 failures the account itself waits.
	failures := 0
	for i := range 30 {
		for range 2 {
			switch err := w.guess(w.from(fmt.Sprintf("203.0.113.%d", i+1)), "walter", "wrong one", payload(w.other.IMEI)); {
			case errors.Is(err, auth.ErrInvalidCredentials):
				failures++
			case !errors.Is(err, auth.ErrTooManyAttempts):
				t.Fatalf("guess from address %d: %v", i+1, err)
			}
		}
	}
	if failures != 20 {
		t.Fatalf("%d guesses from 30 addresses were checked; want 20", failures)
	}
	// From an address of its own, without the handset: held back.
	tooMany(t, w.guess(w.from("192.0.2.50"), "walter", password, payload(w.other.IMEI)), "walter from a new address on another handset")
	// From the handset assigned to him: in, at once.
	if err := w.guess(w.from("192.0.2.51"), "walter", password, payload(w.phone.IMEI)); err != nil {
		t.Fatalf("walter from his own handset: %v", err)
	}
	// The handset's id does not open a door for the attacker: an attacker
	// claiming it is still held back per address after five failures.
	attacker := w.from("203.0.113.99")
	for range 5 {
		if err := w.guess(attacker, "walter", "wrong one", payload(w.phone.IMEI)); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatal(err)
		}
	}
	tooMany(t, w.guess(attacker, "walter", "wrong one", payload(w.phone.IMEI)), "the attacker claiming walter's handset")

	// Managers see walter held back, and clear him.
	page, err := w.svc.Lockouts(w.ctx, storage.AttemptFilter{Account: "Walter"})
	if err != nil {
		t.Fatal(err)
	}
	var total *storage.Attempts
	for i, a := range page.Items {
		if a.Account != "walter" {
			t.Fatalf("counter of %q listed for walter", a.Account)
		}
		if a.Address == "" {
			total = &page.Items[i]
		}
	}
	// The 20 from the 30 addresses, and the 5 of the attacker claiming
	// the handset: counted, though they did not hold the handset back.
	if total == nil || total.Failures != 25 || !total.BlockedUntil.After(w.clock.Now()) {
		t.Fatalf("walter's counter: %+v; want 25 failures, held back", total)
	}
	if _, err := w.svc.ClearLockout(w.ctx, auth.Principal{Kind: auth.KindAPIKey, Role: storage.RoleIntrospect}, "walter", ""); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("clearing without a manager's role: %v", err)
	}
	n, err := w.svc.ClearLockout(w.ctx, auth.Principal{Kind: auth.KindUser, ID: w.boss.ID, Role: storage.RoleManager}, "walter", "")
	if err != nil || n < 2 {
		t.Fatalf("cleared %d counters, %v; want the account's and its per-address ones", n, err)
	}
	if err := w.guess(w.from("192.0.2.50"), "walter", password, payload(w.other.IMEI)); err != nil {
		t.Fatalf("walter after the manager cleared him: %v", err)
	}
	events, err := w.svc.Events(w.ctx, storage.EventFilter{Action: "throttle.clear"})
	if err != nil || len(events.Items) != 1 || events.Items[0].Actor != "user:"+w.boss.ID {
		t.Fatalf("the clearing's audit event: %+v, %v", events.Items, err)
	}
}

// TestNoLockoutOfAKeyedHandset: where the handset holds a key, only a login
// with a valid proof of it passes a held-back account.
func TestNoLockoutOfAKeyedHandset(t *testing.T) {
	w := newWorld(t)
	if _, err := w.devices.Update(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, device.Patch{AssignedUsers: &[]string{"walter"}}); err != nil {
		t.Fatal(err)
	}
	handset := newKey(t, "EC")
	w.keyedLogin(handset)
	for i := range 25 {
		if err := w.guess(w.from(fmt.Sprintf("203.0.113.%d", i+1)), "walter", "wrong one", nil); !errors.Is(err, auth.ErrTooManyAttempts) && !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatal(err)
		}
	}
	home := w.from("192.0.2.60")
	tooMany(t, w.guess(home, "walter", password, payload(w.phone.IMEI)), "the handset's IMEI without a proof")
	wrong := newKey(t, "EC")
	tooMany(t, w.guess(proofFrom(t, w, home, wrong), "walter", password, payload(w.phone.IMEI)), "a proof by another key")
	if err := w.guess(proofFrom(t, w, home, handset), "walter", password, payload(w.phone.IMEI)); err != nil {
		t.Fatalf("the handset with its proof: %v", err)
	}
}

func proofFrom(t *testing.T, w *world, ctx context.Context, k dpop.Key) context.Context {
	t.Helper()
	p, err := k.Proof("POST", base+"/v1/auth/login", "", dpop.Options{IssuedAt: w.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return auth.WithProof(ctx, auth.Proof{JWT: p, Method: "POST", URL: base + "/v1/auth/login"})
}

// pgStore is a PostgreSQL store in a schema of its own, for the servers of
// one test to share.
func pgStore(t *testing.T) storage.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// holdingStore holds every password check's user read until it is let go,
// so that all the guesses of a burst are under way at once: the window in
// which a limit checked before the hash and counted after it lets them all
// through.
type holdingStore struct {
	storage.Store
	arrived chan struct{}
	release chan struct{}
}

func (s *holdingStore) GetUserByUsername(ctx context.Context, name string) (storage.User, error) {
	s.arrived <- struct{}{}
	<-s.release
	return s.Store.GetUserByUsername(ctx, name)
}

// TestConcurrentGuesses is the attack of firing many guesses at once: 59
// wrong passwords, all under way together, then the right one. Only the
// five free attempts reach the hash, the rest are refused at once, and the
// right password as the sixtieth guess gets no tokens. On the embedded
// store with one server; on PostgreSQL with the guesses spread over two
// servers sharing the database.
func TestConcurrentGuesses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		store     func(t *testing.T) storage.Store
		instances int
	}{
		{"bolt", func(t *testing.T) storage.Store { return newStore(t) }, 1},
		{"postgres, two servers", pgStore, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := tc.store(t)
			ctx := context.Background()
			v := validatorFor(t)
			h := auth.NewHasher(cheap)
			if _, err := auth.NewUsers(store, h, v).Create(ctx, auth.CLI, auth.NewUser{Username: "maria", Password: password, Role: storage.RoleManager}); err != nil {
				t.Fatal(err)
			}
			held := &holdingStore{Store: store, arrived: make(chan struct{}, 100), release: make(chan struct{})}
			var served storage.Store = held
			if shared, ok := store.(storage.Throttles); ok {
				// The servers share the database's counters, as they
				// would without the holding.
				served = struct {
					*holdingStore
					storage.Throttles
				}{held, shared}
			}
			cfg := auth.DefaultConfig()
			cfg.HashConcurrency, cfg.HashQueue = 100, 100
			var servers []*auth.Service
			for range tc.instances {
				svc, err := auth.NewService(ctx, cfg, served, h, v)
				if err != nil {
					t.Fatal(err)
				}
				servers = append(servers, svc)
			}
			attacker := tether.WithOrigin(ctx, tether.Origin{IP: "203.0.113.7"})
			const guesses = 59
			var checked, refused atomic.Int32
			var wg sync.WaitGroup
			for i := range guesses {
				wg.Go(func() {
					_, err := servers[i%len(servers)].Login(attacker, auth.LoginRequest{Username: "maria", Password: fmt.Sprintf("wrong %d", i)})
					switch {
					case errors.Is(err, auth.ErrInvalidCredentials):
						checked.Add(1)
					case errors.Is(err, auth.ErrTooManyAttempts):
						refused.Add(1)
					default:
						t.Errorf("guess %d: %v", i, err)
					}
				})
			}
			// Wait until every guess is either held in its password check
			// or refused.
			arrived := 0
			deadline := time.After(10 * time.Second)
			for arrived+int(refused.Load()) < guesses {
				select {
				case <-held.arrived:
					arrived++
				case <-time.After(10 * time.Millisecond):
				case <-deadline:
					close(held.release)
					wg.Wait()
					t.Fatalf("%d guesses held, %d refused: the rest never came", arrived, refused.Load())
				}
			}
			// The sixtieth guess, with the right password, while the others
			// are still under way.
			done := make(chan error, 1)
			go func() {
				_, err := servers[0].Login(attacker, auth.LoginRequest{Username: "maria", Password: password})
				done <- err
			}()
			var last error
			select {
			case last = <-done:
			case <-held.arrived:
				arrived++
				close(held.release)
				wg.Wait()
				t.Fatalf("the sixtieth guess, with the right password, reached the password check with %d guesses under way: %v", arrived-1, <-done)
			}
			close(held.release)
			wg.Wait()
			tooMany(t, last, "the right password as the sixtieth guess")
			if arrived != 5 || checked.Load() != 5 || refused.Load() != guesses-5 {
				t.Fatalf("%d guesses reached the password check (%d answered invalid_credentials), %d refused; want 5, 5 and %d", arrived, checked.Load(), refused.Load(), guesses-5)
			}
		})
	}
}

// TestMemoryThrottlesConformance: the counters a server with a store of
// its own keeps in memory pass the same suite as a shared store's.
func TestMemoryThrottlesConformance(t *testing.T) {
	storagetest.RunThrottles(t, func(*testing.T) storage.Throttles { return auth.NewMemoryThrottles(1000) })
}

// TestThrottleCountersBounded: counters kept in memory stay bounded under
// a flood of names, and the ones holding someone back are kept longest.
func TestThrottleCountersBounded(t *testing.T) {
	m := auth.NewMemoryThrottles(1000)
	ctx := context.Background()
	now := time.Now()
	set := func(k storage.AttemptKey, blocked bool) {
		err := m.UpdateAttempts(ctx, now, []storage.AttemptKey{k}, func(c []storage.Attempts) ([]storage.Attempts, error) {
			c[0].Failures, c[0].LastAt, c[0].ExpiresAt = 1, now, now.Add(time.Hour)
			if blocked {
				c[0].BlockedUntil = now.Add(time.Minute)
			}
			return c, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	target := storage.AttemptKey{Account: "walter"}
	set(target, true)
	for i := range 50_000 {
		set(storage.AttemptKey{Account: fmt.Sprint("name", i)}, false)
	}
	page, err := m.ListAttempts(ctx, storage.AttemptFilter{LiveAt: now, Limit: storage.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(page.Items); n > 1000 || page.Next != "" && n != storage.MaxPageSize {
		t.Fatalf("%d counters kept; want at most 1000", n)
	}
	held, err := m.ListAttempts(ctx, storage.AttemptFilter{Account: "walter", LiveAt: now})
	if err != nil || len(held.Items) != 1 {
		t.Fatalf("the counter holding walter back was forgotten in the flood: %+v, %v", held.Items, err)
	}
}

// TestHostileUsernameNotStored: what a failed login names as its username
// is stored (in the audit trail and the throttle's counters) printable: no
// NUL or other control character, no invalid UTF-8, at most 64 bytes.
func TestHostileUsernameNotStored(t *testing.T) {
	w := newWorld(t)
	name := "eve\x00admin\x07\xff\xfe" + strings.Repeat("é", 100)
	if err := w.guess(w.ctx, name, "wrong one", nil); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("login as %q: %v", name, err)
	}
	events, err := w.svc.Events(w.ctx, storage.EventFilter{Action: "login"})
	if err != nil || len(events.Items) != 1 {
		t.Fatalf("events %+v, %v", events.Items, err)
	}
	lockouts, err := w.svc.Lockouts(w.ctx, storage.AttemptFilter{})
	if err != nil {
		t.Fatal(err)
	}
	stored := []string{events.Items[0].Username}
	for _, a := range lockouts.Items {
		if a.Account != "" {
			stored = append(stored, a.Account)
		}
	}
	if len(stored) != 3 {
		t.Fatalf("stored names %q; want the event's and two counters'", stored)
	}
	for _, s := range stored {
		if !utf8.ValidString(s) || len(s) > 64 || strings.ContainsFunc(s, unicode.IsControl) || !strings.HasPrefix(s, "eve") {
			t.Errorf("stored %q; want it printable, at most 64 bytes", s)
		}
	}
}
