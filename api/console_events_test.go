package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestConsoleSinks: a manager sees on the audit page the sinks the trail
// is pushed to; a sink whose receiver refuses events shows them as dead
// letters, with an alert and a mark on the Audit link; replayed once the
// receiver takes them, they are delivered and the alert goes. A manager
// limited to some groups sees no sinks at all.
func TestConsoleSinks(t *testing.T) {
	r := newHookReceiver(t) // refuses every event (422) until told
	e := newEnv(t, hookConfig(t, r.URL))
	b := newBrowser(t, e, 1280, 900)
	e.fleet() // two handset registrations: two events for the sink
	eventually(t, "two dead letters", func() bool {
		res := e.do("GET", "/v1/events/sinks", e.manager, nil)
		return strings.Contains(string(res.body), `"deadLetters":2`)
	})

	b.signIn("maria", "correct horse")
	var shot []byte
	b.run("open the audit page",
		chromedp.Navigate(b.base+"/console#audit"),
		chromedp.WaitVisible(`#sinks-table tr[data-sink="hooks"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#sinks-alert", chromedp.ByQuery),
		chromedp.FullScreenshot(&shot, 100),
	)
	b.save("console-sinks.png", shot)
	if got := strings.ToLower(b.text(`#sinks-table tr[data-sink="hooks"]`)); !strings.Contains(got, "dead letters") || !strings.Contains(got, "422") {
		t.Errorf("the sink's row: %q", got)
	}
	if got := b.text("#sinks-alert"); !strings.Contains(got, "hooks: dead letters") {
		t.Errorf("alert: %q", got)
	}
	var marked bool
	b.eval(`document.querySelector("[data-nav=audit]").dataset.alert === "true"`, &marked)
	if !marked {
		t.Error("the Audit link carries no alert mark")
	}

	b.run("list the dead letters",
		chromedp.Click(`#sinks-table button[data-sink="hooks"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#dead-dialog", chromedp.ByQuery),
		chromedp.WaitVisible("#dead-table tbody tr:nth-child(2)", chromedp.ByQuery),
		chromedp.FullScreenshot(&shot, 100),
	)
	b.save("console-dead-letters.png", shot)
	if got := b.text("#dead-table tbody"); !strings.Contains(got, "device.register") || !strings.Contains(got, "422") {
		t.Errorf("dead letters: %q", got)
	}

	// The receiver mends; one is replayed, then the rest.
	r.status.Store(http.StatusOK)
	b.run("replay the first",
		chromedp.Click("#dead-table tbody tr:first-child button", chromedp.ByQuery),
		chromedp.WaitNotVisible("#dead-dialog", chromedp.ByQuery),
	)
	eventually(t, "the first replayed event delivered", func() bool { return r.count() == 1 })
	var one bool
	b.run("replay the rest",
		chromedp.Poll(`document.querySelector("#sinks-table tr[data-sink=hooks]").children[5].textContent === "1"`, &one, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Click(`#sinks-table button[data-sink="hooks"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#dead-table tbody tr", chromedp.ByQuery),
		chromedp.Click("#dead-replay-all", chromedp.ByQuery),
		chromedp.WaitNotVisible("#dead-dialog", chromedp.ByQuery),
	)
	eventually(t, "both delivered", func() bool { return r.count() == 2 })
	var healthy bool
	b.run("the alert goes",
		chromedp.Navigate(b.base+"/console#fleet"),
		chromedp.WaitVisible("#fleet-table", chromedp.ByQuery),
		chromedp.Navigate(b.base+"/console#audit"),
		chromedp.Poll(`document.querySelector("#sinks-alert").hidden && document.querySelector("#sinks-table tr[data-sink=hooks]").textContent.includes("healthy")`,
			&healthy, chromedp.WithPollingTimeout(10*time.Second)),
	)
	res := e.do("GET", "/v1/audit?action=events.replay", e.manager, nil)
	if n := len(res.json(t)["items"].([]any)); n != 2 {
		t.Errorf("%d replays audited, want 2", n)
	}

	// A manager limited to a group sees no sinks.
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "nora", "password": "correct horse", "role": "manager", "scopes": []string{"north"}}); r.status != 201 {
		t.Fatalf("scoped manager: %d %s", r.status, r.body)
	}
	b2 := newBrowser(t, e, 1280, 900)
	b2.run("sign in as nora",
		chromedp.Navigate(b2.base+"/console"),
		chromedp.WaitVisible("#login-form", chromedp.ByQuery),
		chromedp.SendKeys("#login-form input[name=username]", "nora", chromedp.ByQuery),
		chromedp.SendKeys("#login-form input[name=password]", "correct horse", chromedp.ByQuery),
		chromedp.Click("#login-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#fleet-table", chromedp.ByQuery),
		chromedp.Navigate(b2.base+"/console#audit"),
		chromedp.WaitVisible("#audit-table", chromedp.ByQuery),
		chromedp.Sleep(300*time.Millisecond),
	)
	var hidden bool
	b2.eval(`document.querySelector("#sinks-panel").hidden && !document.querySelector("#flash").textContent.trim()`, &hidden)
	if !hidden {
		t.Error("a scoped manager sees the sinks panel, or an error")
	}
}
