// Package tether holds the little that every layer of the server shares: the
// stable error codes clients may switch on, and field-level validation errors.
//
// The rules live in device/ and auth/, persistence in storage/, the HTTP
// transport in api/. Each of those wraps one of the errors below with %w, and
// api/ turns them into problem+json answers in one place.
package tether

import (
	"fmt"
	"strings"
	"time"
)

// Code is a stable, machine-readable error code. Clients switch on it, so a
// code once published never changes meaning.
type Code string

// The codes of the native API (API.md section 3).
const (
	CodeInvalidRequest       Code = "invalid_request"
	CodeValidationFailed     Code = "validation_failed"
	CodeInvalidCredentials   Code = "invalid_credentials"
	CodeTokenInvalid         Code = "token_invalid"
	CodeTokenExpired         Code = "token_expired"
	CodeRenewalWindowPassed  Code = "renewal_window_passed"
	CodeTokenAlreadyUsed     Code = "token_already_used"
	CodeSessionRevoked       Code = "session_revoked"
	CodeRefreshTokenReused   Code = "refresh_token_reused"
	CodeProofRequired        Code = "proof_required"
	CodeProofInvalid         Code = "proof_invalid"
	CodeMFARequired          Code = "mfa_required"
	CodeMFAEnrollment        Code = "mfa_enrollment_required"
	CodeMFAUnsupported       Code = "mfa_unsupported"
	CodeForbidden            Code = "forbidden"
	CodeScopeExceeded        Code = "scope_exceeded"
	CodeAccountDisabled      Code = "account_disabled"
	CodeDeviceNotEnrolled    Code = "device_not_enrolled"
	CodeDeviceSuspended      Code = "device_suspended"
	CodeDeviceRetired        Code = "device_retired"
	CodeDeviceNotAssigned    Code = "device_not_assigned"
	CodeDeviceMismatch       Code = "device_mismatch"
	CodeSimChanged           Code = "sim_changed"
	CodeNotFound             Code = "not_found"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeDirectoryUnavailable Code = "directory_unavailable"
	CodeDirectoryManaged     Code = "directory_managed"
	CodeConflict             Code = "conflict"
	CodePayloadTooLarge      Code = "payload_too_large"
	CodeUnsupportedMediaType Code = "unsupported_media_type"
	CodeNotAcceptable        Code = "not_acceptable"
	CodeAppVersionOld        Code = "app_version_unsupported"
	CodeOSVersionOld         Code = "os_version_unsupported"
	CodeTooManyAttempts      Code = "too_many_attempts"
	CodeServerBusy           Code = "server_busy"
	CodeInternal             Code = "internal"

	// CodeSessionEndedByHandover: another worker logged in on the shared
	// handset the session was on.
	CodeSessionEndedByHandover Code = "session_ended_by_handover"
)

// Error is an error a client may be told about: a stable code and a fixed
// message that is safe to show. Packages declare their sentinels as *Error
// and wrap them with %w; the wrapping text goes to the log, never to clients.
type Error struct {
	Code    Code
	Message string
	// Extra holds members added to the problem document, such as
	// "minAppVersion" on a 426.
	Extra map[string]any
	// RetryAfter, when set, tells the client when to try again.
	RetryAfter time.Duration
}

// NewError returns an *Error with the given code and client-safe message.
func NewError(code Code, message string) *Error {
	return &Error{Code: code, Message: message}
}

func (e *Error) Error() string { return e.Message }

// Is makes errors.Is match any *Error with the same code, so a sentinel
// matches the copies With and After make of it.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// With returns a copy of e with one more member for the problem document.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Extra = make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	c.Extra[key] = value
	return &c
}

// After returns a copy of e that tells the client to retry after d.
func (e *Error) After(d time.Duration) *Error {
	c := *e
	c.RetryAfter = d
	return &c
}

// FieldError names one bad field of a request and why it is bad.
type FieldError struct {
	// Field is the path of the field as the client sent it, such as
	// "device.iccIds[1]".
	Field string `json:"field" xml:"field"`
	// Code is stable, such as "imei_checksum".
	Code string `json:"code" xml:"code"`
	// Message says the same for a person.
	Message string `json:"message" xml:"message"`
}

// ValidationError reports every bad field of a request, never just the first.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Code
	}
	return fmt.Sprintf("validation failed: %s", strings.Join(parts, ", "))
}

// Invalid returns a *ValidationError for a single field.
func Invalid(field, code, message string) *ValidationError {
	return &ValidationError{Fields: []FieldError{{Field: field, Code: code, Message: message}}}
}
