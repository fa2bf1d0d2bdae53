package api

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// pullCollections are the collections a pull may name, in protocol order.
var pullCollections = []string{domain.PatrolLogs, domain.PatrolEntries, domain.Corridors}

// pull serves GET /v1/sync/pull?cursor=&limit=&collections=.
func (s *server) pull(c *fiber.Ctx) error {
	id, ok := IdentityFrom(c)
	if !ok {
		return errors.New("api: pull route without authentication")
	}
	req, err := s.pullRequest(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	resp, err := s.deps.Syncer.Pull(ctx, id, req)
	if err != nil {
		return err
	}
	if resp == nil {
		return errors.New("api: syncer returned no pull response")
	}
	b, err := appendPullResponse(make([]byte, 0, 64+1024*len(resp.Records)), resp)
	if err != nil {
		return err
	}
	return sendJSON(c, b)
}

// pullRequest reads the pull's query parameters strictly. For the OpenAPI
// writer: unknown query parameters are refused (400 invalid_parameter), and
// so is any parameter given twice; an empty cursor means the start of the
// feed, while an empty limit or collections is refused. A typo such as
// "colections=corridors" must not silently widen the result to every
// collection, and a device should learn of its mistake on the first call,
// not after pulling the whole feed.
func (s *server) pullRequest(c *fiber.Ctx) (domain.PullRequest, error) {
	args := c.Context().QueryArgs()
	var bad error
	seen := make(map[string]bool, 3)
	args.VisitAll(func(k, _ []byte) {
		if bad != nil {
			return
		}
		switch name := string(k); name {
		case "cursor", "limit", "collections":
			if seen[name] {
				bad = domain.Errorf(domain.CodeInvalidParam, "the query parameter %q appears twice", name)
			}
			seen[name] = true
		default:
			bad = domain.Errorf(domain.CodeInvalidParam, "unknown query parameter %s; a pull takes cursor, limit and collections", quoteShort(name))
		}
	})
	if bad != nil {
		return domain.PullRequest{}, bad
	}

	req := domain.PullRequest{Limit: s.cfg.PullDefaultLimit}
	var err error
	if req.Cursor, err = domain.ParseCursor(string(args.Peek("cursor"))); err != nil {
		return domain.PullRequest{}, err
	}
	if seen["limit"] {
		v := string(args.Peek("limit"))
		n, ok := parseLimit(v, s.cfg.PullMaxLimit)
		if !ok {
			return domain.PullRequest{}, domain.Errorf(domain.CodeInvalidParam, "limit must be an integer from 1 to %d", s.cfg.PullMaxLimit)
		}
		req.Limit = n
	}
	if seen["collections"] {
		if req.Collections, err = parseCollections(string(args.Peek("collections"))); err != nil {
			return domain.PullRequest{}, err
		}
	}
	return req, nil
}

// parseLimit parses a decimal integer in [1, max], digits only (no sign,
// no spaces).
func parseLimit(v string, max int) (int, bool) {
	if v == "" || len(v) > 9 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, false
	}
	return n, true
}

// parseCollections parses a comma-separated list of collection names into
// a sorted list without repeats, each one of pullCollections.
func parseCollections(v string) ([]string, error) {
	var out []string
	for name := range strings.SplitSeq(v, ",") {
		i := slices.Index(pullCollections, name)
		if i < 0 {
			return nil, domain.Errorf(domain.CodeInvalidParam, "collections must be a comma-separated list of %s; got %s", strings.Join(pullCollections, ", "), quoteShort(name))
		}
		if !slices.Contains(out, pullCollections[i]) {
			out = append(out, pullCollections[i]) // the constant, not the request's bytes
		}
	}
	slices.Sort(out)
	return out, nil
}
