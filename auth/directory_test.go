package auth_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"tether"
	"tether/auth"
	"tether/device"
	"tether/directory"
	"tether/directory/ldaptest"
	"tether/storage"
)

// company is a directory with people in role groups, and a Tether service
// signing them in: alice a worker, bob a manager, carol an admin, dave in
// no group, erin disabled.
type company struct {
	*world
	srv                       *ldaptest.Server
	dir                       *directory.Directory
	svc                       *auth.Service
	workers, managers, admins string
}

const directoryPassword = "directory secret"

func newCompany(t *testing.T, store storage.Store) *company {
	t.Helper()
	srv := ldaptest.Start(t)
	c := &company{world: newWorldOn(t, store), srv: srv}
	dns := map[string]string{}
	for _, p := range []ldaptest.Person{
		{UID: "alice", GivenName: "Alice", SN: "Able", Mail: "alice@example.com", EmployeeNumber: "1001"},
		{UID: "bob", GivenName: "Bob", SN: "Baker"},
		{UID: "carol", GivenName: "Carol", SN: "Cook"},
		{UID: "dave"},
		{UID: "erin", Attrs: map[string][]string{"employeeType": {"disabled"}}},
		// A directory person with a local user's name: the local one wins.
		{UID: "walter"},
	} {
		p.Password = directoryPassword
		dns[p.UID] = srv.AddPerson(t, p)
	}
	c.workers = srv.AddGroup(t, "field", dns["alice"], dns["erin"], dns["walter"])
	c.managers = srv.AddGroup(t, "office", dns["bob"])
	c.admins = srv.AddGroup(t, "it", dns["carol"])
	d, err := directory.New(directory.Config{
		URLs: []string{srv.URL}, BindDN: ldaptest.ServiceDN, BindPassword: ldaptest.ServicePassword,
		UserBase: ldaptest.PeopleDN, GroupBase: ldaptest.GroupsDN,
		WorkerGroup: c.workers, ManagerGroup: c.managers, AdminGroup: c.admins,
		DisabledFilter: "(employeeType=disabled)", PasswordChangedAttribute: "description",
		ConnectTimeout: time.Second, OperationTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	c.dir = d
	c.svc = c.service(t)
	return c
}

// service is a server of the company's, sharing its store and directory.
func (c *company) service(t *testing.T) *auth.Service {
	t.Helper()
	// These tests sign admins in with a password alone: second factors
	// are mfa_test.go's.
	cfg := auth.DefaultConfig()
	cfg.AdminMFA = auth.MFAOptional
	svc, err := auth.NewService(c.ctx, cfg, c.store, auth.NewHasher(cheap), validatorFor(t),
		auth.WithClock(c.clock.Now), auth.WithDirectory(c.dir))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func (c *company) login(ctx context.Context, username, pw string, p *device.Payload) (auth.Grant, error) {
	return c.svc.Login(ctx, auth.LoginRequest{Username: username, Password: pw, Device: p, Persistent: true})
}

// TestDirectoryLogin: people of the directory sign in with their directory
// passwords and get a user record from what it says; everyone it does not
// let in gets what a wrong local password gets; local users go on as they
// were, and a local user of the same name wins.
func TestDirectoryLogin(t *testing.T) {
	c := newCompany(t, newStore(t))
	g, err := c.login(c.ctx, "Alice", directoryPassword, payload(c.phone.IMEI))
	if err != nil {
		t.Fatalf("alice from the directory: %v", err)
	}
	u := g.User
	if u.Username != "alice" || u.Role != storage.RoleWorker || u.FirstName != "Alice" || u.LastName != "Able" || u.Email != "alice@example.com" ||
		u.Directory == nil || u.Directory.DN != ldaptest.PersonDN("alice") || u.Directory.EmployeeNumber != "1001" || u.PasswordHash != "" {
		t.Fatalf("alice's record: %+v (directory %+v)", u, u.Directory)
	}
	events, _ := c.svc.Events(c.ctx, storage.EventFilter{Action: "user.directory_login"})
	if len(events.Items) != 1 || events.Items[0].Detail["dn"] != ldaptest.PersonDN("alice") {
		t.Fatalf("the directory login's audit event: %+v", events.Items)
	}
	// The second sign-in finds the record, and tokens work as a local
	// user's do.
	again, err := c.login(c.ctx, "alice", directoryPassword, payload(c.phone.IMEI))
	if err != nil || again.User.ID != u.ID {
		t.Fatalf("alice again: %+v, %v", again.User, err)
	}
	if _, err := c.svc.Refresh(c.ctx, again.RefreshToken, c.phone.ID); err != nil {
		t.Fatalf("a directory user's refresh: %v", err)
	}
	// Managers and admins sign in without a handset, with their roles.
	for name, role := range map[string]storage.Role{"bob": storage.RoleManager, "carol": storage.RoleAdmin} {
		g, err := c.login(c.ctx, name, directoryPassword, nil)
		if err != nil || g.User.Role != role {
			t.Fatalf("%s: %v, %v; want a %s", name, g.User.Role, err, role)
		}
	}
	// Everyone else: invalid_credentials, like a wrong local password.
	for _, attempt := range []struct{ name, pw string }{
		{"alice", "wrong"}, {"nobody", directoryPassword}, {"dave", directoryPassword}, {"erin", directoryPassword},
		{"alice", ""}, {"*", directoryPassword}, {"*)(uid=*", directoryPassword}, {"alice)(uid=*", directoryPassword},
		{"alice\x00", directoryPassword}, {`alice\`, directoryPassword}, {strings.Repeat("a", 300), directoryPassword},
	} {
		_, err := c.login(c.from("192.0.2."+fmt.Sprint(len(attempt.name)%200)), attempt.name, attempt.pw, payload(c.phone.IMEI))
		if !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("%q with %q: %v; want invalid_credentials", attempt.name, attempt.pw, err)
		}
	}
	if users, _ := c.store.ListUsers(c.ctx, storage.UserFilter{Source: storage.SourceDirectory}); len(users.Items) != 3 {
		t.Fatalf("%d directory users recorded; want alice, bob and carol", len(users.Items))
	}
	// A local user of the same name wins: walter's directory password is
	// no way in, his local one is.
	if _, err := c.login(c.ctx, "walter", directoryPassword, payload(c.phone.IMEI)); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("walter with the directory's password: %v; want invalid_credentials", err)
	}
	if _, err := c.login(c.ctx, "walter", password, payload(c.phone.IMEI)); err != nil {
		t.Fatalf("walter, local: %v", err)
	}
}

// TestDirectoryOwnsWhatItOwns: a directory user's names, email, role and
// password are the directory's; disabling and ending sessions are
// Tether's.
func TestDirectoryOwnsWhatItOwns(t *testing.T) {
	c := newCompany(t, newStore(t))
	g, err := c.login(c.ctx, "alice", directoryPassword, payload(c.phone.IMEI))
	if err != nil {
		t.Fatal(err)
	}
	admin := auth.CLI
	name, role := "Alicia", storage.RoleManager
	for what, patch := range map[string]auth.UserPatch{"first name": {FirstName: &name}, "role": {Role: &role}} {
		if _, err := c.users.Update(c.ctx, admin, g.User.ID, patch); !errors.Is(err, auth.ErrDirectoryManaged) {
			t.Errorf("changing a directory user's %s: %v; want directory_managed", what, err)
		}
	}
	if err := c.users.SetPassword(c.ctx, admin, g.User.ID, "a local password"); !errors.Is(err, auth.ErrDirectoryManaged) {
		t.Errorf("setting a directory user's password: %v; want directory_managed", err)
	}
	id, err := c.svc.Authenticate(c.ctx, g.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.svc.ChangePassword(c.ctx, id, directoryPassword, "a local password"); !errors.Is(err, auth.ErrDirectoryManaged) {
		t.Errorf("a directory user changing their password in Tether: %v; want directory_managed", err)
	}
	yes, features := true, []string{"scan"}
	if u, err := c.users.Update(c.ctx, admin, g.User.ID, auth.UserPatch{Features: &features, Disabled: &yes}); err != nil || !u.Disabled {
		t.Fatalf("disabling a directory user: %+v, %v", u, err)
	}
	if _, err := c.svc.Authenticate(c.ctx, g.AccessToken); !errors.Is(err, auth.ErrSessionRevoked) {
		t.Fatalf("a disabled directory user's token: %v", err)
	}
	// A manager's disabling is not undone by the directory.
	if _, err := c.login(c.ctx, "alice", directoryPassword, payload(c.phone.IMEI)); !errors.Is(err, auth.ErrAccountDisabled) {
		t.Fatalf("alice disabled by a manager: %v; want account_disabled", err)
	}
	if _, err := c.svc.SyncDirectory(c.ctx); err != nil {
		t.Fatal(err)
	}
	if u, _ := c.store.GetUser(c.ctx, g.User.ID); !u.Disabled {
		t.Fatal("the sync enabled a user a manager disabled")
	}
}

// TestDirectorySync: within one sync, a user the directory no longer lets
// in loses every session; a role change applies and a role gone down ends
// sessions; a password changed in the directory ends sessions; a user the
// directory lets in again signs in again.
func TestDirectorySync(t *testing.T) {
	c := newCompany(t, newStore(t))
	grants := map[string]auth.Grant{}
	for name, p := range map[string]*device.Payload{"alice": payload(c.phone.IMEI), "bob": nil, "carol": nil} {
		g, err := c.login(c.ctx, name, directoryPassword, p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		grants[name] = g
	}
	works := func(name string) error {
		_, err := c.svc.Authenticate(c.ctx, grants[name].AccessToken)
		return err
	}
	sync := func() auth.DirectorySync {
		t.Helper()
		r, err := c.svc.SyncDirectory(c.ctx)
		if err != nil || r.Skipped {
			t.Fatalf("sync: %+v, %v", r, err)
		}
		return r
	}
	if r := sync(); r.Checked != 3 || r.Disabled+r.Updated+r.Enabled != 0 {
		t.Fatalf("a sync with nothing to do: %+v", r)
	}

	// Out of the groups, deleted: disabled, sessions gone, with why.
	c.srv.RemoveMember(t, c.workers, ldaptest.PersonDN("alice"))
	c.srv.DeletePerson(t, "carol")
	// Bob is moved down to the field: still in, as a worker, his manager
	// sessions gone.
	c.srv.RemoveMember(t, c.managers, ldaptest.PersonDN("bob"))
	c.srv.AddMember(t, c.workers, ldaptest.PersonDN("bob"))
	if r := sync(); r.Disabled != 2 || r.Updated != 1 {
		t.Fatalf("sync: %+v; want 2 disabled, 1 updated", r)
	}
	for name, reason := range map[string]string{"alice": "directory_disabled", "carol": "directory_disabled", "bob": "role_changed"} {
		var te *tether.Error
		if err := works(name); !errors.As(err, &te) || te.Code != tether.CodeSessionRevoked || te.Extra["reason"] != reason {
			t.Errorf("%s's token after the sync: %v; want session_revoked for %s", name, err, reason)
		}
	}
	disabled, _ := c.svc.Events(c.ctx, storage.EventFilter{Action: "user.directory_disabled"})
	reasons := map[string]string{}
	for _, e := range disabled.Items {
		reasons[e.Username] = e.Reason
	}
	if !strings.Contains(reasons["alice"], "groups") || !strings.Contains(reasons["carol"], "deleted") {
		t.Fatalf("why they were disabled: %v", reasons)
	}
	if u, _ := c.store.GetUserByUsername(c.ctx, "bob"); u.Role != storage.RoleWorker {
		t.Fatalf("bob's role after the sync: %s; want worker", u.Role)
	}
	if _, err := c.login(c.ctx, "alice", directoryPassword, payload(c.phone.IMEI)); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("alice out of the groups: %v", err)
	}

	// Back in the group: the sync enables her, and she signs in.
	c.srv.AddMember(t, c.workers, ldaptest.PersonDN("alice"))
	if r := sync(); r.Enabled != 1 {
		t.Fatalf("sync: %+v; want alice enabled again", r)
	}
	g, err := c.login(c.ctx, "alice", directoryPassword, payload(c.phone.IMEI))
	if err != nil {
		t.Fatalf("alice back in the group: %v", err)
	}
	grants["alice"] = g

	// Her password changed in the directory: her sessions end at the sync.
	c.clock.Advance(time.Minute)
	c.srv.Set(t, ldaptest.PersonDN("alice"), "description", c.clock.Now().UTC().Format("20060102150405Z"))
	sync()
	var te *tether.Error
	if err := works("alice"); !errors.As(err, &te) || te.Extra["reason"] != "password_changed" {
		t.Fatalf("alice's token after a password change in the directory: %v", err)
	}
	if _, err := c.login(c.ctx, "alice", directoryPassword, payload(c.phone.IMEI)); err != nil {
		t.Fatalf("alice after her password change: %v", err)
	}
	last, err := c.svc.LastDirectorySync(c.ctx, auth.CLI)
	if err != nil || last.Outcome != "success" {
		t.Fatalf("the last sync: %+v, %v", last, err)
	}
}

// TestDirectorySyncRefusesMassDisabling: a directory that suddenly has
// none of the users (a service account that lost its read access looks
// like that) makes the sync fail, changing nothing.
func TestDirectorySyncRefusesMassDisabling(t *testing.T) {
	c := newCompany(t, newStore(t))
	var people []ldaptest.Person
	for i := range 12 {
		people = append(people, ldaptest.Person{UID: fmt.Sprintf("picker%02d", i), Password: directoryPassword})
	}
	for _, dn := range c.srv.AddPeople(t, people) {
		c.srv.AddMember(t, c.workers, dn)
	}
	for _, p := range people {
		if _, err := c.login(c.ctx, p.UID, directoryPassword, payload(c.phone.IMEI)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range people {
		c.srv.DeletePerson(t, p.UID)
	}
	if _, err := c.svc.SyncDirectory(c.ctx); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("a sync finding every user gone: %v; want it refused", err)
	}
	if users, _ := c.store.ListUsers(c.ctx, storage.UserFilter{Source: storage.SourceDirectory, Disabled: ptr(true)}); len(users.Items) != 0 {
		t.Fatalf("%d users disabled; want none", len(users.Items))
	}
	last, _ := c.svc.LastDirectorySync(c.ctx, auth.CLI)
	if last.Outcome != "failure" {
		t.Fatalf("the refused sync's event: %+v", last)
	}
}

// TestDirectoryDown: with the directory stopped, its users' logins answer
// directory_unavailable at once (not counted as failures), local users
// sign in, existing sessions refresh, and the sync fails changing nothing;
// once it is back, all is as before.
func TestDirectoryDown(t *testing.T) {
	c := newCompany(t, newStore(t))
	g, err := c.login(c.ctx, "alice", directoryPassword, payload(c.phone.IMEI))
	if err != nil {
		t.Fatal(err)
	}
	c.srv.Stop(t)
	start := time.Now()
	for range 6 { // more than the throttle lets fail
		if _, err := c.login(c.ctx, "alice", directoryPassword, payload(c.phone.IMEI)); !errors.Is(err, auth.ErrDirectoryUnavailable) {
			t.Fatalf("a directory user with the directory down: %v; want directory_unavailable", err)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("six refusals took %s", d)
	}
	if up, known := c.svc.DirectoryUp(); up || !known {
		t.Fatalf("directory up %v (known %v); want down", up, known)
	}
	if _, err := c.login(c.ctx, "walter", password, payload(c.other.IMEI)); err != nil {
		t.Fatalf("a local user with the directory down: %v", err)
	}
	next, err := c.svc.Refresh(c.ctx, g.RefreshToken, c.phone.ID)
	if err != nil {
		t.Fatalf("a directory user's refresh with the directory down: %v", err)
	}
	if _, err := c.svc.SyncDirectory(c.ctx); !errors.Is(err, auth.ErrDirectoryUnavailable) {
		t.Fatalf("a sync with the directory down: %v", err)
	}
	if _, err := c.svc.Authenticate(c.ctx, next.AccessToken); err != nil {
		t.Fatalf("the refreshed token after a failed sync: %v", err)
	}
	c.srv.Start(t)
	if _, err := c.login(c.ctx, "alice", directoryPassword, payload(c.phone.IMEI)); err != nil {
		t.Fatalf("the directory back: %v", err)
	}
	if up, _ := c.svc.DirectoryUp(); !up {
		t.Fatal("directory still down")
	}
}

// slowDirectory holds each lookup until let go, so two syncs overlap.
type slowDirectory struct {
	auth.Directory
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (d *slowDirectory) Lookup(ctx context.Context, username string) (auth.DirectoryUser, error) {
	d.once.Do(func() { close(d.started) })
	<-d.release
	return d.Directory.Lookup(ctx, username)
}

// TestDirectorySyncOnePerSite: two servers on one PostgreSQL database: of
// two syncs at once, one runs and the other skips.
func TestDirectorySyncOnePerSite(t *testing.T) {
	c := newCompany(t, pgStore(t))
	if _, err := c.login(c.ctx, "alice", directoryPassword, payload(c.phone.IMEI)); err != nil {
		t.Fatal(err)
	}
	slow := &slowDirectory{Directory: c.dir, started: make(chan struct{}), release: make(chan struct{})}
	servers := make([]*auth.Service, 2)
	for i := range servers {
		svc, err := auth.NewService(c.ctx, auth.DefaultConfig(), c.store, auth.NewHasher(cheap), validatorFor(t), auth.WithDirectory(slow))
		if err != nil {
			t.Fatal(err)
		}
		servers[i] = svc
	}
	first := make(chan auth.DirectorySync, 1)
	go func() {
		r, err := servers[0].SyncDirectory(c.ctx)
		if err != nil {
			t.Error(err)
		}
		first <- r
	}()
	<-slow.started
	second, err := servers[1].SyncDirectory(c.ctx)
	close(slow.release)
	if err != nil || !second.Skipped {
		t.Fatalf("the second server's sync while the first runs: %+v, %v; want skipped", second, err)
	}
	if r := <-first; r.Skipped || r.Checked != 1 {
		t.Fatalf("the first server's sync: %+v", r)
	}
	// Once it is done, the other may.
	if r, err := servers[1].SyncDirectory(c.ctx); err != nil || r.Skipped {
		t.Fatalf("the second server's sync afterwards: %+v, %v", r, err)
	}
}
