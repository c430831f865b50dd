package auth_test

import (
	"errors"
	"testing"

	"tether/auth"
	"tether/storage"
)

// TestPromotedSessionNeedsFactor: a manager (second factor optional)
// signed in with a password alone, then promoted to admin (required), can
// neither use nor refresh that session: the account signs in again and is
// led to enroll. A session opened with a second factor is not touched by
// the promotion of an account that has one.
func TestPromotedSessionNeedsFactor(t *testing.T) {
	w := newWorld(t)
	w.user("mia", storage.RoleManager)
	g, err := w.signIn("mia")
	if err != nil {
		t.Fatalf("a manager without a factor signs in with a password: %v", err)
	}
	if _, err := w.svc.Authenticate(w.ctx, g.AccessToken); err != nil {
		t.Fatalf("before the promotion: %v", err)
	}
	admin := storage.RoleAdmin
	if _, err := w.users.Update(w.ctx, auth.CLI, g.User.ID, auth.UserPatch{Role: &admin}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.Authenticate(w.ctx, g.AccessToken); !errors.Is(err, auth.ErrSessionNeedsFactor) {
		t.Errorf("the access token after the promotion: %v", err)
	}
	if _, err := w.svc.Refresh(w.ctx, g.RefreshToken, ""); !errors.Is(err, auth.ErrSessionNeedsFactor) {
		t.Errorf("the refresh after the promotion: %v", err)
	}
	if _, err := w.svc.Renew(w.ctx, g.AccessToken, ""); !errors.Is(err, auth.ErrSessionNeedsFactor) {
		t.Errorf("the renewal after the promotion: %v", err)
	}
	// Signing in again leads through enrollment, and that session works.
	_, g2 := w.enrollAtSignIn("mia")
	if _, err := w.svc.Authenticate(w.ctx, g2.AccessToken); err != nil {
		t.Fatalf("a session with the factor: %v", err)
	}
	if _, err := w.svc.Refresh(w.ctx, g2.RefreshToken, ""); err != nil {
		t.Fatalf("its refresh: %v", err)
	}
}

// TestPasswordOnlyAdminSessionEnds: an admin session with no second factor
// in its amr (opened before the policy, or before factors existed) is
// refused once the admin policy is required; with the policy optional it
// keeps working.
func TestPasswordOnlyAdminSessionEnds(t *testing.T) {
	for _, policy := range []auth.MFAPolicy{auth.MFARequired, auth.MFAOptional} {
		t.Run(string(policy), func(t *testing.T) {
			w := newWorld(t, func(c *auth.Config) { c.AdminMFA = auth.MFAOptional })
			w.user("root", storage.RoleAdmin)
			g, err := w.signIn("root")
			if err != nil {
				t.Fatal(err)
			}
			// The same store served by a server with the policy to test.
			later := w.serviceWith(func(c *auth.Config) { c.AdminMFA = policy })
			_, err = later.Authenticate(w.ctx, g.AccessToken)
			if policy == auth.MFARequired && !errors.Is(err, auth.ErrSessionNeedsFactor) {
				t.Errorf("required: %v", err)
			}
			if policy == auth.MFAOptional && err != nil {
				t.Errorf("optional: %v", err)
			}
		})
	}
}

// serviceWith is another server on w's store, its config changed.
func (w *world) serviceWith(mutate func(*auth.Config)) *auth.Service {
	w.t.Helper()
	cfg := auth.DefaultConfig()
	mutate(&cfg)
	svc, err := auth.NewService(w.ctx, cfg, w.store, auth.NewHasher(cheap), validatorFor(w.t), auth.WithClock(w.clock.Now))
	if err != nil {
		w.t.Fatal(err)
	}
	return svc
}
