package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"tether/auth"
	"tether/storage"
)

// TestScopedUsers: a manager limited to groups creates workers into them,
// sees and edits only the workers in them, and widens nothing.
func TestScopedUsers(t *testing.T) {
	t.Run("bolt", func(t *testing.T) { testScopedUsers(t, newStore(t)) })
	t.Run("postgres", func(t *testing.T) { testScopedUsers(t, pgStore(t)) })
}

func testScopedUsers(t *testing.T, store storage.Store) {
	ctx := context.Background()
	users := auth.NewUsers(store, auth.NewHasher(cheap), validatorFor(t))
	north := auth.Principal{Kind: auth.KindAPIKey, ID: "ak_north", Role: storage.RoleManager, Scopes: []string{"north"}}
	both := auth.Principal{Kind: auth.KindAPIKey, ID: "ak_both", Role: storage.RoleManager, Scopes: []string{"north", "south"}}

	w, err := users.Create(ctx, north, auth.NewUser{Username: "walter", Password: "correct horse"})
	if err != nil || strings.Join(w.Scopes, ",") != "north" {
		t.Fatalf("worker of north: %v, %v", w.Scopes, err)
	}
	if _, err := users.Create(ctx, both, auth.NewUser{Username: "wanda", Password: "correct horse"}); fieldCodes(t, err)["scopes"] != "scopes_required" {
		t.Fatalf("several groups, none named: %v", err)
	}
	if _, err := users.Create(ctx, north, auth.NewUser{Username: "wanda", Password: "correct horse", Scopes: []string{"south"}}); !errors.Is(err, auth.ErrScopeExceeded) {
		t.Fatalf("north creating into south: %v", err)
	}
	if _, err := users.Create(ctx, north, auth.NewUser{Username: "boss", Password: "correct horse", Role: storage.RoleManager}); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("north creating a manager: %v", err)
	}
	s, err := users.Create(ctx, admin, auth.NewUser{Username: "sam", Password: "correct horse", Scopes: []string{"south", "north", "south"}})
	if err != nil || strings.Join(s.Scopes, ",") != "north,south" {
		t.Fatalf("admin's worker of both: %v, %v", s.Scopes, err)
	}
	o, err := users.Create(ctx, admin, auth.NewUser{Username: "olga", Password: "correct horse", Scopes: []string{"south"}})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := users.Get(ctx, north, o.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("north reads olga of south: %v", err)
	}
	if err := users.SetPassword(ctx, north, o.ID, "another long password"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("north resets olga's password: %v", err)
	}
	page, err := users.List(ctx, north, storage.UserFilter{})
	if err != nil || len(page.Items) != 2 {
		t.Fatalf("north lists %d users, %v; want walter and sam", len(page.Items), err)
	}

	// Of sam's groups, north changes north's part only.
	if u, err := users.Update(ctx, north, s.ID, auth.UserPatch{Scopes: &[]string{}}); err != nil || strings.Join(u.Scopes, ",") != "south" {
		t.Fatalf("north clearing sam's north: %v, %v", u.Scopes, err)
	}
	if _, err := users.Update(ctx, north, w.ID, auth.UserPatch{Scopes: &[]string{"north", "south"}}); !errors.Is(err, auth.ErrScopeExceeded) {
		t.Fatalf("north widening walter: %v", err)
	}
	if u, _ := store.GetUser(ctx, w.ID); strings.Join(u.Scopes, ",") != "north" {
		t.Fatalf("walter's scopes %v", u.Scopes)
	}

	// Admins are never scoped; scopes are checked.
	if _, err := users.Create(ctx, admin, auth.NewUser{Username: "ada", Password: "correct horse", Role: storage.RoleAdmin, Scopes: []string{"north"}}); fieldCodes(t, err)["scopes"] != "scopes_admin" {
		t.Fatalf("a scoped admin: %v", err)
	}
	if _, err := users.Create(ctx, admin, auth.NewUser{Username: "nul", Password: "correct horse", Scopes: []string{"a\x00b", ""}}); len(fieldCodes(t, err)) != 2 {
		t.Fatalf("bad scopes: %v", err)
	}
}

// TestScopedKeys: a manager's key carries its scopes into its principal;
// other roles take none.
func TestScopedKeys(t *testing.T) {
	ctx := context.Background()
	keys := auth.NewAPIKeys(newStore(t))
	secret, k, err := keys.CreateKey(ctx, auth.CLI, auth.NewAPIKey{Role: storage.RoleManager, Scopes: []string{"south", "north"}})
	if err != nil || strings.Join(k.Scopes, ",") != "north,south" {
		t.Fatalf("key: %v, %v", k.Scopes, err)
	}
	p, err := keys.Authenticate(ctx, secret)
	if err != nil || !p.Scoped() || strings.Join(p.Scopes, ",") != "north,south" || p.AMR != nil {
		t.Fatalf("principal %+v, %v", p, err)
	}
	if p.CanGrant(storage.RoleManager) || !p.CanGrant(storage.RoleWorker) {
		t.Fatal("a scoped manager grants managers, or not workers")
	}
	if _, _, err := keys.CreateKey(ctx, auth.CLI, auth.NewAPIKey{Role: storage.RoleIntrospect, Scopes: []string{"north"}}); fieldCodes(t, err)["scopes"] != "scopes_role" {
		t.Fatalf("an introspection key with scopes: %v", err)
	}
	secret, _, err = keys.CreateKey(ctx, auth.CLI, auth.NewAPIKey{Role: storage.RoleManager})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := keys.Authenticate(ctx, secret); err != nil || p.Scoped() {
		t.Fatalf("an unscoped key: %+v, %v", p, err)
	}
}

// TestScopedDirectoryStatus: the last directory sync is the fleet's, for
// unscoped principals only.
func TestScopedDirectoryStatus(t *testing.T) {
	ctx := context.Background()
	w := newWorldOn(t, newStore(t))
	ev := storage.NewEvent(ctx, time.Now(), "directory.sync", "success", "directory")
	if err := w.store.AppendEvents(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.LastDirectorySync(ctx, auth.CLI); err != nil {
		t.Fatalf("unscoped: %v", err)
	}
	north := auth.Principal{Kind: auth.KindAPIKey, ID: "ak_north", Role: storage.RoleManager, Scopes: []string{"north"}}
	if _, err := w.svc.LastDirectorySync(ctx, north); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("scoped: %v; want not found", err)
	}
}
