package auth_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"tether"
	"tether/auth"
	"tether/storage"
)

// wrongCode returns a six-digit code that is none of the codes the clock
// skew takes at now.
func wrongCode(t *testing.T, secret string, now time.Time) string {
	t.Helper()
	taken := map[string]bool{}
	for d := -2; d <= 2; d++ {
		taken[rfc6238(t, secret, now.Add(time.Duration(d)*30*time.Second))] = true
	}
	for i := 0; ; i++ {
		if c := fmt.Sprintf("%06d", 123456+i); !taken[c] {
			return c
		}
	}
}

// codeStep signs root in from its own address and returns the mfaToken.
func codeStep(t *testing.T, w *world, n int) string {
	t.Helper()
	_, err := w.svc.Login(fromAddress(n), auth.LoginRequest{Username: "root", Password: password, SecondFactor: true})
	return interrupted(t, err, auth.ErrMFARequired, "mfaToken")
}

// TestStepTakesFewCodes: a sign-in step takes five wrong codes, then is
// spent, the right code included; a new sign-in goes on. Codes fired at
// once at one step are each written down: no more than five are checked.
func TestStepTakesFewCodes(t *testing.T) {
	w := newWorld(t)
	w.user("root", storage.RoleAdmin)
	en, _ := w.enrollAtSignIn("root")
	w.nextStep()
	tok := codeStep(t, w, 1)
	for i := range 5 {
		if _, err := w.svc.LoginSecondFactor(fromAddress(100+i), tok, wrongCode(t, en.secret, w.clock.Now())); !errors.Is(err, auth.ErrCodeWrong) {
			t.Fatalf("wrong code %d: %v", i+1, err)
		}
	}
	if _, err := w.svc.LoginSecondFactor(fromAddress(200), tok, rfc6238(t, en.secret, w.clock.Now())); err == nil {
		t.Fatal("the right code after five wrong ones on one step signed in")
	}
	tok = codeStep(t, w, 2)
	if _, err := w.svc.LoginSecondFactor(fromAddress(201), tok, rfc6238(t, en.secret, w.clock.Now())); err != nil {
		t.Fatalf("a new sign-in with the right code: %v", err)
	}

	// Twenty wrong codes at once at one new step: five are checked.
	w.nextStep()
	tok = codeStep(t, w, 3)
	var wg sync.WaitGroup
	var checked sync.Map
	for i := range 20 {
		wg.Go(func() {
			_, err := w.svc.LoginSecondFactor(fromAddress(300+i), tok, wrongCode(t, en.secret, w.clock.Now()))
			if errors.Is(err, auth.ErrCodeWrong) {
				checked.Store(i, true)
			}
		})
	}
	wg.Wait()
	n := 0
	checked.Range(func(any, any) bool { n++; return true })
	if n != 5 {
		t.Errorf("%d of 20 codes fired at once at one step were checked; want 5", n)
	}
}

// TestCodesLockAfterWrongOnes: ten wrong codes in a row, over sign-ins,
// lock the account's app codes: the right one is refused with
// too_many_attempts and a Retry-After of the lock, unchecked and
// uncounted. A lock ends on its own; ten more wrong codes lock them again,
// twice as long. A recovery code still signs in and clears the count.
func TestCodesLockAfterWrongOnes(t *testing.T) {
	w := newWorld(t)
	w.user("root", storage.RoleAdmin)
	en, _ := w.enrollAtSignIn("root")
	fire := func(base int) {
		t.Helper()
		for i := range 10 {
			if i%5 == 0 {
				w.nextStep()
			}
			tok := codeStep(t, w, base+i)
			if _, err := w.svc.LoginSecondFactor(fromAddress(base+i), tok, wrongCode(t, en.secret, w.clock.Now())); !errors.Is(err, auth.ErrCodeWrong) {
				t.Fatalf("wrong code %d: %v", i+1, err)
			}
		}
	}
	locked := func(n int, atLeast, atMost time.Duration) string {
		t.Helper()
		w.nextStep()
		tok := codeStep(t, w, n)
		_, err := w.svc.LoginSecondFactor(fromAddress(n), tok, rfc6238(t, en.secret, w.clock.Now()))
		var te *tether.Error
		if !errors.Is(err, auth.ErrCodesLocked) || !errors.As(err, &te) || te.RetryAfter < atLeast || te.RetryAfter > atMost {
			t.Fatalf("the right app code while locked: %v; want too_many_attempts for %v to %v", err, atLeast, atMost)
		}
		return tok
	}
	fire(1000)
	locked(2000, 59*time.Minute, time.Hour)
	if len(w.events("user.mfa_locked")) != 1 {
		t.Errorf("the lock is not in the audit trail")
	}
	// Tried while locked, codes count for nothing: the lock ends on time.
	w.clock.Advance(time.Hour)
	fire(3000)
	tok := locked(4000, 119*time.Minute, 2*time.Hour)
	// The same step takes a recovery code, which clears the count.
	if _, err := w.svc.LoginSecondFactor(fromAddress(4000), tok, en.codes[0]); err != nil {
		t.Fatalf("a recovery code while locked: %v", err)
	}
	w.nextStep()
	tok = codeStep(t, w, 5000)
	if _, err := w.svc.LoginSecondFactor(fromAddress(5000), tok, rfc6238(t, en.secret, w.clock.Now())); err != nil {
		t.Fatalf("the app code after the recovery code: %v", err)
	}
}

// TestResumeVoidAfterReset: a sign-in page's enrollment leaves a resume
// token; an admin who resets the account's factors meanwhile voids it (and
// every other step begun before the reset), so it opens no session that
// claims a factor the account no longer has. A sign-in after the reset is
// led to enroll again.
func TestResumeVoidAfterReset(t *testing.T) {
	w := newWorld(t)
	ada := w.user("ada", storage.RoleAdmin)
	w.user("root", storage.RoleAdmin)
	root, err := w.store.GetUserByUsername(w.ctx, "root")
	if err != nil {
		t.Fatal(err)
	}
	page := auth.LoginRequest{ClientID: "cli_app", SecondFactor: true}
	req := page
	req.Username, req.Password = "ada", password
	_, err = w.svc.SignIn(w.ctx, req)
	enroll := interrupted(t, err, auth.ErrMFAEnrollment, "enrollmentToken")
	setup, err := w.svc.BeginEnrollment(w.ctx, enroll)
	if err != nil {
		t.Fatal(err)
	}
	done, err := w.svc.SignInEnrolled(w.ctx, page, enroll, rfc6238(t, setup.Secret, w.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(time.Second)
	if _, err := w.users.ResetMFA(w.ctx, auth.Principal{Kind: auth.KindUser, ID: root.ID, Role: storage.RoleAdmin}, ada.ID); err != nil {
		t.Fatal(err)
	}
	if in, err := w.svc.SignInResume(w.ctx, page, done.Resume); err == nil {
		t.Fatalf("the resume after the reset signed in, amr %v", in.AMR)
	}
	_, err = w.svc.SignIn(w.ctx, req)
	interrupted(t, err, auth.ErrMFAEnrollment, "enrollmentToken")
}
