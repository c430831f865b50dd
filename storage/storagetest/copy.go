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
	registered := newOAuthClient(storage.NewID(storage.PrefixClient))
	registered.RegistrationHash = randBytes(32)
	authCode := newAuthCode(registered.ID, u.ID)
	deviceCode := newDeviceCode("BCDFGHJK", now)
	for _, err := range []error{
		from.RotateSigningKeys(ctx, []storage.SigningKey{k1}), from.RotateSigningKeys(ctx, []storage.SigningKey{k2, k3}),
		from.CreateAPIKey(ctx, storage.APIKey{ID: storage.NewID(storage.PrefixAPIKey), Role: storage.RoleManager, Hash: randBytes(32), Hint: "tak_1234", CreatedAt: now}),
		from.CreateEnrollmentCode(ctx, storage.EnrollmentCode{ID: storage.NewID(storage.PrefixCode), Hash: randBytes(32), MaxUses: 3, Uses: 1, ExpiresAt: now.Add(time.Hour), CreatedAt: now}),
		from.AppendEvents(ctx, ev),
		from.CreateOAuthClient(ctx, newOAuthClient(storage.NewID(storage.PrefixClient))),
		from.CreateOAuthClient(ctx, registered),
		from.CreateAuthCode(ctx, authCode),
		from.CreateDeviceCode(ctx, deviceCode),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	to, ok := newStore(t).(loader)
	if !ok {
		t.Fatal("the store cannot receive a copy: it does not implement storage.Loader")
	}
	counts, err := storage.Copy(ctx, from, to)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	want := storage.Counts{Devices: 1, Users: 2, APIKeys: 1, Sessions: 2, Events: 1, SigningKeys: 3, EnrollmentCodes: 1, OAuthClients: 2}
	if counts != want {
		t.Fatalf("copied %s; want %s", counts, want)
	}
	if _, err := storage.Copy(ctx, from, to); err == nil {
		t.Fatal("Copy into a store that is not empty succeeded")
	}

	if got, err := to.GetUserByUsername(ctx, "BOSS"); err != nil || got.Key != boss.Key || got.PasswordHash != boss.PasswordHash {
		t.Fatalf("copied user %+v, %v; want key %d", got, err, boss.Key)
	}
	if next := mustCreateUser(t, to, newUser("third", storage.RoleWorker)); next.Key != boss.Key+1 {
		t.Fatalf("first new user after the copy has key %d; want %d", next.Key, boss.Key+1)
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
