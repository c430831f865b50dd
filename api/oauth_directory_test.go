package api_test

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"tether/directory"
	"tether/directory/ldaptest"
)

// TestOAuthDirectoryUser: a worker who lives in the company directory (a
// real slapd) signs in at the sign-in page with the directory's password,
// and the ID token carries the names the directory holds; a wrong
// password reads as an unknown user does; the directory down answers the
// page with its error, not a redirect.
func TestOAuthDirectoryUser(t *testing.T) {
	srv := ldaptest.Start(t)
	alice := srv.AddPerson(t, ldaptest.Person{UID: "alice", Password: "alice's secret", GivenName: "Alice", SN: "Able"})
	d, err := directory.New(directory.Config{
		URLs: []string{srv.URL}, BindDN: ldaptest.ServiceDN, BindPassword: ldaptest.ServicePassword,
		UserBase: ldaptest.PeopleDN, GroupBase: ldaptest.GroupsDN,
		WorkerGroup: srv.AddGroup(t, "field", alice), ManagerGroup: srv.AddGroup(t, "office"),
		ConnectTimeout: time.Second, OperationTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	e := newEnv(t, d, oauthOn{})
	issuer := e.url()
	e.fleet()
	redirect, _ := loopbackCatcher(t)
	id, _ := e.oauthClient(map[string]any{
		"client_name": "Field app", "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"},
	})
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: id, Endpoint: provider.Endpoint(), RedirectURL: redirect, Scopes: []string{"openid", "profile"}}
	payload, _ := json.Marshal(handset("490154203237518"))
	authURL := func(verifier string) string {
		return conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("device", string(payload)))
	}

	verifier := oauth2.GenerateVerifier()
	loc := signInPage(t, authURL(verifier), "alice", "alice's secret")
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: id}).Verify(ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Given    string `json:"given_name"`
		Family   string `json:"family_name"`
		Username string `json:"preferred_username"`
		DID      string `json:"did"`
	}
	if err := idt.Claims(&c); err != nil || c.Given != "Alice" || c.Family != "Able" || c.Username != "alice" || c.DID == "" {
		t.Fatalf("ID token claims %+v (%v); want the directory's names and the handset", c, err)
	}

	// A wrong directory password and an unknown user get the same page.
	wrong := signInFails(t, authURL(oauth2.GenerateVerifier()), "alice", "not it")
	unknown := signInFails(t, authURL(oauth2.GenerateVerifier()), "nobody", "not it")
	if wrong != unknown || !strings.Contains(wrong, "username or password") {
		t.Fatalf("wrong password says %q, unknown user %q; want the same words", wrong, unknown)
	}

	// The directory down: the page says so and sends nobody anywhere.
	srv.Stop(t)
	if msg := signInFails(t, authURL(oauth2.GenerateVerifier()), "alice", "alice's secret"); !strings.Contains(strings.ToLower(msg), "directory") {
		t.Fatalf("directory down: the page says %q", msg)
	}
}

var pageAlert = regexp.MustCompile(`(?s)id="error">(.*?)</p>`)

// signInFails fills the sign-in page in and expects it back, not a
// redirect; it returns what the page says.
func signInFails(t *testing.T, authURL, username, password string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := formToken.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no form: %d %s", resp.StatusCode, page)
	}
	resp, err = c.PostForm(authURL, url.Values{"csrf": {string(m[1])}, "username": {username}, "password": {password}, "action": {"approve"}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.Header.Get("Location") != "" {
		t.Fatalf("sign-in as %s answered %d (Location %q); want the page again with an error", username, resp.StatusCode, resp.Header.Get("Location"))
	}
	a := pageAlert.FindSubmatch(page)
	if a == nil || !strings.Contains(string(page), `name="password"`) {
		t.Fatalf("the page has no error or no form: %s", page)
	}
	return html.UnescapeString(string(a[1]))
}
