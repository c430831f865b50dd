package device_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"tether"
	"tether/device"
	"tether/storage"
)

func TestSetGroup(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	nora := f.user(t, "nora")
	cli := device.Actor{Name: "cli"}
	shifts := &storage.ShiftSchedule{TimeZone: "Europe/Berlin", Boundaries: []string{"06:00", "14:00", "22:00"}, Grace: 15 * time.Minute}
	g, err := f.svc.SetGroup(ctx, cli, "rack-1", device.GroupSettings{Mode: "shared", Roster: []string{"NORA"}, Shifts: shifts, SuspendUnreturnedAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if g.Mode != storage.ModeShared || len(g.Roster) != 1 || g.Roster[0] != nora.ID || g.Shifts.TimeZone != "Europe/Berlin" ||
		g.SuspendUnreturnedAfter != time.Hour || !g.UpdatedAt.Equal(f.now) || g.UpdatedBy != "cli" {
		t.Fatalf("SetGroup = %+v", g)
	}
	if got, err := f.svc.GetGroup(ctx, cli, "rack-1"); err != nil || got.Mode != storage.ModeShared {
		t.Fatalf("GetGroup = %+v, %v", got, err)
	}
	page, _ := f.store.ListEvents(ctx, storage.EventFilter{Action: "group.update"})
	if len(page.Items) != 1 || page.Items[0].Groups[0] != "rack-1" || page.Items[0].Detail["mode"] != "shared" {
		t.Fatalf("group.update events %+v", page.Items)
	}
	// A group without settings has the zero ones.
	if got, err := f.svc.GetGroup(ctx, cli, "north"); err != nil || got.Name != "north" || got.Mode != "" {
		t.Fatalf("GetGroup of a group without settings = %+v, %v", got, err)
	}

	// Every bad field named at once; nothing written.
	_, err = f.svc.SetGroup(ctx, cli, "rack-1", device.GroupSettings{
		Mode: "communal", Roster: []string{"nobody"},
		Shifts:                 &storage.ShiftSchedule{TimeZone: "Mars/Base", Boundaries: []string{"25:00"}, Grace: -1},
		SuspendUnreturnedAfter: -time.Minute,
	})
	want := []string{"mode", "roster[0]", "shifts.timeZone", "shifts.boundaries[0]", "shifts.graceMinutes", "suspendUnreturnedAfterMinutes"}
	if got := fields(err); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("fields %v; want %v (%v)", got, want, err)
	}
	if got, _ := f.svc.GetGroup(ctx, cli, "rack-1"); got.Mode != storage.ModeShared || got.Shifts == nil {
		t.Fatalf("a refused change was written: %+v", got)
	}
	for _, name := range []string{"", " rack-1", strings.Repeat("x", device.MaxGroup+1), "a\x00b", "tab\there"} {
		if _, err := f.svc.SetGroup(ctx, cli, name, device.GroupSettings{}); fieldCode(err) == "" {
			t.Fatalf("SetGroup(%q) = %v; want a validation error", name, err)
		}
	}

	// Scoped: only their groups; another's is not theirs to read.
	scoped := device.Actor{Name: "user:usr_m", Scopes: []string{"north"}}
	if _, err := f.svc.SetGroup(ctx, scoped, "rack-1", device.GroupSettings{Mode: "shared"}); !errors.Is(err, device.ErrScopeExceeded) {
		t.Fatalf("a scoped manager setting another group: %v", err)
	}
	if _, err := f.svc.GetGroup(ctx, scoped, "rack-1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a scoped manager reading another group: %v", err)
	}
	if err := f.svc.DeleteGroup(ctx, scoped, "rack-1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a scoped manager deleting another group: %v", err)
	}
	if _, err := f.svc.SetGroup(ctx, scoped, "north", device.GroupSettings{Mode: "shared"}); err != nil {
		t.Fatal(err)
	}
	groups, err := f.svc.Groups(ctx, scoped)
	if err != nil || len(groups) != 1 || groups[0].Name != "north" {
		t.Fatalf("a scoped manager's groups: %+v, %v", groups, err)
	}
	// Groups handsets are in are groups too, with the zero settings.
	if _, err := f.svc.Register(ctx, cli, device.Registration{Payload: device.Payload{IMEI: "490154203237518"}, Group: "depot 7"}); err != nil {
		t.Fatal(err)
	}
	all, _ := f.svc.Groups(ctx, cli)
	var names []string
	for _, g := range all {
		names = append(names, g.Name)
	}
	if strings.Join(names, "|") != "depot 7|north|rack-1" || all[0].Mode != "" || all[0].UpdatedAt.IsZero() == false {
		t.Fatalf("all groups: %+v", all)
	}
	if err := f.svc.DeleteGroup(ctx, cli, "rack-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteGroup(ctx, cli, "rack-1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}

func TestDeviceMode(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	cli := device.Actor{Name: "cli"}
	own, err := f.svc.Register(ctx, cli, device.Registration{Payload: device.Payload{IMEI: "490154203237518"}, Group: "rack-1", Mode: "shared"})
	if err != nil || own.Mode != storage.ModeShared {
		t.Fatalf("Register with a mode: %+v, %v", own, err)
	}
	follows, err := f.svc.Register(ctx, cli, device.Registration{Payload: device.Payload{IMEI: "356938035643809"}, Group: "rack-1"})
	if err != nil || follows.Mode != storage.ModeGroup {
		t.Fatalf("Register without a mode: %+v, %v", follows, err)
	}
	if _, err := f.svc.Register(ctx, cli, device.Registration{Payload: device.Payload{IMEI: "352099001761481"}, Mode: "borrowed"}); fieldCode(err) != "mode_invalid" {
		t.Fatalf("Register with a bad mode: %v", err)
	}
	modes, err := f.svc.Modes(ctx, []storage.Device{own, follows})
	if err != nil || modes[own.ID] != storage.ModeShared || modes[follows.ID] != storage.ModePersonal {
		t.Fatalf("Modes before the group is shared: %v, %v", modes, err)
	}
	if _, err := f.svc.SetGroup(ctx, cli, "rack-1", device.GroupSettings{Mode: "shared"}); err != nil {
		t.Fatal(err)
	}
	personal := "personal"
	own, err = f.svc.Update(ctx, cli, own.ID, device.Patch{Mode: &personal})
	if err != nil || own.Mode != storage.ModePersonal {
		t.Fatalf("Update to personal: %+v, %v", own, err)
	}
	if modes, _ = f.svc.Modes(ctx, []storage.Device{own, follows}); modes[own.ID] != storage.ModePersonal || modes[follows.ID] != storage.ModeShared {
		t.Fatalf("Modes after the group is shared: %v", modes)
	}
	bad := "SHARED!"
	if _, err := f.svc.Update(ctx, cli, own.ID, device.Patch{Mode: &bad}); fieldCode(err) != "mode_invalid" {
		t.Fatalf("Update with a bad mode: %v", err)
	}
}

// fields lists the fields a validation error names, in order.
func fields(err error) []string {
	var ve *tether.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	var out []string
	for _, f := range ve.Fields {
		out = append(out, f.Field)
	}
	return out
}

// TestImportMode: a mode column sets each handset's mode; a bad one is
// reported against its row and nothing is written.
func TestImportMode(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	csv := "imei,group,mode\n490154203237518,rack-1,Shared\n356938035643809,rack-1,\n352099001761481,rack-1,group\n"
	rows, warnings, err := device.ReadImport(strings.NewReader(csv), device.FormatCSV)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("ReadImport: %v, %v", warnings, err)
	}
	if _, err := f.svc.Import(ctx, device.Actor{Name: "cli"}, rows, nil, device.ImportOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	for imei, want := range map[string]storage.DeviceMode{"490154203237518": storage.ModeShared, "356938035643809": storage.ModeGroup, "352099001761481": storage.ModeGroup} {
		if d, err := f.store.GetDeviceByIMEI(ctx, imei); err != nil || d.Mode != want {
			t.Fatalf("imported %s with mode %q, %v; want %q", imei, d.Mode, err, want)
		}
	}
	rows, _, _ = device.ReadImport(strings.NewReader("imei,mode\n353918057455871,rented\n"), device.FormatCSV)
	report, err := f.svc.Import(ctx, device.Actor{Name: "cli"}, rows, nil, device.ImportOptions{DryRun: true}, nil)
	if err != nil || len(report.Errors) != 1 || report.Errors[0].Field != "mode" || report.Errors[0].Code != "mode_invalid" {
		t.Fatalf("a bad mode: %+v, %v", report.Errors, err)
	}
}
