package auth

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"tether"
	"tether/device"
	"tether/storage"
	"tether/storage/bolt"
)

// BenchmarkWatchShifts is one shift watch over a fleet of 2,000 handsets,
// half of them shared across 20 racks, each shared one with a day of
// shifts behind it (three sessions) and a worker on it now.
func BenchmarkWatchShifts(b *testing.B) {
	store, err := bolt.Open(filepath.Join(b.TempDir(), "tether.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	v := tether.NewValidator()
	if err := device.RegisterValidations(v); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	user, err := store.CreateUser(ctx, storage.User{ID: storage.NewID(storage.PrefixUser), Username: "walter", Role: storage.RoleWorker})
	if err != nil {
		b.Fatal(err)
	}
	const handsets, racks = 2000, 20
	ds := make([]storage.Device, handsets)
	for i := range ds {
		ds[i] = storage.Device{ID: storage.NewID(storage.PrefixDevice), IMEI: fmt.Sprintf("35%013d", i), Status: storage.DeviceEnrolled,
			Group: fmt.Sprintf("rack-%02d", i%(2*racks)), EnrolledAt: now, UpdatedAt: now}
	}
	if err := store.CreateDevices(ctx, ds); err != nil {
		b.Fatal(err)
	}
	for r := range racks {
		g := storage.Group{Name: fmt.Sprintf("rack-%02d", 2*r), Mode: storage.ModeShared,
			Shifts: &storage.ShiftSchedule{TimeZone: "UTC", Boundaries: []string{"06:00", "14:00", "22:00"}}}
		if _, err := store.UpdateGroup(ctx, g.Name, func(storage.Group) (storage.Group, error) { return g, nil }); err != nil {
			b.Fatal(err)
		}
	}
	for i, d := range ds {
		if i%2 != 0 {
			continue
		}
		for k := range 3 {
			start := now.Add(time.Duration(k-2) * 8 * time.Hour)
			family := make([]byte, 32)
			randRead(family)
			s := storage.Session{ID: storage.NewID(storage.PrefixSession), UserID: user.ID, DeviceID: d.ID, ClientID: fmt.Sprint(k),
				CreatedAt: start, LastUsedAt: start, IdleTimeout: 12 * time.Hour, ExpiresAt: start.Add(8 * time.Hour),
				ShiftEnd: start.Add(8 * time.Hour), FamilyHash: family, RefreshHash: family}
			if k < 2 {
				s.RevokedAt, s.RevokeReason = start.Add(8*time.Hour), "shift_ended"
			}
			if _, err := store.CreateSession(ctx, s, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	svc, err := NewService(ctx, DefaultConfig(), store, NewHasher(cheap), v)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := svc.WatchShifts(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
