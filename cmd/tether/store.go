package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-playground/validator/v10"

	"tether/auth"
	"tether/device"
	"tether/storage"
	"tether/storage/bolt"
	"tether/storage/postgres"
)

// dbFile is the store's file name inside the data directory.
const dbFile = "tether.db"

// storeConfig says where the records are: the embedded store in a data
// directory, or a database server.
type storeConfig struct {
	data string
	url  string
}

// storeFlags adds --data and --store to a command.
func storeFlags(fs *flag.FlagSet, sc *storeConfig) {
	fs.StringVar(&sc.data, "data", "./data", "data directory of the embedded store (created 0700; the store is DATA/tether.db, 0600)")
	fs.StringVar(&sc.url, "store", "", "a postgres:// URL to keep the records in PostgreSQL (or CockroachDB) instead of the embedded store")
}

// external reports whether the records are on a database server.
func (sc storeConfig) external() bool { return sc.url != "" }

// String names the store without its password, for logs and messages.
func (sc storeConfig) String() string {
	if !sc.external() {
		return filepath.Join(sc.data, dbFile)
	}
	return redactURL(sc.url)
}

// redactURL is a database URL without its password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "postgres (unparsable URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// openStore opens the store sc names: the database at --store, or the
// embedded one in --data (creating the directory, mode 0700).
func openStore(ctx context.Context, sc storeConfig, observe func(write bool, d time.Duration)) (storage.Store, error) {
	if sc.external() {
		if !strings.HasPrefix(sc.url, "postgres://") && !strings.HasPrefix(sc.url, "postgresql://") {
			return nil, fmt.Errorf("--store %s: want a postgres:// URL", redactURL(sc.url))
		}
		var opts []postgres.Option
		if observe != nil {
			opts = append(opts, postgres.WithTxObserver(observe))
		}
		s, err := postgres.Open(ctx, sc.url, opts...)
		if errors.Is(err, postgres.ErrSchemaTooNew) {
			return nil, fmt.Errorf("%s was migrated by a newer tether; run that version: %w", redactURL(sc.url), err)
		}
		return s, err
	}
	var opts []bolt.Option
	if observe != nil {
		opts = append(opts, bolt.WithTxObserver(observe))
	}
	return openBolt(sc.data, opts...)
}

// openBolt opens the embedded store in dir, creating dir (mode 0700) if
// needed.
func openBolt(dir string, opts ...bolt.Option) (*bolt.Store, error) {
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
	store    storage.Store
	validate *validator.Validate
	hasher   *auth.Hasher
	devices  *device.Service
	users    *auth.Users
	apiKeys  *auth.APIKeys
}

func newServices(store storage.Store, params auth.Params) (*services, error) {
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
