package api

import (
	"encoding/json"
	"reflect"
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

// The OpenAPI 3.1 document of the native API, served at /openapi.json. It
// is built from the table below and from the Go types of the answers
// themselves, so it cannot drift from what the handlers write; a test
// checks that every route the server serves is in it and every path in it
// is served.

// op documents one operation.
type op struct {
	method, path, summary, tag string
	// auth is "" (none), "manager", "admin", "user" (an access token),
	// "introspect" (an API key of that role).
	auth string
	// body is the request body's Go value (a zero value of its type), or a
	// media type name for non-JSON bodies.
	body any
	// ok is the status and Go value of a successful answer (nil: no body).
	okStatus int
	ok       any
	query    []string
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

	{method: "POST", path: "/v1/auth/login", summary: "Log in, from a handset (workers) or without one (managers, admins)", tag: "tokens", body: loginRequest{}, okStatus: 200, ok: tokenView{}},
	{method: "POST", path: "/v1/auth/refresh", summary: "Trade a refresh token for new tokens (rotates it)", tag: "tokens", body: refreshRequest{}, okStatus: 200, ok: tokenView{}},
	{method: "POST", path: "/v1/auth/renew", summary: "Renew an access token, expired or not, from its handset", tag: "tokens", body: renewRequest{}, okStatus: 200, ok: tokenView{}},
	{method: "POST", path: "/v1/auth/logout", summary: "End the caller's session", tag: "tokens", auth: "user", okStatus: 204},
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
	{method: "PATCH", path: "/v1/devices/{id}", summary: "Edit a handset's label, group, assigned users, notes, or replace (publicKey: a JWK) or clear (null) its key, ending its sessions", tag: "devices", auth: "manager", body: patchDeviceRequest{}, okStatus: 200, ok: deviceView{}},
	{method: "POST", path: "/v1/devices/{id}/suspend", summary: "Suspend a handset (its sessions end)", tag: "devices", auth: "manager", body: transitionRequest{}, okStatus: 200, ok: deviceView{}},
	{method: "POST", path: "/v1/devices/{id}/retire", summary: "Retire a handset (its sessions end)", tag: "devices", auth: "manager", body: transitionRequest{}, okStatus: 200, ok: deviceView{}},
	{method: "POST", path: "/v1/devices/{id}/reinstate", summary: "Reinstate a handset", tag: "devices", auth: "manager", body: transitionRequest{}, okStatus: 200, ok: deviceView{}},

	{method: "POST", path: "/v1/users", summary: "Create a user", tag: "users", auth: "manager", body: createUserRequest{}, okStatus: 201, ok: userView{}},
	{method: "GET", path: "/v1/users", summary: "List users", tag: "users", auth: "manager", okStatus: 200, ok: page[userView]{}, query: []string{"role", "disabled", "source", "q", "limit", "cursor"}},
	{method: "GET", path: "/v1/users/{id}", summary: "A user", tag: "users", auth: "manager", okStatus: 200, ok: userView{}},
	{method: "PATCH", path: "/v1/users/{id}", summary: "Edit a user (disabling ends their sessions)", tag: "users", auth: "manager", body: patchUserRequest{}, okStatus: 200, ok: userView{}},
	{method: "POST", path: "/v1/users/{id}/password", summary: "Reset a user's password (every session of theirs ends)", tag: "users", auth: "manager", body: passwordRequest{}, okStatus: 204},
	{method: "POST", path: "/v1/users/{id}/logout-all", summary: "End every session of a user", tag: "sessions", auth: "manager", okStatus: 200, ok: struct {
		Revoked int `json:"revoked"`
	}{}},

	{method: "GET", path: "/v1/sessions", summary: "Who is logged in where", tag: "sessions", auth: "manager", okStatus: 200, ok: page[sessionView]{}, query: []string{"userId", "deviceId", "live", "limit", "cursor"}},
	{method: "DELETE", path: "/v1/sessions/{id}", summary: "End a session", tag: "sessions", auth: "manager", okStatus: 204},
	{method: "GET", path: "/v1/audit", summary: "The audit trail, oldest first (or newest first, order=desc)", tag: "audit", auth: "manager", okStatus: 200, ok: page[eventView]{}, query: []string{"from", "to", "action", "userId", "deviceId", "order", "limit", "cursor"}},
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
	case t == reflect.TypeOf(time.Time{}):
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
			props[name] = s.of(f.Type)
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

var (
	openapiOnce sync.Once
	openapiDoc  []byte
)

// OpenAPI returns the document.
func OpenAPI(version string) []byte {
	openapiOnce.Do(func() {
		if version == "" {
			version = "dev"
		}
		openapiDoc = buildOpenAPI(version)
	})
	return openapiDoc
}

func buildOpenAPI(version string) []byte {
	s := &schemas{defs: map[string]any{}}
	problem := s.of(reflect.TypeOf(problemDoc{}))
	paths := map[string]map[string]any{}
	for _, o := range operations {
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
		for _, q := range o.query {
			params = append(params, map[string]any{"name": q, "in": "query", "description": queryDocs[q], "schema": map[string]any{"type": "string"}})
		}
		if dpopOps[o.method+" "+o.path] {
			params = append(params, map[string]any{"name": "DPoP", "in": "header",
				"description": "An RFC 9449 proof signed by the handset's enrolled key (ES256 or EdDSA, the public JWK in its header; htm, htu, iat, jti, and ath when an access token is sent): required for handsets with a key (401 proof_required, proof_invalid)",
				"schema":      map[string]any{"type": "string"}})
		}
		if len(params) > 0 {
			op["parameters"] = params
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
		responses := map[string]any{}
		okDesc := "success"
		switch v := o.ok.(type) {
		case nil:
			responses[strconv.Itoa(o.okStatus)] = map[string]any{"description": okDesc}
		case string:
			responses[strconv.Itoa(o.okStatus)] = map[string]any{"description": okDesc, "content": map[string]any{v: map[string]any{"schema": map[string]any{"type": "string"}}}}
		default:
			responses[strconv.Itoa(o.okStatus)] = map[string]any{"description": okDesc, "content": answerContent(s.of(reflect.TypeOf(v)))}
		}
		responses["default"] = map[string]any{"description": "an error (RFC 9457)", "content": map[string]any{
			"application/problem+json": map[string]any{"schema": problem},
		}}
		op["responses"] = responses
		switch o.auth {
		case "manager", "admin":
			op["security"] = []any{map[string]any{"bearer": []any{}}, map[string]any{"apiKey": []any{}}}
			op["description"] = "Role: " + o.auth + " (or admin). Bearer: an API key or a user's access token."
		case "user":
			op["security"] = []any{map[string]any{"bearer": []any{}}}
		case "introspect":
			op["security"] = []any{map[string]any{"bearer": []any{}}, map[string]any{"apiKey": []any{}}}
			op["description"] = "An API key of role introspect or admin."
		}
		item[strings.ToLower(o.method)] = op
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "Tether",
			"version":     version,
			"description": "Enrollment and authentication for company Android handsets: the native API. Answers follow Accept (JSON, XML, CSV, XLSX, compressed JSON); errors are problem+json.",
		},
		"tags": []any{
			map[string]any{"name": "tokens", "description": "Login, refresh, renewal, logout"},
			map[string]any{"name": "devices", "description": "Handsets, imports, enrollment codes"},
			map[string]any{"name": "users", "description": "Accounts"},
			map[string]any{"name": "sessions", "description": "Who is logged in where"},
			map[string]any{"name": "audit", "description": "The audit trail"},
			map[string]any{"name": "admin", "description": "API keys, signing keys, backups"},
			map[string]any{"name": "operations", "description": "Health, metrics, this document"},
		},
		"paths": paths,
		"components": map[string]any{
			"schemas": s.defs,
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "An API key (tak_…) or an access token; a token bound to a handset key (token type DPoP) is sent as Authorization: DPoP <token> with a DPoP proof"},
				"apiKey": map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"},
			},
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
}

func (s *server) openapi(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, mimeAppJSON+charsetUTF8)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Send(OpenAPI(s.opts.Version))
}
