// Package ldaptest runs a real OpenLDAP slapd for tests: a throwaway
// configuration and mdb database in the test's temporary directory, on a
// free loopback port, seeded with the entries a Tether directory needs (a
// people branch, a groups branch, a service account that cannot read
// passwords) and helpers to add people and change group membership.
//
// A test that needs the directory calls Start; it is skipped where slapd is
// not installed, and fails instead when the CI variable is set, since CI
// must run it (Debian's packages slapd and ldap-utils).
//
//	srv := ldaptest.Start(t)
//	alice := srv.AddPerson(t, ldaptest.Person{UID: "alice", Password: "alice-pw"})
//	srv.AddGroup(t, "workers", alice)
//	// connect to srv.URL as ldaptest.ServiceDN / ldaptest.ServicePassword,
//	// users under ldaptest.PeopleDN, groups under ldaptest.GroupsDN
package ldaptest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// The tree every server starts with. People are inetOrgPerson entries
// under PeopleDN named by uid, groups are groupOfNames under GroupsDN named
// by cn. The service account may read everything but userPassword; the
// root account may do anything.
const (
	Suffix          = "dc=tether,dc=test"
	RootDN          = "cn=admin," + Suffix
	RootPassword    = "root-secret"
	PeopleDN        = "ou=people," + Suffix
	GroupsDN        = "ou=groups," + Suffix
	ServiceDN       = "cn=tether,ou=services," + Suffix
	ServicePassword = "service-secret"
	// Placeholder is a member every group has (groupOfNames needs at least
	// one): the DN of no entry.
	Placeholder = "cn=placeholder," + Suffix
)

// Slapd is where Debian installs the server.
const Slapd = "/usr/sbin/slapd"

// Server is a running slapd. Its methods that take a testing.TB fail that
// test on error; the server is stopped when the test that started it ends.
type Server struct {
	// URL is the plain LDAP URL, ldap://127.0.0.1:PORT (StartTLS works on
	// it when the server was started WithTLS).
	URL string
	// LDAPSURL is the ldaps:// URL; empty unless started WithTLS.
	LDAPSURL string
	// CAFile is the PEM file of the CA that signed the server's
	// certificate (for 127.0.0.1 and localhost); empty unless WithTLS.
	CAFile string

	dir  string
	conf string
	opts options

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stderr  *tailBuffer
	rootMu  sync.Mutex
	rootCon *ldap.Conn
}

type options struct {
	tls      bool
	memberOf bool
}

// Option changes how Start sets the server up.
type Option func(*options)

// WithTLS makes a CA and a server certificate for 127.0.0.1 in the test,
// has slapd offer StartTLS on URL and listen on LDAPSURL too, and writes
// the CA to CAFile.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithMemberOf loads slapd's memberof overlay, which keeps a memberOf
// attribute on each person naming the groups they are in (as Active
// Directory does).
func WithMemberOf() Option { return func(o *options) { o.memberOf = true } }

// Start starts a slapd with an empty tree of the shape described above, or
// skips t where slapd is not installed (fails it when CI is set).
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	if _, err := os.Stat(Slapd); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing: CI must run the directory tests (install the Debian packages slapd and ldap-utils)", Slapd)
		}
		t.Skipf("%s is missing: no OpenLDAP server to test against (install the Debian packages slapd and ldap-utils)", Slapd)
	}
	s := &Server{dir: t.TempDir()}
	for _, o := range opts {
		o(&s.opts)
	}
	if err := os.Mkdir(filepath.Join(s.dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if s.opts.tls {
		ca, err := writeCertificates(s.dir)
		if err != nil {
			t.Fatalf("test certificates: %v", err)
		}
		s.CAFile = ca
	}
	t.Cleanup(s.shutdown)
	// A free port may be taken between our finding it and slapd binding
	// it: try a few times.
	var err error
	for range 3 {
		if err = s.listenOnFreePorts(); err != nil {
			break
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.seed(); err != nil {
		t.Fatalf("seed the directory: %v", err)
	}
	return s
}

// listenOnFreePorts picks free loopback ports and writes the configuration.
func (s *Server) listenOnFreePorts() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.URL = fmt.Sprintf("ldap://127.0.0.1:%d", port)
	if s.opts.tls {
		port, err := freePort()
		if err != nil {
			return err
		}
		s.LDAPSURL = fmt.Sprintf("ldaps://127.0.0.1:%d", port)
	}
	s.conf = filepath.Join(s.dir, "slapd.conf")
	return os.WriteFile(s.conf, []byte(s.config()), 0o600)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) config() string {
	var b strings.Builder
	for _, schema := range []string{"core", "cosine", "inetorgperson", "nis"} {
		fmt.Fprintf(&b, "include /etc/ldap/schema/%s.schema\n", schema)
	}
	fmt.Fprintf(&b, "pidfile %s\n", filepath.Join(s.dir, "slapd.pid"))
	b.WriteString("modulepath /usr/lib/ldap\nmoduleload back_mdb\n")
	if s.opts.memberOf {
		b.WriteString("moduleload memberof\n")
	}
	if s.opts.tls {
		fmt.Fprintf(&b, "TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n",
			s.CAFile, filepath.Join(s.dir, "server.pem"), filepath.Join(s.dir, "server.key"))
	}
	fmt.Fprintf(&b, `database mdb
maxsize 1073741824
suffix %q
rootdn %q
rootpw %s
directory %s
dbnosync
index objectClass,uid,cn,member,memberUid,mail,employeeNumber eq
`, Suffix, RootDN, RootPassword, filepath.Join(s.dir, "db"))
	if s.opts.memberOf {
		b.WriteString("overlay memberof\nmemberof-group-oc groupOfNames\nmemberof-member-ad member\nmemberof-refint true\n")
	}
	b.WriteString(`access to attrs=userPassword
	by self read
	by anonymous auth
	by * none
access to *
	by * read
`)
	return b.String()
}

// Stop stops the server, keeping its data and ports: Start brings it back.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

// Start starts a stopped server again on the same ports and data.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// start runs slapd in the foreground and waits until it answers a bind.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("slapd is already running")
	}
	urls := s.URL + "/"
	if s.LDAPSURL != "" {
		urls += " " + s.LDAPSURL + "/"
	}
	cmd := exec.Command(Slapd, "-f", s.conf, "-h", urls, "-d", "0")
	s.stderr = &tailBuffer{}
	cmd.Stdout, cmd.Stderr = s.stderr, s.stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start slapd: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // its status is read through exited and stderr
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("slapd exited at start: %s", s.stderr)
		default:
		}
		c, err := s.dialRoot()
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("slapd did not answer on %s within 15s: %v; %s", s.URL, err, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rootMu.Lock()
	if s.rootCon != nil {
		s.rootCon.Close()
		s.rootCon = nil
	}
	s.rootMu.Unlock()
	if s.cmd == nil {
		return nil
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop slapd: %w", err)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.kill()
		return errors.New("slapd did not stop within 10s of SIGTERM: killed")
	}
	s.cmd = nil
	return nil
}

// kill ends slapd at once; s.mu is held.
func (s *Server) kill() {
	_ = s.cmd.Process.Kill() // it may have exited already
	<-s.exited
	s.cmd = nil
}

func (s *Server) shutdown() {
	if err := s.stop(); err != nil {
		s.mu.Lock()
		if s.cmd != nil {
			s.kill()
		}
		s.mu.Unlock()
	}
}

func (s *Server) dialRoot() (*ldap.Conn, error) {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return nil, err
	}
	c.SetTimeout(10 * time.Second)
	if err := c.Bind(RootDN, RootPassword); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Conn returns a connection bound as RootDN, for changes the helpers below
// do not make. It is shared: do not close it or bind it as anyone else.
func (s *Server) Conn(t testing.TB) *ldap.Conn {
	t.Helper()
	c, err := s.root()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (s *Server) root() (*ldap.Conn, error) {
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	if s.rootCon != nil && !s.rootCon.IsClosing() {
		return s.rootCon, nil
	}
	c, err := s.dialRoot()
	if err != nil {
		return nil, fmt.Errorf("bind to %s as the root DN: %w", s.URL, err)
	}
	s.rootCon = c
	return c, nil
}

func (s *Server) seed() error {
	c, err := s.root()
	if err != nil {
		return err
	}
	for _, e := range []struct {
		dn    string
		attrs map[string][]string
	}{
		{Suffix, map[string][]string{"objectClass": {"dcObject", "organization"}, "dc": {"tether"}, "o": {"Tether test"}}},
		{PeopleDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"people"}}},
		{GroupsDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"groups"}}},
		{"ou=services," + Suffix, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"services"}}},
		{ServiceDN, map[string][]string{"objectClass": {"organizationalRole", "simpleSecurityObject"}, "cn": {"tether"}, "userPassword": {ServicePassword}}},
	} {
		if err := c.Add(addRequest(e.dn, e.attrs)); err != nil {
			return fmt.Errorf("add %s: %w", e.dn, err)
		}
	}
	return nil
}

func addRequest(dn string, attrs map[string][]string) *ldap.AddRequest {
	req := ldap.NewAddRequest(dn, nil)
	for name, values := range attrs {
		req.Attribute(name, values)
	}
	return req
}

// Add adds an entry with the given attributes (objectClass among them).
func (s *Server) Add(t testing.TB, dn string, attrs map[string][]string) {
	t.Helper()
	if err := s.Conn(t).Add(addRequest(dn, attrs)); err != nil {
		t.Fatalf("add %s: %v", dn, err)
	}
}

// Delete deletes the entry dn.
func (s *Server) Delete(t testing.TB, dn string) {
	t.Helper()
	if err := s.Conn(t).Del(ldap.NewDelRequest(dn, nil)); err != nil {
		t.Fatalf("delete %s: %v", dn, err)
	}
}

// Set replaces the values of an attribute of dn; no values removes it.
func (s *Server) Set(t testing.TB, dn, attr string, values ...string) {
	t.Helper()
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace(attr, values)
	if err := s.Conn(t).Modify(req); err != nil {
		t.Fatalf("set %s of %s: %v", attr, dn, err)
	}
}

// Person is an inetOrgPerson under PeopleDN.
type Person struct {
	// UID names the entry (uid=UID,ou=people,...) and is the username.
	UID string
	// Password is stored as given, in clear (slapd compares it at bind).
	Password string
	// CN and SN default to UID (inetOrgPerson needs both).
	CN, SN         string
	GivenName      string
	DisplayName    string
	Mail           string
	EmployeeNumber string
	// Attrs are further attributes, such as {"description": {"disabled"}}
	// or a second "uid".
	Attrs map[string][]string
}

// PersonDN is the DN of the person with the given uid.
func PersonDN(uid string) string { return "uid=" + ldap.EscapeDN(uid) + "," + PeopleDN }

// GroupDN is the DN of the group with the given cn.
func GroupDN(cn string) string { return "cn=" + ldap.EscapeDN(cn) + "," + GroupsDN }

func (p Person) attrs() map[string][]string {
	a := map[string][]string{
		"objectClass": {"inetOrgPerson"},
		"uid":         {p.UID},
		"cn":          {or(p.CN, p.UID)},
		"sn":          {or(p.SN, p.UID)},
	}
	for name, v := range map[string]string{
		"userPassword":   p.Password,
		"givenName":      p.GivenName,
		"displayName":    p.DisplayName,
		"mail":           p.Mail,
		"employeeNumber": p.EmployeeNumber,
	} {
		if v != "" {
			a[name] = []string{v}
		}
	}
	for name, v := range p.Attrs {
		if name == "uid" {
			v = append([]string{p.UID}, v...)
		}
		a[name] = v
	}
	return a
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

// AddPerson adds p under PeopleDN and returns its DN.
func (s *Server) AddPerson(t testing.TB, p Person) string {
	t.Helper()
	dn := PersonDN(p.UID)
	s.Add(t, dn, p.attrs())
	return dn
}

// AddPeople adds many people at once, over a few connections in parallel,
// and returns their DNs in order.
func (s *Server) AddPeople(t testing.TB, people []Person) []string {
	t.Helper()
	const workers = 4
	dns := make([]string, len(people))
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c, err := s.dialRoot()
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := w; i < len(people); i += workers {
				dns[i] = PersonDN(people[i].UID)
				if err := c.Add(addRequest(dns[i], people[i].attrs())); err != nil {
					errs <- fmt.Errorf("add %s: %w", dns[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return dns
}

// DeletePerson deletes the person with the given uid.
func (s *Server) DeletePerson(t testing.TB, uid string) {
	t.Helper()
	s.Delete(t, PersonDN(uid))
}

// AddGroup adds a groupOfNames under GroupsDN with the given members (and
// Placeholder) and returns its DN.
func (s *Server) AddGroup(t testing.TB, cn string, members ...string) string {
	t.Helper()
	dn := GroupDN(cn)
	s.Add(t, dn, map[string][]string{
		"objectClass": {"groupOfNames"},
		"cn":          {cn},
		"member":      append([]string{Placeholder}, members...),
	})
	return dn
}

// AddMember adds member (a DN) to the group groupDN.
func (s *Server) AddMember(t testing.TB, groupDN, member string) {
	t.Helper()
	req := ldap.NewModifyRequest(groupDN, nil)
	req.Add("member", []string{member})
	if err := s.Conn(t).Modify(req); err != nil {
		t.Fatalf("add %s to %s: %v", member, groupDN, err)
	}
}

// RemoveMember removes member (a DN) from the group groupDN.
func (s *Server) RemoveMember(t testing.TB, groupDN, member string) {
	t.Helper()
	req := ldap.NewModifyRequest(groupDN, nil)
	req.Delete("member", []string{member})
	if err := s.Conn(t).Modify(req); err != nil {
		t.Fatalf("remove %s from %s: %v", member, groupDN, err)
	}
}

// tailBuffer keeps the last few kilobytes slapd wrote, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - 8<<10; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := strings.TrimSpace(b.buf.String())
	if out == "" {
		return "slapd wrote nothing"
	}
	return "slapd wrote: " + out
}
