package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// oauthClient registers a client through the manager API and returns its
// id and secret ("" for a public one).
func (e *env) oauthClient(meta map[string]any) (id, secret string) {
	e.t.Helper()
	r := e.do("POST", "/v1/oauth/clients", e.admin, meta)
	if r.status != 201 {
		e.t.Fatalf("create client: %d %s", r.status, r.body)
	}
	m := r.json(e.t)
	id = m["client_id"].(string)
	secret, _ = m["client_secret"].(string)
	return id, secret
}

// loopbackCatcher listens where a native app would (RFC 8252 section 7.3)
// and hands over the query of the first redirect it gets.
func loopbackCatcher(t *testing.T) (redirect string, got <-chan url.Values) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan url.Values, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch <- r.URL.Query()
		fmt.Fprint(w, "<!doctype html><title>Signed in</title><p id=done>You can go back to the app.</p>")
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/callback", ch
}

var formToken = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signInPage fills the sign-in page in as a browser would (cookie jar,
// form post) and returns the redirect it ends with, not followed.
func signInPage(t *testing.T, authURL, username, password string) *url.URL {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("sign-in page: %d %s", resp.StatusCode, page)
	}
	m := formToken.FindSubmatch(page)
	if m == nil || !strings.Contains(string(page), `name="username"`) || !strings.Contains(string(page), `name="password"`) {
		t.Fatalf("sign-in page has no form: %s", page)
	}
	form := url.Values{"csrf": {string(m[1])}, "username": {username}, "password": {password}, "action": {"approve"}}
	resp, err = c.PostForm(authURL, form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestOAuthCodeFlowWithGoClients walks the authorization-code flow with
// golang.org/x/oauth2 (PKCE) and github.com/coreos/go-oidc/v3 (discovery,
// ID token verification, userinfo) against a confidential client: sign
// in, redeem, verify, refresh, userinfo, revoke.
func TestOAuthCodeFlowWithGoClients(t *testing.T) {
	e := newEnv(t, oauthOn{})
	issuer := e.url()
	e.fleet()
	redirect, _ := loopbackCatcher(t)
	id, secret := e.oauthClient(map[string]any{
		"client_name": "Dispatch", "redirect_uris": []string{redirect},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "client_secret_basic",
	})
	if secret == "" {
		t.Fatal("a confidential client got no secret")
	}
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	conf := oauth2.Config{
		ClientID: id, ClientSecret: secret, Endpoint: provider.Endpoint(), RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess},
	}
	verifier := oauth2.GenerateVerifier()
	state, nonce := "st-"+verifier[:8], "n-"+verifier[8:16]
	payload, _ := json.Marshal(handset("490154203237518"))
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce), oauth2.SetAuthURLParam("device", string(payload)))

	loc := signInPage(t, authURL, "walter", "correct horse")
	q := loc.Query()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirect {
		t.Fatalf("redirected to %s; want %s", got, redirect)
	}
	if q.Get("state") != state || q.Get("iss") != issuer || q.Get("code") == "" {
		t.Fatalf("authorization response %v; want code, state %s and iss %s", q, state, issuer)
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.RefreshToken == "" || tok.TokenType != "Bearer" {
		t.Fatalf("token %+v; want a Bearer token and a refresh token", tok)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: id}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Fatalf("nonce %q; want %q", idt.Nonce, nonce)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Fatalf("at_hash: %v", err)
	}
	var claims struct {
		PreferredUsername string `json:"preferred_username"`
		SID               string `json:"sid"`
		AuthTime          int64  `json:"auth_time"`
	}
	if err := idt.Claims(&claims); err != nil || claims.PreferredUsername != "walter" || claims.SID == "" || claims.AuthTime == 0 {
		t.Fatalf("ID token claims %+v (%v)", claims, err)
	}
	info, err := provider.UserInfo(ctx, conf.TokenSource(ctx, tok))
	if err != nil || info.Subject != idt.Subject {
		t.Fatalf("userinfo %+v: %v", info, err)
	}

	// The refresh goes through the token endpoint and rotates.
	old := tok.RefreshToken
	tok.Expiry = time.Now().Add(-time.Minute)
	fresh, err := conf.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if fresh.RefreshToken == old || fresh.AccessToken == tok.AccessToken {
		t.Fatal("the refresh did not rotate")
	}

	// Revocation ends the session: the fresh access token is dead.
	form := url.Values{"token": {fresh.RefreshToken}, "token_type_hint": {"refresh_token"}}
	req, _ := http.NewRequest("POST", issuer+"/oauth2/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(fresh)); err == nil {
		t.Fatal("userinfo still answers after revocation")
	}
	var disc map[string]any
	resp, err = http.Get(issuer + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&disc)
	resp.Body.Close()
	if disc["issuer"] != issuer || disc["authorization_response_iss_parameter_supported"] != true {
		t.Fatalf("RFC 8414 metadata %v", disc)
	}
}
