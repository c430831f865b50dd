package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"tether"
	"tether/auth"
	"tether/storage"
	"tether/storage/bolt"
)

var cheap = auth.Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32, SaltLen: 16}

func newStore(t testing.TB) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "tether.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newUsers(t *testing.T) (*auth.Users, *bolt.Store, *auth.Hasher) {
	t.Helper()
	store := newStore(t)
	v, err := auth.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	h := auth.NewHasher(cheap)
	return auth.NewUsers(store, h, v), store, h
}

var (
	admin   = auth.Principal{Kind: auth.KindAPIKey, ID: "ak_admin", Role: storage.RoleAdmin}
	manager = auth.Principal{Kind: auth.KindAPIKey, ID: "ak_manager", Role: storage.RoleManager}
)

func fieldCodes(t *testing.T, err error) map[string]string {
	t.Helper()
	var ve *tether.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v; want a validation error", err)
	}
	out := map[string]string{}
	for _, f := range ve.Fields {
		out[f.Field] = f.Code
	}
	return out
}

func TestCreateUser(t *testing.T) {
	ctx := context.Background()
	users, store, h := newUsers(t)
	u, err := users.Create(ctx, manager, auth.NewUser{
		Username: " Alice.Smith ", Password: "correct horse", FirstName: "Alice",
		Email: "alice@example.com", ImageURL: "https://example.com/a.png",
		Features: []string{"scan", "print"}, Profile: json.RawMessage(`{ "dealerList": [ {"dealerLotKey": 1} ] }`),
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if u.Username != "Alice.Smith" || u.Role != storage.RoleWorker || u.Key == 0 || string(u.Profile) != `{"dealerList":[{"dealerLotKey":1}]}` {
		t.Fatalf("Create = %+v", u)
	}
	stored, err := store.GetUserByUsername(ctx, "alice.smith")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored.PasswordHash, "correct horse") {
		t.Fatal("password stored in clear")
	}
	if ok, err := h.Verify("correct horse", stored.PasswordHash); !ok || err != nil {
		t.Fatalf("stored hash does not verify: %v, %v", ok, err)
	}

	_, err = users.Create(ctx, manager, auth.NewUser{Username: "ALICE.SMITH", Password: "another one"})
	if !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("duplicate username in other case: %v; want conflict", err)
	}
}

func TestCreateUserValidation(t *testing.T) {
	ctx := context.Background()
	users, store, _ := newUsers(t)
	_, err := users.Create(ctx, admin, auth.NewUser{
		Username: "bad name", Password: "short", Role: "owner", FirstName: "x\x00",
		Email: "not-an-email", ImageURL: "javascript:alert(1)", Features: []string{"a", "a"},
		Profile: json.RawMessage(`[1,2]`),
	})
	got := fieldCodes(t, err)
	want := map[string]string{
		"username": "username_invalid", "password": "password_length", "role": "role_invalid",
		"firstName": "firstName_chars", "email": "email_invalid", "imageUrl": "image_url_invalid",
		"features": "features_duplicate", "profile": "profile_invalid",
	}
	for f, c := range want {
		if got[f] != c {
			t.Errorf("%s: code %q; want %q (all %v)", f, got[f], c, got)
		}
	}
	page, err := store.ListUsers(ctx, storage.UserFilter{})
	if err != nil || len(page.Items) != 0 {
		t.Fatalf("store has %d users after a refused create", len(page.Items))
	}

	for _, name := range []string{"", strings.Repeat("a", 65)} {
		_, err := users.Create(ctx, admin, auth.NewUser{Username: name, Password: "long enough"})
		if c := fieldCodes(t, err)["username"]; c == "" {
			t.Errorf("username %q accepted", name)
		}
	}
}

func TestRoleGrants(t *testing.T) {
	ctx := context.Background()
	users, _, _ := newUsers(t)
	_, err := users.Create(ctx, manager, auth.NewUser{Username: "boss", Password: "long enough", Role: storage.RoleAdmin})
	if !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("manager creating an admin: %v; want ErrForbidden", err)
	}
	a, err := users.Create(ctx, admin, auth.NewUser{Username: "boss", Password: "long enough", Role: storage.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	w, err := users.Create(ctx, manager, auth.NewUser{Username: "worker", Password: "long enough"})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	if _, err := users.Update(ctx, manager, a.ID, auth.UserPatch{Disabled: &yes}); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("manager disabling an admin: %v; want ErrForbidden", err)
	}
	if err := users.SetPassword(ctx, manager, a.ID, "new password!"); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("manager resetting an admin's password: %v; want ErrForbidden", err)
	}
	adminRole := storage.RoleAdmin
	if _, err := users.Update(ctx, manager, w.ID, auth.UserPatch{Role: &adminRole}); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("manager promoting to admin: %v; want ErrForbidden", err)
	}
	if _, err := users.Update(ctx, admin, w.ID, auth.UserPatch{Role: &adminRole}); err != nil {
		t.Fatalf("admin promoting: %v", err)
	}
	self := auth.Principal{Kind: auth.KindUser, ID: a.ID, Role: storage.RoleAdmin}
	if _, err := users.Update(ctx, self, a.ID, auth.UserPatch{Disabled: &yes}); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("admin disabling itself: %v; want ErrForbidden", err)
	}
}

func TestUpdateAndPassword(t *testing.T) {
	ctx := context.Background()
	users, store, h := newUsers(t)
	u, err := users.Create(ctx, admin, auth.NewUser{Username: "bob", Password: "first password", FirstName: "Bob"})
	if err != nil {
		t.Fatal(err)
	}
	last, yes, null := "Builder", true, json.RawMessage("null")
	got, err := users.Update(ctx, admin, u.ID, auth.UserPatch{LastName: &last, Disabled: &yes, Profile: &null})
	if err != nil || got.LastName != "Builder" || got.FirstName != "Bob" || !got.Disabled || got.Profile != nil {
		t.Fatalf("Update = %+v, %v", got, err)
	}

	bad := "not an email"
	_, err = users.Update(ctx, admin, u.ID, auth.UserPatch{Email: &bad, LastName: &bad})
	if fieldCodes(t, err)["email"] != "email_invalid" {
		t.Fatalf("bad email accepted: %v", err)
	}
	stored, _ := store.GetUser(ctx, u.ID)
	if stored.LastName != "Builder" {
		t.Fatalf("refused update wrote last name %q", stored.LastName)
	}

	if err := users.SetPassword(ctx, admin, u.ID, "short"); fieldCodes(t, err)["password"] != "password_length" {
		t.Fatalf("short password accepted: %v", err)
	}
	if err := users.SetPassword(ctx, admin, u.ID, "second password"); err != nil {
		t.Fatal(err)
	}
	stored, err = store.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := h.Verify("second password", stored.PasswordHash); !ok {
		t.Fatal("new password does not verify")
	}
	if ok, _ := h.Verify("first password", stored.PasswordHash); ok {
		t.Fatal("old password still verifies")
	}
	if err := users.SetPassword(ctx, admin, "usr_missing", "long enough"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetPassword on a missing user: %v; want not found", err)
	}
}

func TestAPIKeys(t *testing.T) {
	ctx := context.Background()
	keys := auth.NewAPIKeys(newStore(t))
	secret, key, err := keys.Create(ctx, auth.CLI, storage.RoleManager, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, auth.APIKeyPrefix) || len(secret) < 40 || !strings.HasPrefix(secret, key.Hint) {
		t.Fatalf("secret %q, hint %q", secret, key.Hint)
	}
	p, err := keys.Authenticate(ctx, secret)
	if err != nil || p.Role != storage.RoleManager || p.ID != key.ID || p.Kind != auth.KindAPIKey {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	for _, bad := range []string{"", secret[:len(secret)-1], secret + "x", "Bearer " + secret, strings.ToUpper(secret),
		auth.APIKeyPrefix + strings.Repeat("A", len(secret)-len(auth.APIKeyPrefix))} {
		if _, err := keys.Authenticate(ctx, bad); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %v; want ErrUnauthenticated", bad, err)
		}
	}
	if _, _, err := keys.Create(ctx, manager, storage.RoleAdmin, ""); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("manager making an admin key: %v; want ErrForbidden", err)
	}
	if _, _, err := keys.Create(ctx, auth.CLI, storage.RoleWorker, ""); fieldCodes(t, err)["role"] != "role_invalid" {
		t.Fatalf("worker key: %v; want role_invalid", err)
	}
	if err := keys.Revoke(ctx, auth.CLI, key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Authenticate(ctx, secret); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("revoked key: %v; want ErrUnauthenticated", err)
	}
}
