package postgres

import (
	"context"

	"tether/storage"
)

// GatheredReads returns a reader of session bundles by ID, gathered as
// GetSessionBundle's are, through the statement bundlesSQL("id", "text")
// makes with where appended: for tests of the gathering itself.
func GatheredReads(s *Store, where string) func(ctx context.Context, id string) (storage.SessionBundle, error) {
	r := newBundleReads[string](s, bundlesSQL("id", "text")+" "+where, s.stop)
	return func(ctx context.Context, id string) (storage.SessionBundle, error) {
		var b storage.SessionBundle
		err := r.get(ctx, id, &b, "session")
		return b, err
	}
}
