package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/api"
	"github.com/fieldsync/fieldsync/internal/domain"
)

// Errors fiber raises itself, before any middleware (a body over the wire
// limit, a body that does not arrive in time), take a path app.Test does
// not exercise: these tests use a real listener and a raw connection.

// listen serves an app with cfg on a loopback port until the test ends.
func listen(t *testing.T, cfg api.Config) (addr string, s *syncer) {
	t.Helper()
	s = &syncer{}
	app := api.New(cfg, api.Deps{Syncer: s, Verifier: verifier{}, Logger: discardLogger()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Listener(ln) }()
	t.Cleanup(func() {
		if err := app.ShutdownWithTimeout(5 * time.Second); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return ln.Addr().String(), s
}

// rawPush sends push headers announcing contentLength body bytes, then body,
// and reads the response.
func rawPush(t *testing.T, addr string, contentLength int, body []byte) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST /v1/sync/push HTTP/1.1\r\nHost: fieldsync.test\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", deviceToken, contentLength)
	conn.Write(body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestListenerBodyOverWireLimitIs413(t *testing.T) {
	addr, s := listen(t, testConfig)
	resp, body := rawPush(t, addr, 4*testConfig.BodyLimit, nil)
	wantProblem(t, resp, body, 413, domain.CodeBodyTooLarge)
	if pushes, _ := s.calls(); len(pushes) != 0 {
		t.Errorf("the syncer was called %d times", len(pushes))
	}
}

func TestListenerStalledBodyIs408(t *testing.T) {
	cfg := testConfig
	cfg.ReadTimeout = 300 * time.Millisecond
	addr, s := listen(t, cfg)
	resp, body := rawPush(t, addr, 100, []byte(`{"changes":[`))
	wantProblem(t, resp, body, 408, domain.CodeTimeout)
	if pushes, _ := s.calls(); len(pushes) != 0 {
		t.Errorf("the syncer was called %d times", len(pushes))
	}
}
