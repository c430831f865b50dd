package device_test

import (
	"context"
	"errors"
	"testing"

	"tether"
	"tether/device"
	"tether/storage"
)

// TestScopedActor: a manager limited to some groups registers, finds,
// lists, edits and moves handsets within them only.
func TestScopedActor(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	cli := device.Actor{Name: "cli"}
	north := device.Actor{Name: "apikey:ak_north", Scopes: []string{"north"}}
	both := device.Actor{Name: "apikey:ak_both", Scopes: []string{"north", "south"}}
	none := device.Actor{Name: "apikey:ak_none", Scopes: []string{}}

	// A new handset goes into the only group; several must name one.
	d, err := f.svc.Register(ctx, north, device.Registration{Payload: device.Payload{IMEI: "490154203237518"}})
	if err != nil || d.Group != "north" {
		t.Fatalf("register without a group: %q, %v", d.Group, err)
	}
	_, err = f.svc.Register(ctx, both, device.Registration{Payload: device.Payload{IMEI: "356938035643809"}})
	var verr *tether.ValidationError
	if !errors.As(err, &verr) || verr.Fields[0].Code != "group_required" {
		t.Fatalf("several groups, none named: %v", err)
	}
	for _, a := range []device.Actor{north, none} {
		if _, err := f.svc.Register(ctx, a, device.Registration{Payload: device.Payload{IMEI: "356938035643809"}, Group: "south"}); !errors.Is(err, device.ErrScopeExceeded) {
			t.Fatalf("%s registering into south: %v; want scope exceeded", a.Name, err)
		}
	}
	south, err := f.svc.Register(ctx, cli, device.Registration{Payload: device.Payload{IMEI: "356938035643809"}, Group: "south"})
	if err != nil {
		t.Fatal(err)
	}

	// Out of scope is not found, by id or IMEI, for reads and writes.
	for _, ref := range []string{south.ID, south.IMEI} {
		if _, err := f.svc.Find(ctx, north, ref); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("find %s: %v; want not found", ref, err)
		}
		if _, err := f.svc.Suspend(ctx, north, ref, ""); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("suspend %s: %v; want not found", ref, err)
		}
		label := "mine"
		if _, err := f.svc.Update(ctx, north, ref, device.Patch{Label: &label}); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("update %s: %v; want not found", ref, err)
		}
	}
	if got, err := f.store.GetDevice(ctx, south.ID); err != nil || got.Label != "" || got.Status != storage.DeviceEnrolled {
		t.Fatalf("south's handset changed: %+v, %v", got, err)
	}
	if _, err := f.svc.Find(ctx, both, south.ID); err != nil {
		t.Errorf("both finds south: %v", err)
	}

	// Moves stay within the scope.
	for _, g := range []string{"south", "", " "} {
		if _, err := f.svc.Update(ctx, north, d.ID, device.Patch{Group: &g}); !errors.Is(err, device.ErrScopeExceeded) {
			t.Errorf("north moving to %q: %v; want scope exceeded", g, err)
		}
	}
	g := "south"
	if moved, err := f.svc.Update(ctx, both, d.ID, device.Patch{Group: &g}); err != nil || moved.Group != "south" {
		t.Fatalf("both moving to south: %v", err)
	}
	if _, err := f.svc.Find(ctx, north, d.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("north finds the handset moved to south: %v", err)
	}

	// Lists are the scope's, whatever the filter asks.
	for _, c := range []struct {
		a    device.Actor
		want int
	}{{cli, 2}, {north, 0}, {both, 2}, {none, 0}} {
		page, err := f.svc.List(ctx, c.a, storage.DeviceFilter{Groups: nil})
		if err != nil || len(page.Items) != c.want {
			t.Errorf("%s lists %d, %v; want %d", c.a.Name, len(page.Items), err, c.want)
		}
	}

	// Import rows out of scope are invalid rows.
	rows := []device.ImportRow{
		{Row: 2, IMEI: "353918058396736", Group: "north"},
		{Row: 3, IMEI: "352099001761481", Group: "south"},
		{Row: 4, IMEI: "357805023984942"},
	}
	report, err := f.svc.Import(ctx, north, rows, nil, device.ImportOptions{SkipInvalid: true}, nil)
	if err != nil || report.Created != 2 || len(report.Errors) != 1 || report.Errors[0].Row != 3 || report.Errors[0].Code != "group_out_of_scope" {
		t.Fatalf("import: %+v, %v", report, err)
	}
}
