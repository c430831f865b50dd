package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"tether/storage"
	"tether/storage/bolt"
)

// migrate copies every record from one store to another, empty one: from
// the embedded store to PostgreSQL, back, or between two of either kind.
func (c *cli) migrate(ctx context.Context, args []string) error {
	var from, to string
	fs := c.flagSet("migrate")
	fs.StringVar(&from, "from", "", "the store to copy: a data directory, a .db file, or a postgres:// URL")
	fs.StringVar(&to, "to", "", "the empty store to copy into: a data directory, a .db file, or a postgres:// URL")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if from == "" || to == "" {
		fmt.Fprintln(c.stderr, "tether migrate: --from and --to are required")
		return errUsage
	}
	if from == to {
		fmt.Fprintln(c.stderr, "tether migrate: --from and --to are the same store")
		return errUsage
	}
	src, err := openLocation(ctx, from)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	defer src.Close()
	dst, err := openLocation(ctx, to)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	loader, ok := dst.(interface {
		storage.Store
		storage.Loader
	})
	if !ok {
		return errors.Join(fmt.Errorf("--to: this store cannot receive a copy"), dst.Close())
	}
	counts, err := storage.Copy(ctx, src, loader)
	if err := errors.Join(err, dst.Close()); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "copied %s from %s to %s; the counts match\n", counts, describeLocation(from), describeLocation(to))
	return nil
}

// openLocation opens a store named the way migrate takes them.
func openLocation(ctx context.Context, loc string) (storage.Store, error) {
	if strings.HasPrefix(loc, "postgres://") || strings.HasPrefix(loc, "postgresql://") {
		return openStore(ctx, storeConfig{url: loc}, nil)
	}
	if strings.HasSuffix(loc, ".db") {
		s, err := bolt.Open(loc)
		if errors.Is(err, bolt.ErrLocked) {
			return nil, fmt.Errorf("%s is in use by a running tether: stop it first", loc)
		}
		return s, err
	}
	return openBolt(loc)
}

// describeLocation names a store for messages, without a password.
func describeLocation(loc string) string {
	if strings.HasPrefix(loc, "postgres://") || strings.HasPrefix(loc, "postgresql://") {
		return redactURL(loc)
	}
	if strings.HasSuffix(loc, ".db") {
		return loc
	}
	return filepath.Join(loc, dbFile)
}
