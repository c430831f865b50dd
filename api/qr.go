package api

import (
	"fmt"
	"html/template"
	"net/netip"
	"strings"

	"github.com/gofiber/fiber/v2"
	qrcode "github.com/skip2/go-qrcode"

	"tether/auth"
)

// qrSize is the side of a QR image in pixels.
const qrSize = 320

// serverURL is the address handsets reach the server at: --public-url, or
// else the scheme and host this request came to. The scheme is the
// connection's, and the host its Host header, unless the connection comes
// from a trusted proxy: only then are X-Forwarded-Proto and
// X-Forwarded-Host believed (a client must not choose the URL its DPoP
// proofs are checked against).
func (s *server) serverURL(c *fiber.Ctx) string {
	if s.opts.PublicURL != "" {
		return s.opts.PublicURL
	}
	scheme, host := "http", string(c.Request().Host())
	if c.Context().IsTLS() {
		scheme = "https"
	}
	if peer, ok := netip.AddrFromSlice(c.Context().RemoteIP()); ok && s.trusted(peer.Unmap()) {
		if p := firstValue(c.Get(fiber.HeaderXForwardedProto)); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(c.Get(fiber.HeaderXForwardedHost)); h != "" {
			host = h
		}
	}
	return scheme + "://" + host
}

// firstValue is the first of a header's comma-separated values, as the
// proxy nearest the client set it, lower-cased.
func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.ToLower(strings.TrimSpace(first))
}

// codeQR is GET /v1/enrollment-codes/{id}/qr.png?code=…: a QR image of the
// enroll URL with the code. The store keeps only the code's hash, so the
// caller passes the code it was given; a wrong one is a 404.
func (s *server) codeQR(c *fiber.Ctx) error {
	code := query(c, "code")
	rec, err := s.Auth.EnrollmentCodeFor(c.UserContext(), principal(c), param(c, "id"), code)
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

// qrSVG is text as a QR code in inline SVG, for the OAuth pages: their CSP
// admits no data: images, and an inline SVG is no image to it. Each run of
// dark modules on a row is one rectangle.
func qrSVG(text string) (template.HTML, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return "", err
	}
	bm := q.Bitmap()
	n := len(bm)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" width="240" height="240" shape-rendering="crispEdges" role="img" aria-label="QR code of the authenticator app's key" id="qr"><rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n, n, n)
	for y, row := range bm {
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			start := x
			for x < len(row) && row[x] {
				x++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", start, y, x-start, x-start)
		}
	}
	b.WriteString(`"/></svg>`)
	// Only digits and the fixed markup above: nothing of text is in it.
	return template.HTML(b.String()), nil
}
