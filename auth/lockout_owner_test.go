package auth_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"tether"
	"tether/auth"
	"tether/storage"
)

// fromAddress is a context of a request from the ith of many addresses.
func fromAddress(i int) context.Context {
	return tether.WithOrigin(context.Background(), tether.Origin{IP: fmt.Sprintf("203.0.%d.%d", i/250, i%250+1)})
}

// TestOwnerSignsInAfterAttack: someone who knows only an admin's username
// sends wrong passwords from many addresses until the account is held
// back, then stops. Once the wait is over, the admin's right password and
// the right code 20 seconds later sign in: the password, taken back while
// the second step is due, does not start the wait again for the code.
func TestOwnerSignsInAfterAttack(t *testing.T) {
	w := newWorld(t)
	w.user("root", storage.RoleAdmin)
	en, _ := w.enrollAtSignIn("root")
	w.nextStep()
	wrong := 0
	for i := 0; wrong < 32 && i < 10000; i++ {
		_, err := w.svc.Login(fromAddress(i%200), auth.LoginRequest{Username: "root", Password: "wrong wrong wrong", SecondFactor: true})
		var te *tether.Error
		switch {
		case errors.Is(err, auth.ErrInvalidCredentials):
			wrong++
		case errors.As(err, &te) && te.RetryAfter > 0:
			w.clock.Advance(te.RetryAfter)
		default:
			t.Fatalf("attacker: %v", err)
		}
	}
	for range 100 {
		_, err := w.svc.Login(fromAddress(999), auth.LoginRequest{Username: "root", Password: password, SecondFactor: true})
		var te *tether.Error
		if errors.As(err, &te) && te.RetryAfter > 0 {
			w.clock.Advance(te.RetryAfter)
			continue
		}
		tok := interrupted(t, err, auth.ErrMFARequired, "mfaToken")
		w.clock.Advance(20 * time.Second)
		w.nextStep()
		if _, err := w.svc.LoginSecondFactor(fromAddress(999), tok, rfc6238(t, en.secret, w.clock.Now())); err != nil {
			t.Fatalf("the owner's right code 20 s after the right password: %v", err)
		}
		return
	}
	t.Fatal("the owner's password was never let through")
}
