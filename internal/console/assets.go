package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"mime"
	"path"

	"github.com/gofiber/fiber/v2"
)

// The page, its login form, its script and its style sheet: plain HTML, JS
// and CSS, embedded in the binary. Nothing is fetched from elsewhere.
//
//go:embed assets
var assets embed.FS

var pages = template.Must(template.ParseFS(assets, "assets/*.html"))

// securityHeaders keep the console's pages to their own assets (no inline
// script, no framing, no referrer to other sites; same-origin keeps the
// Origin header a POST carries, which no-referrer would make "null").
func securityHeaders(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentSecurityPolicy, "default-src 'none'; script-src 'self'; style-src 'self'; "+
		"img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "same-origin")
	return c.Next()
}

// noStore keeps answers that hold conversation data out of caches.
func noStore(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Next()
}

// asset serves one embedded file of assets/ (not the page templates).
func asset(c *fiber.Ctx) error {
	name := path.Base(c.Params("name"))
	ext := path.Ext(name)
	if ext != ".js" && ext != ".css" && ext != ".svg" {
		return fiber.ErrNotFound
	}
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		return fiber.ErrNotFound
	}
	c.Set(fiber.HeaderContentType, mime.TypeByExtension(ext))
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Send(b)
}

// pageData fills the page templates.
type pageData struct {
	Namespace string
	CSRF      string
	RefreshMs int64
	Limit     int
	Error     string
}

func (cn *Console) render(c *fiber.Ctx, name string, d pageData) error {
	d.Namespace = cn.opts.Namespace
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, d); err != nil {
		return fmt.Errorf("console: render %s: %w", name, err)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Send(buf.Bytes())
}

// page is the console itself; requirePage let the request in.
func (cn *Console) page(c *fiber.Ctx) error {
	return cn.render(c, "console.html", pageData{
		CSRF:      cn.sessions.csrf(c.Cookies(CookieName)),
		RefreshMs: cn.opts.Refresh.Milliseconds(),
		Limit:     cn.opts.Limit,
	})
}

func (cn *Console) loginForm(c *fiber.Ctx, problem string) error {
	return cn.render(c, "login.html", pageData{Error: problem})
}
