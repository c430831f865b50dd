package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"tether/storage"
)

// SchemaVersion is the version of the event schema (docs/events.md): the
// data of every event and its CloudEvents type say it. Fields may be
// added within a version; none is removed or changes meaning.
const SchemaVersion = "1"

// TypePrefix begins every event's CloudEvents type, which ends with its
// action: tether.audit.v1.login.
const TypePrefix = "tether.audit.v" + SchemaVersion + "."

// CloudEvent is an audit event as a CloudEvents 1.0 event in structured
// mode (one JSON object, data inline): what every sink writes.
type CloudEvent struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Time            string `json:"time"`
	Subject         string `json:"subject,omitempty"`
	DataContentType string `json:"datacontenttype"`
	// Sequence is the event's place in its sink's queue: increasing in the
	// order the sink receives events (a replayed dead letter gets a new
	// one). The sequence extension attribute, as a decimal string.
	Sequence string        `json:"sequence"`
	Data     storage.Event `json:"data"`
}

// NewCloudEvent wraps an outbox entry. The subject is what the event is
// about, the most specific first: its session, handset or user.
func NewCloudEvent(source string, e storage.OutboxEntry) CloudEvent {
	subject := e.Event.SessionID
	if subject == "" {
		subject = e.Event.DeviceID
	}
	if subject == "" {
		subject = e.Event.UserID
	}
	return CloudEvent{
		SpecVersion: "1.0", ID: e.Event.ID, Source: source,
		Type: TypePrefix + strings.ToLower(e.Event.Action), Time: e.Event.Time.UTC().Format(time.RFC3339Nano),
		Subject: subject, DataContentType: "application/json",
		Sequence: formatSeq(e.Seq), Data: e.Event,
	}
}

// formatSeq writes a Seq zero-padded to 20 digits, so that sequences sort
// as strings too, as the extension asks.
func formatSeq(seq uint64) string { return fmt.Sprintf("%020d", seq) }

// encode returns ce as JSON.
func (ce CloudEvent) encode() ([]byte, error) { return json.Marshal(ce) }
