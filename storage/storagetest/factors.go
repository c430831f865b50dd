package storagetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"tether/storage"
)

// newMFA is a user's second factors as auth/ keeps them: a confirmed TOTP
// factor and a passkey, one pending, recovery code hashes and a spent
// sign-in step.
func newMFA() *storage.UserMFA {
	return &storage.UserMFA{
		Factors: []storage.Factor{{
			ID: storage.NewID(storage.PrefixFactor), Kind: storage.FactorTOTP, Name: "phone", CreatedAt: now,
			LastUsedAt: now.Add(time.Minute), TOTP: &storage.TOTPSecret{Secret: randBytes(48), Sealed: true, LastStep: 59_373_000},
		}, {
			ID: storage.NewID(storage.PrefixFactor), Kind: storage.FactorWebAuthn, Name: "laptop", CreatedAt: now,
			WebAuthn: &storage.WebAuthnCredential{
				ID: randBytes(32), PublicKey: randBytes(77), AttestationType: "none", AAGUID: randBytes(16), SignCount: 4_000_000_000,
				Transports: []string{"internal", "hybrid"}, UserVerified: true, BackupEligible: true, BackupState: true,
			},
		}},
		Pending: &storage.Factor{
			ID: storage.NewID(storage.PrefixFactor), Kind: storage.FactorTOTP, CreatedAt: now, Attempt: "ses_x",
			ExpiresAt: now.Add(10 * time.Minute), TOTP: &storage.TOTPSecret{Secret: randBytes(20)},
		},
		RecoveryCodes:   [][]byte{randBytes(32), randBytes(32), randBytes(32)},
		RecoveryCodesAt: now,
		Spent:           []storage.SpentStep{{ID: "step-1", Until: now.Add(5 * time.Minute)}},
	}
}

// testUserFactors: a user's factors, recovery codes and spent steps are
// kept whole, as every other field of the record; the caller's copies are
// its own; and an update that uses one recovery code up is atomic, so a
// code fired many times at once works once.
func testUserFactors(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u := newUser("Grace", storage.RoleAdmin)
	u.MFA = newMFA()
	want := u.MFA.Clone()
	created := mustCreateUser(t, s, u)
	sameJSON(t, "created user's factors", created.MFA, want)
	// What the caller handed in and got back are its own.
	u.MFA.Factors[0].TOTP.Secret[0] ^= 0xff
	u.MFA.Factors[1].WebAuthn.PublicKey[0] ^= 0xff
	u.MFA.Factors[1].WebAuthn.Transports[0] = "usb"
	u.MFA.RecoveryCodes[0][0] ^= 0xff
	created.MFA.Factors[0].TOTP.Secret[1] ^= 0xff
	created.MFA.Spent[0].ID = "changed"

	got, err := s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "stored factors", got.MFA, want)
	byName, err := s.GetUserByUsername(ctx, "grace")
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "stored factors by username", byName.MFA, want)
	got.MFA.Pending.TOTP.Secret[0] ^= 0xff
	got.MFA.Factors[1].WebAuthn.ID[0] ^= 0xff
	got.MFA.RecoveryCodes[1][0] ^= 0xff
	again, err := s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "factors after changing a copy", again.MFA, want)
	page, err := s.ListUsers(ctx, storage.UserFilter{})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("ListUsers = %v, %v", page.Items, err)
	}
	sameJSON(t, "listed factors", page.Items[0].MFA, want)

	// The update function gets its own copy: changing it and then failing
	// writes nothing.
	_, err = s.UpdateUser(ctx, u.ID, func(cur storage.User) (storage.User, error) {
		cur.MFA.Factors[0].TOTP.LastStep = 1
		cur.MFA.RecoveryCodes = nil
		return cur, errors.New("refused")
	})
	if err == nil {
		t.Fatal("UpdateUser returning an error succeeded")
	}
	again, err = s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "factors after a refused update", again.MFA, want)

	// The pending factor confirmed: it moves to the factors.
	updated, err := s.UpdateUser(ctx, u.ID, func(cur storage.User) (storage.User, error) {
		p := *cur.MFA.Pending
		p.Attempt, p.ExpiresAt = "", time.Time{}
		cur.MFA.Factors = append(cur.MFA.Factors, p)
		cur.MFA.Pending = nil
		return cur, nil
	})
	if err != nil || len(updated.MFA.Factors) != 3 || updated.MFA.Pending != nil {
		t.Fatalf("confirm pending: %+v, %v", updated.MFA, err)
	}
	again, err = s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "factors after confirming", again.MFA, updated.MFA)

	// Every factor removed (a reset): none is left.
	if _, err := s.UpdateUser(ctx, u.ID, func(cur storage.User) (storage.User, error) {
		cur.MFA = nil
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	again, err = s.GetUser(ctx, u.ID)
	if err != nil || again.MFA != nil {
		t.Fatalf("after reset: %+v, %v; want no factors", again.MFA, err)
	}
}

// testRecoveryCodeOnce: many updates that each use the same recovery code
// up, at once: exactly one finds it.
func testRecoveryCodeOnce(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u := newUser("Hopper", storage.RoleManager)
	u.MFA = newMFA()
	code := bytes.Clone(u.MFA.RecoveryCodes[1])
	mustCreateUser(t, s, u)
	errUsed := errors.New("no such code")
	const n = 16
	var wg sync.WaitGroup
	results := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateUser(ctx, u.ID, func(cur storage.User) (storage.User, error) {
				i := slices.IndexFunc(cur.MFA.RecoveryCodes, func(h []byte) bool { return bytes.Equal(h, code) })
				if i < 0 {
					return cur, errUsed
				}
				cur.MFA.RecoveryCodes = slices.Delete(cur.MFA.RecoveryCodes, i, i+1)
				cur.MFA.Spent = append(cur.MFA.Spent, storage.SpentStep{ID: storage.NewID("stp_"), Until: now})
				return cur, nil
			})
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	ok := 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, errUsed):
			t.Fatalf("UpdateUser: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d updates used the code; want 1", ok)
	}
	got, err := s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.MFA.RecoveryCodes) != 2 || len(got.MFA.Spent) != 2 {
		t.Fatalf("after: %d codes, %d spent; want 2 and 2", len(got.MFA.RecoveryCodes), len(got.MFA.Spent))
	}
}

// testSessionAMR: how the person signed in is kept with a session, and
// with a device code's approval.
func testSessionAMR(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, _ := fixtures(t, s)
	sess := newSession(u.ID, "")
	sess.AMR = []string{"pwd", "otp"}
	created := mustCreateSession(t, s, sess)
	if !slices.Equal(created.AMR, sess.AMR) {
		t.Fatalf("created session AMR %v; want %v", created.AMR, sess.AMR)
	}
	got, err := s.GetSession(ctx, sess.ID)
	if err != nil || !slices.Equal(got.AMR, []string{"pwd", "otp"}) {
		t.Fatalf("GetSession AMR = %v, %v; want [pwd otp]", got.AMR, err)
	}
	got.AMR[1] = "changed"
	b, err := s.GetSessionBundle(ctx, sess.ID)
	if err != nil || !slices.Equal(b.Session.AMR, []string{"pwd", "otp"}) {
		t.Fatalf("GetSessionBundle AMR = %v, %v; want [pwd otp]", b.Session.AMR, err)
	}

	dc := newDeviceCode("WXYZBCDF", now)
	if err := s.CreateDeviceCode(ctx, dc); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateDeviceCode(ctx, dc.Hash, func(x storage.DeviceCode) (storage.DeviceCode, error) {
		x.Status, x.UserID, x.AuthTime, x.AMR = storage.DeviceCodeApproved, u.ID, now, []string{"pwd", "recovery"}
		return x, nil
	}); err != nil {
		t.Fatal(err)
	}
	approved, err := s.UpdateDeviceCode(ctx, dc.Hash, func(x storage.DeviceCode) (storage.DeviceCode, error) { return x, nil })
	if err != nil || !slices.Equal(approved.AMR, []string{"pwd", "recovery"}) {
		t.Fatalf("device code AMR = %v, %v; want [pwd recovery]", approved.AMR, err)
	}
}
