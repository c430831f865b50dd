package storage

import (
	"context"
	"fmt"
)

// Loader is a store that takes records exactly as they are, integer keys,
// revocations and retirements included, to receive the contents of
// another store. Its sequences move past the keys it is given.
type Loader interface {
	LoadUsers(ctx context.Context, users []User) error
	// LoadSessions stores sessions as they are; each unrevoked one becomes
	// the live session of its user and device.
	LoadSessions(ctx context.Context, sessions []Session) error
	LoadSigningKeys(ctx context.Context, keys []SigningKey) error
	// LoadEvents stores audit events as they are, their Groups included
	// (AppendEvents would set them anew from the records as they are now).
	LoadEvents(ctx context.Context, events []Event) error
}

// Counts is how many records of each kind a store holds. The codes of
// OAuth grants in progress are not counted: they are not copied.
type Counts struct {
	Devices, Groups, Users, APIKeys, Sessions, Events, SigningKeys, EnrollmentCodes, OAuthClients int
}

func (c Counts) String() string {
	return fmt.Sprintf("%d devices, %d users, %d API keys, %d sessions, %d audit events, %d signing keys, %d enrollment codes, %d OAuth clients, %d group settings",
		c.Devices, c.Users, c.APIKeys, c.Sessions, c.Events, c.SigningKeys, c.EnrollmentCodes, c.OAuthClients, c.Groups)
}

// copyBatch is how many records each write of Copy carries.
const copyBatch = MaxPageSize

// Copy copies every record of from into to, which must be empty, in
// batches of short transactions, and then counts both: it returns the
// counts, or an error if to does not hold exactly what from holds. Copy
// while no server uses either store.
//
// The authorization and device codes of OAuth grants are not copied: they
// live minutes, and a grant left unfinished by the move fails, for its
// client to start again. The OAuth clients are copied.
func Copy(ctx context.Context, from Store, to interface {
	Store
	Loader
}) (Counts, error) {
	have, err := Count(ctx, to)
	if err != nil {
		return Counts{}, fmt.Errorf("count the destination: %w", err)
	}
	if have != (Counts{}) {
		return Counts{}, fmt.Errorf("the destination is not empty (%s)", have)
	}
	steps := []struct {
		kind string
		run  func() error
	}{
		{"signing keys", func() error {
			keys, err := from.ListSigningKeys(ctx)
			if err != nil {
				return err
			}
			return to.LoadSigningKeys(ctx, keys)
		}},
		{"users", func() error {
			return pages(ctx, func(after string) (Page[User], error) {
				return from.ListUsers(ctx, UserFilter{After: after, Limit: copyBatch})
			}, func(u User) string { return u.ID }, to.LoadUsers)
		}},
		{"devices", func() error {
			return pages(ctx, func(after string) (Page[Device], error) {
				return from.ListDevices(ctx, DeviceFilter{After: after, Limit: copyBatch})
			}, func(d Device) string { return d.ID }, func(ctx context.Context, ds []Device) error {
				return to.CreateDevices(ctx, ds)
			})
		}},
		{"group settings", func() error {
			groups, err := from.ListGroups(ctx)
			if err != nil {
				return err
			}
			for _, g := range groups {
				if _, err := to.UpdateGroup(ctx, g.Name, func(Group) (Group, error) { return g, nil }); err != nil {
					return err
				}
			}
			return nil
		}},
		{"API keys", func() error {
			keys, err := from.ListAPIKeys(ctx)
			if err != nil {
				return err
			}
			for _, k := range keys {
				if err := to.CreateAPIKey(ctx, k); err != nil {
					return err
				}
			}
			return nil
		}},
		{"enrollment codes", func() error {
			codes, err := from.ListEnrollmentCodes(ctx, CodeFilter{})
			if err != nil {
				return err
			}
			for _, c := range codes {
				if err := to.CreateEnrollmentCode(ctx, c); err != nil {
					return err
				}
			}
			return nil
		}},
		{"OAuth clients", func() error {
			clients, err := from.ListOAuthClients(ctx)
			if err != nil {
				return err
			}
			for _, c := range clients {
				if err := to.CreateOAuthClient(ctx, c); err != nil {
					return err
				}
			}
			return nil
		}},
		{"sessions", func() error {
			return pages(ctx, func(after string) (Page[Session], error) {
				return from.ListSessions(ctx, SessionFilter{After: after, Limit: copyBatch})
			}, func(s Session) string { return s.ID }, to.LoadSessions)
		}},
		{"audit events", func() error {
			return pages(ctx, func(after string) (Page[Event], error) {
				return from.ListEvents(ctx, EventFilter{After: after, Limit: copyBatch})
			}, func(e Event) string { return e.ID }, to.LoadEvents)
		}},
	}
	for _, step := range steps {
		if err := step.run(); err != nil {
			return Counts{}, fmt.Errorf("copy %s: %w", step.kind, err)
		}
	}
	want, err := Count(ctx, from)
	if err != nil {
		return Counts{}, fmt.Errorf("count the source: %w", err)
	}
	got, err := Count(ctx, to)
	if err != nil {
		return Counts{}, fmt.Errorf("count the destination: %w", err)
	}
	if got != want {
		return got, fmt.Errorf("the copy holds %s; the source %s", got, want)
	}
	return got, nil
}

// pages reads every page list gives and hands each to load.
func pages[T any](ctx context.Context, list func(after string) (Page[T], error), id func(T) string, load func(context.Context, []T) error) error {
	after := ""
	for {
		page, err := list(after)
		if err != nil {
			return err
		}
		if len(page.Items) > 0 {
			if err := load(ctx, page.Items); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		after = id(page.Items[len(page.Items)-1])
	}
}

// Count counts every record of s.
func Count(ctx context.Context, s Store) (Counts, error) {
	var c Counts
	var err error
	count := func(n *int, list func(after string) (int, string, error)) {
		if err != nil {
			return
		}
		after := ""
		for {
			var got int
			got, after, err = list(after)
			if err != nil {
				return
			}
			*n += got
			if after == "" {
				return
			}
		}
	}
	count(&c.Devices, func(after string) (int, string, error) {
		p, err := s.ListDevices(ctx, DeviceFilter{After: after, Limit: MaxPageSize})
		return len(p.Items), p.Next, err
	})
	count(&c.Users, func(after string) (int, string, error) {
		p, err := s.ListUsers(ctx, UserFilter{After: after, Limit: MaxPageSize})
		return len(p.Items), p.Next, err
	})
	count(&c.Sessions, func(after string) (int, string, error) {
		p, err := s.ListSessions(ctx, SessionFilter{After: after, Limit: MaxPageSize})
		return len(p.Items), p.Next, err
	})
	count(&c.Events, func(after string) (int, string, error) {
		p, err := s.ListEvents(ctx, EventFilter{After: after, Limit: MaxPageSize})
		return len(p.Items), p.Next, err
	})
	if err != nil {
		return c, err
	}
	keys, err := s.ListAPIKeys(ctx)
	if err != nil {
		return c, err
	}
	signing, err := s.ListSigningKeys(ctx)
	if err != nil {
		return c, err
	}
	codes, err := s.ListEnrollmentCodes(ctx, CodeFilter{})
	if err != nil {
		return c, err
	}
	clients, err := s.ListOAuthClients(ctx)
	if err != nil {
		return c, err
	}
	groups, err := s.ListGroups(ctx)
	if err != nil {
		return c, err
	}
	c.APIKeys, c.SigningKeys, c.EnrollmentCodes, c.OAuthClients, c.Groups = len(keys), len(signing), len(codes), len(clients), len(groups)
	return c, nil
}
