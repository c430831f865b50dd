package auth

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

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
