package auth_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"tether"
	"tether/auth"
	"tether/directory"
	"tether/directory/ldaptest"
	"tether/storage"
)

// BenchmarkLoginDirectory is a manager's sign-in with production password
// hashes, from a local account and from the company directory (a slapd on
// the same cores), side by side: what directory sign-in costs on top of
// the hash every login pays.
func BenchmarkLoginDirectory(b *testing.B) {
	srv := ldaptest.Start(b)
	bob := srv.AddPerson(b, ldaptest.Person{UID: "bob", Password: "bob's secret"})
	d, err := directory.New(directory.Config{
		URLs: []string{srv.URL}, BindDN: ldaptest.ServiceDN, BindPassword: ldaptest.ServicePassword,
		UserBase: ldaptest.PeopleDN, GroupBase: ldaptest.GroupsDN, ManagerGroup: srv.AddGroup(b, "office", bob),
		PasswordChangedAttribute: "-",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	store := newStore(b)
	v := validatorFor(b)
	h := auth.NewHasher(auth.DefaultParams)
	ctx := context.Background()
	if _, err := auth.NewUsers(store, h, v).Create(ctx, auth.CLI, auth.NewUser{Username: "maria", Password: "maria's secret", Role: storage.RoleManager}); err != nil {
		b.Fatal(err)
	}
	cfg := auth.DefaultConfig()
	cfg.AccountFailures, cfg.AccountFailuresTotal, cfg.AddressFailures = 0, 0, 0
	svc, err := auth.NewService(ctx, cfg, store, h, v, auth.WithDirectory(d))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, user, password string }{
		{"local", "maria", "maria's secret"},
		{"directory", "bob", "bob's secret"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var n atomic.Int64
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx := tether.WithOrigin(ctx, tether.Origin{IP: fmt.Sprint("198.51.100.", n.Add(1)%250)})
					if _, err := svc.Login(ctx, auth.LoginRequest{Username: c.user, Password: c.password}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "logins/s")
		})
	}
}
