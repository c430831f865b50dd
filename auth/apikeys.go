package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"tether"
	"tether/storage"
)

// APIKeyPrefix starts every API key secret, so a leaked one is easy to find
// in code and logs.
const APIKeyPrefix = "tak_"

// apiKeyLen is the length of a secret: the prefix and 32 random bytes,
// base64url without padding.
var apiKeyLen = len(APIKeyPrefix) + base64.RawURLEncoding.EncodedLen(32)

// APIKeys issues and checks API keys. Only a SHA-256 of each secret is
// stored: the secrets are 256 random bits, so a fast hash is enough.
type APIKeys struct {
	store storage.APIKeys
	now   func() time.Time
}

// NewAPIKeys returns an APIKeys service.
func NewAPIKeys(store storage.APIKeys) *APIKeys {
	return &APIKeys{store: store, now: time.Now}
}

// HashAPIKey returns what the store keeps of a secret.
func HashAPIKey(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// NewAPIKey is what a new API key is made with.
type NewAPIKey struct {
	Role storage.Role
	Name string
	// AllowFrom limits the key to these networks: CIDR prefixes, or single
	// addresses; empty for anywhere.
	AllowFrom []string
	// Scopes limit a manager's key to these handset groups; empty for the
	// whole fleet. Keys of other roles have none.
	Scopes []string
}

// maxAllowFrom bounds a key's networks.
const maxAllowFrom = 32

// Create makes a key with the given role and returns its secret, which is
// shown once and never again.
func (k *APIKeys) Create(ctx context.Context, by Principal, role storage.Role, name string) (string, storage.APIKey, error) {
	return k.CreateKey(ctx, by, NewAPIKey{Role: role, Name: name})
}

// allowFrom checks and canonicalizes a key's networks.
func allowFrom(in []string) ([]string, error) {
	if len(in) > maxAllowFrom {
		return nil, tether.Invalid("allowFrom", "too_many", fmt.Sprintf("at most %d networks", maxAllowFrom))
	}
	var (
		out  []string
		errs tether.ValidationError
	)
	for i, raw := range in {
		p, ok := parseNetwork(raw)
		if !ok {
			errs.Fields = append(errs.Fields, tether.FieldError{Field: fmt.Sprintf("allowFrom[%d]", i), Code: "network_invalid",
				Message: "a network is a CIDR prefix such as 10.20.0.0/16 or 2001:db8::/32, or one address"})
			continue
		}
		if !slices.Contains(out, p.String()) {
			out = append(out, p.String())
		}
	}
	if len(errs.Fields) > 0 {
		return nil, &errs
	}
	return out, nil
}

// parseNetwork reads a CIDR prefix or one address, IPv4 in IPv6 taken as
// IPv4, masked.
func parseNetwork(raw string) (netip.Prefix, bool) {
	raw = strings.TrimSpace(raw)
	p, err := netip.ParsePrefix(raw)
	if err != nil {
		a, aerr := netip.ParseAddr(raw)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, false
		}
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked(), true
}

// CreateKey makes a key as spec says and returns its secret, which is
// shown once and never again.
func (k *APIKeys) CreateKey(ctx context.Context, by Principal, spec NewAPIKey) (string, storage.APIKey, error) {
	role, name := spec.Role, spec.Name
	nets, err := allowFrom(spec.AllowFrom)
	if err != nil {
		return "", storage.APIKey{}, err
	}
	switch role {
	case storage.RoleManager, storage.RoleAdmin, storage.RoleIntrospect, storage.RoleClient:
	default:
		return "", storage.APIKey{}, tether.Invalid("role", "role_invalid", "role must be manager, admin, introspect or client")
	}
	name = strings.TrimSpace(name)
	if len(name) > 64 || !tether.Printable(name) {
		return "", storage.APIKey{}, tether.Invalid("name", "name_invalid", "name must be at most 64 printable characters")
	}
	scopes, verr := CheckScopes("scopes", spec.Scopes)
	if verr != nil {
		return "", storage.APIKey{}, verr
	}
	if len(scopes) > 0 && role != storage.RoleManager {
		if role == storage.RoleAdmin {
			return "", storage.APIKey{}, errAdminScoped
		}
		return "", storage.APIKey{}, tether.Invalid("scopes", "scopes_role", "only a manager's key is limited to groups")
	}
	if !by.CanGrant(role) {
		return "", storage.APIKey{}, fmt.Errorf("%s creating a %s key: %w", by, role, ErrForbidden)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", storage.APIKey{}, fmt.Errorf("api key: %w", err)
	}
	secret := APIKeyPrefix + base64.RawURLEncoding.EncodeToString(raw)
	key := storage.APIKey{
		ID:        storage.NewID(storage.PrefixAPIKey),
		Name:      name,
		Role:      role,
		Hash:      HashAPIKey(secret),
		Hint:      secret[:len(APIKeyPrefix)+6],
		CreatedAt: k.now().UTC(),
		CreatedBy: by.String(),
		AllowFrom: nets,
		Scopes:    scopes,
	}
	ev := storage.NewEvent(ctx, key.CreatedAt, "apikey.create", "success", "")
	by.Stamp(&ev)
	ev.Detail = map[string]string{"key": key.ID, "role": string(role)}
	if len(scopes) > 0 {
		ev.Detail["scopes"] = truncate(strings.Join(scopes, " "), 256)
	}
	if len(nets) > 0 {
		ev.Detail["allowFrom"] = truncate(strings.Join(nets, " "), 256)
	}
	if err := k.store.CreateAPIKey(ctx, key, storage.WithEvents(ev)); err != nil {
		return "", storage.APIKey{}, fmt.Errorf("create api key: %w", err)
	}
	return secret, key, nil
}

// Authenticate returns the principal of a secret, or ErrUnauthenticated.
func (k *APIKeys) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if len(secret) != apiKeyLen || !strings.HasPrefix(secret, APIKeyPrefix) {
		return Principal{}, ErrUnauthenticated
	}
	hash := HashAPIKey(secret)
	key, err := k.store.GetAPIKeyByHash(ctx, hash)
	if errors.Is(err, storage.ErrNotFound) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("look up api key: %w", err)
	}
	// The index lookup found it by hash already; compare again in constant
	// time so a backend's lookup is never the only check.
	if subtle.ConstantTimeCompare(hash, key.Hash) != 1 {
		return Principal{}, ErrUnauthenticated
	}
	if !allowedFrom(key.AllowFrom, tether.OriginOf(ctx).IP) {
		// The same answer as a wrong key: the holder of a key used from
		// elsewhere learns nothing; the log says why.
		return Principal{}, fmt.Errorf("%w: key %s used from %s, outside its networks", ErrUnauthenticated, key.ID, tether.OriginOf(ctx).IP)
	}
	p := Principal{Kind: KindAPIKey, ID: key.ID, Role: key.Role}
	if key.Role == storage.RoleManager {
		p.Scopes = scopesOf(key.Scopes)
	}
	return p, nil
}

// allowedFrom reports whether a request from ip may use a key limited to
// nets (none: from anywhere). An unknown address is allowed nowhere.
func allowedFrom(nets []string, ip string) bool {
	if len(nets) == 0 {
		return true
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, n := range nets {
		if p, err := netip.ParsePrefix(n); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

// List returns every key (without secrets: the store has none).
func (k *APIKeys) List(ctx context.Context) ([]storage.APIKey, error) {
	return k.store.ListAPIKeys(ctx)
}

// Revoke deletes a key; requests with it fail from then on.
func (k *APIKeys) Revoke(ctx context.Context, by Principal, id string) error {
	ev := storage.NewEvent(ctx, k.now(), "apikey.revoke", "success", "")
	by.Stamp(&ev)
	ev.Detail = map[string]string{"key": id}
	return k.store.DeleteAPIKey(ctx, id, storage.WithEvents(ev))
}
