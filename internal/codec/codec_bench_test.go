package codec

import (
	"encoding/json"
	"testing"
	"time"

	"tether/storage"
)

// recordCodec is a way to store records: what BenchmarkCodec compares.
type recordCodec struct {
	name      string
	marshal   func(any) ([]byte, error)
	unmarshal func([]byte, any) error
}

// benchCodecs are the codecs BenchmarkCodec measures: encoding/json and
// the stores' (codec.go); files built only with a codec at hand (a
// GOEXPERIMENT, say) add theirs.
var benchCodecs = []recordCodec{
	{"encoding-json", json.Marshal, json.Unmarshal},
	{"codec", Encode, Decode},
}

// hostile is text a record may hold that a codec must keep byte for byte:
// NUL and other control characters, invalid UTF-8, HTML, a lone
// surrogate's encoding, U+2028, quotes and backslashes.
const hostile = "a\x00b\x01\x1f\"\\/<script>&amp;\u2028\u2029\xff\xfe\xed\xa0\x80é😀\t\r\n"

// sampleRecords are a device, a user and a session as the store keeps
// them, every field set.
func sampleRecords() (storage.Device, storage.User, storage.Session) {
	at := time.Date(2026, 11, 30, 9, 41, 7, 123456789, time.UTC)
	yes := true
	d := storage.Device{
		ID: "dev_01JD6X4ZQ8N3V5K2R7T9W1Y0AB", IMEI: "353456789012348", HasIccCard: &yes,
		IccIDs: []string{"8944500102198304826", "8944500102198304834"}, OSAPI: 35, OSName: "Android 15",
		Manufacturer: "Zebra Technologies", Model: "TC58", AppVersion: "4.12.0 (4120)",
		Status: storage.DeviceSuspended, StatusReason: "left in the van overnight", StatusChangedAt: at.Add(time.Hour),
		StatusChangedBy: "user:usr_01JD6X4ZQ8N3V5K2R7T9W1Y0CD", Label: "van 17 – north", Group: "north",
		AssignedUsers: []string{"usr_01JD6X4ZQ8N3V5K2R7T9W1Y0EF", "usr_01JD6X4ZQ8N3V5K2R7T9W1Y0GH"},
		Notes:         "screen cracked, replaced 2026-10; charger in glovebox",
		EnrolledAt:    at, EnrolledBy: "apikey:ak_01JD6X4ZQ8N3V5K2R7T9W1Y0IJ", LastSeenAt: at.Add(48 * time.Hour), UpdatedAt: at.Add(2 * time.Hour),
		Key: &storage.DeviceKey{
			Thumbprint: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
			JWK:        json.RawMessage(`{"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`),
			EnrolledAt: at, EnrolledBy: "user:usr_01JD6X4ZQ8N3V5K2R7T9W1Y0CD",
			Attestation: &storage.Attestation{SecurityLevel: "StrongBox", VerifiedBootState: "Verified", DeviceLocked: true,
				IMEI: "353456789012348", Serial: "21034B0C7F", Root: "Google Hardware Attestation Root 2", AttestedAt: at},
		},
	}
	u := storage.User{
		ID: "usr_01JD6X4ZQ8N3V5K2R7T9W1Y0EF", Key: 4711, Username: "j.okafor", Role: storage.RoleManager,
		FirstName: "Joy", LastName: "Okafor", Email: "j.okafor@example.com", ImageURL: "https://example.com/p/j.okafor.png",
		Features: []string{"scanner", "offline-maps"}, Profile: json.RawMessage(`{"depot":"north","shift":2,"badges":["forklift","first aid"]}`),
		Scopes:            []string{"north", "east"},
		PasswordHash:      "$argon2id$v=19$m=65536,t=3,p=2$c29tZXNhbHRzb21lc2FsdA$QmFzZTY0RW5jb2RlZEhhc2hWYWx1ZUhlcmVYWVo",
		PasswordChangedAt: at, Disabled: true, CreatedAt: at, UpdatedAt: at.Add(time.Minute),
		Directory: &storage.UserDirectory{DN: "CN=Joy Okafor,OU=North,DC=example,DC=com", DisplayName: "Joy Okafor",
			EmployeeNumber: "E-10442", SyncedAt: at, DisabledFor: "disabled"},
		MFA: &storage.UserMFA{
			Factors: []storage.Factor{
				{ID: "mfa_01JD6X4ZQ8N3V5K2R7T9W1Y0KL", Kind: storage.FactorTOTP, Name: "phone", CreatedAt: at, LastUsedAt: at,
					Attempt: "att_1", ExpiresAt: at, TOTP: &storage.TOTPSecret{Secret: []byte("0123456789abcdef0123456789abcdef"), Sealed: true, LastStep: 59000000}},
				{ID: "mfa_01JD6X4ZQ8N3V5K2R7T9W1Y0MN", Kind: storage.FactorWebAuthn, Name: "key", CreatedAt: at, LastUsedAt: at,
					WebAuthn: &storage.WebAuthnCredential{ID: []byte("credential-id-0123456789"), PublicKey: make([]byte, 77),
						AttestationType: "none", AAGUID: make([]byte, 16), SignCount: 12, Transports: []string{"usb", "nfc"},
						UserVerified: true, BackupEligible: true, BackupState: true, Ceremony: []byte(`{"challenge":"abc"}`)}},
			},
			Pending:       &storage.Factor{ID: "mfa_pending", Kind: storage.FactorTOTP, CreatedAt: at, Attempt: "att_2", ExpiresAt: at},
			RecoveryCodes: [][]byte{make([]byte, 32), make([]byte, 32)}, RecoveryCodesAt: at,
			Spent: []storage.SpentStep{{ID: "stp_1", Until: at}}, Tried: []storage.TriedStep{{ID: "stp_2", Until: at, Wrong: 2}},
			CodeFailures: 3, CodeLocks: 1, CodesLockedUntil: at, ResetAt: at,
		},
	}
	s := storage.Session{
		ID: "ses_01JD6X4ZQ8N3V5K2R7T9W1Y0OP", Key: 90210, UserID: u.ID, DeviceID: d.ID, DeviceName: "Joy's laptop",
		Persistent: true, ClientID: "cli_console", Scope: "openid profile devices:read", AuthTime: at,
		AMR: []string{"pwd", "otp"}, CreatedAt: at, LastUsedAt: at.Add(time.Minute), IdleTimeout: 8 * time.Hour,
		ExpiresAt: at.Add(720 * time.Hour), FamilyHash: make([]byte, 32), RefreshHash: make([]byte, 32),
		PrevRefreshHash: make([]byte, 32), RotatedAt: at, Replay: make([]byte, 180), JKT: d.Key.Thumbprint,
		AccessJTI: "jti_01JD6X4ZQ8N3V5K2R7T9W1Y0QR", AccessExpiresAt: at.Add(15 * time.Minute),
		PrevAccessJTI: "jti_01JD6X4ZQ8N3V5K2R7T9W1Y0ST", RenewedAt: at, RenewReplay: make([]byte, 150),
		AccessHash: make([]byte, 32), PrevAccessHash: make([]byte, 32), RevokedAt: at, RevokeReason: "logout",
		ClientIP: "192.0.2.17", UserAgent: "TetherField/4.12 (Android 15; TC58)",
	}
	for i, b := range [][]byte{s.FamilyHash, s.RefreshHash, s.Replay, u.MFA.Factors[1].WebAuthn.PublicKey} {
		for j := range b {
			b[j] = byte(i*31 + j*7)
		}
	}
	return d, u, s
}

// BenchmarkCodec decodes and encodes each kind of record as the stores keep
// it, with each codec: what choosing the stored records' codec rests on.
func BenchmarkCodec(b *testing.B) {
	d, u, s := sampleRecords()
	kinds := []struct {
		name   string
		record any
		fresh  func() any
	}{
		{"device", d, func() any { return new(storage.Device) }},
		{"user", u, func() any { return new(storage.User) }},
		{"session", s, func() any { return new(storage.Session) }},
	}
	for _, c := range benchCodecs {
		for _, k := range kinds {
			data, err := json.Marshal(k.record)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(c.name+"/decode/"+k.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					if err := c.unmarshal(data, k.fresh()); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(c.name+"/encode/"+k.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					if _, err := c.marshal(k.record); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
