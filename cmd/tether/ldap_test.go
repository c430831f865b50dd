package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tether/directory/ldaptest"
)

// ldapSite is a slapd with alice in the field group, and the flags that
// point Tether at it.
func ldapSite(t *testing.T, opts ...ldaptest.Option) (*ldaptest.Server, []string) {
	t.Helper()
	srv := ldaptest.Start(t, opts...)
	alice := srv.AddPerson(t, ldaptest.Person{UID: "alice", Password: "alice's secret", GivenName: "Alice"})
	field := srv.AddGroup(t, "field", alice)
	pwFile := filepath.Join(t.TempDir(), "bind-password")
	if err := os.WriteFile(pwFile, []byte(ldaptest.ServicePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, []string{
		"--ldap-url", srv.URL, "--ldap-bind-dn", ldaptest.ServiceDN, "--ldap-bind-password-file", pwFile,
		"--ldap-user-base", ldaptest.PeopleDN, "--ldap-group-base", ldaptest.GroupsDN, "--ldap-worker-group", field,
		"--ldap-password-changed-attribute", "-",
	}
}

// with returns flags with one flag's value replaced.
func with(flags []string, name, value string) []string {
	out := append([]string(nil), flags...)
	for i := 0; i+1 < len(out); i += 2 {
		if out[i] == name {
			out[i+1] = value
			return out
		}
	}
	return append(out, name, value)
}

// TestServeRefusesABadDirectory: a configuration the directory refuses
// stops the server at start with one line naming the flag at fault.
func TestServeRefusesABadDirectory(t *testing.T) {
	srv, flags := ldapSite(t, ldaptest.WithTLS())
	wrongPassword := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrongPassword, []byte("not it"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		flags []string
		want  string
	}{
		"bind refused":       {with(flags, "--ldap-bind-password-file", wrongPassword), "--ldap-bind-password-file"},
		"base not found":     {with(flags, "--ldap-user-base", "ou=nobody,"+ldaptest.Suffix), "--ldap-user-base"},
		"bad filter":         {with(flags, "--ldap-user-filter", "(uid={username}"), "--ldap-user-filter"},
		"a CA that is not":   {with(with(flags, "--ldap-url", srv.LDAPSURL), "--ldap-ca-file", ldaptest.ForeignCA(t)), "--ldap-ca-file"},
		"password file gone": {with(flags, "--ldap-bind-password-file", filepath.Join(t.TempDir(), "none")), "--ldap-bind-password-file"},
	} {
		t.Run(name, func(t *testing.T) {
			r := runCLI(t, "", nil, append([]string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir()}, c.flags...)...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			if r.code != 1 || !strings.HasPrefix(last, "tether: ") || !strings.Contains(last, c.want) {
				t.Fatalf("exit %d, last line %q; want 1 and a line naming %s\n%s", r.code, last, c.want, r.stderr)
			}
		})
	}
}

// TestLDAPTest: "tether ldap test" shows what a sign-in would see.
func TestLDAPTest(t *testing.T) {
	_, flags := ldapSite(t)
	r := runCLI(t, "alice's secret\n", nil, append([]string{"ldap", "test", "--username", "ALICE", "--password-stdin"}, flags...)...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"DN:        " + ldaptest.PersonDN("alice"), "username:  alice", "role:      worker", "disabled:  false", "the bind succeeded"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "alice's secret") {
		t.Fatal("the password was printed")
	}
	r = runCLI(t, "wrong\n", nil, append([]string{"ldap", "test", "--username", "alice", "--password-stdin"}, flags...)...)
	if r.code != 1 || !strings.Contains(r.stdout, "refused") {
		t.Fatalf("a wrong password: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", nil, append([]string{"ldap", "test", "--username", "nobody", "--no-password"}, flags...)...)
	if r.code != 1 || !strings.Contains(r.stdout, "not found") {
		t.Fatalf("an unknown name: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestServeWithADirectory: the real server, configured by flags, signs a
// directory user in over HTTP and records them.
func TestServeWithADirectory(t *testing.T) {
	_, flags := ldapSite(t)
	dir := t.TempDir()
	if r := runCLI(t, "", nil, "device", "add", "--data", dir, "--imei", "490154203237518"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	srv := startServer(t, dir, flags...)
	base := "http://" + srv.addr
	payload := `{"imei":"490154203237518","hasIccCard":true,"iccIds":["89445001021983048261"],"osVersion":{"api":34,"name":"14"},` +
		`"deviceInfo":{"manufacturer":"samsung","model":"SM-G991B"},"appVersion":"3.2.1"}`
	code, m := request(t, "POST", base+"/v1/auth/login", "", `{"username":"alice","password":"alice's secret","device":`+payload+`}`)
	if code != 200 || m["user"].(map[string]any)["source"] != "ldap" {
		t.Fatalf("a directory user's login: %d %v", code, m)
	}
	srv.stop(t) // its log is read once it is whole
	if strings.Contains(srv.stderr.String(), "alice's secret") {
		t.Fatal("the password reached the log")
	}
}
