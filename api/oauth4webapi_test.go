package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"tether/auth"
	"tether/oauth"
)

// The OAuth endpoints as oauth4webapi (npm) sees them: a client no one here
// wrote, strict about the specs, which does PKCE and DPoP. The scenarios
// are testdata/oauth4webapi/flows.mjs; each prints what it got as JSON,
// and what the library refused fails it. .ci/run and .ci/test install the
// package; without node or it the tests skip, but never in CI.

// o4w runs flows.mjs against one server.
type o4w struct {
	node, script, issuer string
}

func oauth4webapi(t *testing.T, issuer string) o4w {
	t.Helper()
	node, dir := nodePackage(t, "oauth4webapi", "oauth4webapi")
	return o4w{node: node, script: filepath.Join(dir, "flows.mjs"), issuer: issuer}
}

// o4wClient is what the script is told about a client.
type o4wClient struct {
	id, secret, method, redirect, idTokenAlg string
	device                                   map[string]any
}

// run runs a scenario and decodes its result into out. Events the script
// prints on the way go to onEvent. A scenario that fails (oauth4webapi
// refused an answer, or the server accepted what it must refuse) fails
// the test with what the library said.
func (o o4w) run(t *testing.T, scenario string, c o4wClient, out any, onEvent func(map[string]any)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.node, o.script, scenario, o.issuer)
	cmd.Env = append(os.Environ(),
		"TETHER_CLIENT_ID="+c.id, "TETHER_CLIENT_SECRET="+c.secret, "TETHER_AUTH_METHOD="+c.method,
		"TETHER_REDIRECT_URI="+c.redirect, "TETHER_USERNAME=walter", "TETHER_PASSWORD=correct horse",
		"TETHER_ID_TOKEN_ALG="+c.idTokenAlg, "TETHER_AUDIENCE=tether",
	)
	if c.device != nil {
		payload, err := json.Marshal(c.device)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, "TETHER_DEVICE="+string(payload))
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var result, failed json.RawMessage
	var lines []string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		var line struct {
			Event  string          `json:"event"`
			Result json.RawMessage `json:"result"`
			Failed json.RawMessage `json:"failed"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("%s printed %q: %v", scenario, sc.Text(), err)
			continue
		}
		switch {
		case line.Event != "":
			var ev map[string]any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatal(err)
			}
			if onEvent == nil {
				t.Fatalf("%s: unexpected event %s", scenario, sc.Text())
			}
			onEvent(ev)
		case line.Failed != nil:
			failed = line.Failed
		case line.Result != nil:
			result = line.Result
		}
	}
	werr := cmd.Wait()
	if failed != nil || werr != nil || result == nil {
		t.Fatalf("oauth4webapi %s: %v\nfailed: %s\nstdout: %s\nstderr: %s", scenario, werr, failed, strings.Join(lines, "\n"), stderr.String())
	}
	t.Logf("oauth4webapi %s: %s", scenario, result)
	if err := json.Unmarshal(result, out); err != nil {
		t.Fatalf("%s result: %v\n%s", scenario, err, result)
	}
}

// o4wTokens is a token endpoint answer, as the server sent it.
type o4wTokens struct {
	AccessToken  string  `json:"access_token"`
	TokenType    string  `json:"token_type"`
	ExpiresIn    float64 `json:"expires_in"`
	RefreshToken string  `json:"refresh_token"`
	IDToken      string  `json:"id_token"`
	Scope        string  `json:"scope"`
}

// o4wIDToken holds the claims oauth4webapi validated.
type o4wIDToken struct {
	Iss               string  `json:"iss"`
	Sub               string  `json:"sub"`
	Aud               any     `json:"aud"`
	Exp               int64   `json:"exp"`
	Iat               int64   `json:"iat"`
	AuthTime          int64   `json:"auth_time"`
	Nonce             *string `json:"nonce"`
	AtHash            string  `json:"at_hash"`
	SID               string  `json:"sid"`
	AZP               string  `json:"azp"`
	DID               string  `json:"did"`
	PreferredUsername string  `json:"preferred_username"`
}

// o4wAccess holds the claims of an access token a resource server
// validated with oauth4webapi (RFC 9068, RFC 9449 section 7).
type o4wAccess struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Aud      []string `json:"aud"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope"`
	SID      string   `json:"sid"`
	DID      string   `json:"did"`
	Cnf      *struct {
		JKT string `json:"jkt"`
	} `json:"cnf"`
}

// o4wRefusal is why oauth4webapi failed a request that had to fail.
type o4wRefusal struct {
	Name             string `json:"name"`
	Code             string `json:"code"`
	Message          string `json:"message"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	Status           int    `json:"status"`
	Challenges       []struct {
		Scheme     string            `json:"scheme"`
		Parameters map[string]string `json:"parameters"`
	} `json:"challenges"`
}

// wantRefused checks that a request was refused with an OAuth error
// (error in the body, or in a WWW-Authenticate challenge) and a status.
func wantRefused(t *testing.T, what string, r o4wRefusal, status int, errCode string) {
	t.Helper()
	if r.Status != status || r.Error != errCode {
		t.Errorf("%s: refused with %d %q (%s: %s); want %d %s", what, r.Status, r.Error, r.Name, r.Message, status, errCode)
	}
}

type o4wUserInfo struct {
	Sub               string `json:"sub"`
	PreferredUsername string `json:"preferred_username"`
	DID               string `json:"did"`
}

// atHash is the at_hash of an access token for an ID token signed with
// alg (OpenID Connect Core section 3.1.3.6; SHA-512 for EdDSA with
// Ed25519, as oauth4webapi has it), worked out here again.
func atHash(token, alg string) string {
	var sum []byte
	if alg == "EdDSA" {
		s := sha512.Sum512([]byte(token))
		sum = s[:32]
	} else {
		s := sha256.Sum256([]byte(token))
		sum = s[:16]
	}
	return base64.RawURLEncoding.EncodeToString(sum)
}

// checkIDToken checks the claims every ID token of walter's sign-in
// on the handset must have.
func checkIDToken(t *testing.T, what string, id o4wIDToken, issuer, client, phone string) {
	t.Helper()
	aud, _ := id.Aud.(string)
	if list, ok := id.Aud.([]any); ok && len(list) == 1 {
		aud, _ = list[0].(string)
	}
	now := time.Now().Unix()
	switch {
	case id.Iss != issuer || aud != client || id.AZP != client:
		t.Errorf("%s: iss %q aud %v azp %q; want %s and %s", what, id.Iss, id.Aud, id.AZP, issuer, client)
	case id.Sub == "" || id.SID == "":
		t.Errorf("%s: sub %q sid %q; want both", what, id.Sub, id.SID)
	case id.Iat > now+5 || id.Exp <= now || id.AuthTime == 0 || id.AuthTime > id.Iat:
		t.Errorf("%s: iat %d exp %d auth_time %d (now %d)", what, id.Iat, id.Exp, id.AuthTime, now)
	case id.DID != phone:
		t.Errorf("%s: did %q; want the handset %s", what, id.DID, phone)
	case id.PreferredUsername != "walter":
		t.Errorf("%s: preferred_username %q; want walter", what, id.PreferredUsername)
	}
}

// dpopResult is what the dpop scenario reports.
type dpopResult struct {
	Thumbprint     string      `json:"thumbprint"`
	Token          o4wTokens   `json:"token"`
	IDToken        o4wIDToken  `json:"idToken"`
	UserInfo       o4wUserInfo `json:"userinfo"`
	AsBearer       o4wRefusal  `json:"asBearer"`
	Access         o4wAccess   `json:"access"`
	Refreshed      o4wTokens   `json:"refreshed"`
	UserInfo2      o4wUserInfo `json:"userinfo2"`
	OtherKey       o4wRefusal  `json:"otherKey"`
	RefreshedAgain o4wTokens   `json:"refreshedAgain"`
	Reused         o4wRefusal  `json:"reused"`
	AfterReuse     o4wRefusal  `json:"afterReuse"`
	NonceRetries   []string    `json:"nonceRetries"`
}

// checkDPoP checks the dpop scenario: every token DPoP-bound to the
// script's key, the refresh rotating with the same key, and what must be
// refused refused.
func checkDPoP(t *testing.T, got dpopResult, issuer string, c o4wClient, phone string) {
	t.Helper()
	if got.Thumbprint == "" || got.Token.TokenType != "DPoP" || got.Token.RefreshToken == "" || got.Token.ExpiresIn <= 0 {
		t.Errorf("token answer %+v; want a DPoP token and a refresh token", got.Token)
	}
	checkIDToken(t, "ID token", got.IDToken, issuer, c.id, phone)
	if a := got.Access; a.Cnf == nil || a.Cnf.JKT != got.Thumbprint || a.ClientID != c.id || a.DID != phone {
		t.Errorf("access token claims %+v; want cnf.jkt %s", a, got.Thumbprint)
	}
	if got.UserInfo.Sub != got.IDToken.Sub || got.UserInfo2.Sub != got.IDToken.Sub {
		t.Errorf("userinfo %+v, after the refresh %+v; want %s", got.UserInfo, got.UserInfo2, got.IDToken.Sub)
	}
	wantRefused(t, "a DPoP-bound token as Bearer", got.AsBearer, 401, "invalid_token")
	if ch := got.AsBearer.Challenges; len(ch) != 1 || ch[0].Scheme != "dpop" {
		t.Errorf("challenges %+v; want DPoP (RFC 9449 section 7.1)", ch)
	}
	for _, r := range []o4wTokens{got.Refreshed, got.RefreshedAgain} {
		if r.TokenType != "DPoP" || r.RefreshToken == "" {
			t.Errorf("refresh answer %+v; want DPoP", r)
		}
	}
	if got.Refreshed.RefreshToken == got.Token.RefreshToken || got.RefreshedAgain.RefreshToken == got.Refreshed.RefreshToken ||
		got.Refreshed.AccessToken == got.Token.AccessToken {
		t.Error("the refresh did not rotate the refresh token")
	}
	wantRefused(t, "a refresh with another DPoP key", got.OtherKey, 400, "invalid_dpop_proof")
	wantRefused(t, "the refresh token of before the rotation", got.Reused, 400, "invalid_grant")
	wantRefused(t, "the newest refresh token after a reuse", got.AfterReuse, 400, "invalid_grant")
}

// TestOAuth4WebAPI runs every scenario of flows.mjs against one server:
// discovery, the code flow, DPoP, the device flow, client_credentials,
// revocation and introspection, ID tokens in each algorithm, refresh.
// They run one after another: walter signing in on his handset replaces
// his session there (one live session per person and handset), whichever
// client asks.
func TestOAuth4WebAPI(t *testing.T) {
	e := newEnv(t, oauthOn{},
		// A refresh token presented again after the rotation is a reuse at
		// once, not a retry within the grace.
		func(c *auth.Config) { c.RefreshReuseGrace = 0 },
		// The device flow polls every second, not every five.
		func(c *oauth.Config) { c.DeviceInterval = time.Second },
	)
	issuer := e.url()
	o := oauth4webapi(t, issuer)
	phone, _ := e.fleet()
	walter := handset("490154203237518")
	accessTTL := auth.DefaultConfig().AccessTTL.Seconds()

	register := func(name, method string, grants ...string) o4wClient {
		meta := map[string]any{"client_name": name, "grant_types": grants, "token_endpoint_auth_method": method}
		redirect := ""
		if slices.Contains(grants, "authorization_code") {
			redirect = "https://" + strings.ToLower(strings.ReplaceAll(name, " ", "-")) + ".example/callback"
			if method == "none" {
				redirect = "com.example.tether:/callback"
			}
			meta["redirect_uris"] = []string{redirect}
		}
		id, secret := e.oauthClient(meta)
		return o4wClient{id: id, secret: secret, method: method, redirect: redirect, device: walter}
	}

	t.Run("discovery", func(t *testing.T) {
		var got struct {
			OIDC   map[string]any `json:"oidc"`
			OAuth2 map[string]any `json:"oauth2"`
		}
		o.run(t, "discovery", o4wClient{}, &got, nil)
		if !reflect.DeepEqual(got.OIDC, got.OAuth2) {
			t.Errorf("the two metadata documents differ:\n%v\n%v", got.OIDC, got.OAuth2)
		}
		m := got.OIDC
		for k, want := range map[string]any{
			"issuer": issuer, "authorization_endpoint": issuer + "/oauth2/authorize", "token_endpoint": issuer + "/oauth2/token",
			"userinfo_endpoint": issuer + "/oauth2/userinfo", "jwks_uri": issuer + "/.well-known/jwks.json",
			"revocation_endpoint": issuer + "/oauth2/revoke", "introspection_endpoint": issuer + "/oauth2/introspect",
			"device_authorization_endpoint":                  issuer + "/oauth2/device_authorization",
			"authorization_response_iss_parameter_supported": true,
		} {
			if m[k] != want {
				t.Errorf("%s = %v; want %v", k, m[k], want)
			}
		}
		for k, want := range map[string][]string{
			"code_challenge_methods_supported":      {"S256"},
			"response_types_supported":              {"code"},
			"id_token_signing_alg_values_supported": {"RS256", "ES256", "EdDSA"},
			"dpop_signing_alg_values_supported":     {"ES256", "EdDSA"},
			"grant_types_supported":                 {"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "client_credentials"},
			"token_endpoint_auth_methods_supported": {"none", "client_secret_basic", "client_secret_post"},
		} {
			list, _ := m[k].([]any)
			for _, w := range want {
				if !slices.Contains(list, any(w)) {
					t.Errorf("%s = %v; want %s in it", k, m[k], w)
				}
			}
		}
		if list, _ := m["code_challenge_methods_supported"].([]any); len(list) != 1 {
			t.Errorf("code_challenge_methods_supported = %v; want S256 alone (plain is refused)", list)
		}
	})

	t.Run("code", func(t *testing.T) {
		c := register("Dispatch", "client_secret_basic", "authorization_code", "refresh_token")
		var got struct {
			Callback      map[string]string `json:"callback"`
			State         string            `json:"state"`
			Nonce         string            `json:"nonce"`
			Token         o4wTokens         `json:"token"`
			IDTokenHeader map[string]any    `json:"idTokenHeader"`
			IDToken       o4wIDToken        `json:"idToken"`
			Access        o4wAccess         `json:"access"`
			UserInfo      o4wUserInfo       `json:"userinfo"`
			Replay        o4wRefusal        `json:"replay"`
			AfterReplay   o4wRefusal        `json:"afterReplay"`
		}
		o.run(t, "code", c, &got, nil)
		if got.Callback["iss"] != issuer || got.Callback["state"] != got.State || got.Callback["code"] == "" {
			t.Errorf("callback %v; want code, iss %s and state %s", got.Callback, issuer, got.State)
		}
		tok := got.Token
		if tok.TokenType != "Bearer" || tok.RefreshToken == "" || tok.ExpiresIn <= 0 || tok.ExpiresIn > accessTTL ||
			tok.Scope != "openid profile email offline_access" {
			t.Errorf("token answer %+v; want Bearer, a refresh token, expires_in in (0, %v], the scope asked", tok, accessTTL)
		}
		checkIDToken(t, "ID token", got.IDToken, issuer, c.id, phone)
		if got.IDToken.Nonce == nil || *got.IDToken.Nonce != got.Nonce {
			t.Errorf("nonce %v; want %s", got.IDToken.Nonce, got.Nonce)
		}
		if got.IDTokenHeader["alg"] != "RS256" || got.IDTokenHeader["kid"] == "" {
			t.Errorf("ID token header %v; want RS256 (the default) with a kid", got.IDTokenHeader)
		}
		if want := atHash(tok.AccessToken, "RS256"); got.IDToken.AtHash != want {
			t.Errorf("at_hash %q; want %q", got.IDToken.AtHash, want)
		}
		a := got.Access
		if a.Iss != issuer || a.Sub != got.IDToken.Sub || a.ClientID != c.id || !slices.Contains(a.Aud, "tether") ||
			a.SID != got.IDToken.SID || a.DID != phone || a.Cnf != nil || a.Scope != tok.Scope {
			t.Errorf("access token claims %+v; want the session's, for client %s", a, c.id)
		}
		if got.UserInfo.Sub != got.IDToken.Sub || got.UserInfo.PreferredUsername != "walter" || got.UserInfo.DID != phone {
			t.Errorf("userinfo %+v; want walter on %s", got.UserInfo, phone)
		}
		wantRefused(t, "the code presented again", got.Replay, 400, "invalid_grant")
		wantRefused(t, "the tokens of a replayed code", got.AfterReplay, 401, "invalid_token")
	})

	t.Run("dpop", func(t *testing.T) {
		c := register("Field App", "none", "authorization_code", "refresh_token")
		var got dpopResult
		o.run(t, "dpop", c, &got, nil)
		checkDPoP(t, got, issuer, c, phone)
		if len(got.NonceRetries) != 0 {
			t.Errorf("retried for a DPoP nonce %v on a server that asks for none", got.NonceRetries)
		}
	})

	t.Run("device", func(t *testing.T) {
		c := register("Rugged Scanner", "none", "urn:ietf:params:oauth:grant-type:device_code", "refresh_token")
		var got struct {
			Authorization struct {
				UserCode                string  `json:"user_code"`
				VerificationURI         string  `json:"verification_uri"`
				VerificationURIComplete string  `json:"verification_uri_complete"`
				ExpiresIn               float64 `json:"expires_in"`
				Interval                float64 `json:"interval"`
			} `json:"authorization"`
			Polls    []string    `json:"polls"`
			Token    o4wTokens   `json:"token"`
			IDToken  o4wIDToken  `json:"idToken"`
			UserInfo o4wUserInfo `json:"userinfo"`
			Used     o4wRefusal  `json:"used"`
		}
		approved := false
		o.run(t, "device", c, &got, func(ev map[string]any) {
			if ev["event"] != "user_code" || approved {
				t.Fatalf("unexpected event %v", ev)
			}
			approved = true
			approveDevice(t, ev["verification_uri_complete"].(string), ev["user_code"].(string))
		})
		a := got.Authorization
		if !approved || a.VerificationURI != issuer+"/oauth2/device" || a.VerificationURIComplete != a.VerificationURI+"?user_code="+a.UserCode ||
			a.Interval != 1 || a.ExpiresIn <= 0 || len(a.UserCode) != 9 {
			t.Errorf("device authorization %+v (approved %v)", a, approved)
		}
		if len(got.Polls) < 2 || got.Polls[0] != "authorization_pending" || got.Polls[len(got.Polls)-1] != "tokens" ||
			slices.Contains(got.Polls, "slow_down") {
			t.Errorf("polls %v; want authorization_pending until the approval, then tokens, never slow_down", got.Polls)
		}
		if got.Token.TokenType != "Bearer" || got.Token.RefreshToken == "" {
			t.Errorf("token %+v; want a bearer token and a refresh token", got.Token)
		}
		checkIDToken(t, "ID token", got.IDToken, issuer, c.id, phone)
		if got.IDToken.Nonce != nil {
			t.Errorf("nonce %q in a device flow ID token", *got.IDToken.Nonce)
		}
		if got.UserInfo.Sub != got.IDToken.Sub || got.UserInfo.DID != phone {
			t.Errorf("userinfo %+v", got.UserInfo)
		}
		wantRefused(t, "the device code used again", got.Used, 400, "invalid_grant")
	})

	t.Run("client_credentials", func(t *testing.T) {
		c := register("Billing", "client_secret_basic", "client_credentials")
		var got struct {
			Token       o4wTokens  `json:"token"`
			Access      o4wAccess  `json:"access"`
			WrongSecret o4wRefusal `json:"wrongSecret"`
		}
		o.run(t, "client_credentials", c, &got, nil)
		if got.Token.TokenType != "Bearer" || got.Token.ExpiresIn <= 0 || got.Token.RefreshToken != "" || got.Token.IDToken != "" {
			t.Errorf("token %+v; want a Bearer access token alone", got.Token)
		}
		if a := got.Access; a.Iss != issuer || a.Sub != c.id || a.ClientID != c.id || a.SID != "" || a.DID != "" {
			t.Errorf("access token claims %+v; want the client %s as subject, no session", a, c.id)
		}
		wantRefused(t, "a wrong client secret", got.WrongSecret, 401, "invalid_client")
		if ch := got.WrongSecret.Challenges; len(ch) != 1 || ch[0].Scheme != "basic" {
			t.Errorf("challenges %+v; want Basic, the scheme the client used (RFC 6749 section 5.2)", ch)
		}
	})

	t.Run("revocation", func(t *testing.T) {
		c := register("Back Office", "client_secret_basic", "authorization_code", "refresh_token")
		type intro struct {
			Active    bool   `json:"active"`
			ClientID  string `json:"client_id"`
			Sub       string `json:"sub"`
			Scope     string `json:"scope"`
			TokenType string `json:"token_type"`
			Exp       int64  `json:"exp"`
			Username  string `json:"username"`
			DID       string `json:"did"`
		}
		var got struct {
			Before        intro      `json:"before"`
			Garbage       intro      `json:"garbage"`
			After         intro      `json:"after"`
			RevokeUnknown any        `json:"revokeUnknown"`
			UserinfoAfter o4wRefusal `json:"userinfoAfter"`
			RefreshAfter  o4wRefusal `json:"refreshAfter"`
			Sub           string     `json:"sub"`
		}
		o.run(t, "revocation", c, &got, nil)
		b := got.Before
		if !b.Active || b.ClientID != c.id || b.Sub != got.Sub || b.Username != "walter" || b.DID != phone ||
			b.TokenType != "Bearer" || b.Exp <= time.Now().Unix() || !strings.Contains(b.Scope, "openid") {
			t.Errorf("introspection of a live token %+v", b)
		}
		if got.Garbage.Active || got.After.Active || got.After.Sub != "" {
			t.Errorf("introspection of garbage %+v, of the revoked token %+v; want inactive, nothing more", got.Garbage, got.After)
		}
		wantRefused(t, "userinfo after revocation", got.UserinfoAfter, 401, "invalid_token")
		wantRefused(t, "a refresh after revocation", got.RefreshAfter, 400, "invalid_grant")
	})

	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run("id_token/"+alg, func(t *testing.T) {
			id, secret := e.oauthClient(map[string]any{
				"client_name": "Signed " + alg, "redirect_uris": []string{"https://signed.example/callback"},
				"grant_types": []string{"authorization_code"}, "token_endpoint_auth_method": "client_secret_basic",
				"id_token_signed_response_alg": alg,
			})
			c := o4wClient{id: id, secret: secret, method: "client_secret_basic", redirect: "https://signed.example/callback", idTokenAlg: alg, device: walter}
			var got struct {
				Header          map[string]any `json:"header"`
				IDToken         o4wIDToken     `json:"idToken"`
				AccessToken     string         `json:"accessToken"`
				PinnedElsewhere o4wRefusal     `json:"pinnedElsewhere"`
			}
			o.run(t, "id_token", c, &got, nil)
			if got.Header["alg"] != alg || got.Header["kid"] == "" || got.Header["typ"] != "JWT" {
				t.Errorf("ID token header %v; want %s with a kid", got.Header, alg)
			}
			checkIDToken(t, "ID token", got.IDToken, issuer, id, phone)
			if want := atHash(got.AccessToken, alg); got.IDToken.AtHash != want {
				t.Errorf("at_hash %q; want %q", got.IDToken.AtHash, want)
			}
			if !strings.Contains(got.PinnedElsewhere.Message, `unexpected JWT "alg"`) {
				t.Errorf("a client pinned to another algorithm: %+v; want unexpected alg", got.PinnedElsewhere)
			}
		})
	}

	t.Run("refresh", func(t *testing.T) {
		c := register("Timesheets", "client_secret_post", "authorization_code", "refresh_token")
		var got struct {
			Token              o4wTokens   `json:"token"`
			IDToken            o4wIDToken  `json:"idToken"`
			Refreshed          o4wTokens   `json:"refreshed"`
			RefreshedIDToken   o4wIDToken  `json:"refreshedIdToken"`
			UserInfo           o4wUserInfo `json:"userinfo"`
			Reused             o4wRefusal  `json:"reused"`
			AfterReuse         o4wRefusal  `json:"afterReuse"`
			UserinfoAfterReuse o4wRefusal  `json:"userinfoAfterReuse"`
		}
		o.run(t, "refresh", c, &got, nil)
		r := got.Refreshed
		if r.RefreshToken == "" || r.RefreshToken == got.Token.RefreshToken || r.AccessToken == got.Token.AccessToken ||
			r.TokenType != "Bearer" || r.ExpiresIn <= 0 || r.IDToken == "" {
			t.Errorf("refresh answer %+v; want a rotated refresh token, a new access token and an ID token", r)
		}
		checkIDToken(t, "refreshed ID token", got.RefreshedIDToken, issuer, c.id, phone)
		if n, o := got.RefreshedIDToken, got.IDToken; n.Sub != o.Sub || n.SID != o.SID || n.AuthTime != o.AuthTime {
			t.Errorf("refreshed ID token %+v; want the sub, sid and auth_time of %+v (OpenID Connect Core 12.2)", n, o)
		}
		if want := atHash(r.AccessToken, "RS256"); got.RefreshedIDToken.AtHash != want {
			t.Errorf("refreshed at_hash %q; want %q", got.RefreshedIDToken.AtHash, want)
		}
		if got.UserInfo.Sub != got.IDToken.Sub {
			t.Errorf("userinfo with the refreshed token: %+v", got.UserInfo)
		}
		wantRefused(t, "the refresh token of before the rotation", got.Reused, 400, "invalid_grant")
		wantRefused(t, "the newest refresh token after a reuse", got.AfterReuse, 400, "invalid_grant")
		wantRefused(t, "userinfo after a reuse", got.UserinfoAfterReuse, 401, "invalid_token")
	})
}

// TestOAuth4WebAPIDPoPNonce is the DPoP scenario on a server that wants
// its nonce in every proof (RFC 9449 section 8): oauth4webapi's first
// proof has none, is refused with use_dpop_nonce, and the retry with the
// DPoP-Nonce the answer carried goes through.
func TestOAuth4WebAPIDPoPNonce(t *testing.T) {
	e := newEnv(t, oauthOn{}, func(c *auth.Config) { c.DPoPNonce = true; c.RefreshReuseGrace = 0 })
	issuer := e.url()
	o := oauth4webapi(t, issuer)
	phone, _ := e.fleet()
	id, _ := e.oauthClient(map[string]any{
		"client_name": "Field App", "redirect_uris": []string{"com.example.tether:/callback"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
	})
	c := o4wClient{id: id, method: "none", redirect: "com.example.tether:/callback", device: handset("490154203237518")}
	var got dpopResult
	o.run(t, "dpop", c, &got, nil)
	checkDPoP(t, got, issuer, c, phone)
	if len(got.NonceRetries) == 0 || got.NonceRetries[0] != "authorization_code" {
		t.Errorf("nonce retries %v; want the code grant retried with the server's nonce", got.NonceRetries)
	}
}

// approveDevice is the worker on another screen: the verification page
// from the link the handset shows, signed in and approved.
func approveDevice(t *testing.T, link, userCode string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := formToken.FindSubmatch(page)
	if resp.StatusCode != 200 || m == nil || !strings.Contains(string(page), userCode) {
		t.Fatalf("verification page: %d %s", resp.StatusCode, page)
	}
	u, _ := url.Parse(link)
	u.RawQuery = ""
	resp, err = c.PostForm(u.String(), url.Values{
		"csrf": {string(m[1])}, "user_code": {userCode}, "username": {"walter"}, "password": {"correct horse"}, "action": {"approve"},
	})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Handset signed in") {
		t.Fatalf("approval: %d %s", resp.StatusCode, body)
	}
}
