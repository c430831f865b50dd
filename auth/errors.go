package auth

import (
	"time"

	"tether"
	"tether/storage"
)

// The errors of login, tokens and sessions. Each carries its stable code
// and a message safe to show a client; callers wrap them with %w and the
// detail goes to the log.
var (
	ErrInvalidCredentials  = tether.NewError(tether.CodeInvalidCredentials, "the username or password is wrong")
	ErrTokenInvalid        = tether.NewError(tether.CodeTokenInvalid, "the token is not valid")
	ErrTokenExpired        = tether.NewError(tether.CodeTokenExpired, "the token has expired")
	ErrRenewalWindowPassed = tether.NewError(tether.CodeRenewalWindowPassed, "the token expired too long ago to be renewed: log in again")
	ErrTokenAlreadyUsed    = tether.NewError(tether.CodeTokenAlreadyUsed, "the token was already renewed, or a newer one was issued: use the newest")
	ErrSessionRevoked      = tether.NewError(tether.CodeSessionRevoked, "the session has ended: log in again")
	ErrEndedByHandover     = tether.NewError(tether.CodeSessionEndedByHandover, "the session has ended: another worker signed in on this shared handset")
	ErrSessionNeedsFactor  = tether.NewError(tether.CodeSessionRevoked, "the session was opened with a password alone, and this account must now prove a second factor: sign in again")
	ErrRefreshTokenReused  = tether.NewError(tether.CodeRefreshTokenReused, "the refresh token was already used: the session has been ended")
	ErrAccountDisabled     = tether.NewError(tether.CodeAccountDisabled, "the account is disabled")
	ErrDeviceNotEnrolled   = tether.NewError(tether.CodeDeviceNotEnrolled, "the handset is not enrolled")
	ErrDeviceSuspended     = tether.NewError(tether.CodeDeviceSuspended, "the handset is suspended")
	ErrDeviceRetired       = tether.NewError(tether.CodeDeviceRetired, "the handset is retired")
	ErrDeviceNotAssigned   = tether.NewError(tether.CodeDeviceNotAssigned, "the handset is not assigned to this user")
	ErrNotInGroup          = tether.NewError(tether.CodeDeviceNotAssigned, "the handset is shared within a group this user is not in")
	ErrDeviceMismatch      = tether.NewError(tether.CodeDeviceMismatch, "the token belongs to another handset")
	ErrSimChanged          = tether.NewError(tether.CodeSimChanged, "the SIM cards differ from the ones enrolled with this handset")
	ErrAppVersion          = tether.NewError(tether.CodeAppVersionOld, "the app is too old: update it")
	ErrOSVersion           = tether.NewError(tether.CodeOSVersionOld, "the Android version is too old")
	ErrTooManyAttempts     = tether.NewError(tether.CodeTooManyAttempts, "too many attempts: wait and try again")
	ErrServerBusy          = tether.NewError(tether.CodeServerBusy, "the server is busy checking passwords: try again shortly")
	ErrCodesLocked         = tether.NewError(tether.CodeTooManyAttempts, "too many wrong codes in a row: codes from the authenticator app are refused for a while; use a recovery code or a passkey, or ask an admin to reset your second factor")
	ErrEnrollmentCode      = tether.NewError(tether.CodeInvalidCredentials, "the enrollment code is unknown, expired, revoked or used up")
	ErrSelfEnrollmentOff   = tether.NewError(tether.CodeForbidden, "handsets cannot enroll themselves on this server")
)

// Why a session ended, as a client is told it (by revoke reason): the code
// stays session_revoked; the message and a "reason" member say why.
var endedBecause = map[string]string{
	"logout":                    "the session has ended: it was logged out",
	"replaced":                  "the session has ended: a newer login on this handset replaced it",
	"revoked":                   "the session has ended: a manager ended it",
	"logout_all":                "the session has ended: a manager logged the user out everywhere",
	"device_suspended":          "the session has ended: the handset is suspended",
	"device_retired":            "the session has ended: the handset is retired",
	"device_key_replaced":       "the session has ended: a manager replaced the handset's key",
	"account_disabled":          "the session has ended: the account is disabled",
	"refresh_token_reused":      "the session has ended: a refresh token was used twice",
	"password_reset":            "the session has ended: the password was reset",
	"password_changed":          "the session has ended: the password was changed",
	"mfa_reset":                 "the session has ended: an admin reset the account's second factors",
	"role_changed":              "the session has ended: the user's role changed in the company directory",
	"directory_disabled":        "the session has ended: the account was disabled in the company directory",
	"revoked_by_client":         "the session has ended: the app signed out (token revocation or logout)",
	"authorization_code_reused": "the session has ended: its authorization code was presented twice",
	reasonShiftEnded:            "the session has ended: the worker ended their shift",
}

// sessionEnded is ErrSessionRevoked for a session that is not live at now,
// saying why where that is known: the reason it was revoked for, or that
// it expired (unused too long, past its lifetime, or its shift over);
// ErrEndedByHandover, with its own code, for one another worker's login
// on its shared handset ended.
func sessionEnded(sess storage.Session, now time.Time) error {
	reason, msg := sess.RevokeReason, endedBecause[sess.RevokeReason]
	switch {
	case sess.Revoked() && reason == reasonHandover:
		return ErrEndedByHandover.With("reason", reason)
	case sess.Unreturned(now) && !now.Before(sess.ExpiresAt):
		reason, msg = "shift_over", "the session has ended: its shift is over, log in again for the next one"
	case sess.Revoked() && msg == "":
		return ErrSessionRevoked.With("reason", "revoked")
	case sess.Revoked():
	case !now.Before(sess.ExpiresAt):
		reason, msg = "expired", "the session has ended: it reached its longest lifetime, log in again"
	default:
		reason, msg = "idle", "the session has ended: it was not used for too long, log in again"
	}
	return tether.NewError(tether.CodeSessionRevoked, msg).With("reason", reason)
}
