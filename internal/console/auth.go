package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Auth model. Tools send "Authorization: Bearer <ADMIN_TOKEN>" on every
// request. People log in through a form with the same token and get a
// session cookie: HttpOnly, SameSite=Strict, Secure when the request came
// over TLS (directly or per X-Forwarded-Proto), path /console. The session
// token is signed, not stored: "<expiry>.<random>.<HMAC-SHA256>" under a key
// derived from ADMIN_TOKEN, so every api replica accepts it, and changing
// ADMIN_TOKEN ends every session. Logout clears the cookie and revokes the
// token in this process until it expires.
//
// A cookie-authenticated POST needs the CSRF token of its session (in
// X-CSRF-Token, or the form field csrf) and, when the browser sends an
// Origin, one of this host. Bearer requests need neither: a browser never
// adds that header by itself.

// Names the console's auth uses on the wire.
const (
	CookieName = "lull_console"
	HeaderCSRF = "X-CSRF-Token"
	formCSRF   = "csrf"
	formToken  = "token"
)

// sessions issues and checks session tokens.
type sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	revoked map[string]time.Time // logged-out tokens, until they expire
}

func newSessions(adminToken string, ttl time.Duration, now func() time.Time) *sessions {
	m := hmac.New(sha256.New, []byte(adminToken))
	m.Write([]byte("lull console session v1"))
	return &sessions{key: m.Sum(nil), ttl: ttl, now: now, revoked: map[string]time.Time{}}
}

func (s *sessions) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(strings.Join(parts, ".")))
	return hex.EncodeToString(m.Sum(nil))
}

// issue makes a session token that expires after the session TTL.
func (s *sessions) issue() (token string, expires time.Time) {
	expires = s.now().Add(s.ttl)
	exp := strconv.FormatInt(expires.Unix(), 10)
	nonce := rand.Text()
	return exp + "." + nonce + "." + s.mac(exp, nonce), expires
}

// valid reports whether token is a session this process issued (or a
// replica with the same ADMIN_TOKEN), unexpired and not logged out.
func (s *sessions) valid(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(s.mac(parts[0], parts[1]))) {
		return false
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || !s.now().Before(time.Unix(exp, 0)) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, out := s.revoked[token]
	return !out
}

// csrf is the CSRF token of a session: bound to it, so a token of another
// (or an expired) session is refused.
func (s *sessions) csrf(token string) string { return s.mac("csrf", token) }

// revoke refuses token from now on, in this process, until it expires
// anyway; expired entries are dropped.
func (s *sessions) revoke(token string) {
	exp, _ := strconv.ParseInt(strings.SplitN(token, ".", 2)[0], 10, 64)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, until := range s.revoked {
		if !now.Before(until) {
			delete(s.revoked, t)
		}
	}
	s.revoked[token] = time.Unix(exp, 0)
}

// who says how a request is authenticated.
type who int

const (
	nobody who = iota
	bearer
	session
)

func (w who) String() string { return [...]string{"nobody", "bearer", "session"}[w] }

// identify authenticates c by bearer token or session cookie.
func (cn *Console) identify(c *fiber.Ctx) who {
	if got, ok := strings.CutPrefix(c.Get(fiber.HeaderAuthorization), "Bearer "); ok {
		if equalSecret(got, cn.opts.Token) {
			return bearer
		}
		return nobody // a wrong bearer is refused, whatever cookie comes with it
	}
	if cn.sessions.valid(c.Cookies(CookieName)) {
		return session
	}
	return nobody
}

// equalSecret compares in constant time; an empty configured secret never matches.
func equalSecret(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

const whoKey = "console.who"

// requirePage lets an authenticated person see a page; anyone else is sent
// to the login form.
func (cn *Console) requirePage(c *fiber.Ctx) error {
	w := cn.identify(c)
	if w == nobody {
		return c.Redirect(cn.path("/login"), fiber.StatusSeeOther)
	}
	c.Locals(whoKey, w)
	return c.Next()
}

// requireAPI refuses an unauthenticated call with 401, and a
// cookie-authenticated POST without its CSRF token (or from another
// origin) with 403.
func (cn *Console) requireAPI(c *fiber.Ctx) error {
	w := cn.identify(c)
	if w == nobody {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="lull console"`)
		return fail(c, fiber.StatusUnauthorized, "log in at "+cn.path("/login")+" or send Authorization: Bearer <ADMIN_TOKEN>")
	}
	if w == session && c.Method() != fiber.MethodGet && c.Method() != fiber.MethodHead {
		if !sameOrigin(c) {
			return fail(c, fiber.StatusForbidden, "cross-origin request refused")
		}
		got := c.Get(HeaderCSRF)
		if got == "" {
			got = c.FormValue(formCSRF)
		}
		if !equalSecret(got, cn.sessions.csrf(c.Cookies(CookieName))) {
			return fail(c, fiber.StatusForbidden, "missing or wrong CSRF token ("+HeaderCSRF+")")
		}
	}
	c.Locals(whoKey, w)
	return c.Next()
}

// sameOrigin is false when the browser says the request comes from a page
// of another host. Without an Origin header (older browsers, tools) it
// holds: the CSRF token and SameSite=Strict still apply.
func sameOrigin(c *fiber.Ctx) bool {
	o := c.Get(fiber.HeaderOrigin)
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, c.Hostname())
}

// login checks the form's token and, when it is ADMIN_TOKEN, starts a
// session.
func (cn *Console) login(c *fiber.Ctx) error {
	if !sameOrigin(c) {
		return fail(c, fiber.StatusForbidden, "cross-origin request refused")
	}
	if !equalSecret(c.FormValue(formToken), cn.opts.Token) {
		cn.log.Warn("console login refused", "ip", c.IP())
		return cn.loginForm(c.Status(fiber.StatusUnauthorized), "That is not the admin token.")
	}
	token, expires := cn.sessions.issue()
	c.Cookie(&fiber.Cookie{
		Name: CookieName, Value: token, Path: cn.path(""), Expires: expires,
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: c.Protocol() == "https",
	})
	cn.log.Info("console login", "ip", c.IP())
	return c.Redirect(cn.path(""), fiber.StatusSeeOther)
}

// logout ends the session (requireAPI checked its CSRF token).
func (cn *Console) logout(c *fiber.Ctx) error {
	if tok := c.Cookies(CookieName); tok != "" {
		// Fiber's strings point into a buffer the next request reuses:
		// the map keeps a copy.
		cn.sessions.revoke(strings.Clone(tok))
	}
	c.Cookie(&fiber.Cookie{
		Name: CookieName, Value: "", Path: cn.path(""), MaxAge: -1, Expires: time.Unix(0, 0),
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: c.Protocol() == "https",
	})
	return c.Redirect(cn.path("/login"), fiber.StatusSeeOther)
}
