package storagetest

import (
	"context"
	"testing"
	"time"

	"tether/storage"
)

// loader is a store that can receive another's records.
type loader interface {
	storage.Store
	storage.Loader
}

// testCopy fills a store with every kind of record, copies it into a new
// one, and checks that the copy holds the same records, integer keys,
// revocations and key retirements included, and goes on as the original
// would: new keys follow the copied ones, a new login replaces the copied
// live session. The short-lived codes of OAuth grants are left behind.
func testCopy(t *testing.T, newStore func(*testing.T) storage.Store) {
	ctx := context.Background()
	from := newStore(t)
	u, d := fixtures(t, from)
	boss := mustCreateUser(t, from, newUser("boss", storage.RoleManager))
	live := mustCreateSession(t, from, newSession(u.ID, d.ID))
	ended := mustCreateSession(t, from, newSession(boss.ID, ""))
	if _, err := from.UpdateSession(ctx, ended.ID, func(s storage.Session) (storage.Session, error) {
		s.RevokedAt, s.RevokeReason = now, "logout"
		return s, nil
	}); err != nil {
		t.Fatal(err)
	}
	k1 := signingKey("", now)
	k2 := signingKey("EdDSA", now.Add(time.Hour))
	k3 := signingKey("RS256", now.Add(time.Hour))
	ev := storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now, Action: "login", Outcome: "success", UserID: u.ID}
	// Scopes: a worker created into a group, and an event about the
	// handset, written while it was in north, before it moved to south:
	// the copy keeps the event's groups as written.
	scoped := newUser("scoped", storage.RoleWorker)
	scoped.Scopes = []string{"depot-7"}
	scoped = mustCreateUser(t, from, scoped)
	moved := storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now, Action: "device.update", Outcome: "success", DeviceID: d.ID}
	registered := newOAuthClient(storage.NewID(storage.PrefixClient))
	registered.RegistrationHash = randBytes(32)
	authCode := newAuthCode(registered.ID, u.ID)
	deviceCode := newDeviceCode("BCDFGHJK", now)
	for _, err := range []error{
		from.RotateSigningKeys(ctx, []storage.SigningKey{k1}), from.RotateSigningKeys(ctx, []storage.SigningKey{k2, k3}),
		from.CreateAPIKey(ctx, storage.APIKey{ID: storage.NewID(storage.PrefixAPIKey), Role: storage.RoleManager, Hash: randBytes(32), Hint: "tak_1234", CreatedAt: now}),
		from.CreateEnrollmentCode(ctx, storage.EnrollmentCode{ID: storage.NewID(storage.PrefixCode), Hash: randBytes(32), MaxUses: 3, Uses: 1, ExpiresAt: now.Add(time.Hour), CreatedAt: now}),
		from.AppendEvents(ctx, ev),
		from.AppendEvents(ctx, moved),
		from.CreateOAuthClient(ctx, newOAuthClient(storage.NewID(storage.PrefixClient))),
		from.CreateOAuthClient(ctx, registered),
		from.CreateAuthCode(ctx, authCode),
		from.CreateDeviceCode(ctx, deviceCode),
		putGroup(ctx, from, sharedGroup("rack-1")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	if _, err := from.UpdateDevice(ctx, d.ID, func(d storage.Device) (storage.Device, error) {
		d.Group = "south"
		return d, nil
	}); err != nil {
		t.Fatal(err)
	}
	to, ok := newStore(t).(loader)
	if !ok {
		t.Fatal("the store cannot receive a copy: it does not implement storage.Loader")
	}
	counts, err := storage.Copy(ctx, from, to)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	want := storage.Counts{Devices: 1, Groups: 1, Users: 3, APIKeys: 1, Sessions: 2, Events: 2, SigningKeys: 3, EnrollmentCodes: 1, OAuthClients: 2}
	if counts != want {
		t.Fatalf("copied %s; want %s", counts, want)
	}
	if _, err := storage.Copy(ctx, from, to); err == nil {
		t.Fatal("Copy into a store that is not empty succeeded")
	}

	if page, err := to.ListEvents(ctx, storage.EventFilter{Groups: []string{"north"}}); err != nil || len(page.Items) != 1 || page.Items[0].ID != moved.ID {
		t.Fatalf("copied events of north: %+v, %v; want the one written while the handset was there", page.Items, err)
	}
	if page, err := to.ListDevices(ctx, storage.DeviceFilter{Groups: []string{"south"}}); err != nil || len(page.Items) != 1 {
		t.Fatalf("copied devices of south: %+v, %v; want the moved one", page.Items, err)
	}
	if in, err := to.UserInScope(ctx, scoped.ID, []string{"depot-7"}); err != nil || !in {
		t.Fatalf("copied scoped worker in its scope: %v, %v", in, err)
	}
	if got, err := to.GetUserByUsername(ctx, "BOSS"); err != nil || got.Key != boss.Key || got.PasswordHash != boss.PasswordHash {
		t.Fatalf("copied user %+v, %v; want key %d", got, err, boss.Key)
	}
	if next := mustCreateUser(t, to, newUser("fourth", storage.RoleWorker)); next.Key != scoped.Key+1 {
		t.Fatalf("first new user after the copy has key %d; want %d", next.Key, scoped.Key+1)
	}
	if got, err := to.GetSessionByFamily(ctx, ended.FamilyHash); err != nil || got.Key != ended.Key || got.RevokeReason != "logout" {
		t.Fatalf("copied revoked session %+v, %v", got, err)
	}
	keys, err := to.ListSigningKeys(ctx)
	if err != nil || len(keys) != 3 || keys[0].RetiredAt.IsZero() || !keys[1].RetiredAt.IsZero() || !keys[2].RetiredAt.IsZero() ||
		keys[0].Alg != "" || keys[1].Alg != "EdDSA" || keys[2].Alg != "RS256" || string(keys[2].Private) != string(k3.Private) {
		t.Fatalf("copied signing keys %+v, %v; want the first retired, the others active, each with its algorithm", keys, err)
	}
	// A new login on the same handset replaces the copied live session.
	again := mustCreateSession(t, to, newSession(u.ID, d.ID))
	if again.Key <= ended.Key || again.Key <= live.Key {
		t.Fatalf("new session key %d does not follow the copied ones", again.Key)
	}
	if got, err := to.GetSession(ctx, live.ID); err != nil || got.RevokeReason != "replaced" {
		t.Fatalf("the copied live session after a new login: %+v, %v; want replaced", got, err)
	}
	// OAuth clients are copied whole, their registration hash still taken;
	// the codes of grants in progress are not copied (see storage.Copy).
	got, err := to.GetOAuthClient(ctx, registered.ID)
	if err != nil {
		t.Fatalf("copied OAuth client: %v", err)
	}
	sameJSON(t, "copied OAuth client", got, registered)
	taken := newOAuthClient(storage.NewID(storage.PrefixClient))
	taken.RegistrationHash = registered.RegistrationHash
	wantConflict(t, to.CreateOAuthClient(ctx, taken), "registrationHash")
	_, err = to.UpdateAuthCode(ctx, authCode.Hash, func(c storage.AuthCode) (storage.AuthCode, error) { return c, nil })
	wantNotFound(t, err)
	_, err = to.UpdateDeviceCode(ctx, deviceCode.Hash, func(c storage.DeviceCode) (storage.DeviceCode, error) { return c, nil })
	wantNotFound(t, err)
}
