package auth_test

import (
	"bytes"
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

// TestSealedSigningKeys: with a master key, the keys of every algorithm
// are sealed in the store (those found unsealed in place, new ones as they
// are made), and tokens of every algorithm are signed and verified with
// them; without the master key, or with another, the server does not
// start.
func TestSealedSigningKeys(t *testing.T) {
	w := newWorld(t)
	ctx, v := w.ctx, validatorFor(t)

	// A store that started unsealed…
	keys, err := w.store.ListSigningKeys(ctx)
	if err != nil || len(keys) != 3 {
		t.Fatalf("unsealed store: %d keys, %v; want 3", len(keys), err)
	}
	var privates [][]byte
	for _, k := range keys {
		if k.Sealed {
			t.Fatalf("%s key sealed without a master key", k.Algorithm())
		}
		privates = append(privates, bytes.Clone(k.Private))
	}

	// …is sealed in place once a master key is given.
	raw := make([]byte, 32)
	rand.Read(raw)
	master, err := auth.NewMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	sealed := func(alg string) *auth.Service {
		t.Helper()
		cfg := auth.DefaultConfig()
		cfg.TokenAlg = alg
		svc, err := auth.NewService(ctx, cfg, w.store, auth.NewHasher(cheap), v, auth.WithMasterKey(master), auth.WithClock(w.clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	services := map[string]*auth.Service{}
	for _, alg := range auth.Algorithms() {
		services[alg] = sealed(alg)
	}
	keys, _ = w.store.ListSigningKeys(ctx)
	if len(keys) != 3 {
		t.Fatalf("%d keys after sealing; want the same 3", len(keys))
	}
	for i, k := range keys {
		if !k.Sealed || bytes.Contains(k.Private, privates[i]) {
			t.Fatalf("%s key after sealing: sealed %v, private key visible %v; want sealed, not visible", k.Algorithm(), k.Sealed, bytes.Contains(k.Private, privates[i]))
		}
	}
	login := func(svc *auth.Service, alg string) auth.Grant {
		t.Helper()
		g, err := svc.Login(ctx, auth.LoginRequest{Username: "walter", Password: password, Device: payload(w.phone.IMEI)})
		if err != nil {
			t.Fatal(err)
		}
		if got := headerAlg(t, g.AccessToken); got != alg {
			t.Fatalf("token signed %s; want %s", got, alg)
		}
		for _, other := range services {
			if _, err := other.Authenticate(ctx, g.AccessToken); err != nil {
				t.Fatalf("%s token with sealed keys: %v", alg, err)
			}
		}
		return g
	}
	for alg, svc := range services {
		login(svc, alg)
	}
	if _, err := services[auth.EdDSA].RotateKeys(ctx, auth.CLI, false); err != nil {
		t.Fatal(err)
	}
	// Past the shortest wait before the others look for keys they do not
	// know yet.
	w.clock.Advance(time.Second)
	keys, _ = w.store.ListSigningKeys(ctx)
	if len(keys) != 6 {
		t.Fatalf("%d keys after a rotation; want 6", len(keys))
	}
	for _, k := range keys[3:] {
		if !k.Sealed {
			t.Fatalf("a rotated %s key is stored unsealed", k.Algorithm())
		}
	}
	for alg, svc := range services {
		login(svc, alg)
	}

	// Without the master key, or with another, the server does not start.
	_, err = auth.NewService(ctx, auth.DefaultConfig(), w.store, auth.NewHasher(cheap), v)
	if !errors.Is(err, auth.ErrSealed) {
		t.Fatalf("no master key: got %v; want ErrSealed", err)
	}
	other, _ := auth.NewMasterKey(bytes.Repeat([]byte{7}, 32))
	if _, err := auth.NewService(ctx, auth.DefaultConfig(), w.store, auth.NewHasher(cheap), v, auth.WithMasterKey(other)); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Fatalf("another master key: got %v; want does not open", err)
	}
	if _, err := auth.NewService(ctx, auth.DefaultConfig(), w.store, auth.NewHasher(cheap), v, auth.WithMasterKey(master)); err != nil {
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
