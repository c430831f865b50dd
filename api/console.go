package api

import (
	"embed"
	"io/fs"
	"path"

	"github.com/gofiber/fiber/v2"
)

// The console is a static page and script, built into the binary: no
// CDN, no other server, nothing to fetch.
//
//go:embed console
var consoleFiles embed.FS

// consoleCSP allows the console's own script, styles and images (QR codes
// come as blob URLs) and nothing else: no inline script, no other origin,
// no framing.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

var consoleTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// console serves /console and the files beside it.
func (s *server) console(c *fiber.Ctx) error {
	name := c.Params("*")
	if name == "" {
		name = "index.html"
	}
	ctype, ok := consoleTypes[path.Ext(name)]
	if !ok {
		return fiber.ErrNotFound
	}
	data, err := fs.ReadFile(consoleFiles, path.Join("console", path.Clean("/"+name)))
	if err != nil {
		return fiber.ErrNotFound
	}
	c.Set(fiber.HeaderContentType, ctype)
	c.Set(fiber.HeaderContentSecurityPolicy, consoleCSP)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set("Cross-Origin-Opener-Policy", "same-origin")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Send(data)
}
