package oauth

import (
	"errors"
	"fmt"
	"time"

	"tether"
	"tether/auth"
	"tether/storage"
)

// The error codes of the OAuth endpoints: RFC 6749 section 5.2 and 4.1.2.1,
// RFC 8628 section 3.5, RFC 9449, RFC 6750, RFC 7591 and RFC 7009.
const (
	CodeInvalidRequest          = "invalid_request"
	CodeInvalidClient           = "invalid_client"
	CodeInvalidGrant            = "invalid_grant"
	CodeUnauthorizedClient      = "unauthorized_client"
	CodeUnsupportedGrantType    = "unsupported_grant_type"
	CodeUnsupportedResponseType = "unsupported_response_type"
	CodeInvalidScope            = "invalid_scope"
	CodeAccessDenied            = "access_denied"
	CodeServerError             = "server_error"
	CodeTemporarilyUnavailable  = "temporarily_unavailable"
	CodeAuthorizationPending    = "authorization_pending"
	CodeSlowDown                = "slow_down"
	CodeExpiredToken            = "expired_token"
	CodeInvalidDPoPProof        = "invalid_dpop_proof"
	CodeUseDPoPNonce            = "use_dpop_nonce"
	CodeInvalidToken            = "invalid_token"
	CodeInsufficientScope       = "insufficient_scope"
	CodeUnsupportedTokenType    = "unsupported_token_type"
	CodeInvalidRedirectURI      = "invalid_redirect_uri"
	CodeInvalidClientMetadata   = "invalid_client_metadata"
	CodeLoginRequired           = "login_required"
)

// Error is an answer of an OAuth endpoint that went wrong: a code from the
// list above and a description safe to show the client. api/ writes it as
// an RFC 6749 JSON error body, choosing the HTTP status from the code.
type Error struct {
	Code        string
	Description string
	// RetryAfter, when set, tells the client when to try again.
	RetryAfter time.Duration
	// Basic says the client tried HTTP Basic authentication, so an
	// invalid_client answer challenges for it (RFC 6749 section 5.2).
	Basic bool
	// DPoP says the resource must be asked for with the DPoP scheme (a
	// DPoP-bound token sent as Bearer), so the challenge names DPoP (RFC
	// 9449 section 7.1), whatever scheme the request used.
	DPoP bool
	// Err is the cause, for the log; never shown.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Description, e.Err)
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.Err }

func oerr(code, description string) *Error {
	return &Error{Code: code, Description: description}
}

func oerrf(code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

// AsError is the OAuth error of any error an endpoint of this package
// returned (see fromAuth).
func AsError(err error) *Error { return fromAuth(err) }

// fromAuth turns an error of auth/ (or storage/) into an OAuth error: what
// the native API answers with its own codes, a grant answers as
// invalid_grant with the same safe message; a bad DPoP proof as
// invalid_dpop_proof; a server that cannot answer now as
// temporarily_unavailable. An *Error passes through unchanged.
func fromAuth(err error) *Error {
	var (
		oe   *Error
		verr *tether.ValidationError
		terr *tether.Error
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &oe):
		return oe
	case errors.Is(err, auth.ErrUseNonce):
		return &Error{Code: CodeUseDPoPNonce, Description: "use the nonce in the DPoP-Nonce header of this answer", Err: err}
	case errors.As(err, &verr):
		return &Error{Code: CodeInvalidRequest, Description: verr.Error(), Err: err}
	case errors.As(err, &terr):
		e := &Error{Description: terr.Message, RetryAfter: terr.RetryAfter, Err: err}
		switch terr.Code {
		case tether.CodeProofInvalid, tether.CodeProofRequired:
			e.Code = CodeInvalidDPoPProof
		case tether.CodeDirectoryUnavailable, tether.CodeServerBusy:
			e.Code = CodeTemporarilyUnavailable
		case tether.CodeInternal:
			e.Code, e.Description = CodeServerError, "the server failed; the request id is in its log"
		case tether.CodeInvalidRequest:
			e.Code = CodeInvalidRequest
		default:
			e.Code = CodeInvalidGrant
		}
		return e
	case errors.Is(err, storage.ErrNotFound):
		return &Error{Code: CodeInvalidGrant, Description: "the grant does not exist", Err: err}
	}
	return &Error{Code: CodeServerError, Description: "the server failed; the request id is in its log", Err: err}
}
