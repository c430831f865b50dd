package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
	bolt "go.etcd.io/bbolt"
)

// serveLimit serves the least a renewal can do: decode the request, verify
// one Ed25519 token (algorithm pinned), check its device, sign a new one,
// and (unless ?store=none) write one record with a batched bbolt write of
// the same settings as Tether's store. Nothing Tether does on a renewal can
// be faster than this on the same machine.
func serveLimit(args []string) error {
	fs := flag.NewFlagSet("limit", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "address")
	dir := fs.String("data", os.TempDir(), "directory for the bbolt file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, err := bolt.Open(filepath.Join(*dir, "limit.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	db.MaxBatchDelay, db.MaxBatchSize = 2*time.Millisecond, 64
	bucket := []byte("sessions")
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	sign := func(did string) (string, error) {
		now := time.Now()
		t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
			"iss": "tether", "aud": "tether", "sub": "usr_bench", "sid": "ses_bench", "did": did,
			"jti": rand.Text(), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "role": "worker",
		})
		t.Header["kid"] = "key_bench"
		return t.SignedString(priv)
	}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithoutClaimsValidation())

	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/readyz", func(c *fiber.Ctx) error { return c.SendStatus(200) })
	app.Get("/token", func(c *fiber.Ctx) error {
		tok, err := sign("dev_bench")
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"token": tok})
	})
	app.Post("/renew", func(c *fiber.Ctx) error {
		var req struct {
			AccessToken string `json:"accessToken"`
			DeviceID    string `json:"deviceId"`
		}
		if err := json.Unmarshal(c.Body(), &req); err != nil {
			return fiber.ErrBadRequest
		}
		claims := jwt.MapClaims{}
		if _, err := parser.ParseWithClaims(req.AccessToken, claims, func(*jwt.Token) (any, error) { return pub, nil }); err != nil {
			return fiber.ErrUnauthorized
		}
		if claims["did"] != req.DeviceID {
			return fiber.ErrForbidden
		}
		tok, err := sign(req.DeviceID)
		if err != nil {
			return err
		}
		if c.Query("store") != "none" {
			rec, err := json.Marshal(map[string]any{"id": "ses_bench", "jti": claims["jti"], "at": time.Now()})
			if err != nil {
				return err
			}
			key := []byte(rand.Text())
			if err := db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, rec) }); err != nil {
				return err
			}
		}
		return c.JSON(fiber.Map{"token": tok})
	})
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-stop
		if err := app.Shutdown(); err != nil {
			os.Exit(1)
		}
	}()
	if err := app.Listen(*addr); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
