package api

import (
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/auth"
	"tether/device"
)

// The OpenAPI 3.1 document of the native API, and, on a server with a
// public URL, of the OAuth 2.0 and OpenID Connect endpoints
// (oauthOperations), served at /openapi.json. It is built from the tables
// below and from the Go types of the answers themselves, so it cannot
// drift from what the handlers write; a test checks that every route the
// server serves is in it and every path in it is served.

// op documents one operation.
type op struct {
	method, path, summary, tag string
	// auth is "" (none), "manager", "admin", "user" (an access token),
	// "introspect" (an API key of that role), and for OAuth: "client" (the
	// client authenticates, or names itself if public), "client-or-token"
	// (that, or a client_credentials token), "registration" (an RFC 7592
	// registration access token), "token" (an OAuth access token).
	auth string
	// body is the request body's Go value (a zero value of its type), or a
	// media type name for non-JSON bodies.
	body any
	// ok is the status and Go value of a successful answer (nil: no body).
	okStatus int
	ok       any
	query    []string

	// What the OAuth operations need besides.
	//
	// description says more than the summary. form is the Go value of an
	// application/x-www-form-urlencoded body (formOptional: it may be
	// left out), params of the query parameters, one per member (with
	// their doc and enum tags). jsonOnly says answers are JSON whatever
	// Accept says; oauthErrors
	// that errors are RFC 6749 JSON, not problem+json. more are further
	// answers, by status, with what they are. dpop describes the DPoP
	// header the operation takes, if it is not one of dpopOps.
	description  string
	form         any
	formOptional bool
	params       any
	jsonOnly     bool
	oauthErrors  bool
	more         map[string]docAnswer
	dpop         string
}

// docAnswer is one more answer of an operation: its description, and an HTML
// page or a redirect (a Location header).
type docAnswer struct {
	description string
	html        bool
	redirect    bool
}

type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}

var operations = []op{
	{method: "GET", path: "/healthz", summary: "The process is serving", tag: "operations", okStatus: 200, ok: map[string]string{}},
	{method: "GET", path: "/readyz", summary: "The store answers (503 if not)", tag: "operations", okStatus: 200, ok: map[string]string{}},
	{method: "GET", path: "/metrics", summary: "Prometheus metrics", tag: "operations", okStatus: 200, ok: "text/plain"},
	{method: "GET", path: "/openapi.json", summary: "This document", tag: "operations", okStatus: 200, ok: map[string]any{}},
	{method: "GET", path: "/.well-known/jwks.json", summary: "Public keys that verify access tokens", tag: "tokens", okStatus: 200, ok: struct {
		Keys []auth.JWK `json:"keys"`
	}{}},

	{method: "POST", path: "/v1/auth/login", summary: "Log in, from a handset (workers) or without one (managers, admins)", tag: "tokens", body: loginRequest{}, okStatus: 200, ok: tokenView{},
		description: "A manager or admin with a second factor gets 401 mfa_required, with an mfaToken for POST /v1/auth/mfa; one whose role must have a second factor and has none gets 401 mfa_enrollment_required, with an enrollmentToken for POST /v1/auth/mfa/enroll. Both tokens last minutes and are used once.",
		more:        map[string]docAnswer{"401": {description: "invalid_credentials, or the second step: mfa_required (mfaToken, methods, expiresAt) or mfa_enrollment_required (enrollmentToken, methods, expiresAt)"}}},
	{method: "POST", path: "/v1/auth/mfa", summary: "The second step of a login that answered mfa_required: a code of the authenticator app, or a recovery code (each used once; wrong codes count as failed logins)", tag: "tokens", body: mfaRequest{}, okStatus: 200, ok: tokenView{}},
	{method: "POST", path: "/v1/auth/mfa/webauthn", summary: "The second step of a login that answered mfa_required, with a passkey: the WebAuthn options for navigator.credentials.get() (a challenge made for this mfaToken; changes nothing)", tag: "tokens", body: mfaTokenDoc{}, okStatus: 200, ok: passkeyAssertionDoc{},
		more: map[string]docAnswer{"404": {description: "not_found: passkeys are off on this server (no --public-url or --webauthn-rp-id)"}, "409": {description: "conflict: the account has no passkey"}}},
	{method: "POST", path: "/v1/auth/mfa/webauthn/finish", summary: "The passkey's answer (the PublicKeyCredential as JSON) ends the login: its tokens, with amr [\"pwd\",\"hwk\"] (\"swk\" for a passkey that may be synced). A refused answer counts as a failed login", tag: "tokens", body: passkeyFinishDoc{}, okStatus: 200, ok: tokenView{}},
	{method: "POST", path: "/v1/auth/mfa/enroll", summary: "An account that must have a second factor (mfa_enrollment_required): the secret of a new authenticator app, as text, otpauth URI and QR image", tag: "tokens", body: enrollStepRequest{}, okStatus: 200, ok: totpSetupView{}},
	{method: "POST", path: "/v1/auth/mfa/enroll/webauthn", summary: "An account that must have a second factor (mfa_enrollment_required), with a passkey in place of an app: the WebAuthn options for navigator.credentials.create() (native logins, on a server with passkeys)", tag: "tokens", body: enrollTokenDoc{}, okStatus: 200, ok: passkeySetupDoc{},
		more: map[string]docAnswer{"404": {description: "not_found: passkeys are off on this server"}}},
	{method: "POST", path: "/v1/auth/mfa/enroll/webauthn/confirm", summary: "Register the new passkey with the browser's credential: the login's tokens (amr [\"pwd\",\"hwk\"] or \"swk\"), with the recovery codes (shown once)", tag: "tokens", body: enrollPasskeyDoc{}, okStatus: 200, ok: tokenView{}},
	{method: "POST", path: "/v1/auth/mfa/enroll/confirm", summary: "Confirm the new authenticator app with its first code: the login's tokens, with the recovery codes (shown once)", tag: "tokens", body: enrollStepRequest{}, okStatus: 200, ok: tokenView{}},
	{method: "GET", path: "/v1/auth/factors", summary: "The caller's own second factors and recovery codes left", tag: "factors", auth: "own", okStatus: 200, ok: factorsView{}},
	{method: "POST", path: "/v1/auth/factors/totp", summary: "Begin enrolling (or replacing) an authenticator app: the password while no factor is enrolled, else a code", tag: "factors", auth: "own", body: reauthRequest{}, okStatus: 200, ok: totpSetupView{}},
	{method: "POST", path: "/v1/auth/factors/totp/confirm", summary: "Confirm the new authenticator app with its first code, from the session that began it (a first factor comes with recovery codes, shown once)", tag: "factors", auth: "own", body: confirmTOTPRequest{}, okStatus: 201, ok: enrolledView{}},
	{method: "POST", path: "/v1/auth/factors/webauthn", summary: "Begin registering a passkey: the password while no factor is enrolled, else a code; the WebAuthn options for navigator.credentials.create()", tag: "factors", auth: "own", body: beginPasskeyRequest{}, okStatus: 200, ok: passkeySetupDoc{},
		more: map[string]docAnswer{"404": {description: "not_found: passkeys are off on this server (no --public-url or --webauthn-rp-id)"}}},
	{method: "POST", path: "/v1/auth/factors/webauthn/reauth", summary: "A challenge for the caller's passkey: its answer (credential, with passkeyToken) confirms one change to the caller's factors in place of a code, from this session, within five minutes", tag: "factors", auth: "own", okStatus: 200, ok: passkeyReauthDoc{},
		more: map[string]docAnswer{"404": {description: "not_found: passkeys are off on this server"}, "409": {description: "conflict: the caller has no passkey"}}},
	{method: "POST", path: "/v1/auth/factors/webauthn/confirm", summary: "Register the passkey with the browser's new credential (the PublicKeyCredential as JSON), from the session that began it (a first factor comes with recovery codes, shown once)", tag: "factors", auth: "own", body: confirmPasskeyDoc{}, okStatus: 201, ok: enrolledView{}},
	{method: "POST", path: "/v1/auth/factors/{id}/remove", summary: "Remove a second factor, with a code (an account whose role must have one keeps its last)", tag: "factors", auth: "own", body: reauthRequest{}, okStatus: 204},
	{method: "POST", path: "/v1/auth/recovery-codes", summary: "Replace the recovery codes, with a code (the new ones are shown once; the old ones stop working)", tag: "factors", auth: "own", body: reauthRequest{}, okStatus: 200, ok: recoveryCodesView{}},
	{method: "POST", path: "/v1/auth/refresh", summary: "Trade a refresh token for new tokens (rotates it)", tag: "tokens", body: refreshRequest{}, okStatus: 200, ok: tokenView{}},
	{method: "POST", path: "/v1/auth/renew", summary: "Renew an access token, expired or not, from its handset", tag: "tokens", body: renewRequest{}, okStatus: 200, ok: tokenView{}},
	{method: "POST", path: "/v1/auth/logout", summary: "End the caller's session", tag: "tokens", auth: "user", okStatus: 204},
	{method: "POST", path: "/v1/auth/end-shift", summary: "End the caller's shift on a shared handset: the session ends (reason shift_ended) and the handset is handed back", tag: "tokens", auth: "user", okStatus: 204},
	{method: "GET", path: "/v1/auth/me", summary: "The caller's user, handset and session", tag: "tokens", auth: "user", okStatus: 200, ok: struct {
		User    userView    `json:"user"`
		Device  *deviceView `json:"device,omitempty"`
		Session sessionView `json:"session"`
	}{}},
	{method: "POST", path: "/v1/auth/password", summary: "Change the caller's own password (every other session of theirs ends; wrong current passwords count as failed logins)", tag: "tokens", auth: "user", body: changePasswordRequest{}, okStatus: 204},
	{method: "POST", path: "/v1/auth/introspect", summary: "Is a token active? (RFC 7662)", tag: "tokens", auth: "introspect", body: introspectRequest{}, okStatus: 200, ok: map[string]any{}},
	{method: "POST", path: "/v1/enroll", summary: "A handset enrolls itself with an enrollment code", tag: "devices", body: enrollRequest{}, okStatus: 201, ok: deviceView{}},
	{method: "POST", path: "/v1/enroll/challenge", summary: "A challenge for the handset's keystore to attest its key with (good for ten minutes)", tag: "devices", okStatus: 200, ok: challengeView{}},

	{method: "POST", path: "/v1/devices", summary: "Register a handset", tag: "devices", auth: "manager", body: registerDeviceRequest{}, okStatus: 201, ok: deviceView{}},
	{method: "GET", path: "/v1/devices", summary: "List handsets (CSV and XLSX export whole)", tag: "devices", auth: "manager", okStatus: 200, ok: page[deviceView]{}, query: []string{"status", "group", "q", "assignedUser", "limit", "cursor"}},
	{method: "POST", path: "/v1/devices/import", summary: "Import handsets from CSV or XLSX: all or nothing, or (skipInvalid) the valid rows", tag: "devices", auth: "manager", body: "text/csv", okStatus: 200, ok: device.ImportReport{}, query: []string{"dryRun", "skipInvalid"}},
	{method: "GET", path: "/v1/devices/{id}", summary: "A handset, by id or IMEI", tag: "devices", auth: "manager", okStatus: 200, ok: deviceView{}},
	{method: "PATCH", path: "/v1/devices/{id}", summary: "Edit a handset's label, group, mode (personal, shared, or group: its group's), assigned users, notes, or replace (publicKey: a JWK) or clear (null) its key, ending its sessions", tag: "devices", auth: "manager", body: patchDeviceRequest{}, okStatus: 200, ok: deviceView{}},
	{method: "POST", path: "/v1/devices/{id}/suspend", summary: "Suspend a handset (its sessions end)", tag: "devices", auth: "manager", body: transitionRequest{}, okStatus: 200, ok: deviceView{}},
	{method: "POST", path: "/v1/devices/{id}/retire", summary: "Retire a handset (its sessions end)", tag: "devices", auth: "manager", body: transitionRequest{}, okStatus: 200, ok: deviceView{}},
	{method: "POST", path: "/v1/devices/{id}/reinstate", summary: "Reinstate a handset", tag: "devices", auth: "manager", body: transitionRequest{}, okStatus: 200, ok: deviceView{}},

	{method: "GET", path: "/v1/groups", summary: "The handset groups, those with settings (mode, roster, shifts) and those handsets are in (hasSettings false: the defaults)", tag: "groups", auth: "manager", okStatus: 200, ok: page[groupView]{}},
	{method: "GET", path: "/v1/groups/{name}", summary: "A group's settings (a group without any has the defaults: personal handsets, no shifts)", tag: "groups", auth: "manager", okStatus: 200, ok: groupView{}},
	{method: "PUT", path: "/v1/groups/{name}", summary: "Replace a group's settings: the mode of its handsets without one of their own, the roster who may pick up its shared handsets besides its workers, its shifts, when to suspend a handset not handed back", tag: "groups", auth: "manager", body: putGroupRequest{}, okStatus: 200, ok: groupView{}},
	{method: "DELETE", path: "/v1/groups/{name}", summary: "Remove a group's settings (its handsets stay in it)", tag: "groups", auth: "manager", okStatus: 204},
	{method: "GET", path: "/v1/rack", summary: "Who holds which shared handset now: free, in_use, overdue (past shift end), unreturned (past the deadline, never handed back); CSV and XLSX too", tag: "groups", auth: "manager", okStatus: 200, ok: page[rackView]{}, query: []string{"group"}},

	{method: "POST", path: "/v1/users", summary: "Create a user", tag: "users", auth: "manager", body: createUserRequest{}, okStatus: 201, ok: userView{}},
	{method: "GET", path: "/v1/users", summary: "List users", tag: "users", auth: "manager", okStatus: 200, ok: page[userView]{}, query: []string{"role", "disabled", "source", "q", "limit", "cursor"}},
	{method: "GET", path: "/v1/users/{id}", summary: "A user", tag: "users", auth: "manager", okStatus: 200, ok: userView{}},
	{method: "PATCH", path: "/v1/users/{id}", summary: "Edit a user (disabling ends their sessions)", tag: "users", auth: "manager", body: patchUserRequest{}, okStatus: 200, ok: userView{}},
	{method: "POST", path: "/v1/users/{id}/password", summary: "Reset a user's password (every session of theirs ends)", tag: "users", auth: "manager", body: passwordRequest{}, okStatus: 204},
	{method: "POST", path: "/v1/users/{id}/logout-all", summary: "End every session of a user", tag: "sessions", auth: "manager", okStatus: 200, ok: struct {
		Revoked int `json:"revoked"`
	}{}},
	{method: "POST", path: "/v1/users/{id}/mfa/reset", summary: "Remove another account's second factors and recovery codes, for a person who lost theirs (audited; every session of theirs ends)", tag: "users", auth: "admin", okStatus: 200, ok: struct {
		Revoked int `json:"revoked"`
	}{}},

	{method: "GET", path: "/v1/sessions", summary: "Who is logged in where", tag: "sessions", auth: "manager", okStatus: 200, ok: page[sessionView]{}, query: []string{"userId", "deviceId", "live", "limit", "cursor"}},
	{method: "DELETE", path: "/v1/sessions/{id}", summary: "End a session", tag: "sessions", auth: "manager", okStatus: 204},
	{method: "GET", path: "/v1/audit", summary: "The audit trail, oldest first (or newest first, order=desc)", tag: "audit", auth: "manager", okStatus: 200, ok: page[eventView]{}, query: []string{"from", "to", "action", "userId", "deviceId", "order", "limit", "cursor"}},
	{method: "GET", path: "/v1/events/sinks", summary: "The sinks the audit trail is pushed to: each one's backlog, oldest waiting event, dead letters, last delivery and last error", tag: "audit", auth: "manager", okStatus: 200, ok: sinksView{}},
	{method: "GET", path: "/v1/events/sinks/{name}/dead-letters", summary: "A sink's dead letters, oldest first: the events it could not take, and why", tag: "audit", auth: "manager", okStatus: 200, ok: page[deadLetterView]{}, query: []string{"limit", "cursor"}},
	{method: "POST", path: "/v1/events/sinks/{name}/replay", summary: "Put a sink's dead letters (those named by seqs, or all without a body) back at the end of its queue; audited as events.replay", tag: "audit", auth: "manager", body: replayRequest{}, okStatus: 200, ok: struct {
		Replayed int `json:"replayed"`
	}{}},
	{method: "GET", path: "/v1/directory", summary: "Directory sign-in: configured, answering, and the last sync (when, what it changed)", tag: "users", auth: "manager", okStatus: 200, ok: directoryView{}},
	{method: "GET", path: "/v1/lockouts", summary: "The login throttle's counters: accounts and addresses with failed logins, and until when each is held back", tag: "users", auth: "manager", okStatus: 200, ok: page[lockoutView]{}, query: []string{"account", "address", "limit", "cursor"}},
	{method: "DELETE", path: "/v1/lockouts", summary: "Forget failed logins: an account's (from every address), an address's, or the pair's", tag: "users", auth: "manager", okStatus: 200, ok: struct {
		Cleared int `json:"cleared"`
	}{}, query: []string{"account", "address"}},

	{method: "POST", path: "/v1/enrollment-codes", summary: "Create an enrollment code (shown once)", tag: "devices", auth: "manager", body: createCodeRequest{}, okStatus: 201, ok: codeView{}},
	{method: "GET", path: "/v1/enrollment-codes", summary: "List enrollment codes", tag: "devices", auth: "manager", okStatus: 200, ok: page[codeView]{}},
	{method: "DELETE", path: "/v1/enrollment-codes/{id}", summary: "Revoke an enrollment code", tag: "devices", auth: "manager", okStatus: 204},
	{method: "GET", path: "/v1/enrollment-codes/{id}/qr.png", summary: "The code's enroll URL as a QR image", tag: "devices", auth: "manager", okStatus: 200, ok: "image/png", query: []string{"code"}},

	{method: "POST", path: "/v1/api-keys", summary: "Create an API key (shown once)", tag: "admin", auth: "admin", body: createAPIKeyRequest{}, okStatus: 201, ok: apiKeyView{}},
	{method: "GET", path: "/v1/api-keys", summary: "List API keys", tag: "admin", auth: "admin", okStatus: 200, ok: page[apiKeyView]{}},
	{method: "DELETE", path: "/v1/api-keys/{id}", summary: "Revoke an API key", tag: "admin", auth: "admin", okStatus: 204},
	{method: "POST", path: "/v1/admin/keys/rotate", summary: "Start signing tokens with a new key; with revoke, delete every other key at once (a key that may be stolen: the tokens it signed stop verifying, apps refresh)", tag: "admin", auth: "admin", body: rotateRequest{}, okStatus: 200, ok: struct {
		Kid     string            `json:"kid"`
		Kids    map[string]string `json:"kids"`
		Revoked bool              `json:"revoked"`
	}{}},
	{method: "GET", path: "/v1/admin/backup", summary: "A consistent snapshot of the store, streamed", tag: "admin", auth: "admin", okStatus: 200, ok: "application/octet-stream"},
}

// dpopOps take a DPoP proof.
var dpopOps = map[string]bool{
	"POST /v1/auth/login": true, "POST /v1/auth/refresh": true, "POST /v1/auth/renew": true,
	"POST /v1/auth/logout": true, "GET /v1/auth/me": true, "POST /v1/enroll": true,
	"POST /v1/auth/password": true,
}

var queryDocs = map[string]string{
	"status": "enrolled, suspended or retired", "group": "exact group", "q": "case-insensitive text",
	"limit": "page size, 1 to 1000 (default 50)", "cursor": "nextCursor of the previous page",
	"role": "worker, manager or admin", "disabled": "true or false", "userId": "a user id", "deviceId": "a device id",
	"live": "true (default) or all", "from": "RFC 3339 time, inclusive", "to": "RFC 3339 time, exclusive",
	"action": "an audit action", "dryRun": "true: check and report, write nothing", "code": "the enrollment code",
	"account": "a username, compared as logins compare it", "source": "local or ldap (users of the company directory)", "address": "a client IP address",
	"skipInvalid":  "true: import the valid rows and report the invalid ones (by default an invalid row stops the import)",
	"assignedUser": "a username or user id: the handsets assigned to that user (not those any worker may use)",
	"order":        "asc (oldest first, the default) or desc (newest first); nextCursor goes on in the same order",
}

// schemas collects the component schemas of the document.
type schemas struct {
	defs map[string]any
}

// ref returns a reference to the schema of t, defining it (and what it
// uses) on first use.
func (s *schemas) of(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeOf(time.Time{}), t == reflect.TypeOf(timestamp("")):
		return map[string]any{"type": "string", "format": "date-time"}
	case t == reflect.TypeOf(json.RawMessage{}), t == reflect.TypeOf(optionalRaw{}):
		return map[string]any{}
	case t == reflect.TypeOf(tether.Code("")):
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint64, reflect.Uint32, reflect.Uint:
		return map[string]any{"type": "integer"}
	case reflect.Float64, reflect.Float32:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": s.of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": s.of(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		if t.Name() == "" || strings.Contains(t.Name(), "[") {
			return s.object(t)
		}
		name := t.Name()
		if _, done := s.defs[name]; !done {
			s.defs[name] = nil // mark, for recursive types
			s.defs[name] = s.object(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func (s *schemas) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Tag.Get("json") == "" {
				walk(f.Type)
				continue
			}
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			prop := s.of(f.Type)
			if doc, enum := f.Tag.Get("doc"), f.Tag.Get("enum"); doc != "" || enum != "" {
				// A copy: a referenced schema is shared, and a $ref may
				// have siblings in OpenAPI 3.1.
				described := map[string]any{}
				for k, v := range prop {
					described[k] = v
				}
				if doc != "" {
					described["description"] = doc
				}
				if enum != "" {
					described["enum"] = strings.Fields(enum)
				}
				prop = described
			}
			props[name] = prop
			if !strings.Contains(opts, "omit") && f.Type.Kind() != reflect.Pointer {
				required = append(required, name)
			}
		}
	}
	walk(t)
	o := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		sort.Strings(required)
		o["required"] = required
	}
	return o
}

// params are the query parameters of t's members, as object lists them.
func (s *schemas) params(t reflect.Type) []any {
	o := s.object(t)
	props, _ := o["properties"].(map[string]any)
	required := map[string]bool{}
	if r, ok := o["required"].([]string); ok {
		for _, name := range r {
			required[name] = true
		}
	}
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]any, 0, len(names))
	for _, name := range names {
		schema := props[name].(map[string]any)
		p := map[string]any{"name": name, "in": "query", "required": required[name]}
		if d, ok := schema["description"]; ok {
			p["description"] = d
			trimmed := map[string]any{}
			for k, v := range schema {
				if k != "description" {
					trimmed[k] = v
				}
			}
			schema = trimmed
		}
		p["schema"] = schema
		out = append(out, p)
	}
	return out
}

// openapiDocs are the two documents, without OAuth and with it, each built
// once.
var openapiDocs [2]struct {
	once sync.Once
	doc  []byte
}

// OpenAPI returns the document; withOAuth adds the OAuth 2.0 and OpenID
// Connect endpoints, which a server with a public URL serves.
func OpenAPI(version string, withOAuth bool) []byte {
	d := &openapiDocs[0]
	if withOAuth {
		d = &openapiDocs[1]
	}
	d.once.Do(func() {
		if version == "" {
			version = "dev"
		}
		d.doc = buildOpenAPI(version, withOAuth)
	})
	return d.doc
}

func buildOpenAPI(version string, withOAuth bool) []byte {
	s := &schemas{defs: map[string]any{}}
	problem := s.of(reflect.TypeOf(problemDoc{}))
	oauthError := s.of(reflect.TypeOf(oauthErrorDoc{}))
	paths := map[string]map[string]any{}
	ops := operations
	if withOAuth {
		ops = append(slices.Clip(ops), oauthOperations...)
	}
	for _, o := range ops {
		item := paths[o.path]
		if item == nil {
			item = map[string]any{}
			paths[o.path] = item
		}
		op := map[string]any{
			"summary":     o.summary,
			"tags":        []string{o.tag},
			"operationId": strings.ToLower(o.method) + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_", "-", "_").Replace(o.path),
		}
		var params []any
		if strings.Contains(o.path, "{id}") {
			params = append(params, map[string]any{"name": "id", "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if strings.Contains(o.path, "{name}") {
			params = append(params, map[string]any{"name": "name", "in": "path", "required": true, "description": "the sink's name", "schema": map[string]any{"type": "string"}})
		}
		for _, q := range o.query {
			params = append(params, map[string]any{"name": q, "in": "query", "description": queryDocs[q], "schema": map[string]any{"type": "string"}})
		}
		if o.params != nil {
			params = append(params, s.params(reflect.TypeOf(o.params))...)
		}
		switch {
		case dpopOps[o.method+" "+o.path]:
			params = append(params, map[string]any{"name": "DPoP", "in": "header",
				"description": "An RFC 9449 proof signed by the handset's enrolled key (ES256 or EdDSA, the public JWK in its header; htm, htu, iat, jti, and ath when an access token is sent): required for handsets with a key (401 proof_required, proof_invalid)",
				"schema":      map[string]any{"type": "string"}})
		case o.dpop != "":
			params = append(params, map[string]any{"name": "DPoP", "in": "header", "description": o.dpop, "schema": map[string]any{"type": "string"}})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if o.description != "" {
			op["description"] = o.description
		}
		switch b := o.body.(type) {
		case nil:
		case string:
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				b:        map[string]any{"schema": map[string]any{"type": "string"}},
				mimeXLSX: map[string]any{"schema": map[string]any{"type": "string", "contentEncoding": "binary"}},
				"multipart/form-data": map[string]any{"schema": map[string]any{"type": "object",
					"properties": map[string]any{"file": map[string]any{"type": "string", "contentEncoding": "binary"}}}},
			}}
		default:
			op["requestBody"] = map[string]any{"required": o.method != "POST" || !strings.HasSuffix(o.path, "suspend") && !strings.HasSuffix(o.path, "retire") && !strings.HasSuffix(o.path, "reinstate"),
				"content": map[string]any{fiber.MIMEApplicationJSON: map[string]any{"schema": s.of(reflect.TypeOf(b))}}}
		}
		if o.form != nil {
			op["requestBody"] = map[string]any{"required": !o.formOptional,
				"content": map[string]any{fiber.MIMEApplicationForm: map[string]any{"schema": s.of(reflect.TypeOf(o.form))}}}
		}
		responses := map[string]any{}
		okDesc := "success"
		switch v := o.ok.(type) {
		case nil:
			responses[strconv.Itoa(o.okStatus)] = map[string]any{"description": okDesc}
		case string:
			responses[strconv.Itoa(o.okStatus)] = map[string]any{"description": okDesc, "content": map[string]any{v: map[string]any{"schema": map[string]any{"type": "string"}}}}
		case docAnswer:
			responses[strconv.Itoa(o.okStatus)] = v.object()
		default:
			content := answerContent(s.of(reflect.TypeOf(v)))
			if o.jsonOnly {
				content = map[string]any{mimeAppJSON: map[string]any{"schema": s.of(reflect.TypeOf(v))}}
			}
			responses[strconv.Itoa(o.okStatus)] = map[string]any{"description": okDesc, "content": content}
		}
		for status, a := range o.more {
			responses[status] = a.object()
		}
		if o.oauthErrors {
			errAnswer := map[string]any{"description": "an error (RFC 6749 section 5.2)", "content": map[string]any{
				mimeAppJSON: map[string]any{"schema": oauthError},
			}}
			if o.dpop != "" {
				errAnswer["headers"] = map[string]any{
					"DPoP-Nonce":       map[string]any{"description": "with use_dpop_nonce: the nonce the next proof must carry", "schema": map[string]any{"type": "string"}},
					"WWW-Authenticate": map[string]any{"description": "on 401 and 403: the scheme (Basic for a client that tried it, Bearer or DPoP) and the error", "schema": map[string]any{"type": "string"}},
				}
			}
			responses["default"] = errAnswer
		} else {
			responses["default"] = map[string]any{"description": "an error (RFC 9457)", "content": map[string]any{
				"application/problem+json": map[string]any{"schema": problem},
			}}
		}
		op["responses"] = responses
		switch o.auth {
		case "manager", "admin":
			op["security"] = []any{map[string]any{"bearer": []any{}}, map[string]any{"apiKey": []any{}}}
			role := "Role: " + o.auth + " (or admin). Bearer: an API key or a user's access token."
			if o.auth == "manager" {
				role += " A manager limited to handset groups (scopes) reaches only what is in them: anything else answers 404 not_found, as a missing record does; naming a group outside them answers 403 scope_exceeded."
			}
			op["description"] = joinDesc(role, o.description)
		case "user":
			op["security"] = []any{map[string]any{"bearer": []any{}}}
		case "own":
			op["security"] = []any{map[string]any{"bearer": []any{}}}
			op["description"] = joinDesc("A manager's or admin's own access token (not an API key).", o.description)
		case "introspect":
			op["security"] = []any{map[string]any{"bearer": []any{}}, map[string]any{"apiKey": []any{}}}
			op["description"] = "An API key of role introspect or admin."
		case "client":
			// {}: a public client names itself in the form, and the other
			// methods (client_secret_post, private_key_jwt) are form
			// members too.
			op["security"] = []any{map[string]any{"clientBasic": []any{}}, map[string]any{}}
			op["description"] = joinDesc(o.description, clientAuthDoc)
		case "client-or-token":
			op["security"] = []any{map[string]any{"clientBasic": []any{}}, map[string]any{"clientCredentialsToken": []any{}}, map[string]any{}}
			op["description"] = joinDesc(o.description, clientAuthDoc)
		case "registration":
			op["security"] = []any{map[string]any{"registrationAccessToken": []any{}}}
		case "token":
			op["security"] = []any{map[string]any{"oauthAccessToken": []any{}}, map[string]any{"oauthDPoPToken": []any{}}}
			if o.form != nil {
				// Or access_token in the form.
				op["security"] = append(op["security"].([]any), map[string]any{})
			}
		}
		item[strings.ToLower(o.method)] = op
	}
	description := "Enrollment and authentication for company Android handsets: the native API. Answers follow Accept (JSON, XML, CSV, XLSX, compressed JSON); errors are problem+json."
	tags := []any{
		map[string]any{"name": "tokens", "description": "Login, refresh, renewal, logout"},
		map[string]any{"name": "devices", "description": "Handsets, imports, enrollment codes"},
		map[string]any{"name": "groups", "description": "Handset groups: shared handsets, shifts, the rack of who holds which handset"},
		map[string]any{"name": "users", "description": "Accounts"},
		map[string]any{"name": "sessions", "description": "Who is logged in where"},
		map[string]any{"name": "factors", "description": "A manager's or admin's own second factors: authenticator apps (TOTP) and recovery codes"},
		map[string]any{"name": "audit", "description": "The audit trail"},
		map[string]any{"name": "admin", "description": "API keys, signing keys, backups"},
		map[string]any{"name": "operations", "description": "Health, metrics, this document"},
	}
	securitySchemes := map[string]any{
		"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "An API key (tak_…) or an access token; a token bound to a handset key (token type DPoP) is sent as Authorization: DPoP <token> with a DPoP proof"},
		"apiKey": map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"},
	}
	if withOAuth {
		description = "Enrollment and authentication for company Android handsets: the native API (answers follow Accept: JSON, XML, CSV, XLSX, compressed JSON; errors are problem+json), and the OAuth 2.0 and OpenID Connect endpoints of the issuer --public-url (JSON; errors are RFC 6749 JSON under /oauth2 and /.well-known, problem+json under /v1)."
		tags = append(tags,
			map[string]any{"name": "oauth", "description": "OAuth 2.0 and OpenID Connect: discovery, authorization, tokens, revocation, introspection, userinfo, logout, device authorization, dynamic registration"},
			map[string]any{"name": "oauth clients", "description": "OAuth clients, for admins (the manager API)"},
		)
		for name, scheme := range oauthSecuritySchemes {
			securitySchemes[name] = scheme
		}
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "Tether",
			"version":     version,
			"description": description,
		},
		"tags":  tags,
		"paths": paths,
		"components": map[string]any{
			"schemas":         s.defs,
			"securitySchemes": securitySchemes,
		},
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err) // the document is built from constants: a failure is a bug
	}
	return out
}

// answerContent lists the formats every answer comes in.
func answerContent(schema map[string]any) map[string]any {
	text := map[string]any{"schema": map[string]any{"type": "string"}}
	return map[string]any{
		mimeAppJSON:  map[string]any{"schema": schema},
		mimeAppXML:   text,
		mimeTextCSV:  text,
		mimeXLSX:     map[string]any{"schema": map[string]any{"type": "string", "contentEncoding": "binary"}},
		mimeGzipJSON: map[string]any{"schema": map[string]any{"type": "string", "contentEncoding": "binary"}},
		"text/json":  map[string]any{"schema": schema},
		"text/xml":   text,
		mimeMSExcel:  map[string]any{"schema": map[string]any{"type": "string", "contentEncoding": "binary"}},
	}
}

// problemDoc documents the problem document (problem has unexported
// members the document would not show).
type problemDoc struct {
	Type      string              `json:"type"`
	Title     string              `json:"title"`
	Status    int                 `json:"status"`
	Code      string              `json:"code"`
	Detail    string              `json:"detail,omitempty"`
	RequestID string              `json:"requestId,omitempty"`
	Errors    []tether.FieldError `json:"errors,omitempty"`

	MFAToken        string    `json:"mfaToken,omitempty" doc:"mfa_required: the token of the login's second step, for POST /v1/auth/mfa"`
	EnrollmentToken string    `json:"enrollmentToken,omitempty" doc:"mfa_enrollment_required: the token with which the account enrolls a second factor (POST /v1/auth/mfa/enroll)"`
	Methods         []string  `json:"methods,omitempty" doc:"mfa_required: the ways the account can prove its second factor (totp, recovery); mfa_enrollment_required: the kinds it can enroll"`
	ExpiresAt       time.Time `json:"expiresAt,omitzero" doc:"when the step's token expires"`
}

func (s *server) openapi(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, mimeAppJSON+charsetUTF8)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Send(OpenAPI(s.opts.Version, s.OAuth != nil))
}
