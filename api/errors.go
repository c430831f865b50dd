package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/oauth"
	"tether/storage"
)

// problem is an RFC 9457 problem document.
type problem struct {
	Type      string              `json:"type"`
	Title     string              `json:"title"`
	Status    int                 `json:"status"`
	Code      tether.Code         `json:"code"`
	Detail    string              `json:"detail,omitempty"`
	RequestID string              `json:"requestId,omitempty"`
	Errors    []tether.FieldError `json:"errors,omitempty"`
	// extra members, such as minAppVersion, and when to retry.
	extra      map[string]any
	retryAfter time.Duration
}

// MarshalJSON writes the standard members and then the extra ones.
func (p problem) MarshalJSON() ([]byte, error) {
	type plain problem
	base, err := json.Marshal(plain(p))
	if err != nil || len(p.extra) == 0 {
		return base, err
	}
	extra, err := json.Marshal(p.extra)
	if err != nil {
		return nil, err
	}
	// {"type":…} + {"minAppVersion":…} → {"type":…,"minAppVersion":…}
	return append(append(base[:len(base)-1], ','), extra[1:]...), nil
}

// statusOf is the one place codes meet HTTP statuses.
var statusOf = map[tether.Code]int{
	tether.CodeInvalidRequest:       fiber.StatusBadRequest,
	tether.CodeValidationFailed:     fiber.StatusBadRequest,
	tether.CodeInvalidCredentials:   fiber.StatusUnauthorized,
	tether.CodeTokenInvalid:         fiber.StatusUnauthorized,
	tether.CodeTokenExpired:         fiber.StatusUnauthorized,
	tether.CodeRenewalWindowPassed:  fiber.StatusUnauthorized,
	tether.CodeTokenAlreadyUsed:     fiber.StatusUnauthorized,
	tether.CodeSessionRevoked:       fiber.StatusUnauthorized,
	tether.CodeRefreshTokenReused:   fiber.StatusUnauthorized,
	tether.CodeProofRequired:        fiber.StatusUnauthorized,
	tether.CodeProofInvalid:         fiber.StatusUnauthorized,
	tether.CodeMFARequired:          fiber.StatusUnauthorized,
	tether.CodeMFAEnrollment:        fiber.StatusUnauthorized,
	tether.CodeMFAUnsupported:       fiber.StatusForbidden,
	tether.CodeForbidden:            fiber.StatusForbidden,
	tether.CodeScopeExceeded:        fiber.StatusForbidden,
	tether.CodeAccountDisabled:      fiber.StatusForbidden,
	tether.CodeDeviceNotEnrolled:    fiber.StatusForbidden,
	tether.CodeDeviceSuspended:      fiber.StatusForbidden,
	tether.CodeDeviceRetired:        fiber.StatusForbidden,
	tether.CodeDeviceNotAssigned:    fiber.StatusForbidden,
	tether.CodeDeviceMismatch:       fiber.StatusForbidden,
	tether.CodeSimChanged:           fiber.StatusForbidden,
	tether.CodeNotFound:             fiber.StatusNotFound,
	tether.CodeMethodNotAllowed:     fiber.StatusMethodNotAllowed,
	tether.CodeDirectoryUnavailable: fiber.StatusServiceUnavailable,
	tether.CodeDirectoryManaged:     fiber.StatusConflict,
	tether.CodeConflict:             fiber.StatusConflict,
	tether.CodePayloadTooLarge:      fiber.StatusRequestEntityTooLarge,
	tether.CodeUnsupportedMediaType: fiber.StatusUnsupportedMediaType,
	tether.CodeNotAcceptable:        fiber.StatusNotAcceptable,
	tether.CodeAppVersionOld:        fiber.StatusUpgradeRequired,
	tether.CodeOSVersionOld:         fiber.StatusUpgradeRequired,
	tether.CodeTooManyAttempts:      fiber.StatusTooManyRequests,
	tether.CodeServerBusy:           fiber.StatusServiceUnavailable,
	tether.CodeInternal:             fiber.StatusInternalServerError,

	tether.CodeSessionEndedByHandover: fiber.StatusUnauthorized,
}

// fiberCodes maps the statuses Fiber and fasthttp produce on their own.
var fiberCodes = map[int]tether.Code{
	fiber.StatusBadRequest:                  tether.CodeInvalidRequest,
	fiber.StatusNotFound:                    tether.CodeNotFound,
	fiber.StatusMethodNotAllowed:            tether.CodeMethodNotAllowed,
	fiber.StatusRequestEntityTooLarge:       tether.CodePayloadTooLarge,
	fiber.StatusUnsupportedMediaType:        tether.CodeUnsupportedMediaType,
	fiber.StatusNotAcceptable:               tether.CodeNotAcceptable,
	fiber.StatusRequestHeaderFieldsTooLarge: tether.CodeInvalidRequest,
	fiber.StatusRequestTimeout:              tether.CodeInvalidRequest,
}

// toProblem classifies err. The detail is always safe for the client: a
// fixed message or the client's own input, never an internal error's text.
func toProblem(err error) problem {
	var (
		verr  *tether.ValidationError
		terr  *tether.Error
		cerr  *storage.ConflictError
		ferr  *fiber.Error
		oerr  *oauth.Error
		code  tether.Code
		p     problem
		title string
	)
	switch {
	case errors.As(err, &verr):
		code, p.Detail, p.Errors = tether.CodeValidationFailed, "the request has invalid fields", verr.Fields
	case errors.As(err, &terr):
		code, p.Detail, p.extra, p.retryAfter = terr.Code, terr.Message, terr.Extra, terr.RetryAfter
	case errors.As(err, &cerr):
		code, p.Detail = tether.CodeConflict, cerr.Error()
	case errors.As(err, &oerr):
		// An OAuth error on the manager API (a client's metadata).
		if oerr.Code == oauth.CodeServerError || oerr.Code == oauth.CodeTemporarilyUnavailable {
			code = tether.CodeInternal
			break
		}
		code, p.Detail, p.extra = tether.CodeInvalidRequest, oerr.Description, map[string]any{"error": oerr.Code}
	case errors.Is(err, storage.ErrNotFound):
		code, p.Detail = tether.CodeNotFound, "the resource does not exist"
	case errors.As(err, &ferr):
		c, ok := fiberCodes[ferr.Code]
		if !ok {
			c = tether.CodeInternal
		}
		code = c
		if ferr.Code < 500 {
			p.Detail = ferr.Message
		}
	default:
		code = tether.CodeInternal
	}
	p.Status = statusOf[code]
	if p.Status == 0 {
		p.Status = fiber.StatusInternalServerError
	}
	// A bad request the HTTP server refused itself keeps the status it
	// chose (431 for headers too large), with the code invalid_request.
	if ferr != nil && code == tether.CodeInvalidRequest && ferr.Code > 400 && ferr.Code < 500 {
		p.Status = ferr.Code
	}
	title = strings.ReplaceAll(string(code), "_", " ")
	p.Title = strings.ToUpper(title[:1]) + title[1:]
	p.Code = code
	p.Type = "urn:tether:problem:" + string(code)
	if code == tether.CodeInternal {
		p.Detail = "the server failed; the request id is in its log"
	}
	return p
}

// handleError is Fiber's error handler: every error from every route and
// from the HTTP server itself becomes a problem+json answer here.
func (s *server) handleError(c *fiber.Ctx, err error) error {
	if errors.Is(err, fiber.ErrRequestTimeout) {
		// The client sent no whole request within the read timeout: often a
		// connection a client opened ahead of need and never used. An answer
		// written now could be read later as the answer to its first real
		// request, so the connection is closed without one.
		if conn := c.Context().Conn(); conn != nil {
			if cerr := conn.Close(); cerr != nil {
				s.log.Debug("close timed-out connection", "error", cerr)
			}
		}
		return nil
	}
	err = s.oauthOff(c, err)
	p := toProblem(err)
	if p.Code == tether.CodePayloadTooLarge {
		var ferr *fiber.Error
		if errors.As(err, &ferr) {
			p.Detail = fmt.Sprintf("the request body is over this server's limit of %d bytes (--body-limit)", s.opts.BodyLimit)
			p.extra = map[string]any{"limit": s.opts.BodyLimit}
		}
		// The rest of the body is still coming: read and drop it, so the
		// client gets this answer instead of a reset connection.
		if lc, ok := c.Context().Conn().(lingerer); ok {
			lc.lingerOnClose()
		}
	}
	if isOAuthPath(c.Path()) {
		// RFC 6749 error bodies, even for what no handler saw.
		return s.oauthError(c, err)
	}
	if isTokenLogin(c.Path()) {
		// The token-login document's errors, even those no handler saw.
		return s.tokenLoginFail(c, tokenLoginQueryOf(c), err)
	}
	ctx := c.UserContext()
	p.RequestID = RequestID(ctx)
	if p.RequestID == "" {
		// Errors the HTTP server raises before routing (a body over the
		// limit, headers too large) skip the middleware.
		p.RequestID = newRequestID()
		ctx = context.WithValue(ctx, requestIDKey{}, p.RequestID)
		c.Set(fiber.HeaderXRequestID, p.RequestID)
	}
	// A 503 is the server refusing more than it can take (a login shed,
	// the directory down, imports at their limit): a refusal, not a fault.
	if p.Status >= 500 && p.Status != fiber.StatusServiceUnavailable {
		s.log.ErrorContext(ctx, "request failed", "error", err.Error(), "path", c.Path())
	} else {
		s.log.DebugContext(ctx, "request refused", "code", p.Code, "error", err.Error())
	}
	if p.Status == fiber.StatusUnauthorized && len(c.Response().Header.Peek(fiber.HeaderWWWAuthenticate)) == 0 {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="tether"`)
	}
	if p.retryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, retryAfter(p.retryAfter))
	}
	body, merr := json.Marshal(p)
	if merr != nil {
		slog.Error("encode problem", "error", merr)
		return c.SendStatus(fiber.StatusInternalServerError)
	}
	c.Status(p.Status)
	c.Set(fiber.HeaderContentType, "application/problem+json")
	return c.Send(body)
}
