package auth

import (
	"context"
	"crypto"

	"tether"
	"tether/device"
	"tether/storage"
)

// attest checks the Android key attestation a payload carries for the key
// pub, and returns what it showed; nil when there is none (refused under
// Config.RequireAttestation).
func (s *Service) attest(ctx context.Context, p device.Payload, pub crypto.PublicKey) (*storage.Attestation, error) {
	if len(p.Attestation) == 0 {
		if s.cfg.RequireAttestation {
			return nil, tether.Invalid("device.attestation", "attestation_required", "this server requires the key's Android key attestation chain")
		}
		return nil, nil
	}
	return nil, tether.Invalid("device.attestation", "attestation_unsupported", "key attestation is not checked by this server yet")
}
