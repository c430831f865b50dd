package storagetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"tether/storage"
)

func newOAuthClient(id string) storage.OAuthClient {
	return storage.OAuthClient{
		ID:                      id,
		Name:                    "Field app",
		TokenEndpointAuthMethod: "private_key_jwt",
		SecretHash:              randBytes(32),
		JWKS:                    json.RawMessage(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`),
		RedirectURIs:            []string{"https://app.example.com/cb", "com.example.app:/cb"},
		PostLogoutRedirectURIs:  []string{"https://app.example.com/bye"},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		Scopes:                  []string{"openid", "profile"},
		IDTokenAlg:              "EdDSA",
		CreatedAt:               now,
		CreatedBy:               "apikey:test",
		UpdatedAt:               now,
	}
}

func newAuthCode(clientID, userID string) storage.AuthCode {
	return storage.AuthCode{
		ID: storage.NewID(storage.PrefixAuthCode), Hash: randBytes(32), ClientID: clientID,
		RedirectURI: "https://app.example.com/cb", Scope: "openid profile", Nonce: "n-0S6_WzA2Mj",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", UserID: userID,
		AuthTime: now, AMR: []string{"pwd"}, ExpiresAt: now.Add(time.Minute),
	}
}

func newDeviceCode(userCode string, createdAt time.Time) storage.DeviceCode {
	return storage.DeviceCode{
		ID: storage.NewID(storage.PrefixDeviceCode), Hash: randBytes(32), UserCode: userCode,
		ClientID: "cli_tv", Scope: "openid", Device: json.RawMessage(`{"imei":"490154203237518"}`),
		Status: storage.DeviceCodePending, Interval: 5,
		CreatedAt: createdAt, ExpiresAt: createdAt.Add(10 * time.Minute),
	}
}

// sameJSON fails unless got and want are stored alike: the same JSON.
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Fatalf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// wantEvents fails unless the audit trail holds n events of action.
func wantEvents(t *testing.T, s storage.Store, action string, n int) {
	t.Helper()
	page, err := s.ListEvents(context.Background(), storage.EventFilter{Action: action})
	if err != nil || len(page.Items) != n {
		t.Fatalf("%d %q events, %v; want %d", len(page.Items), action, err, n)
	}
}

func testOAuthClientCRUD(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := newOAuthClient("cli_b")
	c.RegistrationHash = randBytes(32)
	created := storage.NewEvent(ctx, now, "client.create", "success", "cli")
	if err := s.CreateOAuthClient(ctx, c, storage.WithEvents(created)); err != nil {
		t.Fatalf("CreateOAuthClient: %v", err)
	}
	got, err := s.GetOAuthClient(ctx, c.ID)
	if err != nil {
		t.Fatalf("GetOAuthClient: %v", err)
	}
	sameJSON(t, "GetOAuthClient", got, c)
	wantEvents(t, s, "client.create", 1)

	// The ID and the registration hash are taken; a refused create writes
	// nothing, its event included.
	dup := newOAuthClient(c.ID)
	wantConflict(t, s.CreateOAuthClient(ctx, dup, storage.WithEvents(storage.NewEvent(ctx, now, "client.create", "success", "cli"))), "id")
	sameReg := newOAuthClient("cli_x")
	sameReg.RegistrationHash = c.RegistrationHash
	wantConflict(t, s.CreateOAuthClient(ctx, sameReg), "registrationHash")
	_, err = s.GetOAuthClient(ctx, sameReg.ID)
	wantNotFound(t, err)
	wantEvents(t, s, "client.create", 1)
	_, err = s.GetOAuthClient(ctx, "cli_missing")
	wantNotFound(t, err)

	// Clients without a registration hash do not collide; the list is in
	// ID order, byte by byte.
	for _, id := range []string{"cli_c", "cli_a", "cli_B"} {
		if err := s.CreateOAuthClient(ctx, newOAuthClient(id)); err != nil {
			t.Fatalf("CreateOAuthClient(%s): %v", id, err)
		}
	}
	list, err := s.ListOAuthClients(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range list {
		ids = append(ids, x.ID)
	}
	if want := []string{"cli_B", "cli_a", "cli_b", "cli_c"}; !slices.Equal(ids, want) {
		t.Fatalf("ListOAuthClients = %v; want %v", ids, want)
	}

	// An update replaces the record and moves the registration hash.
	oldReg, newReg := c.RegistrationHash, randBytes(32)
	later := now.Add(time.Hour)
	updated, err := s.UpdateOAuthClient(ctx, c.ID, func(x storage.OAuthClient) (storage.OAuthClient, error) {
		x.Name = "Field app 2"
		x.RedirectURIs = append(x.RedirectURIs, "https://app.example.com/cb2")
		x.RegistrationHash = newReg
		x.UpdatedAt = later
		return x, nil
	})
	if err != nil || updated.Name != "Field app 2" || len(updated.RedirectURIs) != 3 || !updated.UpdatedAt.Equal(later) {
		t.Fatalf("UpdateOAuthClient = %+v, %v", updated, err)
	}
	got, err = s.GetOAuthClient(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "client after update", got, updated)
	taken := newOAuthClient("cli_y")
	taken.RegistrationHash = newReg
	wantConflict(t, s.CreateOAuthClient(ctx, taken), "registrationHash")
	freed := newOAuthClient("cli_z")
	freed.RegistrationHash = oldReg
	if err := s.CreateOAuthClient(ctx, freed); err != nil {
		t.Fatalf("a client with the registration hash the update let go: %v", err)
	}
	// Taking another client's registration hash is refused.
	_, err = s.UpdateOAuthClient(ctx, "cli_a", func(x storage.OAuthClient) (storage.OAuthClient, error) {
		x.RegistrationHash = newReg
		x.Name = "half-written"
		return x, nil
	})
	wantConflict(t, err, "registrationHash")

	// A failing fn, or one that changes the ID, writes nothing, the write
	// options included.
	boom := errors.New("boom")
	_, err = s.UpdateOAuthClient(ctx, c.ID, func(x storage.OAuthClient) (storage.OAuthClient, error) {
		x.Name = "half-written"
		return x, boom
	}, storage.WithEvents(storage.NewEvent(ctx, now, "client.update", "success", "cli")))
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateOAuthClient with failing fn: %v; want the fn's error", err)
	}
	_, err = s.UpdateOAuthClient(ctx, c.ID, func(x storage.OAuthClient) (storage.OAuthClient, error) {
		x.ID = "cli_other"
		x.Name = "half-written"
		return x, nil
	})
	if err == nil {
		t.Fatal("UpdateOAuthClient changing the ID succeeded; want an error")
	}
	_, err = s.GetOAuthClient(ctx, "cli_other")
	wantNotFound(t, err)
	for _, id := range []string{c.ID, "cli_a"} {
		if got, err := s.GetOAuthClient(ctx, id); err != nil || got.Name == "half-written" {
			t.Fatalf("client %s after refused updates: %q, %v", id, got.Name, err)
		}
	}
	wantEvents(t, s, "client.update", 0)
	_, err = s.UpdateOAuthClient(ctx, "cli_missing", func(x storage.OAuthClient) (storage.OAuthClient, error) { return x, nil })
	wantNotFound(t, err)

	// Delete, with its event; the registration hash is free again.
	if err := s.DeleteOAuthClient(ctx, c.ID, storage.WithEvents(storage.NewEvent(ctx, now, "client.delete", "success", "cli"))); err != nil {
		t.Fatalf("DeleteOAuthClient: %v", err)
	}
	_, err = s.GetOAuthClient(ctx, c.ID)
	wantNotFound(t, err)
	wantNotFound(t, s.DeleteOAuthClient(ctx, c.ID, storage.WithEvents(storage.NewEvent(ctx, now, "client.delete", "success", "cli"))))
	wantEvents(t, s, "client.delete", 1)
	again := newOAuthClient("cli_again")
	again.RegistrationHash = newReg
	if err := s.CreateOAuthClient(ctx, again); err != nil {
		t.Fatalf("a client with a deleted client's registration hash: %v", err)
	}
	if list, err := s.ListOAuthClients(ctx); err != nil || len(list) != 5 {
		t.Fatalf("ListOAuthClients after delete: %d, %v; want 5", len(list), err)
	}
}

func testOAuthClientCopies(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := newOAuthClient(storage.NewID(storage.PrefixClient))
	c.RegistrationHash = randBytes(32)
	want := c.Clone()
	if err := s.CreateOAuthClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	mutate := func(x *storage.OAuthClient) {
		x.RedirectURIs[0] = "https://evil.example/cb"
		x.GrantTypes[0] = "password"
		x.SecretHash[0] ^= 0xff
		x.RegistrationHash[0] ^= 0xff
		x.JWKS[2] = 'X'
	}
	mutate(&c)
	got, err := s.GetOAuthClient(ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "client after the caller changed its own", got, want)
	mutate(&got)
	list, err := s.ListOAuthClients(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListOAuthClients: %d, %v", len(list), err)
	}
	mutate(&list[0])
	updated, err := s.UpdateOAuthClient(ctx, want.ID, func(x storage.OAuthClient) (storage.OAuthClient, error) { return x, nil })
	if err != nil {
		t.Fatal(err)
	}
	mutate(&updated)
	got, err = s.GetOAuthClient(ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "client after callers changed what the store returned", got, want)
}

func testAuthCodes(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	sess := mustCreateSession(t, s, newSession(u.ID, d.ID))
	c := newAuthCode("cli_app", u.ID)
	c.DeviceID = d.ID
	c.DPoPJKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	if err := s.CreateAuthCode(ctx, c, storage.WithEvents(storage.NewEvent(ctx, now, "oauth.authorize", "success", ""))); err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}
	wantEvents(t, s, "oauth.authorize", 1)
	dup := newAuthCode("cli_app", u.ID)
	dup.ID = c.ID
	wantConflict(t, s.CreateAuthCode(ctx, dup), "id")
	dup = newAuthCode("cli_app", u.ID)
	dup.Hash = c.Hash
	wantConflict(t, s.CreateAuthCode(ctx, dup), "code")

	read := func() storage.AuthCode {
		t.Helper()
		got, err := s.UpdateAuthCode(ctx, c.Hash, func(x storage.AuthCode) (storage.AuthCode, error) { return x, nil })
		if err != nil {
			t.Fatalf("UpdateAuthCode: %v", err)
		}
		return got
	}
	sameJSON(t, "stored code", read(), c)
	_, err := s.UpdateAuthCode(ctx, randBytes(32), func(x storage.AuthCode) (storage.AuthCode, error) { return x, nil })
	wantNotFound(t, err)

	// What fn may not change, and a failing fn: nothing written, neither
	// the event nor the revocation.
	for _, change := range []func(*storage.AuthCode){
		func(x *storage.AuthCode) { x.ID = storage.NewID(storage.PrefixAuthCode) },
		func(x *storage.AuthCode) { x.Hash = randBytes(32) },
	} {
		_, err := s.UpdateAuthCode(ctx, c.Hash, func(x storage.AuthCode) (storage.AuthCode, error) {
			change(&x)
			x.UsedAt = now
			return x, nil
		})
		if err == nil {
			t.Fatal("UpdateAuthCode changing the code's identity succeeded; want an error")
		}
	}
	boom := errors.New("boom")
	var n int
	_, err = s.UpdateAuthCode(ctx, c.Hash, func(x storage.AuthCode) (storage.AuthCode, error) {
		x.UsedAt = now
		return x, boom
	}, storage.WithEvents(storage.NewEvent(ctx, now, "oauth.code_reused", "failure", "")),
		storage.WithRevocation(storage.Revocation{UserID: u.ID, Reason: "code_reused", At: now}, &n))
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateAuthCode with failing fn: %v; want the fn's error", err)
	}
	if got := read(); !got.UsedAt.IsZero() {
		t.Fatalf("a failed update marked the code used at %v", got.UsedAt)
	}
	wantEvents(t, s, "oauth.code_reused", 0)
	if got, err := s.GetSession(ctx, sess.ID); err != nil || got.Revoked() {
		t.Fatalf("a failed update revoked the session: %+v, %v", got, err)
	}

	// Redeemed: the code remembers when and for which session.
	used, err := s.UpdateAuthCode(ctx, c.Hash, func(x storage.AuthCode) (storage.AuthCode, error) {
		x.UsedAt, x.SessionID = now.Add(time.Second), sess.ID
		return x, nil
	}, storage.WithEvents(storage.NewEvent(ctx, now, "oauth.token", "success", "")))
	if err != nil || !used.UsedAt.Equal(now.Add(time.Second)) || used.SessionID != sess.ID {
		t.Fatalf("redeem: %+v, %v", used, err)
	}
	sameJSON(t, "redeemed code", read(), used)
	wantEvents(t, s, "oauth.token", 1)

	// Redeemed again: the write options run in the code's transaction.
	used.AMR[0] = "changed by caller"
	used.Hash[0] ^= 0xff
	reused, err := s.UpdateAuthCode(ctx, c.Hash, func(x storage.AuthCode) (storage.AuthCode, error) { return x, nil },
		storage.WithEvents(storage.NewEvent(ctx, now, "oauth.code_reused", "failure", "")),
		storage.WithRevocation(storage.Revocation{UserID: u.ID, Reason: "code_reused", At: now.Add(time.Minute)}, &n))
	if err != nil || reused.AMR[0] != "pwd" {
		t.Fatalf("second redemption: %+v, %v", reused, err)
	}
	if n != 1 {
		t.Fatalf("the second redemption revoked %d sessions; want 1", n)
	}
	if got, err := s.GetSession(ctx, sess.ID); err != nil || got.RevokeReason != "code_reused" {
		t.Fatalf("the code's session after a second redemption: %+v, %v", got, err)
	}
	wantEvents(t, s, "oauth.code_reused", 1)
}

func testAuthCodeConcurrentRedemption(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := newAuthCode("cli_app", "usr_someone")
	if err := s.CreateAuthCode(ctx, c); err != nil {
		t.Fatal(err)
	}
	used := errors.New("code already used")
	const n = 16
	var mu sync.Mutex
	var winners []string
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sessionID := fmt.Sprintf("ses_%02d", i)
			_, err := s.UpdateAuthCode(ctx, c.Hash, func(x storage.AuthCode) (storage.AuthCode, error) {
				if !x.UsedAt.IsZero() {
					return x, used
				}
				x.UsedAt, x.SessionID = now, sessionID
				return x, nil
			}, storage.WithEvents(storage.NewEvent(ctx, now, "oauth.token", "success", "")))
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, sessionID)
				mu.Unlock()
			case !errors.Is(err, used):
				t.Errorf("UpdateAuthCode: %v", err)
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d concurrent redemptions of one code succeeded; want exactly 1", len(winners))
	}
	got, err := s.UpdateAuthCode(ctx, c.Hash, func(x storage.AuthCode) (storage.AuthCode, error) { return x, nil })
	if err != nil || got.SessionID != winners[0] {
		t.Fatalf("the code names session %q, %v; want the winner's %s", got.SessionID, err, winners[0])
	}
	wantEvents(t, s, "oauth.token", 1)
}

func testDeviceCodes(t *testing.T, s storage.Store) {
	ctx := context.Background()
	const userCode = "BCDFGHJK"
	a := newDeviceCode(userCode, now)
	if err := s.CreateDeviceCode(ctx, a, storage.WithEvents(storage.NewEvent(ctx, now, "oauth.device_authorize", "success", ""))); err != nil {
		t.Fatalf("CreateDeviceCode: %v", err)
	}
	wantEvents(t, s, "oauth.device_authorize", 1)
	dup := newDeviceCode("LMNPQRST", now)
	dup.ID = a.ID
	wantConflict(t, s.CreateDeviceCode(ctx, dup), "id")
	dup = newDeviceCode("LMNPQRST", now)
	dup.Hash = a.Hash
	wantConflict(t, s.CreateDeviceCode(ctx, dup), "code")

	byHash := func(hash []byte) (storage.DeviceCode, error) {
		return s.UpdateDeviceCode(ctx, hash, func(x storage.DeviceCode) (storage.DeviceCode, error) { return x, nil })
	}
	byUser := func(code string, at time.Time) (storage.DeviceCode, error) {
		return s.UpdateDeviceCodeByUserCode(ctx, code, at, func(x storage.DeviceCode) (storage.DeviceCode, error) { return x, nil })
	}
	got, err := byHash(a.Hash)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "stored device code", got, a)
	_, err = byHash(randBytes(32))
	wantNotFound(t, err)

	// While a lives, its user code is taken; a refused code is not stored
	// and its event not written.
	b := newDeviceCode(userCode, a.ExpiresAt.Add(-time.Microsecond))
	var ce *storage.ConflictError
	err = s.CreateDeviceCode(ctx, b, storage.WithEvents(storage.NewEvent(ctx, now, "oauth.device_authorize", "success", "")))
	wantConflict(t, err, "userCode")
	if !errors.As(err, &ce) || ce.Entity != "device code" || ce.Value != userCode {
		t.Fatalf("conflict %+v; want device code %s", ce, userCode)
	}
	_, err = byHash(b.Hash)
	wantNotFound(t, err)
	wantEvents(t, s, "oauth.device_authorize", 1)

	// The person approves by user code, while it lives.
	poll := now.Add(time.Minute)
	approved, err := s.UpdateDeviceCodeByUserCode(ctx, userCode, poll, func(x storage.DeviceCode) (storage.DeviceCode, error) {
		x.Status, x.UserID, x.AuthTime = storage.DeviceCodeApproved, "usr_approver", poll
		return x, nil
	}, storage.WithEvents(storage.NewEvent(ctx, now, "oauth.device_approve", "success", "")))
	if err != nil || approved.ID != a.ID || approved.Status != storage.DeviceCodeApproved || approved.UserID != "usr_approver" {
		t.Fatalf("approve: %+v, %v", approved, err)
	}
	wantEvents(t, s, "oauth.device_approve", 1)
	got, err = byHash(a.Hash)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "approved device code", got, approved)
	_, err = byUser("ZZZZZZZZ", poll)
	wantNotFound(t, err)
	// Expired, the user code finds nothing; the device code still answers
	// by hash (its poll learns that it expired).
	_, err = byUser(userCode, a.ExpiresAt)
	wantNotFound(t, err)
	if got, err := byHash(a.Hash); err != nil || got.ID != a.ID {
		t.Fatalf("an expired device code by hash: %+v, %v", got, err)
	}

	// What fn may not change, and a failing fn.
	for _, change := range []func(*storage.DeviceCode){
		func(x *storage.DeviceCode) { x.ID = storage.NewID(storage.PrefixDeviceCode) },
		func(x *storage.DeviceCode) { x.Hash = randBytes(32) },
		func(x *storage.DeviceCode) { x.UserCode = "LMNPQRST" },
	} {
		_, err := s.UpdateDeviceCode(ctx, a.Hash, func(x storage.DeviceCode) (storage.DeviceCode, error) {
			change(&x)
			x.Status = storage.DeviceCodeUsed
			return x, nil
		})
		if err == nil {
			t.Fatal("UpdateDeviceCode changing the code's identity succeeded; want an error")
		}
	}
	boom := errors.New("boom")
	_, err = s.UpdateDeviceCodeByUserCode(ctx, userCode, poll, func(x storage.DeviceCode) (storage.DeviceCode, error) {
		x.Status = storage.DeviceCodeDenied
		return x, boom
	}, storage.WithEvents(storage.NewEvent(ctx, now, "oauth.device_deny", "success", "")))
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateDeviceCodeByUserCode with failing fn: %v; want the fn's error", err)
	}
	if got, _ := byHash(a.Hash); got.Status != storage.DeviceCodeApproved {
		t.Fatalf("status %q after failed updates; want approved", got.Status)
	}
	wantEvents(t, s, "oauth.device_deny", 0)

	// Once a expired, a new code takes its user code; by user code the new
	// one is found, and a still answers by hash.
	b = newDeviceCode(userCode, a.ExpiresAt)
	if err := s.CreateDeviceCode(ctx, b); err != nil {
		t.Fatalf("a user code whose holder expired: %v", err)
	}
	if got, err := byUser(userCode, b.CreatedAt.Add(time.Second)); err != nil || got.ID != b.ID {
		t.Fatalf("by user code after the take-over: %v, %v; want %s", got.ID, err, b.ID)
	}
	if got, err := byHash(a.Hash); err != nil || got.Status != storage.DeviceCodeApproved {
		t.Fatalf("the expired code by hash: %+v, %v", got, err)
	}
	// And b holds it now.
	wantConflict(t, s.CreateDeviceCode(ctx, newDeviceCode(userCode, b.CreatedAt.Add(time.Minute))), "userCode")

	// Copies.
	polled, err := s.UpdateDeviceCode(ctx, b.Hash, func(x storage.DeviceCode) (storage.DeviceCode, error) {
		x.LastPolledAt = b.CreatedAt.Add(5 * time.Second)
		return x, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	polled.Device[2] = 'X'
	polled.Hash[0] ^= 0xff
	if got, err := byHash(b.Hash); err != nil || string(got.Device) != string(b.Device) || !got.LastPolledAt.Equal(b.CreatedAt.Add(5*time.Second)) {
		t.Fatalf("device code after the caller changed what the store returned: %+v, %v", got, err)
	}
}

func testDeviceCodeConcurrentApproval(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := newDeviceCode("WXYZ2345", now)
	if err := s.CreateDeviceCode(ctx, c); err != nil {
		t.Fatal(err)
	}
	decided := errors.New("already decided")
	const n = 16
	var mu sync.Mutex
	var winners []string
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			user := fmt.Sprintf("usr_%02d", i)
			_, err := s.UpdateDeviceCodeByUserCode(ctx, c.UserCode, now.Add(time.Minute), func(x storage.DeviceCode) (storage.DeviceCode, error) {
				if x.Status != storage.DeviceCodePending {
					return x, decided
				}
				x.Status, x.UserID = storage.DeviceCodeApproved, user
				return x, nil
			})
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, user)
				mu.Unlock()
			case !errors.Is(err, decided):
				t.Errorf("UpdateDeviceCodeByUserCode: %v", err)
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d concurrent approvals of one code succeeded; want exactly 1", len(winners))
	}
	got, err := s.UpdateDeviceCode(ctx, c.Hash, func(x storage.DeviceCode) (storage.DeviceCode, error) { return x, nil })
	if err != nil || got.UserID != winners[0] {
		t.Fatalf("approved by %q, %v; want the winner %s", got.UserID, err, winners[0])
	}
}

// testDeviceCodeUserCodeRace: of device codes created at once with one
// user code, one is stored.
func testDeviceCodeUserCodeRace(t *testing.T, s storage.Store) {
	ctx := context.Background()
	const n = 8
	var mu sync.Mutex
	var stored []storage.DeviceCode
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c := newDeviceCode("RACE2345", now)
			err := s.CreateDeviceCode(ctx, c)
			var ce *storage.ConflictError
			switch {
			case err == nil:
				mu.Lock()
				stored = append(stored, c)
				mu.Unlock()
			case !errors.As(err, &ce) || ce.Field != "userCode":
				t.Errorf("CreateDeviceCode: %v; want success or a userCode conflict", err)
			}
		})
	}
	wg.Wait()
	if len(stored) != 1 {
		t.Fatalf("%d device codes with one user code created at once; want 1", len(stored))
	}
	got, err := s.UpdateDeviceCodeByUserCode(ctx, "RACE2345", now, func(x storage.DeviceCode) (storage.DeviceCode, error) { return x, nil })
	if err != nil || got.ID != stored[0].ID {
		t.Fatalf("by user code: %v, %v; want %s", got.ID, err, stored[0].ID)
	}
}

func testOAuthGrantsPurge(t *testing.T, s storage.Store) {
	ctx := context.Background()
	oldCode := newAuthCode("cli_app", "usr_a")
	oldCode.ExpiresAt = now.Add(-time.Hour)
	liveCode := newAuthCode("cli_app", "usr_a")
	liveCode.ExpiresAt = now.Add(time.Minute)
	for _, c := range []storage.AuthCode{oldCode, liveCode} {
		if err := s.CreateAuthCode(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// x1 expired and x2 took its user code over; y expired alone; z lives.
	x1 := newDeviceCode("XXXXXXXX", now.Add(-2*time.Hour))
	x2 := newDeviceCode("XXXXXXXX", x1.ExpiresAt.Add(time.Minute))
	x2.ExpiresAt = now.Add(10 * time.Minute)
	y := newDeviceCode("YYYYYYYY", now.Add(-time.Hour))
	z := newDeviceCode("ZZZZZZZZ", now)
	for _, c := range []storage.DeviceCode{x1, x2, y, z} {
		if err := s.CreateDeviceCode(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PurgeOAuthGrants(ctx, now)
	if err != nil || n != 3 {
		t.Fatalf("PurgeOAuthGrants = %d, %v; want 3", n, err)
	}
	same := func(x storage.AuthCode) (storage.AuthCode, error) { return x, nil }
	sameDevice := func(x storage.DeviceCode) (storage.DeviceCode, error) { return x, nil }
	_, err = s.UpdateAuthCode(ctx, oldCode.Hash, same)
	wantNotFound(t, err)
	if _, err := s.UpdateAuthCode(ctx, liveCode.Hash, same); err != nil {
		t.Fatalf("the live authorization code after the purge: %v", err)
	}
	for _, c := range []storage.DeviceCode{x1, y} {
		_, err = s.UpdateDeviceCode(ctx, c.Hash, sameDevice)
		wantNotFound(t, err)
	}
	// Purging x1 left x2 its user code.
	if got, err := s.UpdateDeviceCodeByUserCode(ctx, "XXXXXXXX", now, sameDevice); err != nil || got.ID != x2.ID {
		t.Fatalf("x2 by user code after x1's purge: %v, %v", got.ID, err)
	}
	if got, err := s.UpdateDeviceCodeByUserCode(ctx, "ZZZZZZZZ", now, sameDevice); err != nil || got.ID != z.ID {
		t.Fatalf("z by user code after the purge: %v, %v", got.ID, err)
	}
	_, err = s.UpdateDeviceCodeByUserCode(ctx, "YYYYYYYY", now, sameDevice)
	wantNotFound(t, err)
	// The purged codes' hashes and user codes are free.
	again := newAuthCode("cli_app", "usr_a")
	again.Hash = oldCode.Hash
	if err := s.CreateAuthCode(ctx, again); err != nil {
		t.Fatalf("an authorization code with a purged one's hash: %v", err)
	}
	y2 := newDeviceCode(y.UserCode, now)
	y2.Hash = y.Hash
	if err := s.CreateDeviceCode(ctx, y2); err != nil {
		t.Fatalf("a device code with a purged one's hash and user code: %v", err)
	}
	if n, err := s.PurgeOAuthGrants(ctx, now); err != nil || n != 0 {
		t.Fatalf("second purge = %d, %v; want 0", n, err)
	}
}
