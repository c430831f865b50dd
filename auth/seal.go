package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MasterKey seals the secrets the store must keep readable (the token
// signing keys) with AES-256-GCM. Password, API key, refresh token and
// enrollment code hashes need no sealing: they cannot be reversed.
type MasterKey struct {
	aead cipher.AEAD
}

// ErrSealed is returned when the store holds sealed keys and the server
// has no master key to open them.
var ErrSealed = errors.New("the signing keys in the store are sealed: start with the --master-key-file they were sealed with")

// LoadMasterKey reads a master key file: 32 bytes, raw, or as 64 hex
// digits, or as base64. The file must not be readable by others.
func LoadMasterKey(path string) (*MasterKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("master key %s is readable by other users (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	key := data
	if len(key) != 32 {
		text := strings.TrimSpace(string(data))
		if k, err := hex.DecodeString(text); err == nil && len(k) == 32 {
			key = k
		} else if k, err := base64.StdEncoding.DecodeString(text); err == nil && len(k) == 32 {
			key = k
		} else {
			return nil, fmt.Errorf("master key %s: want 32 bytes (raw, 64 hex digits or base64)", path)
		}
	}
	return NewMasterKey(key)
}

// NewMasterKey returns a master key from 32 bytes.
func NewMasterKey(key []byte) (*MasterKey, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &MasterKey{aead: aead}, nil
}

// seal encrypts plain, bound to label (the record's id) so a sealed value
// cannot be moved to another record.
func (m *MasterKey) seal(plain []byte, label string) []byte {
	nonce := make([]byte, m.aead.NonceSize())
	rand.Read(nonce)
	return m.aead.Seal(nonce, nonce, plain, []byte(label))
}

func (m *MasterKey) open(sealed []byte, label string) ([]byte, error) {
	n := m.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed value too short")
	}
	plain, err := m.aead.Open(nil, sealed[:n], sealed[n:], []byte(label))
	if err != nil {
		return nil, errors.New("the master key does not open the signing keys (another key, or damaged data)")
	}
	return plain, nil
}
