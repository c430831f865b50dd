package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SecretPrefix begins a webhook secret: whsec_ and the key in base64, as
// Standard Webhooks writes it.
const SecretPrefix = "whsec_"

// minSecret is the shortest key a webhook may be signed with.
const minSecret = 24

// webhook posts each event as a CloudEvent in structured mode, signed as
// Standard Webhooks signs (https://www.standardwebhooks.com): the headers
// webhook-id (the event's ID, the same on every retry, so receivers
// deduplicate), webhook-timestamp (seconds) and webhook-signature ("v1,"
// and the base64 HMAC-SHA256 of "id.timestamp.body").
type webhook struct {
	url    string
	key    []byte
	client *http.Client
	now    func() time.Time
}

// ParseSecret decodes a whsec_ secret.
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, errors.New("webhook secret: want whsec_ and base64")
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, errors.New("webhook secret: the part after whsec_ is not base64")
	}
	if len(key) < minSecret {
		return nil, fmt.Errorf("webhook secret: %d bytes; want at least %d", len(key), minSecret)
	}
	return key, nil
}

func newWebhook(s Sink) (*webhook, error) {
	data, err := os.ReadFile(s.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("sink %q: secretFile: %w", s.Name, err)
	}
	key, err := ParseSecret(string(data))
	if err != nil {
		return nil, fmt.Errorf("sink %q: %s: %w", s.Name, s.SecretFile, err)
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		return nil, fmt.Errorf("sink %q: url: %w", s.Name, err)
	}
	tc, err := tlsConfig(s.CAFile, u.Hostname())
	if err != nil {
		return nil, fmt.Errorf("sink %q: %w", s.Name, err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tc
	transport.Proxy = nil
	return &webhook{
		url: s.URL, key: key, now: time.Now,
		client: &http.Client{
			Transport: transport,
			Timeout:   time.Duration(s.Timeout),
			// A receiver that moved is told by its new address in the
			// configuration, not followed blindly with signed events.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Sign returns the webhook-signature of body sent as id at timestamp.
func Sign(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func (w *webhook) Target() string {
	u, err := url.Parse(w.url)
	if err != nil {
		return "webhook"
	}
	// The query may hold a token of the receiver's: keep it out of sight.
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

func (w *webhook) Close() error {
	w.client.CloseIdleConnections()
	return nil
}

// Send posts events one at a time, in order. A 2xx answer takes an event;
// 408, 425, 429, 5xx, a redirect or no answer are worth retrying; any
// other answer refuses it for good.
func (w *webhook) Send(ctx context.Context, events []CloudEvent) (int, error) {
	for i, ce := range events {
		if _, err := w.post(ctx, ce); err != nil {
			return i, err
		}
	}
	return len(events), nil
}

// test posts ce and returns the receiver's answer: its status and the
// start of its body.
func (w *webhook) test(ctx context.Context, ce CloudEvent) (string, error) {
	return w.post(ctx, ce)
}

func (w *webhook) post(ctx context.Context, ce CloudEvent) (answer string, err error) {
	body, err := ce.encode()
	if err != nil {
		return "", &PermanentError{err}
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return "", &PermanentError{err}
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("User-Agent", "tether-events/"+SchemaVersion)
	req.Header.Set("webhook-id", ce.ID)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", Sign(w.key, ce.ID, ts, body))
	resp, err := w.client.Do(req)
	if err != nil {
		// The error may quote the URL, query and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("webhook: %w", err)
	}
	// Read a little of the answer, so the connection can be reused, and
	// keep its start for a test's report.
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	answer = resp.Status
	if t := strings.TrimSpace(printableText(excerpt)); t != "" {
		answer += ": " + t
	}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return answer, nil
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests,
		code >= 500, code >= 300 && code < 400:
		return answer, fmt.Errorf("webhook: the receiver answered %d", code)
	default:
		return answer, &PermanentError{fmt.Errorf("webhook: the receiver refused the event with %d", code)}
	}
}

// printableText keeps the printable characters of b, a receiver's answer
// shown on a terminal.
func printableText(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || r < 32 && r != ' ' || r == 127 {
			return ' '
		}
		return r
	}, string(b))
}
