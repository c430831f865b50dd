package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-playground/validator/v10"

	"tether/auth"
	"tether/device"
	"tether/storage/bolt"
)

// dbFile is the store's file name inside the data directory.
const dbFile = "tether.db"

// openStore opens the store in dir, creating dir (mode 0700) if needed.
func openStore(dir string, opts ...bolt.Option) (*bolt.Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dir, dbFile)
	s, err := bolt.Open(path, opts...)
	if errors.Is(err, bolt.ErrLocked) {
		return nil, fmt.Errorf("data directory %s is in use by another tether process "+
			"(stop it first, or pass another --data); with the server running, make changes through its API", dir)
	}
	if errors.Is(err, bolt.ErrSchemaTooNew) {
		return nil, fmt.Errorf("%s was written by a newer tether; run that version or restore a backup: %w", path, err)
	}
	return s, err
}

// services are the rule-holding services, wired the same way for the server
// and for the commands.
type services struct {
	store    *bolt.Store
	validate *validator.Validate
	hasher   *auth.Hasher
	devices  *device.Service
	users    *auth.Users
	apiKeys  *auth.APIKeys
}

func newServices(store *bolt.Store, params auth.Params) (*services, error) {
	v, err := auth.NewValidator()
	if err != nil {
		return nil, err
	}
	h := auth.NewHasher(params)
	return &services{
		store:    store,
		validate: v,
		hasher:   h,
		devices:  device.NewService(store, v),
		users:    auth.NewUsers(store, h, v),
		apiKeys:  auth.NewAPIKeys(store),
	}, nil
}
