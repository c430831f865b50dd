package api

import (
	"github.com/gofiber/fiber/v2"
	qrcode "github.com/skip2/go-qrcode"

	"tether/auth"
)

// qrSize is the side of a QR image in pixels.
const qrSize = 320

// serverURL is the address handsets reach the server at: --public-url, or
// else the scheme and host this request came to.
func (s *server) serverURL(c *fiber.Ctx) string {
	if s.opts.PublicURL != "" {
		return s.opts.PublicURL
	}
	return c.Protocol() + "://" + string(c.Request().Host())
}

// codeQR is GET /v1/enrollment-codes/{id}/qr.png?code=…: a QR image of the
// enroll URL with the code. The store keeps only the code's hash, so the
// caller passes the code it was given; a wrong one is a 404.
func (s *server) codeQR(c *fiber.Ctx) error {
	code := query(c, "code")
	rec, err := s.Auth.EnrollmentCodeFor(c.UserContext(), param(c, "id"), code)
	if err != nil {
		return err
	}
	png, err := qrcode.Encode(auth.EnrollURL(s.serverURL(c), code), qrcode.Medium, qrSize)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "image/png")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("X-Enrollment-Code-Id", rec.ID)
	return c.Send(png)
}
