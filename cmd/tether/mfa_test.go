package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"tether/auth"
	"tether/storage"
)

// TestMFAFlags: --admin-mfa and --manager-mfa (or TETHER_ADMIN_MFA,
// TETHER_MANAGER_MFA) set each role's second-factor policy; admins must
// have one and managers may, by default.
func TestMFAFlags(t *testing.T) {
	cases := []struct {
		name           string
		args           []string
		env            map[string]string
		admin, manager auth.MFAPolicy
	}{
		{"default", nil, nil, auth.MFARequired, auth.MFAOptional},
		{"flags", []string{"--admin-mfa", "optional", "--manager-mfa", "required"}, nil, auth.MFAOptional, auth.MFARequired},
		{"environment", nil, map[string]string{"TETHER_MANAGER_MFA": "required"}, auth.MFARequired, auth.MFARequired},
		{"flag wins", []string{"--admin-mfa=required"}, map[string]string{"TETHER_ADMIN_MFA": "optional"}, auth.MFARequired, auth.MFAOptional},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		a := auth.DefaultConfig()
		authFlags(fs, &a)
		cl := &cli{stderr: io.Discard, getenv: func(k string) string { return c.env[k] }}
		if err := cl.parse(fs, c.args); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if a.AdminMFA != c.admin || a.ManagerMFA != c.manager {
			t.Errorf("%s: admin %q, manager %q; want %q, %q", c.name, a.AdminMFA, a.ManagerMFA, c.admin, c.manager)
		}
		if err := a.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// A policy Tether does not know stops the start, naming the two.
	r := runCLI(t, "", nil, "serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--manager-mfa", "sometimes")
	if r.code == 0 || !strings.Contains(r.stderr, `manager second-factor policy "sometimes": want required or optional`) {
		t.Fatalf("--manager-mfa sometimes: exit %d, %s", r.code, r.stderr)
	}
}

// TestUserResetMFA: an admin who lost their authenticator app is let back
// in from the host: tether user reset-mfa removes their factors and
// recovery codes, ends their sessions and audits it; at their next
// sign-in they enroll a new app.
func TestUserResetMFA(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server process")
	}
	dir := t.TempDir()
	if r := runCLI(t, "correct horse\n", nil, "user", "add", "--data", dir, "--username", "ada", "--role", "admin", "--password-stdin"); r.code != 0 {
		t.Fatalf("user add: %s", r.stderr)
	}
	srv := startServer(t, dir)
	base := "http://" + srv.addr
	login := `{"username":"ada","password":"correct horse"}`
	code, p := request(t, "POST", base+"/v1/auth/login", "", login)
	if code != 401 || p["code"] != "mfa_enrollment_required" {
		t.Fatalf("first login: %d %v", code, p)
	}
	tok := p["enrollmentToken"].(string)
	code, setup := request(t, "POST", base+"/v1/auth/mfa/enroll", "", fmt.Sprintf(`{"enrollmentToken":%q}`, tok))
	if code != 200 {
		t.Fatalf("enroll: %d %v", code, setup)
	}
	otp, err := totp.GenerateCode(setup["secret"].(string), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	code, g := request(t, "POST", base+"/v1/auth/mfa/enroll/confirm", "", fmt.Sprintf(`{"enrollmentToken":%q,"code":%q}`, tok, otp))
	if code != 200 {
		t.Fatalf("confirm: %d %v", code, g)
	}
	if code, p := request(t, "POST", base+"/v1/auth/login", "", login); code != 401 || p["code"] != "mfa_required" {
		t.Fatalf("login with a factor: %d %v", code, p)
	}
	srv.stop(t)

	if r := runCLI(t, "", nil, "user", "reset-mfa", "--data", dir); r.code != 2 || !strings.Contains(r.stderr, "--username is required") {
		t.Fatalf("without --username: exit %d, %s", r.code, r.stderr)
	}
	if r := runCLI(t, "", nil, "user", "reset-mfa", "--data", dir, "--username", "nobody"); r.code != 1 || !strings.Contains(r.stderr, `no user "nobody"`) {
		t.Fatalf("an unknown user: exit %d, %s", r.code, r.stderr)
	}
	r := runCLI(t, "", map[string]string{"TETHER_USERNAME": "ADA"}, "user", "reset-mfa", "--data", dir)
	if r.code != 0 || !strings.Contains(r.stderr, "removed 1 second factor(s) and the recovery codes of admin ada; 1 session(s) ended") || r.stdout != "" {
		t.Fatalf("reset-mfa: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	s := openTestStore(t, dir)
	u, err := s.GetUserByUsername(context.Background(), "ada")
	if err != nil || u.MFA.Confirmed() || (u.MFA != nil && len(u.MFA.RecoveryCodes) != 0) {
		t.Fatalf("after the reset: %+v, %v", u.MFA, err)
	}
	live, err := s.ListSessions(context.Background(), storage.SessionFilter{UserID: u.ID, LiveAt: time.Now()})
	if err != nil || len(live.Items) != 0 {
		t.Fatalf("live sessions after the reset: %v, %v", live.Items, err)
	}
	evs, err := s.ListEvents(context.Background(), storage.EventFilter{Action: "user.mfa_reset"})
	if err != nil || len(evs.Items) != 1 || evs.Items[0].Actor != "cli" || evs.Items[0].UserID != u.ID {
		t.Fatalf("user.mfa_reset events: %+v, %v", evs.Items, err)
	}
	s.Close()

	srv = startServer(t, dir)
	if code, p := request(t, "POST", "http://"+srv.addr+"/v1/auth/login", "", login); code != 401 || p["code"] != "mfa_enrollment_required" {
		t.Fatalf("login after the reset: %d %v", code, p)
	}
}
