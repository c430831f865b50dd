package auth_test

import (
	"errors"
	"testing"

	"tether"
	"tether/auth"
	"tether/storage"
)

// stillWorks reports which uses of a grant still work: its access token,
// its renewal and its refresh token.
func (w *world) stillWorks(g auth.Grant, deviceID string) map[string]error {
	w.t.Helper()
	_, authErr := w.svc.Authenticate(w.ctx, g.AccessToken)
	_, renewErr := w.svc.Renew(w.ctx, g.AccessToken, deviceID)
	_, refreshErr := w.svc.Refresh(w.ctx, g.RefreshToken, deviceID)
	return map[string]error{"access token": authErr, "renewal": renewErr, "refresh token": refreshErr}
}

// TestPasswordResetEndsSessions is the attack of a password reset that
// leaves the old tokens working: after a manager resets a worker's
// password, nothing issued before works any more.
func TestPasswordResetEndsSessions(t *testing.T) {
	w := newWorld(t)
	onPhone := w.mustLogin()
	onOther, err := w.login("walter", payload(w.other.IMEI))
	if err != nil {
		t.Fatal(err)
	}
	manager := auth.Principal{Kind: auth.KindUser, ID: w.boss.ID, Role: storage.RoleManager}
	if err := w.users.SetPassword(w.ctx, manager, w.worker.ID, "a brand new password"); err != nil {
		t.Fatal(err)
	}
	for name, g := range map[string]auth.Grant{"phone": onPhone, "other": onOther} {
		for use, err := range w.stillWorks(g, g.Session.DeviceID) {
			if !errors.Is(err, auth.ErrSessionRevoked) {
				t.Errorf("%s's %s after the reset: %v; want session_revoked", name, use, err)
			}
		}
	}
	sess, _ := w.store.GetSession(w.ctx, onPhone.Session.ID)
	if sess.RevokeReason != "password_reset" {
		t.Fatalf("revoke reason %q; want password_reset", sess.RevokeReason)
	}
	events, err := w.svc.Events(w.ctx, storage.EventFilter{Action: "user.password", UserID: w.worker.ID})
	if err != nil || len(events.Items) != 1 || events.Items[0].Actor != manager.String() {
		t.Fatalf("the reset's audit event: %+v, %v", events.Items, err)
	}
}

// TestPasswordChangeEndsOtherSessions: a user changing their own password
// keeps the session they changed it from and ends every other one; the
// current password is checked under the login throttle.
func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	w := newWorld(t)
	here := w.mustLogin()
	elsewhere, err := w.login("walter", payload(w.other.IMEI))
	if err != nil {
		t.Fatal(err)
	}
	id, err := w.svc.Authenticate(w.ctx, here.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.svc.ChangePassword(w.ctx, id, password, "short"); fieldCode(err, "newPassword") != "password_length" {
		t.Fatalf("a short new password: %v; want newPassword password_length", err)
	}
	if err := w.svc.ChangePassword(w.ctx, id, password, "another good password"); err != nil {
		t.Fatal(err)
	}
	for use, err := range w.stillWorks(elsewhere, w.other.ID) {
		if !errors.Is(err, auth.ErrSessionRevoked) {
			t.Errorf("the other session's %s after the change: %v; want session_revoked", use, err)
		}
	}
	for use, err := range w.stillWorks(here, w.phone.ID) {
		if err != nil {
			t.Errorf("the changing session's %s: %v; want it to work", use, err)
		}
	}
	if _, err := w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: "another good password", Device: payload(w.phone.IMEI)}); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}

	// A stolen token cannot be used to guess the current password: wrong
	// ones are failures of the account, held back after five.
	id, err = w.svc.Authenticate(w.ctx, w.mustLoginWith("another good password").AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := w.svc.ChangePassword(w.ctx, id, "a guess", "yet another password"); fieldCode(err, "currentPassword") != "password_wrong" {
			t.Fatalf("guess %d: %v; want currentPassword password_wrong", i+1, err)
		}
	}
	tooMany(t, w.svc.ChangePassword(w.ctx, id, "another good password", "yet another password"), "the right current password after five wrong ones")
}

func (w *world) mustLoginWith(pw string) auth.Grant {
	w.t.Helper()
	g, err := w.svc.Login(w.ctx, auth.LoginRequest{Username: "walter", Password: pw, Device: payload(w.phone.IMEI), Persistent: true})
	if err != nil {
		w.t.Fatal(err)
	}
	return g
}

// fieldCode is the code of field in a validation error, or "".
func fieldCode(err error, field string) string {
	var ve *tether.ValidationError
	if !errors.As(err, &ve) {
		return ""
	}
	for _, f := range ve.Fields {
		if f.Field == field {
			return f.Code
		}
	}
	return ""
}
