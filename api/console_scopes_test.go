package api_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestConsoleScopes: a manager creates a manager limited to the group
// north in the console; signed in, that manager sees the group named in
// the header, only north's handsets and workers, and a south worker's page
// as a missing one. A worker's groups are edited on their page.
func TestConsoleScopes(t *testing.T) {
	e := newEnv(t)
	e.fleet() // walter (worker), maria (manager), two handsets in no group
	ids := map[string]string{}
	for _, d := range []struct{ imei, group string }{{imei(71), "north"}, {imei(72), "south"}} {
		r := e.do("POST", "/v1/devices", e.manager, map[string]any{"imei": d.imei, "group": d.group, "label": d.group + " van"})
		if r.status != 201 {
			t.Fatalf("device: %d %s", r.status, r.body)
		}
	}
	for _, u := range []struct{ name, group string }{{"nils", "north"}, {"sven", "south"}} {
		r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": u.name, "password": "correct horse", "role": "worker", "scopes": []string{u.group}})
		if r.status != 201 {
			t.Fatalf("worker: %d %s", r.status, r.body)
		}
		ids[u.name] = r.json(t)["id"].(string)
	}

	b := newBrowser(t, e, 1280, 900)
	b.signIn("maria", "correct horse")
	b.run("create a manager of north",
		chromedp.Navigate(b.base+"/console#users"),
		chromedp.WaitVisible("#user-open", chromedp.ByQuery),
		chromedp.Click("#user-open", chromedp.ByQuery),
		chromedp.WaitVisible("#user-dialog input[name=username]", chromedp.ByQuery),
		chromedp.SendKeys("#user-dialog input[name=username]", "nora", chromedp.ByQuery),
		chromedp.SendKeys("#user-dialog input[name=password]", "correct horse", chromedp.ByQuery),
		chromedp.SetValue("#user-dialog select[name=role]", "manager", chromedp.ByQuery),
		chromedp.SendKeys("#user-dialog input[name=scopes]", "north", chromedp.ByQuery),
		chromedp.Click("#user-dialog button[type=submit]", chromedp.ByQuery),
		chromedp.WaitNotVisible("#user-dialog", chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="users-table"]//a[text()="nora"]`),
	)
	var row string
	b.eval(`[...document.querySelectorAll("#users-table tbody tr")].find((tr) => tr.textContent.includes("nora")).textContent`, &row)
	if !strings.Contains(row, "north") {
		t.Errorf("nora's row: %q", row)
	}
	// A worker's groups, edited on their page.
	b.run("edit nils's groups",
		chromedp.Navigate(b.base+"/console#user/"+ids["nils"]),
		chromedp.WaitVisible(`//div[@id="user-actions"]//button[text()="Edit groups"]`),
		chromedp.Click(`//div[@id="user-actions"]//button[text()="Edit groups"]`),
		chromedp.WaitVisible("#scopes-dialog input[name=scopes]", chromedp.ByQuery),
		chromedp.SetValue("#scopes-dialog input[name=scopes]", "north, depot-7", chromedp.ByQuery),
		chromedp.Click("#scopes-dialog button[type=submit]", chromedp.ByQuery),
		chromedp.WaitNotVisible("#scopes-dialog", chromedp.ByQuery),
	)
	var saved bool
	b.run("see them saved", chromedp.Poll(`document.querySelector("#user-details").textContent.includes("depot-7, north")`, &saved, chromedp.WithPollingTimeout(10*time.Second)))

	n := newBrowser(t, e, 1280, 900)
	n.run("sign in as nora",
		chromedp.Navigate(n.base+"/console"),
		chromedp.WaitVisible("#login-form", chromedp.ByQuery),
		chromedp.SendKeys("#login-form input[name=username]", "nora", chromedp.ByQuery),
		chromedp.SendKeys("#login-form input[name=password]", "correct horse", chromedp.ByQuery),
		chromedp.Click("#login-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#fleet-table tbody tr td a", chromedp.ByQuery),
	)
	if got := n.text("#scope"); got != "groups: north" {
		t.Errorf("header scope %q", got)
	}
	var shot []byte
	n.run("the fleet of north", chromedp.FullScreenshot(&shot, 100))
	n.save("console-scoped-fleet.png", shot)
	fleet := n.text("#fleet-table tbody")
	if !strings.Contains(fleet, imei(71)) || strings.Contains(fleet, imei(72)) || strings.Contains(fleet, "490154203237518") {
		t.Errorf("nora's fleet: %q", fleet)
	}
	n.run("the users of north",
		chromedp.Navigate(n.base+"/console#users"),
		chromedp.WaitVisible(`//table[@id="users-table"]//a[text()="nils"]`),
	)
	if users := n.text("#users-table tbody"); strings.Contains(users, "sven") || strings.Contains(users, "maria") || strings.Contains(users, "walter") {
		t.Errorf("nora's users: %q", users)
	}
	var missing bool
	n.run("a south worker's page",
		chromedp.Navigate(n.base+"/console#user/"+ids["sven"]),
		chromedp.Poll(`document.querySelector("#flash").textContent.includes("does not exist")`, &missing, chromedp.WithPollingTimeout(10*time.Second)),
	)
}
