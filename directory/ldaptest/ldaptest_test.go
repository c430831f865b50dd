package ldaptest_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"tether/directory/ldaptest"
)

func TestServer(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.WithTLS())
	dn := srv.AddPerson(t, ldaptest.Person{UID: "alice", Password: "alice-pw", Mail: "alice@example.com"})
	srv.AddGroup(t, "workers", dn)

	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	dialer := ldap.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second})

	for _, tt := range []struct {
		name string
		dial func() (*ldap.Conn, error)
	}{
		{"plain", func() (*ldap.Conn, error) { return ldap.DialURL(srv.URL, dialer) }},
		{"StartTLS", func() (*ldap.Conn, error) {
			c, err := ldap.DialURL(srv.URL, dialer)
			if err == nil {
				err = c.StartTLS(tc)
			}
			return c, err
		}},
		{"ldaps", func() (*ldap.Conn, error) { return ldap.DialURL(srv.LDAPSURL, dialer, ldap.DialWithTLSConfig(tc)) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Bind(dn, "alice-pw"); err != nil {
				t.Fatalf("bind as alice: %v", err)
			}
			if err := c.Bind(ldaptest.ServiceDN, ldaptest.ServicePassword); err != nil {
				t.Fatalf("bind as the service account: %v", err)
			}
			res, err := c.Search(ldap.NewSearchRequest(ldaptest.PeopleDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
				"(uid=alice)", []string{"mail", "userPassword"}, nil))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Entries) != 1 {
				t.Fatalf("got %d entries; want 1", len(res.Entries))
			}
			if got := res.Entries[0].GetAttributeValue("mail"); got != "alice@example.com" {
				t.Errorf("got mail %q; want alice@example.com", got)
			}
			if got := res.Entries[0].GetAttributeValue("userPassword"); got != "" {
				t.Errorf("the service account reads userPassword %q; want nothing", got)
			}
		})
	}

	srv.Stop(t)
	if c, err := ldap.DialURL(srv.URL, dialer); err == nil {
		c.Close()
		t.Fatal("a stopped server answers")
	}
	srv.Start(t)
	c, err := ldap.DialURL(srv.URL, dialer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(dn, "alice-pw"); err != nil {
		t.Fatalf("bind as alice after a restart: %v", err)
	}
}
