package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"tether/auth"
	"tether/oauth"
	"tether/storage"
)

// multiFlag is a flag that may be repeated, each value taken whole (a
// redirect URI may hold a comma).
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, " ") }

func (m *multiFlag) Set(v string) error {
	if v = strings.TrimSpace(v); v != "" {
		*m = append(*m, v)
	}
	return nil
}

// clientFlags are what every client command takes to reach the store and
// build the OAuth provider as the server does.
type clientFlags struct {
	store      storeConfig
	publicURL  string
	masterFile string
	json       bool
}

func (cf *clientFlags) bind(fs *flag.FlagSet) {
	storeFlags(fs, &cf.store)
	fs.StringVar(&cf.publicURL, "public-url", "", "the server's --public-url: its issuer URL, such as https://tether.example.com (required)")
	fs.StringVar(&cf.masterFile, "master-key-file", "", "the server's --master-key-file, if it has one")
}

// bindJSON adds --json, for the commands that print clients.
func (cf *clientFlags) bindJSON(fs *flag.FlagSet, usage string) {
	fs.BoolVar(&cf.json, "json", false, usage)
}

// checkPublicURL reports a missing or bad --public-url: OAuth clients work only on a
// server started with one.
func (c *cli) checkPublicURL(cmd string, cf clientFlags) error {
	if cf.publicURL == "" {
		fmt.Fprintf(c.stderr, "tether %s: --public-url (or TETHER_PUBLIC_URL) is required: the issuer URL the server runs with (its --public-url), such as https://tether.example.com\n", cmd)
		return errUsage
	}
	if err := oauth.ValidateIssuer(cf.publicURL); err != nil {
		return fmt.Errorf("--public-url: %w", err)
	}
	return nil
}

// withProvider opens the store and runs fn with the OAuth provider the
// server would have on it.
func (c *cli) withProvider(ctx context.Context, cf clientFlags, fn func(*oauth.Provider) error) error {
	master, err := loadMaster(cf.masterFile)
	if err != nil {
		return err
	}
	return c.withStore(ctx, cf.store, func(svc *services) error {
		cfg := auth.DefaultConfig()
		cfg.OAuthIssuer = strings.TrimSuffix(cf.publicURL, "/")
		a, err := auth.NewService(ctx, cfg, svc.store, svc.hasher, svc.validate, auth.WithMasterKey(master))
		if err != nil {
			return err
		}
		p, err := oauth.New(oauth.Config{Issuer: cf.publicURL}, a, svc.store)
		if err != nil {
			return err
		}
		return fn(p)
	})
}

func (c *cli) clientCreate(ctx context.Context, args []string) error {
	var (
		cf                      clientFlags
		name, authMethod, scope string
		idTokenAlg, jwksFile    string
		public, dpopBound       bool
		redirects, postLogout   multiFlag
		grants                  listFlag
	)
	fs := c.flagSet("client create")
	cf.bind(fs)
	cf.bindJSON(fs, "print the RFC 7591 client information, secret included, instead")
	fs.StringVar(&name, "name", "", "the client's name, shown on the sign-in page")
	fs.Var(&redirects, "redirect-uri", "a redirect URI (repeated for more): https, http to a loopback IP literal (any port), or a private-use scheme such as com.example.app:/callback")
	fs.BoolVar(&public, "public", false, "a public client (a native app): no secret, token_endpoint_auth_method none")
	fs.StringVar(&authMethod, "auth-method", "", "how a confidential client authenticates: client_secret_basic (default), client_secret_post or private_key_jwt")
	fs.Var(&grants, "grant", "a grant type the client may use (comma-separated or repeated; default authorization_code,refresh_token): authorization_code, refresh_token, password, urn:ietf:params:oauth:grant-type:device_code, client_credentials")
	fs.StringVar(&scope, "scope", "", "the scopes the client may ask for, space-separated (default: openid profile email offline_access)")
	fs.StringVar(&idTokenAlg, "id-token-alg", "", "the algorithm of its ID tokens: RS256 (default), ES256 or EdDSA")
	fs.BoolVar(&dpopBound, "dpop-bound", false, "every token request must carry a DPoP proof (dpop_bound_access_tokens)")
	fs.Var(&postLogout, "post-logout-redirect-uri", "where RP-initiated logout may send the browser back to (repeated for more)")
	fs.StringVar(&jwksFile, "jwks-file", "", "a JSON Web Key Set of the client's public keys, for private_key_jwt")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	switch {
	case public && authMethod != "" && authMethod != oauth.AuthNone:
		fmt.Fprintf(c.stderr, "tether client create: --public and --auth-method %s contradict each other: a public client authenticates with none\n", authMethod)
		return errUsage
	case public:
		authMethod = oauth.AuthNone
	case jwksFile != "" && authMethod == "":
		authMethod = oauth.AuthPrivateKeyJWT
	}
	if err := c.checkPublicURL("client create", cf); err != nil {
		return err
	}
	if len(grants) == 0 {
		grants = listFlag{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken}
	}
	m := oauth.Metadata{
		ClientName: name, RedirectURIs: redirects, PostLogoutRedirectURIs: postLogout,
		TokenEndpointAuthMethod: authMethod, GrantTypes: grants, Scope: scope,
		IDTokenSignedAlg: idTokenAlg, DPoPBoundAccessTokens: dpopBound,
	}
	if jwksFile != "" {
		data, err := os.ReadFile(jwksFile)
		if err != nil {
			return fmt.Errorf("--jwks-file: %w", err)
		}
		if !json.Valid(data) {
			return fmt.Errorf("--jwks-file %s: not JSON", jwksFile)
		}
		m.JWKS = data
	}
	var cl oauth.Client
	err := c.withProvider(ctx, cf, func(p *oauth.Provider) error {
		var err error
		cl, err = p.CreateClient(ctx, auth.CLI, m, false)
		return err
	})
	if err != nil {
		return err
	}
	// Printed once the store is closed and the client surely kept.
	if cf.json {
		return c.printJSON(cl)
	}
	fmt.Fprintln(c.stdout, cl.ClientID)
	kind := "confidential"
	if cl.TokenEndpointAuthMethod == oauth.AuthNone {
		kind = "public"
	}
	if cl.ClientSecret == "" {
		fmt.Fprintf(c.stderr, "created %s client %s (%s; grants %s)\n", kind, cl.ClientID, cl.TokenEndpointAuthMethod, strings.Join(cl.GrantTypes, ", "))
		return nil
	}
	fmt.Fprintln(c.stdout, cl.ClientSecret)
	fmt.Fprintf(c.stderr, "created %s client %s (%s; grants %s); its secret, the second line, is shown once: keep it now\n",
		kind, cl.ClientID, cl.TokenEndpointAuthMethod, strings.Join(cl.GrantTypes, ", "))
	return nil
}

func (c *cli) clientList(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := c.flagSet("client list")
	cf.bind(fs)
	cf.bindJSON(fs, "print the clients as JSON, as the manager API lists them")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := c.checkPublicURL("client list", cf); err != nil {
		return err
	}
	var list []oauth.Client
	err := c.withProvider(ctx, cf, func(p *oauth.Provider) error {
		var err error
		list, err = p.ListClients(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if cf.json {
		if list == nil {
			list = []oauth.Client{}
		}
		return c.printJSON(struct {
			Items []oauth.Client `json:"items"`
		}{list})
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "CLIENT_ID\tAUTH\tGRANTS\tNAME")
	for _, cl := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", cl.ClientID, cl.TokenEndpointAuthMethod, strings.Join(cl.GrantTypes, ","), cl.ClientName)
	}
	return w.Flush()
}

func (c *cli) clientDelete(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := c.flagSet("client delete")
	cf.bind(fs)
	id, err := c.parseWithArg(fs, args, "name the client (its client_id)")
	if err != nil {
		return err
	}
	if err := c.checkPublicURL("client delete", cf); err != nil {
		return err
	}
	err = c.withProvider(ctx, cf, func(p *oauth.Provider) error {
		return clientError(id, p.DeleteClient(ctx, auth.CLI, id))
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "deleted client %s: its refresh tokens stop working at once; its access tokens live out their lifetime\n", id)
	return nil
}

func (c *cli) clientRotateSecret(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := c.flagSet("client rotate-secret")
	cf.bind(fs)
	cf.bindJSON(fs, "print the client, with its new secret, as JSON")
	id, err := c.parseWithArg(fs, args, "name the client (its client_id)")
	if err != nil {
		return err
	}
	if err := c.checkPublicURL("client rotate-secret", cf); err != nil {
		return err
	}
	var cl oauth.Client
	err = c.withProvider(ctx, cf, func(p *oauth.Provider) error {
		var err error
		cl, err = p.RotateSecret(ctx, auth.CLI, id)
		return clientError(id, err)
	})
	if err != nil {
		return err
	}
	if cf.json {
		return c.printJSON(cl)
	}
	fmt.Fprintln(c.stdout, cl.ClientSecret)
	fmt.Fprintf(c.stderr, "new secret for client %s, shown once: the old one no longer works\n", cl.ClientID)
	return nil
}

// clientError names the client a command could not find.
func clientError(id string, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("no client %q (tether client list shows them)", id)
	}
	return err
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
