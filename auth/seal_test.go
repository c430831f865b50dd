package auth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tether/auth"
)

func TestSealedSigningKeys(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	v := validatorFor(t)
	now := func() time.Time { return time.Now() }

	// A store that started unsealed…
	if _, err := auth.LoadKeys(ctx, store, time.Hour, now, nil); err != nil {
		t.Fatal(err)
	}
	keys, _ := store.ListSigningKeys(ctx)
	if len(keys) != 1 || keys[0].Sealed {
		t.Fatalf("unsealed store: %+v", keys)
	}
	seed := bytes.Clone(keys[0].Private)

	// …is sealed in place once a master key is given.
	raw := make([]byte, 32)
	rand.Read(raw)
	master, err := auth.NewMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := auth.NewService(ctx, auth.DefaultConfig(), store, auth.NewHasher(cheap), v, auth.WithMasterKey(master))
	if err != nil {
		t.Fatal(err)
	}
	keys, _ = store.ListSigningKeys(ctx)
	if len(keys) != 1 || !keys[0].Sealed || bytes.Contains(keys[0].Private, seed) {
		t.Fatalf("after sealing: sealed=%v, seed visible=%v", keys[0].Sealed, bytes.Contains(keys[0].Private, seed))
	}
	if _, err := svc.RotateKeys(ctx, auth.CLI, false); err != nil {
		t.Fatal(err)
	}
	keys, _ = store.ListSigningKeys(ctx)
	if len(keys) != 2 || !keys[1].Sealed {
		t.Fatalf("a rotated key is stored unsealed: %+v", keys[1].Sealed)
	}

	// Without the master key, or with another, the server does not start.
	_, err = auth.NewService(ctx, auth.DefaultConfig(), store, auth.NewHasher(cheap), v)
	if !errors.Is(err, auth.ErrSealed) {
		t.Fatalf("no master key: %v; want ErrSealed", err)
	}
	other, _ := auth.NewMasterKey(bytes.Repeat([]byte{7}, 32))
	if _, err := auth.NewService(ctx, auth.DefaultConfig(), store, auth.NewHasher(cheap), v, auth.WithMasterKey(other)); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Fatalf("another master key: %v", err)
	}
	if _, err := auth.NewService(ctx, auth.DefaultConfig(), store, auth.NewHasher(cheap), v, auth.WithMasterKey(master)); err != nil {
		t.Fatalf("the right master key: %v", err)
	}
}

func TestLoadMasterKey(t *testing.T) {
	dir := t.TempDir()
	raw := make([]byte, 32)
	rand.Read(raw)
	for name, data := range map[string][]byte{
		"raw":    raw,
		"hex":    []byte(hex.EncodeToString(raw) + "\n"),
		"base64": []byte(base64.StdEncoding.EncodeToString(raw) + "\n"),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := auth.LoadMasterKey(path); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("too short"), 0o600)
	if _, err := auth.LoadMasterKey(short); err == nil {
		t.Error("a short key was accepted")
	}
	open := filepath.Join(dir, "open")
	os.WriteFile(open, raw, 0o644)
	if _, err := auth.LoadMasterKey(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable key: %v", err)
	}
	if _, err := auth.LoadMasterKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file was accepted")
	}
}
