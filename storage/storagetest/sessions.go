package storagetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tether/storage"
)

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newSession(userID, deviceID string) storage.Session {
	return storage.Session{
		ID: storage.NewID(storage.PrefixSession), UserID: userID, DeviceID: deviceID, Persistent: true,
		CreatedAt: now, LastUsedAt: now, IdleTimeout: 720 * time.Hour, ExpiresAt: now.Add(2160 * time.Hour),
		FamilyHash: randBytes(32), RefreshHash: randBytes(32), AccessJTI: "jti-1", AccessExpiresAt: now.Add(15 * time.Minute),
		ClientIP: "192.0.2.1", UserAgent: "test",
	}
}

// fixtures makes a user and a device for sessions to belong to.
func fixtures(t *testing.T, s storage.Store) (storage.User, storage.Device) {
	t.Helper()
	u := mustCreateUser(t, s, newUser("worker", storage.RoleWorker))
	d := mustCreateDevice(t, s, newDevice("490154203237518"))
	return u, d
}

func mustCreateSession(t *testing.T, s storage.Store, sess storage.Session) storage.Session {
	t.Helper()
	got, err := s.CreateSession(context.Background(), sess, nil)
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return got
}

func testSessionCRUD(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	sess := mustCreateSession(t, s, newSession(u.ID, d.ID))
	if sess.Key == 0 {
		t.Fatal("CreateSession left Key at 0")
	}
	got, err := s.GetSession(ctx, sess.ID)
	if err != nil || got.UserID != u.ID || got.DeviceID != d.ID || string(got.RefreshHash) != string(sess.RefreshHash) ||
		got.IdleTimeout != sess.IdleTimeout || !got.ExpiresAt.Equal(sess.ExpiresAt) || got.Key != sess.Key {
		t.Fatalf("GetSession = %+v, %v", got, err)
	}
	if !got.Live(now.Add(time.Hour)) || got.Live(now.Add(721*time.Hour)) || got.Live(now.Add(-time.Nanosecond).Add(2161*time.Hour)) {
		t.Fatal("Live does not follow the idle and absolute lifetimes")
	}
	got, err = s.GetSessionByFamily(ctx, sess.FamilyHash)
	if err != nil || got.ID != sess.ID {
		t.Fatalf("GetSessionByFamily = %v, %v", got.ID, err)
	}
	_, err = s.GetSessionByFamily(ctx, randBytes(32))
	wantNotFound(t, err)
	_, err = s.GetSession(ctx, "ses_missing")
	wantNotFound(t, err)

	updated, err := s.UpdateSession(ctx, sess.ID, func(x storage.Session) (storage.Session, error) {
		x.PrevRefreshHash, x.RefreshHash = x.RefreshHash, randBytes(32)
		x.AccessJTI = "jti-2"
		x.Replay = []byte("sealed")
		return x, nil
	})
	if err != nil || updated.AccessJTI != "jti-2" || string(updated.PrevRefreshHash) != string(sess.RefreshHash) {
		t.Fatalf("UpdateSession = %+v, %v", updated, err)
	}
	_, err = s.UpdateSession(ctx, sess.ID, func(x storage.Session) (storage.Session, error) {
		x.DeviceID = "dev_other"
		return x, nil
	})
	if err == nil {
		t.Fatal("UpdateSession moving a session to another device succeeded")
	}
	_, err = s.UpdateSession(ctx, "ses_missing", func(x storage.Session) (storage.Session, error) { return x, nil })
	wantNotFound(t, err)

	// A session for a manager, with no device.
	boss := mustCreateUser(t, s, newUser("boss", storage.RoleManager))
	if _, err := s.CreateSession(ctx, newSession(boss.ID, ""), func(u storage.User, d storage.Device) error {
		if u.ID != boss.ID || d.ID != "" {
			return fmt.Errorf("check got user %s device %q", u.ID, d.ID)
		}
		return nil
	}); err != nil {
		t.Fatalf("device-less session: %v", err)
	}
}

func testSessionReplacesPair(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	first := mustCreateSession(t, s, newSession(u.ID, d.ID))
	later := newSession(u.ID, d.ID)
	later.CreatedAt = now.Add(time.Minute)
	second := mustCreateSession(t, s, later)

	old, err := s.GetSession(ctx, first.ID)
	if err != nil || !old.Revoked() || old.RevokeReason != "replaced" || !old.RevokedAt.Equal(later.CreatedAt) {
		t.Fatalf("first session after a new login: %+v, %v; want revoked as replaced", old, err)
	}
	cur, err := s.GetSession(ctx, second.ID)
	if err != nil || cur.Revoked() {
		t.Fatalf("second session: %+v, %v", cur, err)
	}
	// Another device of the same user does not touch them.
	other := mustCreateDevice(t, s, newDevice("356938035643809"))
	mustCreateSession(t, s, newSession(u.ID, other.ID))
	if cur, _ := s.GetSession(ctx, second.ID); cur.Revoked() {
		t.Fatal("a login on another device revoked this one")
	}
	// A revoked session frees its pair: the next login revokes nothing more.
	if _, err := s.UpdateSession(ctx, second.ID, func(x storage.Session) (storage.Session, error) {
		x.RevokedAt, x.RevokeReason = now, "logout"
		return x, nil
	}); err != nil {
		t.Fatal(err)
	}
	native := mustCreateSession(t, s, newSession(u.ID, d.ID))
	if cur, _ := s.GetSession(ctx, second.ID); cur.RevokeReason != "logout" {
		t.Fatalf("a logged-out session was revoked again: %q", cur.RevokeReason)
	}

	// OAuth clients' sessions on the same handset live beside the native
	// one and each other's; each client's newest replaces its own older
	// one only.
	app := func(client string) storage.Session {
		x := newSession(u.ID, d.ID)
		x.ClientID = client
		return mustCreateSession(t, s, x)
	}
	a1, b1 := app("cli_a"), app("cli_b")
	a2 := app("cli_a")
	for _, c := range []struct {
		id      string
		revoked bool
	}{{native.ID, false}, {b1.ID, false}, {a2.ID, false}, {a1.ID, true}} {
		got, err := s.GetSession(ctx, c.id)
		if err != nil || got.Revoked() != c.revoked || (c.revoked && got.RevokeReason != "replaced") {
			t.Errorf("session %s of client %q: revoked %v (%q), %v; want revoked %v", c.id, got.ClientID, got.Revoked(), got.RevokeReason, err, c.revoked)
		}
	}
	// A new native login replaces the native session only.
	mustCreateSession(t, s, newSession(u.ID, d.ID))
	for id, want := range map[string]bool{native.ID: true, b1.ID: false, a2.ID: false} {
		if got, _ := s.GetSession(ctx, id); got.Revoked() != want {
			t.Errorf("after a native login, session %s of client %q revoked %v; want %v", id, got.ClientID, got.Revoked(), want)
		}
	}
}

func testSessionCheckAborts(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	first := mustCreateSession(t, s, newSession(u.ID, d.ID))

	suspended := errors.New("device suspended")
	// The check sees the device as it is inside the transaction.
	if _, err := s.UpdateDevice(ctx, d.ID, func(x storage.Device) (storage.Device, error) {
		x.Status = storage.DeviceSuspended
		return x, nil
	}); err != nil {
		t.Fatal(err)
	}
	next := newSession(u.ID, d.ID)
	_, err := s.CreateSession(ctx, next, func(_ storage.User, d storage.Device) error {
		if d.Status != storage.DeviceEnrolled {
			return suspended
		}
		return nil
	}, storage.WithEvents(storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now, Action: "login"}))
	if !errors.Is(err, suspended) {
		t.Fatalf("CreateSession with a failing check: %v; want the check's error", err)
	}
	_, err = s.GetSession(ctx, next.ID)
	wantNotFound(t, err)
	if cur, _ := s.GetSession(ctx, first.ID); cur.Revoked() {
		t.Fatal("an aborted login still replaced the old session")
	}
	page, err := s.ListEvents(ctx, storage.EventFilter{})
	if err != nil || len(page.Items) != 0 {
		t.Fatalf("an aborted login wrote %d events", len(page.Items))
	}
	// A check naming a user or device that does not exist fails too.
	_, err = s.CreateSession(ctx, newSession("usr_missing", d.ID), func(storage.User, storage.Device) error { return nil })
	wantNotFound(t, err)
}

// testSessionConcurrentRotation checks that UpdateSession serialises: of many
// rotations of one refresh token at once, exactly one succeeds.
func testSessionConcurrentRotation(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	sess := mustCreateSession(t, s, newSession(u.ID, d.ID))
	presented := string(sess.RefreshHash)
	stale := errors.New("stale")
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateSession(ctx, sess.ID, func(x storage.Session) (storage.Session, error) {
				if string(x.RefreshHash) != presented {
					return x, stale
				}
				x.PrevRefreshHash, x.RefreshHash = x.RefreshHash, randBytes(32)
				return x, nil
			})
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, stale):
				t.Errorf("UpdateSession: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d concurrent rotations of one token succeeded; want exactly 1", n)
	}
}

func testRevocationWithWrites(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	other := mustCreateUser(t, s, newUser("other", storage.RoleWorker))
	s1 := mustCreateSession(t, s, newSession(u.ID, d.ID))
	s2 := mustCreateSession(t, s, newSession(other.ID, d.ID))
	d2 := mustCreateDevice(t, s, newDevice("356938035643809"))
	s3 := mustCreateSession(t, s, newSession(u.ID, d2.ID))

	// Suspending the device revokes both sessions on it, in its transaction.
	at := now.Add(time.Hour)
	var n int
	if _, err := s.UpdateDevice(ctx, d.ID, func(x storage.Device) (storage.Device, error) {
		x.Status = storage.DeviceSuspended
		return x, nil
	}, storage.WithRevocation(storage.Revocation{DeviceID: d.ID, Reason: "device_suspended", At: at}, &n)); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("revoked %d sessions; want 2", n)
	}
	for _, id := range []string{s1.ID, s2.ID} {
		got, _ := s.GetSession(ctx, id)
		if got.RevokeReason != "device_suspended" || !got.RevokedAt.Equal(at) {
			t.Fatalf("session %s: %q at %v", id, got.RevokeReason, got.RevokedAt)
		}
	}
	if got, _ := s.GetSession(ctx, s3.ID); got.Revoked() {
		t.Fatal("a session on another device was revoked")
	}

	// A write that fails revokes nothing.
	boom := errors.New("boom")
	_, err := s.UpdateUser(ctx, u.ID, func(x storage.User) (storage.User, error) { return x, boom },
		storage.WithRevocation(storage.Revocation{UserID: u.ID, Reason: "account_disabled", At: at}, nil))
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if got, _ := s.GetSession(ctx, s3.ID); got.Revoked() {
		t.Fatal("a failed write still revoked sessions")
	}
	// Disabling the user revokes the rest of theirs.
	if _, err := s.UpdateUser(ctx, u.ID, func(x storage.User) (storage.User, error) {
		x.Disabled = true
		return x, nil
	}, storage.WithRevocation(storage.Revocation{UserID: u.ID, Reason: "account_disabled", At: at}, &n)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSession(ctx, s3.ID); got.RevokeReason != "account_disabled" || n != 1 {
		t.Fatalf("after disabling: %q, %d revoked", got.RevokeReason, n)
	}

	// A revocation with an exception leaves that one session live: a
	// password changed from one session ends the others.
	d3 := mustCreateDevice(t, s, newDevice("353456789012344"))
	keep := mustCreateSession(t, s, newSession(other.ID, d2.ID))
	gone := mustCreateSession(t, s, newSession(other.ID, d3.ID))
	if _, err := s.UpdateUser(ctx, other.ID, func(x storage.User) (storage.User, error) { return x, nil },
		storage.WithRevocation(storage.Revocation{UserID: other.ID, Except: keep.ID, Reason: "password_changed", At: at}, &n)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSession(ctx, keep.ID); got.Revoked() || n != 1 {
		t.Fatalf("the excepted session: revoked %v (%q), %d revoked; want it live and 1 revoked", got.Revoked(), got.RevokeReason, n)
	}
	if got, _ := s.GetSession(ctx, gone.ID); got.RevokeReason != "password_changed" {
		t.Fatalf("the other session: %q; want password_changed", got.RevokeReason)
	}
}

func testSessionList(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	other := mustCreateUser(t, s, newUser("other", storage.RoleWorker))
	mustCreateSession(t, s, newSession(u.ID, d.ID))
	old := newSession(other.ID, d.ID)
	old.ExpiresAt = now.Add(time.Minute)
	mustCreateSession(t, s, old)

	for _, c := range []struct {
		f    storage.SessionFilter
		want int
	}{
		{storage.SessionFilter{}, 2},
		{storage.SessionFilter{UserID: u.ID}, 1},
		{storage.SessionFilter{DeviceID: d.ID}, 2},
		{storage.SessionFilter{DeviceID: d.ID, LiveAt: now.Add(time.Hour)}, 1},
		{storage.SessionFilter{UserID: "usr_nobody"}, 0},
	} {
		page, err := s.ListSessions(ctx, c.f)
		if err != nil || len(page.Items) != c.want {
			t.Fatalf("ListSessions(%+v) = %d, %v; want %d", c.f, len(page.Items), err, c.want)
		}
	}
}

func testAudit(t *testing.T, s storage.Store) {
	ctx := context.Background()
	var all []storage.Event
	for i := range 10 {
		e := storage.Event{
			ID: storage.NewID(storage.PrefixEvent), Time: now.Add(time.Duration(i) * time.Minute),
			Action: []string{"login", "refresh"}[i%2], Outcome: "success",
			UserID: fmt.Sprintf("usr_%d", i%3), DeviceID: "dev_1", Detail: map[string]string{"n": fmt.Sprint(i)},
		}
		if i == 3 {
			e.Actor, e.ActorScopes, e.ActorAMR = "user:usr_m", []string{"depot-7", "north"}, []string{"pwd", "otp"}
		}
		all = append(all, e)
	}
	if err := s.AppendEvents(ctx, all[:5]...); err != nil {
		t.Fatal(err)
	}
	for _, e := range all[5:] {
		if err := s.AppendEvents(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.ListEvents(ctx, storage.EventFilter{})
	if err != nil || len(page.Items) != 10 || page.Items[3].Detail["n"] != "3" || !page.Items[9].Time.Equal(all[9].Time) {
		t.Fatalf("ListEvents = %d events, %v", len(page.Items), err)
	}
	if e := page.Items[3]; !slices.Equal(e.ActorScopes, all[3].ActorScopes) || !slices.Equal(e.ActorAMR, all[3].ActorAMR) || page.Items[4].ActorScopes != nil {
		t.Fatalf("the actor's scopes and factors: %v %v; want %v %v", e.ActorScopes, e.ActorAMR, all[3].ActorScopes, all[3].ActorAMR)
	}
	for _, c := range []struct {
		f    storage.EventFilter
		want int
	}{
		{storage.EventFilter{Action: "login"}, 5},
		{storage.EventFilter{UserID: "usr_0"}, 4},
		{storage.EventFilter{From: now.Add(2 * time.Minute), To: now.Add(5 * time.Minute)}, 3},
		{storage.EventFilter{Action: "refresh", UserID: "usr_1"}, 2},
		{storage.EventFilter{DeviceID: "dev_2"}, 0},
	} {
		page, err := s.ListEvents(ctx, c.f)
		if err != nil || len(page.Items) != c.want {
			t.Fatalf("ListEvents(%+v) = %d, %v; want %d", c.f, len(page.Items), err, c.want)
		}
	}
	first, err := s.ListEvents(ctx, storage.EventFilter{Limit: 4})
	if err != nil || len(first.Items) != 4 || first.Next == "" {
		t.Fatalf("first page: %d, %q, %v", len(first.Items), first.Next, err)
	}
	rest, err := s.ListEvents(ctx, storage.EventFilter{Limit: 10, After: first.Next})
	if err != nil || len(rest.Items) != 6 || rest.Items[0].ID != all[4].ID {
		t.Fatalf("second page: %d, %v", len(rest.Items), err)
	}
	if err := s.AppendEvents(ctx, storage.Event{Action: "no id"}); err == nil {
		t.Fatal("an event without an id was accepted")
	}

	// Newest first: the same events backwards, page by page, filtered or
	// not; a cursor is an event's ID, so one from either order works.
	eventIDs := func(es []storage.Event) []string {
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.ID
		}
		return out
	}
	backwards := func(es []storage.Event, keep func(storage.Event) bool) []string {
		var out []string
		for i := len(es) - 1; i >= 0; i-- {
			if keep(es[i]) {
				out = append(out, es[i].ID)
			}
		}
		return out
	}
	every := func(storage.Event) bool { return true }
	for _, c := range []struct {
		name string
		f    storage.EventFilter
		want []string
	}{
		{"all", storage.EventFilter{}, backwards(all, every)},
		{"logins", storage.EventFilter{Action: "login"}, backwards(all, func(e storage.Event) bool { return e.Action == "login" })},
		{"a user's", storage.EventFilter{UserID: "usr_1"}, backwards(all, func(e storage.Event) bool { return e.UserID == "usr_1" })},
		{"a time range", storage.EventFilter{From: now.Add(2 * time.Minute), To: now.Add(5 * time.Minute)}, backwards(all[2:5], every)},
		{"before an event", storage.EventFilter{After: all[6].ID}, backwards(all[:6], every)},
		{"before the oldest", storage.EventFilter{After: all[0].ID}, nil},
		{"before an ID after every event", storage.EventFilter{After: "evt_~"}, backwards(all, every)},
		{"before an ID between events", storage.EventFilter{After: all[3].ID + "0"}, backwards(all[:4], every)},
		{"none", storage.EventFilter{DeviceID: "dev_2"}, nil},
	} {
		for _, limit := range []int{1, 3, 10} {
			f := c.f
			f.NewestFirst, f.Limit = true, limit
			var walked []string
			for pages := 0; ; pages++ {
				if pages > len(all) {
					t.Fatalf("%s, pages of %d: paging does not end", c.name, limit)
				}
				page, err := s.ListEvents(ctx, f)
				if err != nil {
					t.Fatalf("%s: ListEvents: %v", c.name, err)
				}
				if len(page.Items) > limit {
					t.Fatalf("%s: page of %d; want at most %d", c.name, len(page.Items), limit)
				}
				walked = append(walked, eventIDs(page.Items)...)
				if page.Next == "" {
					break
				}
				f.After = page.Next
			}
			if !slices.Equal(walked, c.want) {
				t.Fatalf("%s, newest first in pages of %d: got %v; want %v", c.name, limit, walked, c.want)
			}
		}
	}
}

func testAuditInWriteTransaction(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ev := storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now, Action: "device.register", Outcome: "success"}
	d := newDevice("490154203237518")
	if err := s.CreateDevice(ctx, d, storage.WithEvents(ev)); err != nil {
		t.Fatal(err)
	}
	// A refused write leaves no event behind.
	dup := newDevice("490154203237518")
	bad := storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now, Action: "device.register", Outcome: "success"}
	wantConflict(t, s.CreateDevice(ctx, dup, storage.WithEvents(bad)), "imei")
	page, err := s.ListEvents(ctx, storage.EventFilter{})
	if err != nil || len(page.Items) != 1 || page.Items[0].ID != ev.ID {
		t.Fatalf("events: %+v, %v; want only the committed one", page.Items, err)
	}
}

// signingKey is a key record of alg made at the given time. The bytes are
// random: the store keeps them and does not read them.
func signingKey(alg string, at time.Time) storage.SigningKey {
	return storage.SigningKey{ID: storage.NewID(storage.PrefixKey), Alg: alg, Private: randBytes(32), Public: randBytes(32), CreatedAt: at}
}

// activeByAlg is the id of each algorithm's active key, and fails the test
// if an algorithm has more than one.
func activeByAlg(t *testing.T, s storage.Store) map[string]string {
	t.Helper()
	keys, err := s.ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	active := map[string]string{}
	for _, k := range keys {
		if !k.RetiredAt.IsZero() {
			continue
		}
		if other, ok := active[k.Algorithm()]; ok {
			t.Fatalf("two active %s keys: %s and %s", k.Algorithm(), other, k.ID)
		}
		active[k.Algorithm()] = k.ID
	}
	return active
}

func testSigningKeys(t *testing.T, s storage.Store) {
	ctx := context.Background()
	keys, err := s.ListSigningKeys(ctx)
	if err != nil || len(keys) != 0 {
		t.Fatalf("new store has %d keys, %v", len(keys), err)
	}
	algs := []string{"EdDSA", "ES256", "RS256"}

	// Instances starting together on an empty store each add a key of
	// every algorithm: one of each is stored.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			var next []storage.SigningKey
			for _, alg := range algs {
				next = append(next, signingKey(alg, now))
			}
			errs[i] = s.AddMissingSigningKeys(ctx, next)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	keys, err = s.ListSigningKeys(ctx)
	if err != nil || len(keys) != 3 {
		t.Fatalf("%d keys after adding them at once, %v; want 3", len(keys), err)
	}
	first := activeByAlg(t, s)
	if len(first) != 3 {
		t.Fatalf("active keys %v; want one of each of %v", first, algs)
	}

	// A key stored before keys had an algorithm is EdDSA: rotating one in
	// retires the EdDSA key only, and AddMissingSigningKeys counts it.
	old := signingKey("", now.Add(time.Minute))
	if err := s.RotateSigningKeys(ctx, []storage.SigningKey{old}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMissingSigningKeys(ctx, []storage.SigningKey{signingKey("EdDSA", now), signingKey("ES256", now)}); err != nil {
		t.Fatal(err)
	}
	active := activeByAlg(t, s)
	if active["EdDSA"] != old.ID || active["ES256"] != first["ES256"] || active["RS256"] != first["RS256"] {
		t.Fatalf("active keys %v; want the old-style key for EdDSA and the first ES256 and RS256 keys", active)
	}
	keys, _ = s.ListSigningKeys(ctx)
	if len(keys) != 4 || keys[0].ID != first["EdDSA"] || !keys[0].RetiredAt.Equal(old.CreatedAt) || keys[3].ID != old.ID || keys[3].Alg != "" {
		t.Fatalf("keys after rotating in an old-style key: %+v", keys)
	}

	// Rotating every algorithm at once retires each at the time of the new
	// key of its own algorithm; a taken id writes nothing.
	next := []storage.SigningKey{
		signingKey("EdDSA", now.Add(time.Hour)), signingKey("ES256", now.Add(2*time.Hour)), signingKey("RS256", now.Add(3*time.Hour)),
	}
	wantConflict(t, s.RotateSigningKeys(ctx, []storage.SigningKey{next[0], old}), "id")
	if got := activeByAlg(t, s); got["EdDSA"] != old.ID {
		t.Fatalf("a failed rotation changed the active keys: %v", got)
	}
	if err := s.RotateSigningKeys(ctx, next); err != nil {
		t.Fatal(err)
	}
	keys, err = s.ListSigningKeys(ctx)
	if err != nil || len(keys) != 7 {
		t.Fatalf("%d keys after the rotation, %v; want 7", len(keys), err)
	}
	retiredAt := map[string]time.Time{old.ID: next[0].CreatedAt, first["ES256"]: next[1].CreatedAt, first["RS256"]: next[2].CreatedAt}
	for _, k := range keys {
		if want, ok := retiredAt[k.ID]; ok && !k.RetiredAt.Equal(want) {
			t.Errorf("%s key %s retired at %v; want %v", k.Algorithm(), k.ID, k.RetiredAt, want)
		}
	}
	for i, k := range keys[4:] {
		if k.ID != next[i].ID || k.Alg != next[i].Alg || !k.RetiredAt.IsZero() ||
			string(k.Private) != string(next[i].Private) || string(k.Public) != string(next[i].Public) {
			t.Fatalf("new key %d: got %+v; want %+v", i, k, next[i])
		}
	}
	if err := s.DeleteSigningKey(ctx, first["EdDSA"]); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s.DeleteSigningKey(ctx, first["EdDSA"]))

	// A session read says which key is newest, so a server sees another's
	// rotation with no read of its own.
	u, d := fixtures(t, s)
	sess := mustCreateSession(t, s, newSession(u.ID, d.ID))
	if b, err := s.GetSessionBundle(ctx, sess.ID); err != nil || b.NewestKey != next[2].ID {
		t.Fatalf("bundle's newest key %q, %v; want %s", b.NewestKey, err, next[2].ID)
	}
	// Revoking leaves only the new keys, in one transaction with its event.
	revoked := []storage.SigningKey{
		signingKey("EdDSA", now.Add(4*time.Hour)), signingKey("ES256", now.Add(4*time.Hour)), signingKey("RS256", now.Add(4*time.Hour)),
	}
	ev := storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now, Action: "keys.rotate", Outcome: "success"}
	if err := s.RevokeSigningKeys(ctx, revoked, storage.WithEvents(ev)); err != nil {
		t.Fatal(err)
	}
	keys, err = s.ListSigningKeys(ctx)
	if err != nil || len(keys) != 3 {
		t.Fatalf("keys after revoking: %+v, %v; want only the 3 new ones", keys, err)
	}
	for i, k := range keys {
		if k.ID != revoked[i].ID || !k.RetiredAt.IsZero() {
			t.Fatalf("key %d after revoking: got %s; want %s, active", i, k.ID, revoked[i].ID)
		}
	}
	if b, err := s.GetSessionBundleByFamily(ctx, sess.FamilyHash); err != nil || b.NewestKey != revoked[2].ID {
		t.Fatalf("bundle's newest key %q, %v; want %s", b.NewestKey, err, revoked[2].ID)
	}
	if page, err := s.ListEvents(ctx, storage.EventFilter{Action: "keys.rotate"}); err != nil || len(page.Items) != 1 {
		t.Fatalf("the revocation's event: %+v, %v", page.Items, err)
	}
}

func testEnrollmentCodes(t *testing.T, s storage.Store) {
	ctx := context.Background()
	code := storage.EnrollmentCode{
		ID: storage.NewID(storage.PrefixCode), Hash: randBytes(32), Label: "van", Group: "north",
		MaxUses: 2, ExpiresAt: now.Add(time.Hour), CreatedAt: now,
	}
	if err := s.CreateEnrollmentCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	exhausted := errors.New("used up")
	use := func(d storage.Device) func(storage.EnrollmentCode) (storage.EnrollmentCode, storage.Device, error) {
		return func(c storage.EnrollmentCode) (storage.EnrollmentCode, storage.Device, error) {
			if c.Uses >= c.MaxUses {
				return c, d, exhausted
			}
			c.Uses++
			d.Label, d.Group = c.Label, c.Group
			return c, d, nil
		}
	}
	first, err := s.EnrollWithCode(ctx, code.Hash, use(newDevice("490154203237518")))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetDevice(ctx, first.ID); err != nil || got.Label != "van" || got.Group != "north" {
		t.Fatalf("enrolled device: %+v, %v", got, err)
	}
	// The same IMEI again uses nothing.
	_, err = s.EnrollWithCode(ctx, code.Hash, use(newDevice("490154203237518")))
	wantConflict(t, err, "imei")
	if got, _ := s.GetEnrollmentCode(ctx, code.ID); got.Uses != 1 {
		t.Fatalf("uses %d after a conflict; want 1", got.Uses)
	}
	if _, err := s.EnrollWithCode(ctx, code.Hash, use(newDevice("356938035643809"))); err != nil {
		t.Fatal(err)
	}
	third := newDevice("352099001761481")
	if _, err := s.EnrollWithCode(ctx, code.Hash, use(third)); !errors.Is(err, exhausted) {
		t.Fatalf("third use: %v; want the refusal", err)
	}
	_, err = s.GetDevice(ctx, third.ID)
	wantNotFound(t, err)
	_, err = s.EnrollWithCode(ctx, randBytes(32), use(newDevice("012345678901237")))
	wantNotFound(t, err)

	revoked, err := s.UpdateEnrollmentCode(ctx, code.ID, func(c storage.EnrollmentCode) (storage.EnrollmentCode, error) {
		c.RevokedAt = now
		return c, nil
	})
	if err != nil || revoked.RevokedAt.IsZero() || revoked.Uses != 2 {
		t.Fatalf("revoke: %+v, %v", revoked, err)
	}
	codes, err := s.ListEnrollmentCodes(ctx, storage.CodeFilter{})
	if err != nil || len(codes) != 1 || codes[0].Label != "van" {
		t.Fatalf("ListEnrollmentCodes = %+v, %v", codes, err)
	}
	_, err = s.GetEnrollmentCode(ctx, "enc_missing")
	wantNotFound(t, err)
}

func testPurges(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	other := mustCreateUser(t, s, newUser("other", storage.RoleWorker))
	d2 := mustCreateDevice(t, s, newDevice("356938035643809"))

	// Sessions: one expired long ago, one revoked long ago, one live; and
	// enough ended ones to take several batches.
	expired := newSession(u.ID, d.ID)
	expired.ExpiresAt = now.Add(-48 * time.Hour)
	mustCreateSession(t, s, expired)
	revoked := mustCreateSession(t, s, newSession(other.ID, d.ID))
	if _, err := s.UpdateSession(ctx, revoked.ID, func(x storage.Session) (storage.Session, error) {
		x.RevokedAt, x.RevokeReason = now.Add(-48*time.Hour), "logout"
		return x, nil
	}); err != nil {
		t.Fatal(err)
	}
	live := mustCreateSession(t, s, newSession(u.ID, d2.ID))
	for i := range 7 {
		x := newSession(fmt.Sprintf("usr_gone%d", i), "")
		x.ExpiresAt = now.Add(-time.Hour)
		if _, err := s.CreateSession(ctx, x, nil); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PurgeSessions(ctx, now, 3)
	if err != nil || n != 9 {
		t.Fatalf("PurgeSessions = %d, %v; want 9", n, err)
	}
	page, _ := s.ListSessions(ctx, storage.SessionFilter{})
	if len(page.Items) != 1 || page.Items[0].ID != live.ID {
		t.Fatalf("after the purge: %d sessions", len(page.Items))
	}
	_, err = s.GetSessionByFamily(ctx, expired.FamilyHash)
	wantNotFound(t, err)
	// The purged sessions' user-and-device slots are free: a new login on
	// that pair replaces nothing, and revoking by user finds only the live.
	fresh := mustCreateSession(t, s, newSession(other.ID, d.ID))
	var count int
	if _, err := s.UpdateUser(ctx, u.ID, func(x storage.User) (storage.User, error) { return x, nil },
		storage.WithRevocation(storage.Revocation{UserID: u.ID, Reason: "test", At: now}, &count)); err != nil || count != 1 {
		t.Fatalf("revocation after purge: %d, %v", count, err)
	}
	if got, _ := s.GetSession(ctx, fresh.ID); got.Revoked() {
		t.Fatal("another user's session was touched")
	}

	// Events: older than the cut-off go, in time order.
	var events []storage.Event
	for i := range 10 {
		events = append(events, storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now.Add(time.Duration(i-5) * time.Hour), Action: "login", Outcome: "success"})
	}
	if err := s.AppendEvents(ctx, events...); err != nil {
		t.Fatal(err)
	}
	n, err = s.PurgeEvents(ctx, now, 2)
	if err != nil || n != 5 {
		t.Fatalf("PurgeEvents = %d, %v; want 5", n, err)
	}
	left, _ := s.ListEvents(ctx, storage.EventFilter{Action: "login"})
	if len(left.Items) != 5 || left.Items[0].Time.Before(now) {
		t.Fatalf("events left: %d, first at %v", len(left.Items), left.Items[0].Time)
	}

	// Enrollment codes: expired or revoked before the cut-off go.
	codes := []storage.EnrollmentCode{
		{ID: storage.NewID(storage.PrefixCode), Hash: randBytes(32), MaxUses: 1, ExpiresAt: now.Add(-time.Hour), CreatedAt: now},
		{ID: storage.NewID(storage.PrefixCode), Hash: randBytes(32), MaxUses: 1, ExpiresAt: now.Add(time.Hour), RevokedAt: now.Add(-time.Minute), CreatedAt: now},
		{ID: storage.NewID(storage.PrefixCode), Hash: randBytes(32), MaxUses: 1, ExpiresAt: now.Add(time.Hour), CreatedAt: now},
	}
	for _, c := range codes {
		if err := s.CreateEnrollmentCode(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	n, err = s.PurgeEnrollmentCodes(ctx, now, 1)
	if err != nil || n != 2 {
		t.Fatalf("PurgeEnrollmentCodes = %d, %v; want 2", n, err)
	}
	list, _ := s.ListEnrollmentCodes(ctx, storage.CodeFilter{})
	if len(list) != 1 || list[0].ID != codes[2].ID {
		t.Fatalf("codes left: %+v", list)
	}
	_, err = s.EnrollWithCode(ctx, codes[0].Hash, func(c storage.EnrollmentCode) (storage.EnrollmentCode, storage.Device, error) {
		return c, newDevice("352099001761481"), nil
	})
	wantNotFound(t, err)
}

func testSessionBundle(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	sess := mustCreateSession(t, s, newSession(u.ID, d.ID))
	for name, get := range map[string]func() (storage.SessionBundle, error){
		"by id":     func() (storage.SessionBundle, error) { return s.GetSessionBundle(ctx, sess.ID) },
		"by family": func() (storage.SessionBundle, error) { return s.GetSessionBundleByFamily(ctx, sess.FamilyHash) },
	} {
		b, err := get()
		if err != nil || b.Session.ID != sess.ID || b.User.ID != u.ID || b.Device == nil || b.Device.ID != d.ID {
			t.Fatalf("%s: %+v, %v", name, b, err)
		}
	}
	boss := mustCreateUser(t, s, newUser("boss", storage.RoleManager))
	bare := mustCreateSession(t, s, newSession(boss.ID, ""))
	b, err := s.GetSessionBundle(ctx, bare.ID)
	if err != nil || b.Device != nil || b.User.ID != boss.ID {
		t.Fatalf("session without a device: %+v, %v", b, err)
	}
	orphan := mustCreateSession(t, s, newSession("usr_gone", "dev_gone"))
	b, err = s.GetSessionBundle(ctx, orphan.ID)
	if err != nil || b.User.ID != "" || b.Device != nil {
		t.Fatalf("session of a missing user and device: %+v, %v", b, err)
	}
	_, err = s.GetSessionBundle(ctx, "ses_missing")
	wantNotFound(t, err)
	_, err = s.GetSessionBundleByFamily(ctx, randBytes(32))
	wantNotFound(t, err)
}

// testSessionUpdateUnchanged checks UpdateSession with the session as the
// caller read it (storage.Unchanged): the update function always works on
// the session as stored, a stale read changes nothing it should not, of
// many updates from one read exactly one wins, and each update's event is
// written with it or not at all.
func testSessionUpdateUnchanged(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	sess := mustCreateSession(t, s, newSession(u.ID, d.ID))
	read, err := s.GetSessionBundle(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	event := func() storage.Event {
		return storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now, Action: "refresh", Outcome: "success",
			SessionID: sess.ID, UserID: u.ID, DeviceID: d.ID}
	}
	rotate := func(presented []byte) func(storage.Session) (storage.Session, error) {
		return func(x storage.Session) (storage.Session, error) {
			if string(x.RefreshHash) != string(presented) {
				return x, errStale
			}
			x.PrevRefreshHash, x.RefreshHash = x.RefreshHash, randBytes(32)
			return x, nil
		}
	}

	// Sixteen rotations of one token, all from the same read: one wins,
	// and only its event is written.
	var wins atomic.Int32
	var won atomic.Value
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			ev := event()
			_, err := s.UpdateSession(ctx, sess.ID, rotate(read.Session.RefreshHash), storage.WithEvents(ev), storage.Unchanged(read))
			switch {
			case err == nil:
				wins.Add(1)
				won.Store(ev.ID)
			case !errors.Is(err, errStale):
				t.Errorf("UpdateSession: %v", err)
			}
		})
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d concurrent rotations from one read succeeded; want exactly 1", n)
	}
	events, err := s.ListEvents(ctx, storage.EventFilter{Action: "refresh"})
	if err != nil || len(events.Items) != 1 || events.Items[0].ID != won.Load() || !slices.Contains(events.Items[0].Groups, d.Group) {
		t.Fatalf("events: %+v, %v; want only the winner's, with its handset's group", events.Items, err)
	}

	// The read is stale now: an update given it still sees the session as
	// stored, refusals included.
	cur, err := s.GetSession(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateSession(ctx, sess.ID, rotate(read.Session.RefreshHash), storage.WithEvents(event()), storage.Unchanged(read))
	if !errors.Is(err, errStale) {
		t.Fatalf("rotation of a rotated token from a stale read: %v; want it refused", err)
	}
	var seen []byte
	got, err := s.UpdateSession(ctx, sess.ID, func(x storage.Session) (storage.Session, error) {
		seen = x.RefreshHash
		return rotate(cur.RefreshHash)(x)
	}, storage.WithEvents(event()), storage.Unchanged(read))
	if err != nil || string(seen) != string(cur.RefreshHash) || string(got.PrevRefreshHash) != string(cur.RefreshHash) {
		t.Fatalf("rotation from a stale read: %v; the function saw %x, want the stored %x", err, seen, cur.RefreshHash)
	}
	stored, err := s.GetSession(ctx, sess.ID)
	if err != nil || string(stored.RefreshHash) != string(got.RefreshHash) {
		t.Fatalf("stored: %x, %v; want %x", stored.RefreshHash, err, got.RefreshHash)
	}
	events, err = s.ListEvents(ctx, storage.EventFilter{Action: "refresh"})
	if err != nil || len(events.Items) != 2 {
		t.Fatalf("events: %d, %v; want 2 (the refused rotation wrote none)", len(events.Items), err)
	}

	// A fresh read: the update is made to it, and what it returns is
	// what is stored.
	fresh, err := s.GetSessionBundle(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err = s.UpdateSession(ctx, sess.ID, rotate(fresh.Session.RefreshHash), storage.Unchanged(fresh))
	if err != nil {
		t.Fatal(err)
	}
	stored, err = s.GetSession(ctx, sess.ID)
	if err != nil || string(stored.RefreshHash) != string(got.RefreshHash) || string(stored.PrevRefreshHash) != string(fresh.Session.RefreshHash) {
		t.Fatalf("stored after a fresh read: %+v, %v", stored, err)
	}
	// A read of another session is no read of this one.
	other := mustCreateSession(t, s, newSession(u.ID, ""))
	wrong, err := s.GetSessionBundle(ctx, other.ID)
	if err != nil {
		t.Fatal(err)
	}
	wrong.Session.ID = sess.ID
	got, err = s.UpdateSession(ctx, sess.ID, rotate(stored.RefreshHash), storage.Unchanged(wrong))
	if err != nil || string(got.PrevRefreshHash) != string(stored.RefreshHash) || got.DeviceID != d.ID {
		t.Fatalf("update given another session's read: %+v, %v", got, err)
	}
}

var errStale = errors.New("stale")
