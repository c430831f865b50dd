package directory_test

import (
	"context"
	"errors"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tether/auth"
	"tether/directory"
	"tether/directory/ldaptest"
	"tether/storage"
)

// fixture is a directory with people in each role, and some not allowed.
type fixture struct {
	srv                      *ldaptest.Server
	workers, managers, admin string // group DNs
}

// The people of the fixture; each one's password is their uid + "-pw".
var people = []ldaptest.Person{
	{UID: "alice", GivenName: "Alice", SN: "Archer", DisplayName: "Alice Archer", Mail: "alice@example.com", EmployeeNumber: "1001"},
	{UID: "bob", GivenName: "Bob", SN: "Baker"},
	{UID: "carol", GivenName: "Carol", SN: "Cook"},
	{UID: "dave"},  // in no group
	{UID: "erin"},  // a worker, disabled
	{UID: "twin1"}, // twin1 and twin2 both answer to uid=twin
	{UID: "twin2"},
}

func password(uid string) string { return uid + "-pw" }

func newFixture(t *testing.T, opts ...ldaptest.Option) *fixture {
	t.Helper()
	f := &fixture{srv: ldaptest.Start(t, opts...)}
	dn := map[string]string{}
	for _, p := range people {
		p.Password = password(p.UID)
		switch p.UID {
		case "erin":
			p.Attrs = map[string][]string{"employeeType": {"disabled"}}
		case "twin1", "twin2":
			p.Attrs = map[string][]string{"uid": {"twin"}}
		}
		dn[p.UID] = f.srv.AddPerson(t, p)
	}
	f.workers = f.srv.AddGroup(t, "workers", dn["alice"], dn["bob"], dn["erin"], dn["twin1"], dn["twin2"])
	f.managers = f.srv.AddGroup(t, "managers", dn["bob"], dn["carol"])
	f.admin = f.srv.AddGroup(t, "admins", dn["carol"])
	f.srv.AddGroup(t, "canteen", dn["alice"], dn["dave"])
	return f
}

// config is a configuration for the fixture's directory with every
// setting in use and short timeouts.
func (f *fixture) config() directory.Config {
	return directory.Config{
		URLs:             []string{f.srv.URL},
		BindDN:           ldaptest.ServiceDN,
		BindPassword:     ldaptest.ServicePassword,
		UserBase:         ldaptest.PeopleDN,
		GroupBase:        ldaptest.GroupsDN,
		WorkerGroup:      f.workers,
		ManagerGroup:     f.managers,
		AdminGroup:       f.admin,
		DisabledFilter:   "(employeeType=disabled)",
		ConnectTimeout:   2 * time.Second,
		OperationTimeout: 2 * time.Second,
	}
}

func open(t testing.TB, cfg directory.Config) *directory.Directory {
	t.Helper()
	d, err := directory.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	d := open(t, f.config())
	ctx := context.Background()

	for _, tt := range []struct {
		username, password string
		role               storage.Role // empty: refused
	}{
		{"alice", "alice-pw", storage.RoleWorker},
		{"bob", "bob-pw", storage.RoleManager},
		{"carol", "carol-pw", storage.RoleAdmin},
		{"ALICE", "alice-pw", storage.RoleWorker}, // uid matches regardless of case
		{"alice", "bob-pw", ""},                   // wrong password
		{"alice", "Alice-pw", ""},
		{"alice", "", ""},        // empty password: never an anonymous bind
		{"mallory", "x", ""},     // unknown
		{"dave", "dave-pw", ""},  // in no role group
		{"erin", "erin-pw", ""},  // disabled
		{"twin", "twin1-pw", ""}, // two entries
		{"", "alice-pw", ""},     // no name
		{"alice\x00", "alice-pw", ""},
	} {
		u, err := d.Authenticate(ctx, tt.username, tt.password)
		if tt.role == "" {
			if !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Errorf("Authenticate(%q, %q): got %+v, %v; want ErrInvalidCredentials", tt.username, tt.password, u, err)
			}
			if err != nil && tt.password != "" && strings.Contains(err.Error(), tt.password) {
				t.Errorf("Authenticate(%q, %q): the error %q holds the password", tt.username, tt.password, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Authenticate(%q): %v", tt.username, err)
			continue
		}
		if u.Role != tt.role {
			t.Errorf("Authenticate(%q): got role %q; want %q", tt.username, u.Role, tt.role)
		}
	}

	u, err := d.Authenticate(ctx, "ALICE", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	want := auth.DirectoryUser{
		DN:             ldaptest.PersonDN("alice"),
		Username:       "alice", // the directory's spelling
		DisplayName:    "Alice Archer",
		FirstName:      "Alice",
		LastName:       "Archer",
		Email:          "alice@example.com",
		EmployeeNumber: "1001",
		Groups:         []string{f.workers, ldaptest.GroupDN("canteen")},
		Role:           storage.RoleWorker,
	}
	slices.Sort(u.Groups)
	slices.Sort(want.Groups)
	if !equalUser(u, want) {
		t.Errorf("got %+v; want %+v", u, want)
	}
}

func equalUser(a, b auth.DirectoryUser) bool {
	return slices.Equal(a.Groups, b.Groups) && reflect.DeepEqual(a, b)
}

// The username a sign-in returns is the directory's, from the attribute
// the filter compares first, whatever name the person typed: the sync
// looks them up by it.
func TestUsernameAttribute(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.UserFilter = "(&(objectClass=inetOrgPerson)(|(uid={username})(mail={username})))"
	d := open(t, cfg)
	u, err := d.Authenticate(context.Background(), "Alice@Example.com", "alice-pw")
	if err != nil || u.Username != "alice" {
		t.Fatalf("got %+v, %v; want alice", u, err)
	}
	if _, err := d.Lookup(context.Background(), u.Username); err != nil {
		t.Errorf("Lookup(%q): %v", u.Username, err)
	}

	cfg.UserFilter = "(mail={username})"
	cfg.UsernameAttribute = "employeeNumber"
	d = open(t, cfg)
	if u, err := d.Authenticate(context.Background(), "alice@example.com", "alice-pw"); err != nil || u.Username != "1001" {
		t.Errorf("with UsernameAttribute: got %+v, %v; want 1001", u, err)
	}
}

// Without role groups every person found is a worker.
func TestAuthenticateWithoutRoleGroups(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.WorkerGroup, cfg.ManagerGroup, cfg.AdminGroup = "", "", ""
	d := open(t, cfg)
	for _, name := range []string{"carol", "dave"} {
		u, err := d.Authenticate(context.Background(), name, password(name))
		if err != nil || u.Role != storage.RoleWorker {
			t.Errorf("Authenticate(%q): got %q, %v; want a worker", name, u.Role, err)
		}
	}
	if _, err := d.Authenticate(context.Background(), "erin", "erin-pw"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("a disabled person: got %v; want ErrInvalidCredentials", err)
	}
}

// Groups from the memberOf attribute, with no group search.
func TestAuthenticateMemberOf(t *testing.T) {
	f := newFixture(t, ldaptest.WithMemberOf())
	cfg := f.config()
	cfg.GroupBase = ""
	d := open(t, cfg)
	for name, role := range map[string]storage.Role{"alice": storage.RoleWorker, "bob": storage.RoleManager, "carol": storage.RoleAdmin} {
		u, err := d.Authenticate(context.Background(), name, password(name))
		if err != nil || u.Role != role {
			t.Errorf("Authenticate(%q): got %q, %v; want %q", name, u.Role, err, role)
		}
	}
	if _, err := d.Authenticate(context.Background(), "dave", "dave-pw"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("a person in no role group: got %v; want ErrInvalidCredentials", err)
	}
}

// posixGroup names its members by uid: GroupFilter takes {username}.
func TestAuthenticatePosixGroup(t *testing.T) {
	f := newFixture(t)
	f.srv.Add(t, ldaptest.GroupDN("crew"), map[string][]string{
		"objectClass": {"posixGroup"}, "cn": {"crew"}, "gidNumber": {"5000"}, "memberUid": {"dave"},
	})
	cfg := f.config()
	cfg.GroupFilter = "(memberUid={username})"
	cfg.WorkerGroup, cfg.ManagerGroup, cfg.AdminGroup = ldaptest.GroupDN("crew"), "", ""
	d := open(t, cfg)
	if u, err := d.Authenticate(context.Background(), "dave", "dave-pw"); err != nil || u.Role != storage.RoleWorker {
		t.Errorf("got %q, %v; want a worker", u.Role, err)
	}
	if _, err := d.Authenticate(context.Background(), "alice", "alice-pw"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("got %v; want ErrInvalidCredentials", err)
	}
}

// Filter syntax in a username matches itself, never anyone else: the
// user base here holds one person, whom an unescaped * would find.
func TestAuthenticateInjection(t *testing.T) {
	f := newFixture(t)
	solo := "ou=solo," + ldaptest.PeopleDN
	f.srv.Add(t, solo, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"solo"}})
	f.srv.Add(t, "uid=sam,"+solo, map[string][]string{
		"objectClass": {"inetOrgPerson"}, "uid": {"sam"}, "cn": {"sam"}, "sn": {"sam"}, "userPassword": {"sam-pw"},
	})
	odd := `o(brien)*\x`
	f.srv.Add(t, "cn=odd,"+solo, map[string][]string{
		"objectClass": {"inetOrgPerson"}, "uid": {odd}, "cn": {"odd"}, "sn": {"odd"}, "userPassword": {"odd-pw"},
	})
	cfg := f.config()
	cfg.UserBase = solo
	cfg.WorkerGroup, cfg.ManagerGroup, cfg.AdminGroup = "", "", ""
	d := open(t, cfg)
	ctx := context.Background()

	for _, name := range []string{
		"*", "s*", "*)(uid=*", ")(|(uid=*", "sam)(uid=*", "sam)(|(objectClass=*)", `\`, `s\2a`, `\2a`,
		"sam\x00", "sam\x00)(uid=*", strings.Repeat("s", 300), strings.Repeat("*", 10_000), "o(brien)", `o(brien)*`,
	} {
		for _, pw := range []string{"sam-pw", "odd-pw"} {
			if u, err := d.Authenticate(ctx, name, pw); !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Errorf("Authenticate(%q, %q): got %+v, %v; want ErrInvalidCredentials", name, pw, u, err)
			}
		}
		if _, err := d.Lookup(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Lookup(%q): got %v; want ErrNotFound", name, err)
		}
	}
	// Escaped, the odd name is found as it is.
	if u, err := d.Authenticate(ctx, odd, "odd-pw"); err != nil || u.Username != odd {
		t.Errorf("Authenticate(%q): got %+v, %v; want its entry", odd, u, err)
	}
	if _, err := d.Authenticate(ctx, "sam", "sam-pw"); err != nil {
		t.Errorf("Authenticate(sam): %v", err)
	}
}

func TestLookup(t *testing.T) {
	f := newFixture(t)
	d := open(t, f.config())
	ctx := context.Background()

	u, err := d.Lookup(ctx, "bob")
	if err != nil || u.Role != storage.RoleManager || !u.Allowed() || u.DN != ldaptest.PersonDN("bob") || u.FirstName != "Bob" {
		t.Fatalf("Lookup(bob): got %+v, %v; want an allowed manager", u, err)
	}
	if u, err := d.Lookup(ctx, "erin"); err != nil || !u.Disabled || u.Allowed() {
		t.Errorf("Lookup(erin): got %+v, %v; want disabled", u, err)
	}
	if u, err := d.Lookup(ctx, "dave"); err != nil || u.Role != "" || u.Allowed() {
		t.Errorf("Lookup(dave): got %+v, %v; want no role", u, err)
	}
	for _, name := range []string{"mallory", "twin", ""} {
		if _, err := d.Lookup(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Lookup(%q): got %v; want ErrNotFound", name, err)
		}
	}

	// Out of the managers: a worker still. Out of the workers too: no role.
	f.srv.RemoveMember(t, f.managers, ldaptest.PersonDN("bob"))
	if u, err := d.Lookup(ctx, "bob"); err != nil || u.Role != storage.RoleWorker {
		t.Errorf("Lookup(bob) out of the managers: got %q, %v; want worker", u.Role, err)
	}
	f.srv.RemoveMember(t, f.workers, ldaptest.PersonDN("bob"))
	if u, err := d.Lookup(ctx, "bob"); err != nil || u.Role != "" || u.Allowed() {
		t.Errorf("Lookup(bob) out of every role group: got %+v, %v; want no role", u, err)
	}
	if _, err := d.Authenticate(ctx, "bob", "bob-pw"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("Authenticate(bob) out of every role group: got %v; want ErrInvalidCredentials", err)
	}
	// Disabled, then enabled again.
	f.srv.Set(t, ldaptest.PersonDN("alice"), "employeeType", "disabled")
	if u, err := d.Lookup(ctx, "alice"); err != nil || !u.Disabled {
		t.Errorf("Lookup(alice) disabled: got %+v, %v; want disabled", u, err)
	}
	f.srv.Set(t, ldaptest.PersonDN("alice"), "employeeType")
	if u, err := d.Lookup(ctx, "alice"); err != nil || !u.Allowed() {
		t.Errorf("Lookup(alice) enabled again: got %+v, %v; want allowed", u, err)
	}
	// Deleted.
	f.srv.DeletePerson(t, "alice")
	if _, err := d.Lookup(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Lookup(alice) deleted: got %v; want ErrNotFound", err)
	}
	if _, err := d.Authenticate(ctx, "alice", "alice-pw"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("Authenticate(alice) deleted: got %v; want ErrInvalidCredentials", err)
	}
}

// A user base that is gone is the directory's fault, not everyone's
// deletion: a sync must not take it for ErrNotFound.
func TestLookupUserBaseGone(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.UserBase = "ou=gone," + ldaptest.Suffix
	d := open(t, cfg)
	if _, err := d.Lookup(context.Background(), "alice"); !errors.Is(err, auth.ErrDirectoryUnavailable) || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("got %v; want ErrDirectoryUnavailable", err)
	}
}

func TestDirectoryDown(t *testing.T) {
	f := newFixture(t)
	d := open(t, f.config())
	ctx := context.Background()
	if _, err := d.Authenticate(ctx, "alice", "alice-pw"); err != nil {
		t.Fatal(err) // leaves a pooled connection, which the stop breaks
	}

	f.srv.Stop(t)
	start := time.Now()
	if _, err := d.Authenticate(ctx, "alice", "alice-pw"); !errors.Is(err, auth.ErrDirectoryUnavailable) {
		t.Errorf("Authenticate, directory stopped: got %v; want ErrDirectoryUnavailable", err)
	}
	if _, err := d.Lookup(ctx, "alice"); !errors.Is(err, auth.ErrDirectoryUnavailable) || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Lookup, directory stopped: got %v; want ErrDirectoryUnavailable", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("refused connections took %v to report; want at once", took)
	}

	f.srv.Start(t)
	if u, err := d.Authenticate(ctx, "alice", "alice-pw"); err != nil || u.Role != storage.RoleWorker {
		t.Errorf("Authenticate, directory back: got %+v, %v", u, err)
	}
	if _, err := d.Lookup(ctx, "alice"); err != nil {
		t.Errorf("Lookup, directory back: %v", err)
	}
}

// A pooled connection that the server restart broke is replaced without
// the caller noticing.
func TestDirectoryRestarted(t *testing.T) {
	f := newFixture(t)
	d := open(t, f.config())
	ctx := context.Background()
	if _, err := d.Lookup(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	f.srv.Stop(t)
	f.srv.Start(t)
	if _, err := d.Lookup(ctx, "alice"); err != nil {
		t.Errorf("Lookup after a restart: %v", err)
	}
}

// silent accepts connections and never answers.
func silent(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "ldap://" + l.Addr().String()
}

// deadURL is a loopback port nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "ldap://" + addr
}

func TestTimeouts(t *testing.T) {
	url := silent(t)
	for _, tt := range []struct {
		name             string
		startTLS         bool
		connect, op, ctx time.Duration // the shortest is the one to fire
	}{
		{"operation timeout", false, 5 * time.Second, 300 * time.Millisecond, 0},
		{"connect timeout (StartTLS)", true, 300 * time.Millisecond, 5 * time.Second, 0},
		{"context deadline", false, 5 * time.Second, 5 * time.Second, 300 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := open(t, directory.Config{
				URLs: []string{url}, StartTLS: tt.startTLS,
				BindDN: ldaptest.ServiceDN, BindPassword: ldaptest.ServicePassword, UserBase: ldaptest.PeopleDN,
				ConnectTimeout: tt.connect, OperationTimeout: tt.op,
			})
			ctx := context.Background()
			if tt.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctx)
				defer cancel()
			}
			start := time.Now()
			_, err := d.Authenticate(ctx, "alice", "alice-pw")
			took := time.Since(start)
			if !errors.Is(err, auth.ErrDirectoryUnavailable) {
				t.Errorf("got %v; want ErrDirectoryUnavailable", err)
			}
			if took < 300*time.Millisecond || took > 3*time.Second {
				t.Errorf("took %v; want about 300ms, far below the 5s timeouts", took)
			}
			t.Log(err)
		})
	}
}

// URLs are tried in order: one that refuses connections, or accepts them
// and never answers, gives way to the next, and is then tried last for a
// while.
func TestSeveralURLs(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.URLs = []string{deadURL(t), silent(t), f.srv.URL}
	cfg.OperationTimeout = time.Second
	cfg.MaxIdleConns = -1
	d := open(t, cfg)
	for i := range 3 {
		start := time.Now()
		if u, err := d.Authenticate(context.Background(), "carol", "carol-pw"); err != nil || u.Role != storage.RoleAdmin {
			t.Errorf("got %+v, %v; want carol, admin", u, err)
		}
		if took := time.Since(start); i > 0 && took > 500*time.Millisecond {
			t.Errorf("login %d took %v: the silent server was tried again", i+1, took)
		}
	}
	if _, err := d.Lookup(context.Background(), "carol"); err != nil {
		t.Error(err)
	}
	if err := d.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestTLS(t *testing.T) {
	f := newFixture(t, ldaptest.WithTLS())
	foreign := ldaptest.ForeignCA(t)
	for _, tt := range []struct {
		name     string
		url      string
		startTLS bool
		caFile   string
		ok       bool
	}{
		{"StartTLS", f.srv.URL, true, f.srv.CAFile, true},
		{"ldaps", f.srv.LDAPSURL, false, f.srv.CAFile, true},
		{"ldaps by name", strings.Replace(f.srv.LDAPSURL, "127.0.0.1", "localhost", 1), false, f.srv.CAFile, true},
		{"StartTLS, wrong CA", f.srv.URL, true, foreign, false},
		{"ldaps, wrong CA", f.srv.LDAPSURL, false, foreign, false},
		{"ldaps, system roots", f.srv.LDAPSURL, false, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config()
			cfg.URLs, cfg.StartTLS, cfg.CAFile = []string{tt.url}, tt.startTLS, tt.caFile
			d := open(t, cfg)
			u, err := d.Authenticate(context.Background(), "alice", "alice-pw")
			checkErr := d.Check(context.Background())
			if tt.ok {
				if err != nil || u.Role != storage.RoleWorker {
					t.Errorf("Authenticate: got %+v, %v", u, err)
				}
				if checkErr != nil {
					t.Errorf("Check: %v", checkErr)
				}
				return
			}
			if !errors.Is(err, auth.ErrDirectoryUnavailable) {
				t.Errorf("Authenticate: got %v; want ErrDirectoryUnavailable", err)
			}
			var ce *directory.ConfigError
			if !errors.As(checkErr, &ce) || !slices.Equal(ce.Settings, []string{"CAFile"}) {
				t.Errorf("Check: got %v; want a ConfigError for CAFile", checkErr)
			}
			t.Log(err)
			t.Log(checkErr)
		})
	}
}

func TestCheck(t *testing.T) {
	f := newFixture(t)
	tlsless := f.srv // offers no StartTLS
	for _, tt := range []struct {
		name     string
		change   func(c *directory.Config)
		settings []string // nil: no error
	}{
		{"good", func(c *directory.Config) {}, nil},
		{"anonymous", func(c *directory.Config) { c.BindDN, c.BindPassword = "", "" }, nil},
		{"wrong bind password", func(c *directory.Config) { c.BindPassword = "wrong" }, []string{"BindDN", "BindPassword"}},
		{"unknown bind DN", func(c *directory.Config) { c.BindDN = "cn=nobody," + ldaptest.Suffix }, []string{"BindDN", "BindPassword"}},
		{"user base not found", func(c *directory.Config) { c.UserBase = "ou=staff," + ldaptest.Suffix }, []string{"UserBase"}},
		{"group base not found", func(c *directory.Config) { c.GroupBase = "ou=teams," + ldaptest.Suffix }, []string{"GroupBase"}},
		{"admin group not found", func(c *directory.Config) { c.AdminGroup = ldaptest.GroupDN("bosses") }, []string{"AdminGroup"}},
		{"worker group not found", func(c *directory.Config) { c.WorkerGroup = ldaptest.GroupDN("crew") }, []string{"WorkerGroup"}},
		{"no StartTLS", func(c *directory.Config) { c.StartTLS = true; c.URLs = []string{tlsless.URL} }, []string{"StartTLS"}},
		{"ldaps on a plain port", func(c *directory.Config) {
			c.URLs = []string{strings.Replace(tlsless.URL, "ldap:", "ldaps:", 1)}
		}, []string{"URLs"}},
		{"unreachable", func(c *directory.Config) { c.URLs = []string{deadURL(t), deadURL(t)} }, []string{"URLs"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config()
			tt.change(&cfg)
			d := open(t, cfg)
			err := d.Check(context.Background())
			if tt.settings == nil {
				if err != nil {
					t.Errorf("got %v; want no error", err)
				}
				return
			}
			var ce *directory.ConfigError
			if !errors.As(err, &ce) || !slices.Equal(ce.Settings, tt.settings) {
				t.Fatalf("got %v; want a ConfigError for %v", err, tt.settings)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, strings.Join(tt.settings, ", ")+": ") {
				t.Errorf("got %q; want one line naming %v", msg, tt.settings)
			}
			flag := func(s string) string { return "--" + strings.ToLower(s) }
			if got, want := ce.Format(flag), "--"+strings.ToLower(strings.Join(tt.settings, ", --"))+": "+ce.Problem; got != want {
				t.Errorf("Format: got %q; want %q", got, want)
			}
			if strings.Contains(err.Error(), ldaptest.ServicePassword) || strings.Contains(err.Error(), "wrong") {
				t.Errorf("got %q, which holds the bind password", err)
			}
			if unreachable := errors.Is(err, auth.ErrDirectoryUnavailable); unreachable != (tt.name == "unreachable") {
				t.Errorf("errors.Is(%v, ErrDirectoryUnavailable) = %v", err, unreachable)
			}
			t.Log(err)
		})
	}
}

func TestNew(t *testing.T) {
	good := directory.Config{
		URLs:         []string{"ldap://127.0.0.1:389"},
		BindDN:       "cn=svc,dc=example,dc=com",
		BindPassword: "secret",
		UserBase:     "ou=people,dc=example,dc=com",
	}
	if _, err := directory.New(good); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}
	ad := directory.Config{
		URLs:           []string{"ldaps://dc1.example.com", "ldaps://dc2.example.com:636"},
		BindDN:         "CN=Tether,OU=Service Accounts,DC=example,DC=com",
		BindPassword:   "secret",
		UserBase:       "OU=Staff,DC=example,DC=com",
		UserFilter:     "(&(objectClass=user)(sAMAccountName={username}))",
		GroupBase:      "OU=Groups,DC=example,DC=com",
		GroupFilter:    "(member:1.2.840.113556.1.4.1941:={dn})",
		WorkerGroup:    "CN=Handset Users,OU=Groups,DC=example,DC=com",
		DisabledFilter: "(userAccountControl:1.2.840.113556.1.4.803:=2)",
	}
	if _, err := directory.New(ad); err != nil {
		t.Fatalf("an Active Directory configuration: %v", err)
	}
	for _, tt := range []struct {
		name    string
		change  func(c *directory.Config)
		setting string
	}{
		{"no URL", func(c *directory.Config) { c.URLs = nil }, "URLs"},
		{"http URL", func(c *directory.Config) { c.URLs = []string{"http://dc1"} }, "URLs"},
		{"URL with a DN", func(c *directory.Config) { c.URLs = []string{"ldap://dc1/dc=example,dc=com"} }, "URLs"},
		{"bind DN without a password", func(c *directory.Config) { c.BindPassword = "" }, "BindPassword"},
		{"password without a bind DN", func(c *directory.Config) { c.BindDN = "" }, "BindDN"},
		{"bad bind DN", func(c *directory.Config) { c.BindDN = "svc" }, "BindDN"},
		{"no user base", func(c *directory.Config) { c.UserBase = "" }, "UserBase"},
		{"user filter without {username}", func(c *directory.Config) { c.UserFilter = "(uid=alice)" }, "UserFilter"},
		{"bad user filter", func(c *directory.Config) { c.UserFilter = "(&(uid={username})" }, "UserFilter"},
		{"group filter without {dn}", func(c *directory.Config) { c.GroupBase = "ou=groups,dc=example,dc=com"; c.GroupFilter = "(member=x)" }, "GroupFilter"},
		{"bad group DN", func(c *directory.Config) { c.ManagerGroup = "managers" }, "ManagerGroup"},
		{"group filter without a group base", func(c *directory.Config) { c.GroupFilter = "(member={dn})" }, "GroupBase"},
		{"bad disabled filter", func(c *directory.Config) { c.DisabledFilter = "(a=b))(" }, "DisabledFilter"},
		{"missing CA file", func(c *directory.Config) { c.CAFile = "/nonexistent/ca.pem" }, "CAFile"},
		{"CA file without PEM", func(c *directory.Config) { c.CAFile = "/etc/hostname" }, "CAFile"},
		{"bad attribute", func(c *directory.Config) { c.EmailAttribute = "e mail" }, "EmailAttribute"},
		{"negative timeout", func(c *directory.Config) { c.OperationTimeout = -time.Second }, "OperationTimeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.change(&cfg)
			_, err := directory.New(cfg)
			var ce *directory.ConfigError
			if !errors.As(err, &ce) || !slices.Contains(ce.Settings, tt.setting) {
				t.Fatalf("got %v; want a ConfigError for %s", err, tt.setting)
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.MaxIdleConns = 2
	d := open(t, cfg)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 10 {
				name := []string{"alice", "bob", "carol"}[(i+j)%3]
				want := map[string]storage.Role{"alice": storage.RoleWorker, "bob": storage.RoleManager, "carol": storage.RoleAdmin}[name]
				u, err := d.Authenticate(context.Background(), name, password(name))
				if err != nil || u.Role != want || u.Username != name {
					t.Errorf("Authenticate(%q): got %+v, %v", name, u, err)
				}
				if _, err := d.Authenticate(context.Background(), name, "wrong"); !errors.Is(err, auth.ErrInvalidCredentials) {
					t.Errorf("Authenticate(%q) with a wrong password: got %v", name, err)
				}
				if u, err := d.Lookup(context.Background(), name); err != nil || u.Role != want {
					t.Errorf("Lookup(%q): got %+v, %v", name, u, err)
				}
			}
		})
	}
	wg.Wait()
}
