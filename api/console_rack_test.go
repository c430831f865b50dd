package api_test

import (
	"encoding/csv"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestConsoleRack drives the racks of shared handsets in the console: a
// manager puts two handsets in a group and gives one a mode of its own,
// makes the group shared with shifts, sees who holds the shared handset
// once workers sign in on it, is told beside the field what is wrong with
// a bad shift boundary, downloads the rack as CSV, and removes the
// group's settings.
func TestConsoleRack(t *testing.T) {
	e := newEnv(t)
	phone, other := e.fleet() // walter (worker) and maria (manager)
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "anna", "password": "correct horse", "role": "worker"}); r.status != 201 {
		t.Fatal(r.status, string(r.body))
	}
	b := newBrowser(t, e, 1366, 900)
	dir := b.downloads()
	b.signIn("maria", "correct horse")
	fill := func(sel, value string) chromedp.Action { return chromedp.SetValue(sel, value, chromedp.ByQuery) }
	var shot []byte

	// Both handsets go to group rack-1: the phone follows the group, the
	// other is personal whatever the group says.
	edit := func(id, mode string) {
		t.Helper()
		b.run("edit handset "+id,
			chromedp.Navigate(b.base+"/console#device/"+id),
			chromedp.WaitVisible("#device-edit", chromedp.ByQuery),
			chromedp.Click("#device-edit", chromedp.ByQuery),
			chromedp.WaitVisible("#device-dialog select[name=mode]", chromedp.ByQuery),
			fill("#device-dialog input[name=group]", "rack-1"),
			fill("#device-dialog select[name=mode]", mode),
			chromedp.CaptureScreenshot(&shot),
			chromedp.Click("#device-dialog button[type=submit]", chromedp.ByQuery),
			chromedp.WaitNotVisible("#device-dialog", chromedp.ByQuery),
			chromedp.WaitVisible(`//dl[@id="device-details"]/dd[.="rack-1"]`),
		)
	}
	edit(phone, "group")
	b.save("console-rack-edit.png", shot)
	if got := b.text(`#device-details [data-mode]`); got != "personal, from its group rack-1" {
		t.Fatalf("the phone's mode reads %q; want personal, from its group rack-1", got)
	}
	edit(other, "personal")
	if d := e.do("GET", "/v1/devices/"+other, e.manager, nil).json(t); d["mode"] != "personal" || d["modeSource"] != "handset" {
		t.Fatalf("the other handset after the console set it personal: mode %v from %v", d["mode"], d["modeSource"])
	}

	// The group's settings, in the Racks section.
	b.run("open rack-1 in the racks",
		chromedp.Click(`a[data-nav="racks"]`, chromedp.ByQuery),
		chromedp.WaitReady(`#rack-group option[value="rack-1"]`, chromedp.ByQuery),
		fill("#rack-group", "rack-1"),
		chromedp.Evaluate(`document.querySelector("#rack-group").dispatchEvent(new Event("change"))`, nil),
		chromedp.WaitVisible("#group-form", chromedp.ByQuery),
		chromedp.WaitVisible(`//h2[@id="group-settings-title"][contains(., "rack-1")]`),
	)
	if got := b.text("#rack-table tbody"); !strings.Contains(got, "No shared handsets") {
		t.Fatalf("before the group is shared its rack reads %q; want it empty", got)
	}
	b.run("make rack-1 shared, in shifts",
		fill("#group-form select[name=mode]", "shared"),
		fill("#group-form textarea[name=roster]", "anna"),
		chromedp.Click("#group-has-shifts", chromedp.ByQuery),
		fill("#group-form input[name=timeZone]", "Europe/Berlin"),
		fill("#group-form input[name=boundaries]", "06:00, 14:00 22:00"),
		fill("#group-form input[name=graceMinutes]", "15"),
		fill("#group-form input[name=suspendUnreturnedAfterMinutes]", "120"),
		chromedp.Click("#group-save", chromedp.ByQuery),
		chromedp.WaitVisible(`//p[@id="flash"][contains(., "rack-1 are saved")]`),
	)
	g := e.do("GET", "/v1/groups/rack-1", e.manager, nil).json(t)
	if shifts, _ := g["shifts"].(map[string]any); g["mode"] != "shared" || fmt.Sprint(g["roster"]) != "[anna]" || g["suspendUnreturnedAfterMinutes"] != float64(120) ||
		shifts == nil || shifts["timeZone"] != "Europe/Berlin" || fmt.Sprint(shifts["boundaries"]) != "[06:00 14:00 22:00]" || shifts["graceMinutes"] != float64(15) {
		t.Fatalf("the group as the console saved it: %v", g)
	}
	if got := b.text("#group-about"); !strings.Contains(got, "by you") {
		t.Fatalf("the settings say %q; want who changed them last", got)
	}

	// Workers sign in on the shared phone: anna takes it over from walter.
	e.loginOn("walter", "490154203237518")
	e.loginOn("anna", "490154203237518")
	row := fmt.Sprintf(`#rack-table tr[data-device=%q]`, phone)
	b.run("see anna holding the phone",
		chromedp.Click("#rack-refresh", chromedp.ByQuery),
		chromedp.WaitVisible(row+` .badge[data-state="in_use"]`, chromedp.ByQuery),
		chromedp.FullScreenshot(&shot, 100),
	)
	b.save("console-rack-table.png", shot)
	if got := b.text(row + " td.holder"); got != "anna" {
		t.Fatalf("the phone's holder reads %q; want anna", got)
	}
	cells := b.text(row)
	if !strings.Contains(cells, "490154203237518") || !strings.Contains(strings.ToLower(cells), "in use") {
		t.Fatalf("the phone's row reads %q", cells)
	}
	var rows int
	b.eval(`document.querySelectorAll("#rack-table tbody tr[data-device]").length`, &rows)
	if rows != 1 {
		t.Fatalf("the rack lists %d handsets; want the phone alone (the other is personal)", rows)
	}
	if got := b.text("#rack-summary"); !strings.Contains(got, "1 shared handset: 1 in use") {
		t.Fatalf("the summary reads %q", got)
	}

	// The rack as CSV, as the server gives it to the console.
	b.run("download the rack as CSV", chromedp.Click("#rack-csv", chromedp.ByQuery))
	records, err := csv.NewReader(strings.NewReader(downloaded(t, dir, "rack-rack-1.csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 2 {
		t.Fatalf("the CSV has %d records; want a header and the phone:\n%v", len(records), records)
	}
	col := map[string]int{}
	for i, name := range records[0] {
		col[name] = i
	}
	if r := records[1]; r[col["imei"]] != "490154203237518" || r[col["state"]] != "in_use" || r[col["username"]] != "anna" {
		t.Fatalf("the CSV's row: %v (header %v)", r, records[0])
	}

	// A bad boundary and an unknown user: each error shows beside its
	// field, nothing is saved.
	b.run("give a boundary as 6am",
		fill("#group-form input[name=boundaries]", "6am, 14:00"),
		fill("#group-form textarea[name=roster]", "anna\nnobody"),
		chromedp.Click("#group-save", chromedp.ByQuery),
		chromedp.WaitVisible(`#group-form [data-field="shifts.boundaries"] .line`, chromedp.ByQuery),
	)
	if got := b.text(`#group-form [data-field="shifts.boundaries"]`); !strings.Contains(got, "6am") || !strings.Contains(got, "HH:MM") {
		t.Fatalf("the boundary's error reads %q; want it to name 6am and HH:MM", got)
	}
	if got := b.text(`#group-form [data-field="roster"]`); !strings.Contains(got, "nobody") || strings.Contains(got, "anna") {
		t.Fatalf("the roster's error reads %q; want it to name nobody alone", got)
	}
	var invalid []string
	b.eval(`[...document.querySelectorAll("#group-form [aria-invalid=true]")].map((el) => el.name)`, &invalid)
	if fmt.Sprint(invalid) != "[roster boundaries]" {
		t.Fatalf("the fields marked invalid: %v; want roster and boundaries", invalid)
	}
	if got := b.text("#group-form .errors"); got == "" {
		t.Fatal("the form says nothing of its error above its buttons")
	}
	b.run("screenshot the error",
		chromedp.ScrollIntoView("#group-form", chromedp.ByQuery),
		chromedp.CaptureScreenshot(&shot),
	)
	b.save("console-rack-error.png", shot)
	if g := e.do("GET", "/v1/groups/rack-1", e.manager, nil).json(t); fmt.Sprint(g["shifts"].(map[string]any)["boundaries"]) != "[06:00 14:00 22:00]" {
		t.Fatalf("a refused save changed the group: %v", g)
	}

	// The fleet shows each handset's mode and where it comes from.
	b.run("the fleet's modes",
		chromedp.Click(`a[data-nav="fleet"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#fleet-table [data-mode]`, chromedp.ByQuery),
	)
	var modes map[string]string
	b.eval(`Object.fromEntries([...document.querySelectorAll("#fleet-table tbody tr")].map((tr) => [tr.cells[0].textContent, tr.querySelector("[data-mode]").textContent]))`, &modes)
	if modes["490154203237518"] != "shared (group)" || modes["356938035643809"] != "personal (handset)" {
		t.Fatalf("the fleet's modes: %v", modes)
	}
	b.run("screenshot the fleet", chromedp.FullScreenshot(&shot, 100))
	b.save("console-rack-fleet.png", shot)

	// Removing the settings asks first; the phone is personal again.
	b.run("remove the settings of rack-1",
		chromedp.Navigate(b.base+"/console#racks/rack-1"),
		chromedp.WaitVisible(`//h2[@id="group-settings-title"][contains(., "rack-1")]`),
		chromedp.WaitVisible(row, chromedp.ByQuery),
		chromedp.Click("#group-remove", chromedp.ByQuery),
		chromedp.WaitVisible("#confirm-dialog", chromedp.ByQuery),
		chromedp.Click("#confirm-yes", chromedp.ByQuery),
		chromedp.WaitVisible(`//p[@id="flash"][contains(., "rack-1 are removed")]`),
		chromedp.WaitNotPresent(row, chromedp.ByQuery),
	)
	wantProblem(t, e.do("DELETE", "/v1/groups/rack-1", e.manager, nil), 404, "not_found")
	if d := e.do("GET", "/v1/devices/"+phone, e.manager, nil).json(t); d["mode"] != "personal" || d["modeSource"] != "group" {
		t.Fatalf("the phone once its group's settings are gone: mode %v from %v", d["mode"], d["modeSource"])
	}
	var removable bool
	b.eval(`!document.querySelector("#group-remove").disabled`, &removable)
	if removable {
		t.Fatal("Remove settings is still enabled for a group without settings")
	}

	// A manager of group north alone is offered north, not rack-1.
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "nils", "password": "correct horse", "role": "manager", "scopes": []string{"north"}}); r.status != 201 {
		t.Fatal(r.status, string(r.body))
	}
	// signIn waits for the fleet, which he does not see first.
	b.run("nils signs in",
		chromedp.Click("#logout", chromedp.ByQuery),
		chromedp.WaitVisible("#login-form", chromedp.ByQuery),
		chromedp.SendKeys("#login-form input[name=username]", "nils", chromedp.ByQuery),
		chromedp.SendKeys("#login-form input[name=password]", "correct horse", chromedp.ByQuery),
		chromedp.Click("#login-form button[type=submit]", chromedp.ByQuery),
		// The page still links to rack-1, which is not his.
		chromedp.WaitVisible(`//p[@id="group-pick"][contains(., "no group rack-1 among those you manage")]`),
		chromedp.Click(`a[data-nav="racks"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#group-pick", chromedp.ByQuery),
	)
	var offered []string
	b.run("read the groups offered to nils", chromedp.Poll(`(() => { const v = [...document.querySelectorAll("#rack-group option")].map((o) => o.value);
		return document.querySelector("#group-pick").textContent.startsWith("Choose") && !v.includes("rack-1") && v; })()`, &offered, chromedp.WithPollingTimeout(5*time.Second)))
	if fmt.Sprint(offered) != "[ north]" {
		t.Fatalf("nils is offered the groups %q; want all of his (\"\") and north", offered)
	}
}
