// Package events delivers the audit trail to sinks: webhooks (CloudEvents
// signed the Standard Webhooks way), syslog (RFC 5424 over TCP or TLS) and
// local files of JSON lines. Events reach it through the store's outbox
// (storage.Outbox), written in the transaction of the change they describe;
// a Dispatcher reads each sink's queue, delivers it in order, at least
// once, and acknowledges what was delivered.
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"time"

	"tether/storage"
)

// Sink types.
const (
	TypeWebhook = "webhook"
	TypeSyslog  = "syslog"
	TypeFile    = "file"
)

// Defaults of a sink's settings.
const (
	DefaultMaxAge       = 24 * time.Hour
	DefaultBacklogLimit = 1_000_000
	DefaultTimeout      = 10 * time.Second
	DefaultFileMaxBytes = 100 << 20
	DefaultFileKeep     = 10
)

// Config is the events configuration: the file --events-config names.
type Config struct {
	// Source is the CloudEvents source of every event: by default the
	// server's public URL, or urn:tether:HOSTNAME.
	Source string `json:"source,omitempty"`
	Sinks  []Sink `json:"sinks"`
}

// Sink configures one sink.
type Sink struct {
	// Name names the sink in metrics, the console and the outbox:
	// storage.ValidSinkName.
	Name string `json:"name"`
	// Type is webhook, syslog or file.
	Type string `json:"type"`
	// Filter chooses the events the sink receives; empty, all of them.
	Filter Filter `json:"filter,omitzero"`
	// MaxAge is how long an event that cannot be delivered is retried
	// before it becomes a dead letter.
	MaxAge Duration `json:"maxAge,omitzero"`
	// BacklogLimit is how many events may wait for the sink; past it the
	// oldest become dead letters (an alert, never a silent drop).
	BacklogLimit int `json:"backlogLimit,omitempty"`

	// URL is the webhook's address (https, or http to loopback only).
	URL string `json:"url,omitempty"`
	// SecretFile holds the webhook's signing secret, whsec_ and base64.
	SecretFile string `json:"secretFile,omitempty"`
	// Timeout bounds one delivery attempt (webhook, syslog).
	Timeout Duration `json:"timeout,omitzero"`

	// Address is the syslog receiver's host:port.
	Address string `json:"address,omitempty"`
	// TLS speaks RFC 5425 (syslog over TLS) rather than plain TCP.
	TLS bool `json:"tls,omitempty"`
	// ServerName is the name the receiver's certificate must hold; by
	// default the host of Address.
	ServerName string `json:"serverName,omitempty"`
	// Facility is the syslog facility: authpriv (the default), auth,
	// security, local0 … local7.
	Facility string `json:"facility,omitempty"`

	// CAFile holds the PEM certificates a webhook's or a TLS syslog
	// receiver's certificate must chain to, instead of the system's.
	CAFile string `json:"caFile,omitempty"`

	// Path is the file sink's file, written as JSON lines.
	Path string `json:"path,omitempty"`
	// MaxBytes is the size past which the file is rotated; Keep how many
	// rotated files are kept (path.1 the newest).
	MaxBytes int64 `json:"maxBytes,omitempty"`
	Keep     int   `json:"keep,omitempty"`
}

// Filter chooses events by action, outcome and handset group: the fields
// of storage.EventRoute.
type Filter struct {
	// Actions are actions, exactly or as a family ("device.*").
	Actions  []string `json:"actions,omitempty"`
	Outcomes []string `json:"outcomes,omitempty"`
	Groups   []string `json:"groups,omitempty"`
}

// Duration is a time.Duration written as Go writes one ("30s", "24h").
type Duration time.Duration

// UnmarshalJSON reads "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`a duration is a string such as "30s" or "24h"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("duration %q: want such as \"30s\" or \"24h\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// LoadConfig reads and checks a configuration file. Unknown fields are
// errors: a misspelt setting must not pass unnoticed.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("events config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("events config %s: %w", path, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("events config %s: more than one JSON value", path)
	}
	if err := c.Check(); err != nil {
		return Config{}, fmt.Errorf("events config %s: %w", path, err)
	}
	return c, nil
}

var facilities = map[string]int{
	"auth": 4, "authpriv": 10, "security": 13, "local0": 16, "local1": 17, "local2": 18,
	"local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// Check reports the first thing wrong with c, and fills in defaults.
func (c *Config) Check() error {
	seen := map[string]bool{}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if !storage.ValidSinkName(s.Name) {
			return fmt.Errorf("sink %d: name %q: want 1 to 63 of a-z, 0-9, '-' and '_'", i+1, s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("sink %q: named twice", s.Name)
		}
		seen[s.Name] = true
		if err := s.check(); err != nil {
			return fmt.Errorf("sink %q: %w", s.Name, err)
		}
	}
	return nil
}

func (s *Sink) check() error {
	if s.MaxAge == 0 {
		s.MaxAge = Duration(DefaultMaxAge)
	}
	if s.BacklogLimit == 0 {
		s.BacklogLimit = DefaultBacklogLimit
	}
	if s.BacklogLimit < 0 {
		return errors.New("backlogLimit: want a positive number")
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(DefaultTimeout)
	}
	for _, o := range s.Filter.Outcomes {
		if o != "success" && o != "failure" {
			return fmt.Errorf("filter: outcome %q: want success or failure", o)
		}
	}
	for _, g := range s.Filter.Groups {
		if !storage.ScopeGroup(g) {
			return fmt.Errorf("filter: group %q", g)
		}
	}
	for _, a := range s.Filter.Actions {
		if a == "" || a == ".*" {
			return fmt.Errorf("filter: action %q", a)
		}
	}
	switch s.Type {
	case TypeWebhook:
		u, err := url.Parse(s.URL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return errors.New("url: want an http(s) URL")
		}
		if u.Scheme == "http" && !loopback(u.Hostname()) {
			return errors.New("url: plain http only to this host (loopback); use https")
		}
		if u.User != nil {
			return errors.New("url: credentials in the URL would be logged; the signature authenticates the sender")
		}
		if s.SecretFile == "" {
			return errors.New("secretFile: a webhook must be signed")
		}
	case TypeSyslog:
		if s.Address == "" {
			return errors.New("address: want host:port")
		}
		if s.Facility == "" {
			s.Facility = "authpriv"
		}
		if _, ok := facilities[s.Facility]; !ok {
			return fmt.Errorf("facility %q", s.Facility)
		}
	case TypeFile:
		if s.Path == "" {
			return errors.New("path: want the file to write")
		}
		if s.MaxBytes == 0 {
			s.MaxBytes = DefaultFileMaxBytes
		}
		if s.Keep == 0 {
			s.Keep = DefaultFileKeep
		}
		if s.MaxBytes < 0 || s.Keep < 0 {
			return errors.New("maxBytes and keep: want positive numbers")
		}
	default:
		return fmt.Errorf("type %q: want webhook, syslog or file", s.Type)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Routes are the outbox routes of c's sinks (storage.Outbox).
func (c Config) Routes() []storage.EventRoute {
	var routes []storage.EventRoute
	for _, s := range c.Sinks {
		routes = append(routes, storage.EventRoute{
			Sink: s.Name, Actions: slices.Clone(s.Filter.Actions),
			Outcomes: slices.Clone(s.Filter.Outcomes), Groups: slices.Clone(s.Filter.Groups),
		})
	}
	return routes
}
