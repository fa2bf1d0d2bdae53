package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/config"
	"github.com/fieldsync/fieldsync/internal/store"
)

// afterPushCommit is given to the syncer as its AfterCommit seam; nil in the
// real binary. Tests set it in the server processes they start, to kill a
// server between a commit and its answer.
var afterPushCommit func()

// selfCommand returns the command that runs this binary with args: the
// server processes of "fieldsync sim -servers N -restarts K". Tests replace
// it (the test binary runs main only when told so by its environment).
var selfCommand = func(args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, args...), nil
}

// serverProcs is a set of "fieldsync serve" processes on one database, each
// on a fixed loopback port, that can be killed (SIGKILL) and started again
// on the same address.
type serverProcs struct {
	env   []string
	addrs []string
	cmds  []*exec.Cmd
	done  []chan struct{}
}

// freePort returns a loopback address no one listens on now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startServers starts n server processes with env (the database and
// limits) and waits until each is ready.
func startServers(ctx context.Context, n int, env []string) (*serverProcs, error) {
	p := &serverProcs{env: env, cmds: make([]*exec.Cmd, n), done: make([]chan struct{}, n)}
	for i := 0; i < n; i++ {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		p.addrs = append(p.addrs, addr)
		if err := p.start(ctx, i); err != nil {
			p.stop()
			return nil, err
		}
	}
	return p, nil
}

// url is the base URL of server i.
func (p *serverProcs) url(i int) string { return "http://" + p.addrs[i] }

// start starts server i and waits for its /readyz.
func (p *serverProcs) start(ctx context.Context, i int) error {
	cmd, err := selfCommand("serve")
	if err != nil {
		return err
	}
	cmd.Env = append(append(cmd.Environ(), p.env...), "FIELDSYNC_ADDR="+p.addrs[i], "FIELDSYNC_LOG_LEVEL=error")
	cmd.Stdout, cmd.Stderr = nil, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmds[i], p.done[i] = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-done:
			return fmt.Errorf("server %d exited while starting", i)
		default:
		}
		resp, err := http.Get(p.url(i) + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("a server process did not become ready in 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL to server i and waits for it to be gone.
func (p *serverProcs) kill(i int) {
	if p.cmds[i] == nil || p.cmds[i].Process == nil {
		return
	}
	_ = p.cmds[i].Process.Signal(syscall.SIGKILL)
	<-p.done[i]
}

// restart kills server i and starts it again on the same address.
func (p *serverProcs) restart(ctx context.Context, i int) error {
	p.kill(i)
	return p.start(ctx, i)
}

func (p *serverProcs) stop() {
	for i := range p.cmds {
		p.kill(i)
	}
}

// prepareDatabase opens cfg's database, applies its migrations and makes
// sure it holds a signing key: what a command that starts its own servers
// (sim, bench) needs before it mints tokens. The caller closes the store.
func prepareDatabase(ctx context.Context, cfg config.Config) (*store.Store, *auth.Keyring, error) {
	st, err := store.Open(ctx, cfg.DatabaseURL, store.Options{})
	if err != nil {
		return nil, nil, err
	}
	ring, err := func() (*auth.Keyring, error) {
		if _, err := st.Migrate(ctx); err != nil {
			return nil, err
		}
		ring, err := auth.NewKeyring(ctx, st, auth.Config{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience})
		if err != nil {
			return nil, err
		}
		return ring, ring.EnsureSigningKey(ctx)
	}()
	if err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	return st, ring, nil
}

// floodEnv is the environment of server processes on cfg's database with
// rate limits off: the simulator and the bench are floods by design.
func floodEnv(cfg config.Config, extra ...string) []string {
	return append([]string{
		"FIELDSYNC_DATABASE_URL=" + cfg.DatabaseURL, "FIELDSYNC_JWT_ISSUER=" + cfg.JWTIssuer, "FIELDSYNC_JWT_AUDIENCE=" + cfg.JWTAudience,
		"FIELDSYNC_RATE_LIMIT_DEVICE=0", "FIELDSYNC_RATE_LIMIT_SUPERVISOR=0", "FIELDSYNC_RATE_LIMIT_PARTNER=0",
	}, extra...)
}
