package auth

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"tether"
	"tether/device"
	"tether/storage"
	"tether/storage/bolt"
)

func benchmarkRefusal(b *testing.B, username string) {
	store, err := bolt.Open(filepath.Join(b.TempDir(), "tether.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	v := tether.NewValidator()
	if err := device.RegisterValidations(v); err != nil {
		b.Fatal(err)
	}
	h := NewHasher(DefaultParams)
	ctx := context.Background()
	hash, err := h.Hash("correct horse")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := store.CreateUser(ctx, storage.User{ID: storage.NewID(storage.PrefixUser), Username: "walter", Role: storage.RoleManager, PasswordHash: hash}); err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.AccountFailures, cfg.AccountFailuresTotal, cfg.AddressFailures = 0, 0, 0
	svc, err := NewService(ctx, cfg, store, h, v)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := svc.Login(ctx, LoginRequest{Username: username, Password: "wrong password"}); !errors.Is(err, ErrInvalidCredentials) {
			b.Fatal(err)
		}
	}
}

// benchmarkKeys is a service on a fresh store and an access token of alg
// for a session it does not need to read.
func benchmarkKeys(b testing.TB, alg string) (*Service, storage.Session) {
	store, err := bolt.Open(filepath.Join(b.TempDir(), "tether.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	v := tether.NewValidator()
	if err := device.RegisterValidations(v); err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.TokenAlg = alg
	svc, err := NewService(context.Background(), cfg, store, NewHasher(Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32, SaltLen: 16}), v)
	if err != nil {
		b.Fatal(err)
	}
	sess := storage.Session{ID: storage.NewID(storage.PrefixSession), UserID: storage.NewID(storage.PrefixUser), DeviceID: storage.NewID(storage.PrefixDevice)}
	return svc, sess
}

// BenchmarkSignAccess is the signature of one access token, per algorithm.
func BenchmarkSignAccess(b *testing.B) {
	for _, alg := range Algorithms() {
		b.Run(alg, func(b *testing.B) {
			svc, sess := benchmarkKeys(b, alg)
			now := time.Now()
			for b.Loop() {
				if _, err := svc.signAccess(sess, storage.RoleWorker, "jti", now, now.Add(15*time.Minute)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyAccess is the verification of one access token (parsing,
// signature with the algorithm pinned, claims), per algorithm.
func BenchmarkVerifyAccess(b *testing.B) {
	for _, alg := range Algorithms() {
		b.Run(alg, func(b *testing.B) {
			svc, sess := benchmarkKeys(b, alg)
			now := time.Now()
			tok, err := svc.signAccess(sess, storage.RoleWorker, "jti", now, now.Add(15*time.Minute))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for b.Loop() {
				if _, err := svc.parseAccess(ctx, tok, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadAccess is a renewal's read of its token's claims, before
// the session vouches for the token.
func BenchmarkReadAccess(b *testing.B) {
	svc, sess := benchmarkKeys(b, "EdDSA")
	now := time.Now()
	tok, err := svc.signAccess(sess, storage.RoleWorker, "jti", now, now.Add(15*time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := readAccess(tok); err != nil {
			b.Fatal(err)
		}
	}
}
