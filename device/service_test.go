package device_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tether"
	"tether/device"
	"tether/storage"
	"tether/storage/bolt"
)

type fixture struct {
	svc   *device.Service
	store *bolt.Store
	now   time.Time
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "tether.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	v := tether.NewValidator()
	if err := device.RegisterValidations(v); err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	f.svc = device.NewService(store, v, device.WithClock(func() time.Time { return f.now }))
	return f
}

func (f *fixture) user(t *testing.T, name string) storage.User {
	t.Helper()
	u, err := f.store.CreateUser(context.Background(), storage.User{
		ID: storage.NewID(storage.PrefixUser), Username: name, Role: storage.RoleWorker,
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRegister(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	alice := f.user(t, "alice")

	d, err := f.svc.Register(ctx, device.Actor{Name: "apikey:ak_1"}, device.Registration{
		Payload:       device.Payload{IMEI: "4901-5420-3237-518"},
		Label:         "  van 7 ",
		Group:         "north",
		AssignedUsers: []string{"ALICE", alice.ID},
	})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if d.IMEI != "490154203237518" || d.Label != "van 7" || d.Status != storage.DeviceEnrolled ||
		d.EnrolledBy != "apikey:ak_1" || !d.EnrolledAt.Equal(f.now) || len(d.AssignedUsers) != 1 || d.AssignedUsers[0] != alice.ID {
		t.Fatalf("Register = %+v", d)
	}
	for _, ref := range []string{d.ID, d.IMEI, "49 0154 2032 37518"} {
		got, err := f.svc.Find(ctx, device.Actor{}, ref)
		if err != nil || got.ID != d.ID {
			t.Fatalf("Find(%q) = %v, %v; want %s", ref, got.ID, err, d.ID)
		}
	}
	names, err := f.svc.AssignedUsernames(ctx, d, nil)
	if err != nil || len(names) != 1 || names[0] != "alice" {
		t.Fatalf("AssignedUsernames = %v, %v", names, err)
	}

	// The same IMEI again is a conflict.
	_, err = f.svc.Register(ctx, device.Actor{Name: "apikey:ak_1"}, device.Registration{Payload: device.Payload{IMEI: "490154203237518"}})
	if !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("second Register: %v; want a conflict", err)
	}
}

func TestRegisterNamesEveryBadField(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	_, err := f.svc.Register(ctx, device.Actor{Name: "cli"}, device.Registration{
		Payload:       device.Payload{IMEI: "490154203237519", IccIDs: []string{"79445001021983048261"}},
		Label:         strings.Repeat("x", 65),
		Group:         "bad\x07group",
		AssignedUsers: []string{"nobody"},
	})
	var ve *tether.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Register: %v; want a validation error", err)
	}
	got := map[string]string{}
	for _, fe := range ve.Fields {
		got[fe.Field] = fe.Code
	}
	want := map[string]string{
		"imei": "imei_checksum", "iccIds[0]": "iccid_prefix", "label": "label_length",
		"group": "group_chars", "assignedUsers[0]": "user_unknown",
	}
	for field, code := range want {
		if got[field] != code {
			t.Errorf("field %s: code %q; want %q (all: %v)", field, got[field], code, got)
		}
	}
	page, err := f.store.ListDevices(ctx, storage.DeviceFilter{})
	if err != nil || len(page.Items) != 0 {
		t.Fatalf("store holds %d devices after a refused register; want 0", len(page.Items))
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	d, err := f.svc.Register(ctx, device.Actor{Name: "cli"}, device.Registration{Payload: device.Payload{IMEI: "490154203237518"}})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op      func(context.Context, device.Actor, string, string) (storage.Device, error)
		name    string
		want    storage.DeviceStatus
		wantErr error
	}{
		{f.svc.Suspend, "suspend", storage.DeviceSuspended, nil},
		{f.svc.Suspend, "suspend again", storage.DeviceSuspended, nil},
		{f.svc.Reinstate, "reinstate", storage.DeviceEnrolled, nil},
		{f.svc.Retire, "retire", storage.DeviceRetired, nil},
		{f.svc.Suspend, "suspend retired", storage.DeviceRetired, device.ErrInvalidTransition},
		{f.svc.Retire, "retire again", storage.DeviceRetired, nil},
		{f.svc.Reinstate, "reinstate retired", storage.DeviceEnrolled, nil},
	}
	for i, st := range steps {
		f.now = f.now.Add(time.Minute)
		got, err := st.op(ctx, device.Actor{Name: "usr_manager"}, d.ID, "step "+st.name)
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: error %v; want %v", st.name, err, st.wantErr)
		}
		stored, gerr := f.store.GetDevice(ctx, d.ID)
		if gerr != nil {
			t.Fatal(gerr)
		}
		if stored.Status != st.want {
			t.Fatalf("step %d %s: stored status %s; want %s", i, st.name, stored.Status, st.want)
		}
		if err == nil && got.Status != st.want {
			t.Fatalf("%s: returned status %s; want %s", st.name, got.Status, st.want)
		}
	}
	last, err := f.store.GetDevice(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if last.StatusReason != "step reinstate retired" || last.StatusChangedBy != "usr_manager" || !last.StatusChangedAt.Equal(f.now) {
		t.Fatalf("status record %q by %q at %v", last.StatusReason, last.StatusChangedBy, last.StatusChangedAt)
	}

	_, err = f.svc.Suspend(ctx, device.Actor{Name: "usr_manager"}, "dev_missing", "")
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("suspend missing: %v; want not found", err)
	}
}

func TestUpdate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	bob := f.user(t, "bob")
	d, err := f.svc.Register(ctx, device.Actor{Name: "cli"}, device.Registration{Payload: device.Payload{IMEI: "490154203237518"}, Label: "old", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	label, users := "new", []string{"bob"}
	got, err := f.svc.Update(ctx, device.Actor{Name: "cli"}, d.ID, device.Patch{Label: &label, AssignedUsers: &users})
	if err != nil || got.Label != "new" || got.Group != "g" || len(got.AssignedUsers) != 1 || got.AssignedUsers[0] != bob.ID {
		t.Fatalf("Update = %+v, %v", got, err)
	}

	bad, unknown := string(make([]byte, 100)), []string{"ghost"}
	_, err = f.svc.Update(ctx, device.Actor{Name: "cli"}, d.ID, device.Patch{Group: &bad, AssignedUsers: &unknown})
	var ve *tether.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 2 {
		t.Fatalf("bad Update: %v; want two field errors", err)
	}
	stored, err := f.store.GetDevice(ctx, d.ID)
	if err != nil || stored.Group != "g" || stored.AssignedUsers[0] != bob.ID {
		t.Fatalf("a refused update changed the device: %+v", stored)
	}
}

// TestNotes: notes are free text a manager writes about a handset, at
// registration or later, trimmed and bounded like a label.
func TestNotes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	d, err := f.svc.Register(ctx, device.Actor{Name: "cli"}, device.Registration{Payload: device.Payload{IMEI: "490154203237518"}, Notes: "  charger in the glovebox "})
	if err != nil || d.Notes != "charger in the glovebox" {
		t.Fatalf("Register with notes = %q, %v; want them trimmed", d.Notes, err)
	}
	for _, c := range []struct {
		name, notes, code string
	}{
		{"set", "screen cracked; goes back Friday", ""},
		{"longest", strings.Repeat("n", device.MaxNotes), ""},
		{"too long", strings.Repeat("n", device.MaxNotes+1), "notes_length"},
		{"a line break", "one\ntwo", "notes_chars"},
		{"a control character", "bell\a", "notes_chars"},
		{"cleared", "", ""},
	} {
		before, _ := f.store.GetDevice(ctx, d.ID)
		notes := c.notes
		got, err := f.svc.Update(ctx, device.Actor{Name: "cli"}, d.ID, device.Patch{Notes: &notes})
		if code := fieldCode(err); code != c.code || (c.code == "" && err != nil) {
			t.Fatalf("%s: Update = %v; want code %q", c.name, err, c.code)
		}
		stored, _ := f.store.GetDevice(ctx, d.ID)
		want := c.notes
		if c.code != "" {
			want = before.Notes
		} else if got.Notes != want {
			t.Fatalf("%s: Update returned notes %q; want %q", c.name, got.Notes, want)
		}
		if stored.Notes != want {
			t.Fatalf("%s: stored notes %q; want %q", c.name, stored.Notes, want)
		}
	}
	if _, err := f.svc.Register(ctx, device.Actor{Name: "cli"}, device.Registration{Payload: device.Payload{IMEI: "356938035643809"}, Notes: "tab\there"}); fieldCode(err) != "notes_chars" {
		t.Fatalf("Register with a tab in the notes: %v; want notes_chars", err)
	}
}

// TestListByAssignedUser: a user's handsets, named by username (in any
// case) or id; a name of no user has none.
func TestListByAssignedUser(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	alice, bob := f.user(t, "alice"), f.user(t, "bob")
	var ids []string
	for i, c := range []struct {
		imei  string
		users []string
	}{
		{"490154203237518", []string{"alice"}},
		{"356938035643809", []string{"alice", "bob"}},
		{"352099001761481", nil}, // any worker: not listed as anyone's
	} {
		d, err := f.svc.Register(ctx, device.Actor{Name: "cli"}, device.Registration{Payload: device.Payload{IMEI: c.imei}, AssignedUsers: c.users})
		if err != nil {
			t.Fatalf("register %d: %v", i, err)
		}
		ids = append(ids, d.ID)
	}
	for _, c := range []struct {
		ref  string
		want []string
	}{
		{"alice", ids[:2]},
		{"ALICE", ids[:2]},
		{alice.ID, ids[:2]},
		{"bob", ids[1:2]},
		{bob.ID, ids[1:2]},
		{"carol", nil},
		{"usr_01NOSUCHUSER0000000000000", nil},
	} {
		page, err := f.svc.List(ctx, device.Actor{}, storage.DeviceFilter{AssignedUser: c.ref})
		if err != nil {
			t.Fatalf("%s: List: %v", c.ref, err)
		}
		var got []string
		for _, d := range page.Items {
			got = append(got, d.ID)
		}
		if !slices.Equal(got, c.want) {
			t.Fatalf("handsets of %s: got %v; want %v", c.ref, got, c.want)
		}
	}
}

func TestListRejectsUnknownStatus(t *testing.T) {
	f := newFixture(t)
	_, err := f.svc.List(context.Background(), device.Actor{}, storage.DeviceFilter{Status: "lost"})
	var ve *tether.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("List with status lost: %v; want a validation error", err)
	}
}

// fieldCode is the code of the first field of a validation error.
func fieldCode(err error) string {
	var ve *tether.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) == 0 {
		return ""
	}
	return ve.Fields[0].Code
}
