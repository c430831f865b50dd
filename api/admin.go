package api

import (
	"bufio"
	"context"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/storage"
)

var errNoBackup = tether.NewError(tether.CodeNotFound, "this store has no online backup: use the database's own")

// backup is GET /v1/admin/backup: a consistent snapshot of the live store,
// streamed while the server goes on serving.
func (s *server) backup(c *fiber.Ctx) error {
	b, ok := s.Store.(storage.Backuper)
	if !ok {
		return errNoBackup
	}
	name := fmt.Sprintf("tether-%s.db", time.Now().UTC().Format("20060102T150405Z"))
	c.Set(fiber.HeaderContentType, "application/octet-stream")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+name+`"`)
	c.Set(fiber.HeaderCacheControl, "no-store")
	log, id := s.log, RequestID(c.UserContext())
	// The request's context ends when the handler returns; the snapshot is
	// written after that, as the client reads it.
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		n, err := b.Backup(context.Background(), w)
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			log.Error("backup stream failed", "request_id", id, "bytes", n, "error", err)
			return
		}
		log.Info("backup streamed", "request_id", id, "bytes", n)
	})
	return nil
}
