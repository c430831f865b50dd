package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// adminUser adds ada, an admin who signs in with a password.
func (e *env) adminUser() {
	e.t.Helper()
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "ada", "password": "correct horse", "role": "admin"}); r.status != 201 {
		e.t.Fatalf("admin user: %d %s", r.status, r.body)
	}
}

// clientCredentials is the status of a client_credentials grant with id
// and secret in HTTP Basic.
func clientCredentials(t *testing.T, issuer, id, secret string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", issuer+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// secretInPage reports whether s is anywhere in the page: its text, its
// markup or a field's value.
func (b *browser) secretInPage(s string) bool {
	b.t.Helper()
	var in bool
	b.eval(`((s) => document.documentElement.outerHTML.includes(s) || document.body.innerText.includes(s) ||
		[...document.querySelectorAll("input, textarea")].some((i) => i.value.includes(s)))(`+jsString(s)+`)`, &in)
	return in
}

// jsString quotes s for JavaScript.
func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// TestConsoleOAuthClients drives the admins' OAuth clients page in
// Chromium: a refused registration names its fault; a confidential client
// is created from the form, its secret shown once (and working), then
// gone; a public one beside it; the list shows both, their names escaped;
// a secret is rotated (the old one stops working) and a client deleted
// after a confirmation. A manager sees no such page.
func TestConsoleOAuthClients(t *testing.T) {
	e := newEnv(t, oauthOn{})
	issuer := e.url()
	e.fleet()
	e.adminUser()
	b := newBrowser(t, e, 1366, 900)
	w := b.watch()
	b.signIn("ada", "correct horse")
	if !b.displayed(`a[data-nav="clients"]`) {
		t.Fatal("an admin does not see OAuth clients in the menu")
	}
	b.run("open the clients",
		chromedp.Click(`a[data-nav="clients"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="clients-table"]//td[contains(., "No client is registered yet")]`),
	)
	if got := b.text("#clients-issuer"); got != issuer {
		t.Fatalf("the page gives the issuer as %q; want %s", got, issuer)
	}
	w.clean("the empty clients page")

	// The name is HTML on purpose: it must show as text.
	const name = `<b>Dispatch</b> & "co"`
	fill := func(sel, value string) chromedp.Action { return chromedp.SetValue(sel, value, chromedp.ByQuery) }
	b.run("register a client with an http redirect URI to another host",
		chromedp.Click("#client-open", chromedp.ByQuery),
		chromedp.WaitVisible("#client-dialog input[name=name]", chromedp.ByQuery),
		chromedp.SendKeys("#client-dialog input[name=name]", name, chromedp.ByQuery),
		fill("#client-dialog select[name=auth]", "client_secret_basic"),
		chromedp.SendKeys("#client-dialog textarea[name=redirectUris]", "http://dispatch.example.com/callback\nhttp://127.0.0.1/callback", chromedp.ByQuery),
		chromedp.Click(`#client-dialog input[value="client_credentials"]`, chromedp.ByQuery),
		chromedp.Click(`#client-dialog input[value="email"]`, chromedp.ByQuery),
		fill("#client-dialog select[name=alg]", "ES256"),
		chromedp.Click("#client-dialog button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible(`//dialog[@id="client-dialog"]//div[contains(@class,"errors")][contains(., "redirect_uris")]`),
	)
	if msg := b.text("#client-dialog .errors"); !strings.Contains(msg, "http://dispatch.example.com/callback") || !strings.Contains(msg, "use https") {
		t.Fatalf("the refused registration says %q; want the URI named and https asked for", msg)
	}
	if !w.expect("status of 400 (Bad Request) (" + issuer + "/v1/oauth/clients)") {
		t.Fatal("Chromium did not log the refused request: the watch hears nothing")
	}
	var shot []byte
	b.run("screenshot the form", chromedp.CaptureScreenshot(&shot))
	b.save("console-client-form.png", shot)

	b.run("register it with https",
		chromedp.Evaluate(`document.querySelector("#client-dialog textarea[name=redirectUris]").value = ""`, nil),
		chromedp.SendKeys("#client-dialog textarea[name=redirectUris]", "https://dispatch.example.com/callback\nhttp://127.0.0.1/callback", chromedp.ByQuery),
		chromedp.Click("#client-dialog button[type=submit]", chromedp.ByQuery),
		chromedp.WaitNotVisible("#client-dialog", chromedp.ByQuery),
		chromedp.WaitVisible("#client-secret", chromedp.ByQuery),
	)
	var secret string
	b.eval(`document.querySelector("#client-secret-value").value`, &secret)
	if len(secret) != 43 {
		t.Fatalf("the secret shown is %q; want 256 bits in base64url", secret)
	}
	if got := b.text("#client-secret-title"); got != `Client secret of “`+name+`”` {
		t.Fatalf("the secret's title is %q", got)
	}
	if got := b.text("#client-secret"); !strings.Contains(got, "shown only this once") {
		t.Fatalf("the secret comes with %q; want the warning that it is shown once", got)
	}
	b.run("copy it",
		chromedp.Click("#client-secret-copy", chromedp.ByQuery),
		chromedp.WaitVisible(`//p[@id="client-secret-hint"][normalize-space(.) != ""]`),
	)
	var selected bool
	b.eval(`(() => { const i = document.querySelector("#client-secret-value");
		return document.activeElement === i && i.selectionStart === 0 && i.selectionEnd === i.value.length; })()`, &selected)
	if !selected {
		t.Fatal("Copy leaves the secret unselected")
	}
	b.run("screenshot the secret", chromedp.CaptureScreenshot(&shot))
	b.save("console-client-secret.png", shot)

	list := e.do("GET", "/v1/oauth/clients", e.admin, nil)
	var stored struct {
		Items []struct {
			ID           string   `json:"client_id"`
			Name         string   `json:"client_name"`
			Method       string   `json:"token_endpoint_auth_method"`
			Scope        string   `json:"scope"`
			Alg          string   `json:"id_token_signed_response_alg"`
			Grants       []string `json:"grant_types"`
			RedirectURIs []string `json:"redirect_uris"`
			DPoP         bool     `json:"dpop_bound_access_tokens"`
		} `json:"items"`
	}
	if err := json.Unmarshal(list.body, &stored); err != nil || len(stored.Items) != 1 || strings.Contains(string(list.body), secret) {
		t.Fatalf("the clients listed: %s (%v)", list.body, err)
	}
	c := stored.Items[0]
	id := c.ID
	if c.Name != name || c.Method != "client_secret_basic" || c.Scope != "openid profile offline_access" || c.Alg != "ES256" || c.DPoP ||
		strings.Join(c.Grants, " ") != "authorization_code refresh_token client_credentials" ||
		strings.Join(c.RedirectURIs, " ") != "https://dispatch.example.com/callback http://127.0.0.1/callback" {
		t.Fatalf("the client the form registered: %+v", c)
	}
	if status := clientCredentials(t, issuer, id, secret); status != 200 {
		t.Fatalf("the secret the console showed: %d at the token endpoint; want 200", status)
	}

	b.run("hide the secret", chromedp.Click("#client-secret-done", chromedp.ByQuery), chromedp.WaitNotVisible("#client-secret", chromedp.ByQuery))
	if b.secretInPage(secret) {
		t.Fatal("the secret is still in the page after Done")
	}

	b.run("register a public client",
		chromedp.Click("#client-open", chromedp.ByQuery),
		chromedp.WaitVisible("#client-dialog input[name=name]", chromedp.ByQuery),
		chromedp.SendKeys("#client-dialog input[name=name]", "Field app", chromedp.ByQuery),
		chromedp.SendKeys("#client-dialog textarea[name=redirectUris]", "com.example.field:/oauth2redirect", chromedp.ByQuery),
		chromedp.Click(`#client-dialog input[value="urn:ietf:params:oauth:grant-type:device_code"]`, chromedp.ByQuery),
		chromedp.Click("#client-dialog input[name=dpop]", chromedp.ByQuery),
		chromedp.Click("#client-dialog button[type=submit]", chromedp.ByQuery),
		chromedp.WaitNotVisible("#client-dialog", chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="clients-table"]//td[.="Field app"]`),
		chromedp.WaitVisible(`//p[@id="flash"][contains(., "Field app")]`),
	)
	if b.displayed("#client-secret") {
		t.Fatal("a public client's creation shows a secret panel")
	}
	if got := b.text("#flash"); !strings.Contains(got, "Field app") || !strings.Contains(got, "created: its client_id is cli_") {
		t.Fatalf("the flash says %q", got)
	}

	// The list: names as text, ids, types, grants and redirect URIs.
	var rows [][]string
	b.eval(`[...document.querySelectorAll("#clients-table tbody tr")].map((tr) => [...tr.cells].map((td) => td.innerText.trim()))`, &rows)
	if len(rows) != 2 {
		t.Fatalf("the list has %d rows; want 2: %q", len(rows), rows)
	}
	byName := map[string][]string{}
	for _, r := range rows {
		byName[r[0]] = r
	}
	d, f := byName[name], byName["Field app"]
	if d == nil || f == nil {
		t.Fatalf("the list's names are %q; want %q and Field app, as text", rows, name)
	}
	if d[1] != id || !strings.HasPrefix(d[2], "confidential") || !strings.Contains(d[2], "client_secret_basic") ||
		d[3] != "authorization_code\nrefresh_token\nclient_credentials" || d[4] != "https://dispatch.example.com/callback\nhttp://127.0.0.1/callback" ||
		!strings.Contains(d[5], "Rotate secret") || !strings.Contains(d[5], "Delete") {
		t.Fatalf("the confidential client's row reads %q", d)
	}
	if !strings.HasPrefix(f[1], "cli_") || !strings.HasPrefix(f[2], "public") || !strings.Contains(f[2], "DPoP-bound") ||
		f[3] != "authorization_code\nrefresh_token\ndevice_code" || f[4] != "com.example.field:/oauth2redirect" ||
		strings.Contains(f[5], "Rotate") || !strings.Contains(f[5], "Delete") {
		t.Fatalf("the public client's row reads %q", f)
	}
	var markup int
	b.eval(`document.querySelectorAll("#clients-view b, #clients-view img, #flash b").length`, &markup)
	if markup != 0 {
		t.Fatal("a client's name was read as HTML")
	}
	b.run("screenshot the list", chromedp.CaptureScreenshot(&shot))
	b.save("console-clients.png", shot)
	w.clean("creating clients")

	row := `//table[@id="clients-table"]//tr[@data-client="` + id + `"]`
	b.run("rotate the secret",
		chromedp.Click(row+`//button[.="Rotate secret"]`),
		chromedp.WaitVisible("#confirm-dialog", chromedp.ByQuery),
	)
	if got := b.text("#confirm-text"); !strings.Contains(got, name) || !strings.Contains(got, "stops working at once") {
		t.Fatalf("the confirmation says %q", got)
	}
	b.run("confirm", chromedp.Click("#confirm-yes", chromedp.ByQuery), chromedp.WaitVisible("#client-secret", chromedp.ByQuery))
	var rotated string
	b.eval(`document.querySelector("#client-secret-value").value`, &rotated)
	if len(rotated) != 43 || rotated == secret {
		t.Fatalf("after rotating, the secret shown is %q", rotated)
	}
	if old, fresh := clientCredentials(t, issuer, id, secret), clientCredentials(t, issuer, id, rotated); old != 401 || fresh != 200 {
		t.Fatalf("after rotating: the old secret %d, the new one %d; want 401 and 200", old, fresh)
	}

	// Leaving the page forgets the secret.
	b.run("leave and come back",
		chromedp.Click(`a[data-nav="fleet"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#fleet-view", chromedp.ByQuery),
		chromedp.Click(`a[data-nav="clients"]`, chromedp.ByQuery),
		chromedp.WaitVisible(row, chromedp.BySearch),
	)
	if b.displayed("#client-secret") || b.secretInPage(rotated) {
		t.Fatal("the rotated secret is still in the page after leaving it")
	}

	b.run("ask to delete, and cancel",
		chromedp.Click(row+`//button[.="Delete"]`),
		chromedp.WaitVisible("#confirm-dialog", chromedp.ByQuery),
		chromedp.Click(`#confirm-dialog button[value="no"]`, chromedp.ByQuery),
		chromedp.WaitNotVisible("#confirm-dialog", chromedp.ByQuery),
	)
	if r := e.do("GET", "/v1/oauth/clients/"+id, e.admin, nil); r.status != 200 {
		t.Fatalf("a cancelled deletion deleted: %d", r.status)
	}
	b.run("delete",
		chromedp.Click(row+`//button[.="Delete"]`),
		chromedp.WaitVisible("#confirm-dialog", chromedp.ByQuery),
		chromedp.Click("#confirm-yes", chromedp.ByQuery),
		chromedp.WaitNotPresent(row, chromedp.BySearch),
	)
	wantProblem(t, e.do("GET", "/v1/oauth/clients/"+id, e.admin, nil), 404, "not_found")
	if status := clientCredentials(t, issuer, id, rotated); status != 401 {
		t.Fatalf("a deleted client's secret: %d; want 401", status)
	}
	if got := b.text("#clients-table tbody"); !strings.Contains(got, "Field app") {
		t.Fatalf("after the deletion the list reads %q; want Field app left", got)
	}
	w.clean("rotating and deleting")

	// A manager has no such page: no menu item, and its address shows the
	// fleet.
	b.run("sign out", chromedp.Click("#logout", chromedp.ByQuery), chromedp.WaitVisible("#login-form", chromedp.ByQuery))
	if b.displayed(`a[data-nav="clients"]`) {
		t.Fatal("signed out, the OAuth clients item shows")
	}
	b.signIn("maria", "correct horse")
	if b.displayed(`a[data-nav="clients"]`) {
		t.Fatal("a manager sees OAuth clients in the menu")
	}
	b.run("open the clients' address as a manager",
		chromedp.Click(`a[data-nav="users"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#users-view", chromedp.ByQuery),
		chromedp.Evaluate(`location.hash = "#clients"`, nil),
		chromedp.WaitVisible("#fleet-view", chromedp.ByQuery),
	)
	if b.displayed("#clients-view") || !b.displayed("#fleet-view") {
		t.Fatal("a manager at #clients sees the clients page; want the fleet")
	}
	w.clean("the manager")
}

// TestConsoleOAuthOff: on a server started without --public-url, the
// clients page says OAuth is off and how to turn it on.
func TestConsoleOAuthOff(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	e.adminUser()
	b := newBrowser(t, e, 1280, 800)
	w := b.watch()
	b.signIn("ada", "correct horse")
	b.run("open the clients",
		chromedp.Click(`a[data-nav="clients"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#clients-off", chromedp.ByQuery),
	)
	if got := b.text("#clients-off"); !strings.Contains(got, "Off on this server: OAuth 2.0 and OpenID Connect are served once") || !strings.Contains(got, "--public-url") {
		t.Fatalf("the page says %q; want OAuth off and --public-url named", got)
	}
	if got := b.text("#clients-off code"); got != "--public-url" {
		t.Fatalf("the setting shows as %q", got)
	}
	for _, sel := range []string{"#clients-table", "#client-open", "#clients-about"} {
		if b.displayed(sel) {
			t.Fatalf("without OAuth, %s shows", sel)
		}
	}
	var shot []byte
	b.run("screenshot", chromedp.CaptureScreenshot(&shot))
	b.save("console-clients-off.png", shot)
	if !w.expect("status of 404 (Not Found) (" + b.base + "/v1/oauth/clients)") {
		t.Fatal("Chromium did not log the 404: the watch hears nothing")
	}
	w.clean("the clients page without OAuth")
}
