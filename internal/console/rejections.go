package console

import (
	"net/url"

	"github.com/gofiber/fiber/v2"
)

type rejectionsData struct {
	F    RejectionFilter
	Page *RejectionPage
	Next string
}

// rejections serves the dead-letter list: changes the server did not
// merge, with the reason.
func (h *console) rejections(c *fiber.Ctx, s *session) error {
	f := RejectionFilter{Unit: c.Query("unit"), Device: c.Query("device"), Cursor: c.Query("cursor")}
	d := &rejectionsData{F: f}
	v := &view{Title: "Rejections", Nav: "rejections", Data: d}
	page, err := s.api.Rejections(f)
	if err != nil {
		v.Error = h.fail(c, err)
		return h.render(c, s, statusOf(err), "rejections", v)
	}
	d.Page = page
	if page.HasMore && page.Cursor != "" {
		q := url.Values{}
		set(q, "unit", f.Unit)
		set(q, "device", f.Device)
		q.Set("cursor", page.Cursor)
		d.Next = Prefix + "/rejections?" + q.Encode()
	}
	return h.render(c, s, fiber.StatusOK, "rejections", v)
}
