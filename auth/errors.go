package auth

import "tether"

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
	ErrRefreshTokenReused  = tether.NewError(tether.CodeRefreshTokenReused, "the refresh token was already used: the session has been ended")
	ErrAccountDisabled     = tether.NewError(tether.CodeAccountDisabled, "the account is disabled")
	ErrDeviceNotEnrolled   = tether.NewError(tether.CodeDeviceNotEnrolled, "the handset is not enrolled")
	ErrDeviceSuspended     = tether.NewError(tether.CodeDeviceSuspended, "the handset is suspended")
	ErrDeviceRetired       = tether.NewError(tether.CodeDeviceRetired, "the handset is retired")
	ErrDeviceNotAssigned   = tether.NewError(tether.CodeDeviceNotAssigned, "the handset is not assigned to this user")
	ErrDeviceMismatch      = tether.NewError(tether.CodeDeviceMismatch, "the token belongs to another handset")
	ErrSimChanged          = tether.NewError(tether.CodeSimChanged, "the SIM cards differ from the ones enrolled with this handset")
	ErrAppVersion          = tether.NewError(tether.CodeAppVersionOld, "the app is too old: update it")
	ErrOSVersion           = tether.NewError(tether.CodeOSVersionOld, "the Android version is too old")
	ErrTooManyAttempts     = tether.NewError(tether.CodeTooManyAttempts, "too many attempts: wait and try again")
	ErrEnrollmentCode      = tether.NewError(tether.CodeInvalidCredentials, "the enrollment code is unknown, expired, revoked or used up")
	ErrSelfEnrollmentOff   = tether.NewError(tether.CodeForbidden, "handsets cannot enroll themselves on this server")
)
