package api

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"

	"tether"
)

type requestIDKey struct{}

// RequestID returns the request id carried by ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// newRequestID returns 20 random base32 characters: random, so ids from
// several instances never collide and reveal nothing about traffic.
func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return base32.StdEncoding.EncodeToString(b[:])[:20]
}

// validRequestID reports whether a client-supplied id is safe to adopt and
// to write into logs: 1 to 64 characters of [A-Za-z0-9._-].
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// LogHandler wraps h so that every record logged with a request's context
// carries its request_id.
func LogHandler(h slog.Handler) slog.Handler { return ctxHandler{h} }

type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(attrs)}
}

func (h ctxHandler) WithGroup(name string) slog.Handler {
	return ctxHandler{h.Handler.WithGroup(name)}
}

// requestID gives every request an id: the client's X-Request-ID when it is
// safe to log, a new random one otherwise. It is echoed in the response and
// carried in the user context for the services' logs.
func requestID(c *fiber.Ctx) error {
	id := c.Get(fiber.HeaderXRequestID)
	if !validRequestID(id) {
		id = newRequestID()
	} else {
		id = string([]byte(id)) // the header's memory is reused after the request
	}
	c.Set(fiber.HeaderXRequestID, id)
	c.SetUserContext(context.WithValue(c.UserContext(), requestIDKey{}, id))
	return c.Next()
}

// accessLog logs one line a request, after the error handler has set its
// final status. It never logs headers, bodies or query strings: they may
// hold passwords, tokens and keys.
func (s *server) accessLog(c *fiber.Ctx) error {
	start := time.Now()
	if err := c.Next(); err != nil {
		if herr := c.App().ErrorHandler(c, err); herr != nil {
			return herr
		}
	}
	status := c.Response().StatusCode()
	if s.Metrics != nil {
		route := "unmatched"
		if r := c.Route(); r != nil && r.Path != "/" && r.Path != "" {
			route = r.Path
		}
		s.Metrics.observeRequest(route, c.Method(), status, time.Since(start))
	}
	level := slog.LevelInfo
	switch {
	case status == fiber.StatusServiceUnavailable:
		// Shed or refused for want of capacity: worth noticing, no fault.
		level = slog.LevelWarn
	case status >= 500:
		level = slog.LevelError
	}
	s.log.LogAttrs(c.UserContext(), level, "request",
		slog.String("method", c.Method()),
		slog.String("path", c.Path()),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)),
		slog.String("ip", tether.OriginOf(c.UserContext()).IP),
		slog.Int("bytes", len(c.Response().Body())),
	)
	return nil
}
