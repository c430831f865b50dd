package storagetest

import (
	"context"
	"fmt"
	"testing"

	"tether/storage"
)

// BenchEventGroups measures what setting an event's groups costs its
// write: AppendEvents of one event about a worker assigned to handsets
// handsets of ten groups (about nobody when handsets is negative).
func BenchEventGroups(b *testing.B, s storage.Store, handsets int) {
	ctx := context.Background()
	w := newUser("bench", storage.RoleWorker)
	w.Scopes = []string{north}
	if _, err := s.CreateUser(ctx, w); err != nil {
		b.Fatal(err)
	}
	var ds []storage.Device
	for i := range handsets {
		ds = append(ds, scopedDevice(fmt.Sprintf("site-%d", i%10), w.ID))
		if len(ds) == storage.MaxPageSize || i == handsets-1 {
			if err := s.CreateDevices(ctx, ds); err != nil {
				b.Fatal(err)
			}
			ds = nil
		}
	}
	b.ResetTimer()
	for b.Loop() {
		e := event("renew", w.ID, "")
		if handsets < 0 {
			e.UserID = ""
		}
		if err := s.AppendEvents(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchScopedLists measures one page of 50 of each list, unscoped and
// scoped to one group of ten, on a store of devices handsets, as many
// workers each on one of them, a session per handset and ten events per
// handset.
func BenchScopedLists(b *testing.B, s storage.Store, devices int) {
	ctx := context.Background()
	loader, ok := s.(storage.Loader)
	if !ok {
		b.Skip("the store is no storage.Loader")
	}
	var users []storage.User
	var ds []storage.Device
	var sessions []storage.Session
	var events []storage.Event
	flush := func() {
		if err := loader.LoadUsers(ctx, users); err != nil {
			b.Fatal(err)
		}
		if err := s.CreateDevices(ctx, ds); err != nil {
			b.Fatal(err)
		}
		if err := loader.LoadSessions(ctx, sessions); err != nil {
			b.Fatal(err)
		}
		if err := s.AppendEvents(ctx, events...); err != nil {
			b.Fatal(err)
		}
		users, ds, sessions, events = nil, nil, nil, nil
	}
	for i := range devices {
		u := newUser(fmt.Sprintf("w%06d", i), storage.RoleWorker)
		u.Key = uint64(i + 1)
		d := scopedDevice(fmt.Sprintf("site-%d", i%10), u.ID)
		users, ds = append(users, u), append(ds, d)
		sessions = append(sessions, newSession(u.ID, d.ID))
		for range 10 {
			events = append(events, event("renew", u.ID, d.ID))
		}
		if len(ds) == 500 {
			flush()
		}
	}
	if len(ds) > 0 {
		flush()
	}
	one := []string{"site-3"}
	for _, c := range []struct {
		name string
		list func(groups []string) error
	}{
		{"devices", func(g []string) error {
			_, err := s.ListDevices(ctx, storage.DeviceFilter{Groups: g, Limit: 50})
			return err
		}},
		{"users", func(g []string) error {
			_, err := s.ListUsers(ctx, storage.UserFilter{Groups: g, Limit: 50})
			return err
		}},
		{"sessions", func(g []string) error {
			_, err := s.ListSessions(ctx, storage.SessionFilter{Groups: g, Limit: 50})
			return err
		}},
		{"events newest first", func(g []string) error {
			_, err := s.ListEvents(ctx, storage.EventFilter{Groups: g, NewestFirst: true, Limit: 50})
			return err
		}},
	} {
		for _, scope := range []struct {
			name   string
			groups []string
		}{{"all", nil}, {"one group of ten", one}} {
			b.Run(c.name+"/"+scope.name, func(b *testing.B) {
				for b.Loop() {
					if err := c.list(scope.groups); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	first, err := s.ListUsers(ctx, storage.UserFilter{Limit: 1})
	if err != nil || len(first.Items) == 0 {
		b.Fatal("no user", err)
	}
	b.Run("UserInScope", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.UserInScope(ctx, first.Items[0].ID, one); err != nil {
				b.Fatal(err)
			}
		}
	})
}
