package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/console.css
var stylesheet []byte

// pageNames are the templates, one file each under templates/, each
// parsed with layout.html and partials.html.
var pageNames = []string{"sign-in", "logs", "log", "history", "conflicts", "conflict", "rejections", "corridors", "error"}

// views are the parsed templates and the stylesheet.
type views struct {
	pages map[string]*template.Template
	// cssName carries a hash of the stylesheet, so browsers may keep it for
	// good (a slow link loads it once) and a new build is a new name.
	cssName string
}

func loadViews() *views {
	sum := sha256.Sum256(stylesheet)
	v := &views{pages: map[string]*template.Template{}, cssName: "console." + hex.EncodeToString(sum[:6]) + ".css"}
	for _, name := range pageNames {
		v.pages[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS,
			"templates/layout.html", "templates/partials.html", "templates/"+name+".html"))
	}
	return v
}

// view is what every page template gets.
type view struct {
	Title    string
	Nav      string // the active navigation item
	SignedIn bool
	Subject  string
	CSRF     string
	CSS      string
	Notice   string
	Error    *banner
	Data     any
}

// banner is an error shown at the top of a page.
type banner struct {
	Code      string
	Text      string
	RequestID string
}

// bannerOf turns an error into a banner: an API problem with its code and
// detail (written for people), anything else as an internal error.
func bannerOf(err error, requestID string) *banner {
	if p, ok := problemOf(err); ok {
		text := p.Detail
		switch p.Code {
		case "forbidden":
			text = "Your token may not do this. " + p.Detail
		case "not_found":
			text = "Not found, or outside your contingent. " + p.Detail
		case "rate_limited":
			text = "Too many requests from your account; wait a minute and reload. " + p.Detail
		}
		return &banner{Code: p.Code, Text: text, RequestID: p.RequestID}
	}
	return &banner{Code: "internal", Text: "The console failed to show this page; quote the request id when reporting it.", RequestID: requestID}
}

// fail is the banner of an error a page got from the client. An API
// problem is the caller's business (the API logged what it had to); any
// other error (an answer that does not decode) is the console's, logged
// here once.
func (h *console) fail(c *fiber.Ctx, err error) *banner {
	rid := requestID(c)
	if _, ok := problemOf(err); !ok {
		h.log.Error("console: internal error", slog.String("request_id", rid), slog.String("path", c.Route().Path), slog.String("error", err.Error()))
	}
	return bannerOf(err, rid)
}

func csrfBanner() *banner {
	return &banner{Code: "csrf", Text: "This form has expired or did not come from this console. Go back, reload the page and try again."}
}

// render executes a page into a buffer (a failed template never sends half
// a page) and sends it. A session whose token the API refused on any call
// of this request goes back to sign-in instead.
func (h *console) render(c *fiber.Ctx, s *session, status int, name string, v *view) error {
	if s != nil && s.api.unauthorized {
		clearCookie(c, sessionCookie)
		return h.toSignIn(c, msgEnded)
	}
	if s != nil {
		v.SignedIn, v.Subject, v.CSRF = true, s.subject, s.csrf
	}
	v.CSS = Prefix + "/static/" + h.views.cssName
	var buf bytes.Buffer
	if err := h.views.pages[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		rid := requestID(c)
		h.log.Error("console: rendering a page", slog.String("request_id", rid), slog.String("page", name), slog.String("error", err.Error()))
		c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
		return c.Status(fiber.StatusInternalServerError).SendString("The console could not show this page. Request id: " + rid)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Status(status).Send(buf.Bytes())
}

func (h *console) stylesheet(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, "text/css; charset=utf-8")
	c.Set(fiber.HeaderCacheControl, "public, max-age=31536000, immutable")
	return c.Send(stylesheet)
}

var funcs = template.FuncMap{
	"value": showValue,
	"when":  when,
	"hlcTime": func(h string) string {
		ms, _, ok := strings.Cut(h, "-")
		n, err := strconv.ParseInt(ms, 10, 64)
		if !ok || err != nil {
			return ""
		}
		return when(time.UnixMilli(n))
	},
	"short": short,
	"esc":   url.PathEscape,
	"label": func(s string) string { return strings.ReplaceAll(s, "_", " ") },
	"upper": strings.ToUpper,
	"hours": func(h float64) string { return strconv.FormatFloat(h, 'f', 1, 64) },
	"dict":  dict,
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.Itoa(n) + " " + many
	},
}

// showValue renders a JSON field value for people: text as it is, a time
// in UTC, a position as "lat, lon", booleans as yes and no, null as a
// dash, anything else as compact JSON.
func showValue(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	switch string(raw) {
	case "", "null":
		return "—"
	case "true":
		return "yes"
	case "false":
		return "no"
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil && len(s) >= 20 {
			return when(t)
		}
		return s
	}
	var geo struct {
		Lat *float64 `json:"lat"`
		Lon *float64 `json:"lon"`
	}
	if raw[0] == '{' && json.Unmarshal(raw, &geo) == nil && geo.Lat != nil && geo.Lon != nil {
		return fmt.Sprintf("%.5f, %.5f", *geo.Lat, *geo.Lon)
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) == nil {
		return b.String()
	}
	return string(raw)
}

// isText reports whether raw is a JSON string.
func isText(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '"'
}

// when formats an instant in UTC, to the minute unless it has seconds.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	t = t.UTC()
	if t.Second() == 0 && t.Nanosecond() == 0 {
		return t.Format("2006-01-02 15:04 UTC")
	}
	return t.Format("2006-01-02 15:04:05 UTC")
}

// age formats a duration for people: "12 min", "7 h 5 min", "3 d 2 h".
func age(d time.Duration) string {
	if d < 0 {
		return "in the future"
	}
	switch m := int(d.Minutes()); {
	case m < 1:
		return "less than a minute"
	case m < 60:
		return strconv.Itoa(m) + " min"
	case m < 48*60:
		return fmt.Sprintf("%d h %d min", m/60, m%60)
	default:
		return fmt.Sprintf("%d d %d h", m/(24*60), m/60%24)
	}
}

// short abbreviates a long id (a UUID) to its first 8 characters; pages
// show the whole id where it matters.
func short(id string) string {
	if len(id) > 13 {
		return id[:8] + "…"
	}
	return id
}

// dict builds a map from key, value pairs, to pass several values to a
// partial template.
func dict(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, fmt.Errorf("dict: odd number of arguments")
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
		}
		m[k] = kv[i+1]
	}
	return m, nil
}
