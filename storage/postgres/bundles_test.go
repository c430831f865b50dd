package postgres_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"tether/storage"
	"tether/storage/postgres"
	"tether/storage/postgres/pgtest"
)

// TestBundleReadsGathered: session bundles read at once, by ID and by
// family, each get their own session, user and handset (or ErrNotFound),
// in fewer statements than reads; a read whose context ends stops
// waiting, and a read on a closed store fails instead of hanging.
func TestBundleReadsGathered(t *testing.T) {
	ctx := context.Background()
	var count trips
	s, err := postgres.Open(ctx, pgtest.Schema(t), postgres.WithQueryTracer(&count))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC().Truncate(time.Second)
	hash := func() []byte { b := make([]byte, 32); rand.Read(b); return b }
	const n = 40
	var sessions []storage.Session
	for i := range n {
		u := storage.User{ID: storage.NewID(storage.PrefixUser), Username: fmt.Sprintf("worker%02d", i), Role: storage.RoleWorker, CreatedAt: now, UpdatedAt: now}
		if _, err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		d := storage.Device{ID: storage.NewID(storage.PrefixDevice), IMEI: fmt.Sprintf("35%013d", i), Status: storage.DeviceEnrolled,
			Group: fmt.Sprintf("g%d", i), EnrolledAt: now, UpdatedAt: now}
		if i%4 == 3 {
			d.ID = "" // some sessions have no handset
		} else if err := s.CreateDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
		sess, err := s.CreateSession(ctx, storage.Session{ID: storage.NewID(storage.PrefixSession), UserID: u.ID, DeviceID: d.ID,
			CreatedAt: now, LastUsedAt: now, IdleTimeout: time.Hour, ExpiresAt: now.Add(time.Hour), FamilyHash: hash(), RefreshHash: hash()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, sess)
	}

	check := func(b storage.SessionBundle, err error, want storage.Session) error {
		switch {
		case err != nil:
			return err
		case b.Session.ID != want.ID || !bytes.Equal(b.Session.FamilyHash, want.FamilyHash) || b.Revision == 0:
			return fmt.Errorf("got session %s (revision %d); want %s", b.Session.ID, b.Revision, want.ID)
		case b.User.ID != want.UserID:
			return fmt.Errorf("session %s: user %q; want %q", want.ID, b.User.ID, want.UserID)
		case want.DeviceID == "" && b.Device != nil, want.DeviceID != "" && (b.Device == nil || b.Device.ID != want.DeviceID):
			return fmt.Errorf("session %s: handset %+v; want %q", want.ID, b.Device, want.DeviceID)
		}
		return nil
	}
	before := count.n.Load()
	const rounds = 5
	var wg sync.WaitGroup
	errs := make(chan error, 8*n*rounds)
	for range rounds {
		for _, sess := range sessions {
			wg.Go(func() {
				b, err := s.GetSessionBundle(ctx, sess.ID)
				if err := check(b, err, sess); err != nil {
					errs <- fmt.Errorf("by ID: %w", err)
				}
			})
			wg.Go(func() {
				b, err := s.GetSessionBundleByFamily(ctx, sess.FamilyHash)
				if err := check(b, err, sess); err != nil {
					errs <- fmt.Errorf("by family: %w", err)
				}
			})
			wg.Go(func() {
				if _, err := s.GetSessionBundle(ctx, storage.NewID(storage.PrefixSession)); !errors.Is(err, storage.ErrNotFound) {
					errs <- fmt.Errorf("missing by ID: %v; want ErrNotFound", err)
				}
			})
			wg.Go(func() {
				if _, err := s.GetSessionBundleByFamily(ctx, hash()); !errors.Is(err, storage.ErrNotFound) {
					errs <- fmt.Errorf("missing by family: %v; want ErrNotFound", err)
				}
			})
			// IDs from tokens not yet verified, which the database
			// would refuse, fail only their own read.
			wg.Go(func() {
				for _, id := range []string{"ses_\x00", "ses_\xff\xfe", sess.ID + "\x00"} {
					if _, err := s.GetSessionBundle(ctx, id); !errors.Is(err, storage.ErrNotFound) {
						errs <- fmt.Errorf("hostile ID %q: %v; want ErrNotFound", id, err)
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	reads, statements := int64(4*n*rounds), count.n.Load()-before
	t.Logf("%d reads in %d statements", reads, statements)
	if statements >= reads {
		t.Errorf("%d reads took %d statements; want them gathered into fewer", reads, statements)
	}

	// A read whose context has ended does not wait.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.GetSessionBundle(done, sessions[0].ID); !errors.Is(err, context.Canceled) {
		t.Errorf("read with a cancelled context: %v", err)
	}
	// A read on a closed store fails.
	s.Close()
	finished := make(chan error, 1)
	go func() {
		_, err := s.GetSessionBundle(ctx, sessions[0].ID)
		finished <- err
	}()
	select {
	case err := <-finished:
		if err == nil {
			t.Error("read on a closed store succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read on a closed store still waiting after 10 s")
	}
}

// TestBundleReadRefusedAlone: when the database refuses a gathered
// statement for one read's sake, each read is tried again on its own:
// that read fails, and every other read beside it gets its bundle.
func TestBundleReadRefusedAlone(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC().Truncate(time.Second)
	hash := func() []byte { b := make([]byte, 32); rand.Read(b); return b }
	var ids []string
	for range 20 {
		sess, err := s.CreateSession(ctx, storage.Session{ID: storage.NewID(storage.PrefixSession), UserID: "usr_x",
			CreatedAt: now, LastUsedAt: now, IdleTimeout: time.Hour, ExpiresAt: now.Add(time.Hour), FamilyHash: hash(), RefreshHash: hash()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sess.ID)
	}
	// A statement with "ses_boom" among its keys divides by zero.
	read := postgres.GatheredReads(s, `WHERE 1 / (CASE WHEN k.key = 'ses_boom' THEN 0 ELSE 1 END) = 1`)
	var wg sync.WaitGroup
	errs := make(chan error, 100*len(ids))
	for range 5 {
		wg.Go(func() {
			if _, err := read(ctx, "ses_boom"); err == nil {
				errs <- errors.New("the refused read succeeded")
			}
		})
		for _, id := range ids {
			wg.Go(func() {
				if b, err := read(ctx, id); err != nil || b.Session.ID != id {
					errs <- fmt.Errorf("read of %s beside a refused one: %s, %v", id, b.Session.ID, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
