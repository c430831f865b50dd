package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/auth"
	"tether/device"
	"tether/storage"
)

// interleave is the real store with a step slipped in just before a
// session is written: the moment a race with a manager would land. The
// step runs once.
type interleave struct {
	storage.Store
	once   sync.Once
	before func()
}

func (s *interleave) CreateSession(ctx context.Context, sess storage.Session, check func(storage.User, storage.Device) error, opts ...storage.WriteOption) (storage.Session, error) {
	s.once.Do(s.before)
	return s.Store.CreateSession(ctx, sess, check, opts...)
}

func (s *interleave) UpdateSession(ctx context.Context, id string, fn func(storage.Session) (storage.Session, error), opts ...storage.WriteOption) (storage.Session, error) {
	s.once.Do(s.before)
	return s.Store.UpdateSession(ctx, id, fn, opts...)
}

// racing returns a service on w's store in which before runs once, after
// the request's checks and just before its session is written.
func (w *world) racing(before func()) *auth.Service {
	w.t.Helper()
	svc, err := auth.NewService(w.ctx, auth.DefaultConfig(), &interleave{Store: w.store, before: before},
		auth.NewHasher(cheap), validatorFor(w.t), auth.WithClock(w.clock.Now))
	if err != nil {
		w.t.Fatal(err)
	}
	return svc
}

// liveSessions counts the sessions of a handset that are still alive.
func (w *world) liveSessions(deviceID string) int {
	w.t.Helper()
	page, err := w.store.ListSessions(w.ctx, storage.SessionFilter{DeviceID: deviceID})
	if err != nil {
		w.t.Fatal(err)
	}
	n := 0
	for _, s := range page.Items {
		if !s.Revoked() && s.Live(w.clock.Now()) {
			n++
		}
	}
	return n
}

// TestSuspendedWhileLoggingIn: a handset suspended while one of its logins
// is under way either makes that login fail or has its new session
// revoked with the others; no session outlives the suspension.
func TestSuspendedWhileLoggingIn(t *testing.T) {
	t.Run("suspended after the checks, before the write", func(t *testing.T) {
		w := newWorld(t)
		svc := w.racing(func() {
			if _, err := w.devices.Suspend(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, "lost"); err != nil {
				t.Error(err)
			}
		})
		_, err := svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: password, Device: payload(w.phone.IMEI)})
		wantErr(t, err, auth.ErrDeviceSuspended)
		if n := w.liveSessions(w.phone.ID); n != 0 {
			t.Fatalf("%d live sessions on the suspended handset", n)
		}
	})
	t.Run("concurrently", func(t *testing.T) {
		for range 20 {
			w := newWorld(t)
			var wg sync.WaitGroup
			var g auth.Grant
			var err error
			wg.Go(func() { g, err = w.login("walter", payload(w.phone.IMEI)) })
			wg.Go(func() {
				if _, err := w.devices.Suspend(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, "lost"); err != nil {
					t.Error(err)
				}
			})
			wg.Wait()
			if err == nil {
				// The login won: its session went with the suspension.
				if _, aerr := w.svc.Authenticate(w.ctx, g.AccessToken); !errors.Is(aerr, auth.ErrSessionRevoked) {
					t.Fatalf("the token of a login that raced the suspension: %v", aerr)
				}
			} else if !errors.Is(err, auth.ErrDeviceSuspended) {
				t.Fatalf("login: %v", err)
			}
			if n := w.liveSessions(w.phone.ID); n != 0 {
				t.Fatalf("%d live sessions on the suspended handset", n)
			}
		}
	})
}

// TestDisabledWhileRefreshing: a user disabled while a refresh of theirs
// is under way gets no new pair that works.
func TestDisabledWhileRefreshing(t *testing.T) {
	disable := func(w *world) {
		if _, err := w.users.Update(w.ctx, auth.CLI, w.worker.ID, auth.UserPatch{Disabled: ptr(true)}); err != nil {
			w.t.Error(err)
		}
	}
	t.Run("disabled after the checks, before the rotation", func(t *testing.T) {
		w := newWorld(t)
		g := w.mustLogin()
		svc := w.racing(func() { disable(w) })
		_, err := svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
		wantErr(t, err, auth.ErrSessionRevoked)
		if n := w.liveSessions(w.phone.ID); n != 0 {
			t.Fatalf("%d live sessions of the disabled user", n)
		}
	})
	t.Run("concurrently", func(t *testing.T) {
		for range 20 {
			w := newWorld(t)
			g := w.mustLogin()
			var wg sync.WaitGroup
			var next auth.Grant
			var err error
			wg.Go(func() { next, err = w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID) })
			wg.Go(func() { disable(w) })
			wg.Wait()
			if err == nil {
				if _, aerr := w.svc.Authenticate(w.ctx, next.AccessToken); !errors.Is(aerr, auth.ErrSessionRevoked) {
					t.Fatalf("the access token of a refresh that raced the disabling: %v", aerr)
				}
				if _, rerr := w.svc.Refresh(w.ctx, next.RefreshToken, w.phone.ID); !errors.Is(rerr, auth.ErrSessionRevoked) {
					t.Fatalf("the refresh token of a refresh that raced the disabling: %v", rerr)
				}
			} else if !errors.Is(err, auth.ErrSessionRevoked) && !errors.Is(err, auth.ErrAccountDisabled) {
				t.Fatalf("refresh: %v", err)
			}
			if n := w.liveSessions(w.phone.ID); n != 0 {
				t.Fatalf("%d live sessions of the disabled user", n)
			}
		}
	})
}

// countingKeys counts reads of the signing keys.
type countingKeys struct {
	storage.Store
	reads atomic.Int32
}

func (s *countingKeys) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	s.reads.Add(1)
	return s.Store.ListSigningKeys(ctx)
}

// TestKeysAcrossInstances: two services on one store, as two instances on
// one database. A key one of them rotates in verifies on the other at once,
// while tokens with made-up key ids cannot make it read the store more
// than a few times a second.
func TestKeysAcrossInstances(t *testing.T) {
	w := newWorld(t)
	store := &countingKeys{Store: w.store}
	other, err := auth.NewService(w.ctx, auth.DefaultConfig(), store, auth.NewHasher(cheap), validatorFor(t), auth.WithClock(w.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(time.Second)
	if _, err := w.svc.RotateKeys(w.ctx, auth.CLI, false); err != nil {
		t.Fatal(err)
	}
	g := w.mustLogin()
	if _, err := other.Authenticate(w.ctx, g.AccessToken); err != nil {
		t.Fatalf("a token of a key the other instance rotated in: %v", err)
	}

	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	before := store.reads.Load()
	for i := range 1000 {
		kid := storage.NewID(storage.PrefixKey)
		if i%2 == 0 {
			kid = "key_ZZZZZZZZZZZZZZZZZZZZZZZZZ" + strings.Repeat("Z", i%3)
		}
		forged := forge(t, g.AccessToken, jwt.SigningMethodEdDSA, stranger, func(_ jwt.MapClaims, h map[string]any) { h["kid"] = kid })
		if _, err := other.Authenticate(w.ctx, forged); !errors.Is(err, auth.ErrTokenInvalid) {
			t.Fatalf("forged kid %s: %v", kid, err)
		}
	}
	if n := store.reads.Load() - before; n > 1 {
		t.Fatalf("1000 made-up key ids in one instant read the keys %d times; want at most 1", n)
	}
}
