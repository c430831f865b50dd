package directory_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"tether/directory"
	"tether/directory/ldaptest"
)

// BenchmarkAuthenticate is one directory sign-in: the search, the groups,
// the disabled check on a pooled service connection, then a bind as the
// person on a connection of its own.
func BenchmarkAuthenticate(b *testing.B) {
	srv := ldaptest.Start(b)
	dn := srv.AddPerson(b, ldaptest.Person{UID: "alice", Password: "alice-pw"})
	workers := srv.AddGroup(b, "workers", dn)
	ctx := context.Background()
	for _, bb := range []struct {
		name string
		idle int
	}{{"pooled", 0}, {"dial-per-operation", -1}} {
		d := open(b, directory.Config{
			URLs: []string{srv.URL}, BindDN: ldaptest.ServiceDN, BindPassword: ldaptest.ServicePassword,
			UserBase: ldaptest.PeopleDN, GroupBase: ldaptest.GroupsDN, WorkerGroup: workers,
			DisabledFilter: "(employeeType=disabled)", MaxIdleConns: bb.idle,
		})
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := d.Authenticate(ctx, "alice", "alice-pw"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bb.name+"-parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := d.Authenticate(ctx, "alice", "alice-pw"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLookup10000 is what a sync over 10,000 directory users costs:
// each op looks every one of them up once (ns/op is the whole sync). They
// are all in one worker group, as in a company that signs everyone in.
func BenchmarkLookup10000(b *testing.B) {
	const n = 10_000
	srv := ldaptest.Start(b)
	people := make([]ldaptest.Person, n)
	names := make([]string, n)
	for i := range people {
		names[i] = fmt.Sprintf("user%05d", i)
		people[i] = ldaptest.Person{
			UID: names[i], Password: names[i] + "-pw", GivenName: "Given", SN: fmt.Sprintf("Family%d", i),
			Mail: names[i] + "@example.com", EmployeeNumber: fmt.Sprint(100000 + i),
		}
	}
	start := time.Now()
	dns := srv.AddPeople(b, people)
	workers := srv.AddGroup(b, "workers", dns...)
	b.Logf("seeded %d people and a group of them in %v", n, time.Since(start).Round(time.Millisecond))
	ctx := context.Background()

	for _, bb := range []struct {
		name    string
		idle    int
		workers int
	}{
		{"pooled", 0, 1},
		{"pooled-4-workers", 0, 4},
		{"dial-per-operation", -1, 1},
	} {
		d := open(b, directory.Config{
			URLs: []string{srv.URL}, BindDN: ldaptest.ServiceDN, BindPassword: ldaptest.ServicePassword,
			UserBase: ldaptest.PeopleDN, GroupBase: ldaptest.GroupsDN, WorkerGroup: workers,
			DisabledFilter: "(employeeType=disabled)", MaxIdleConns: bb.idle,
		})
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				var wg sync.WaitGroup
				for w := range bb.workers {
					wg.Go(func() {
						for i := w; i < n; i += bb.workers {
							u, err := d.Lookup(ctx, names[i])
							if err != nil || !u.Allowed() {
								b.Errorf("Lookup(%s): got %+v, %v", names[i], u, err)
								return
							}
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/lookup")
		})
	}
}
