package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/config"
	"github.com/fieldsync/fieldsync/internal/store"
)

// Enrol with a one-time code, sync, rotate the refresh token, catch a
// replayed refresh token, revoke: the whole device lifecycle over HTTP.
func TestDeviceLifecycle(t *testing.T) {
	db := filepath.Join(t.TempDir(), "fieldsync.db")
	env := map[string]string{"FIELDSYNC_DATABASE_URL": db}
	if _, err := runCLI(t, env, "migrate"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, env, "keys", "rotate"); err != nil {
		t.Fatal(err)
	}
	code, err := runCLI(t, env, "device", "enroll-code", "-unit", "KEN-3", "-contingent", "KEN")
	if err != nil {
		t.Fatal(err)
	}
	code = strings.TrimSpace(code)

	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = db
	base, stop, done := startMain(t, cfg, &syncBuffer{})
	defer func() { stop(); <-done }()
	spec := loadSpec(t)
	anon := &client{t: t, base: base, spec: spec}

	type tokens struct {
		DeviceID     string `json:"device_id"`
		Unit         string `json:"unit"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	decode := func(b []byte) tokens {
		var tk tokens
		if err := json.Unmarshal(b, &tk); err != nil {
			t.Fatal(err)
		}
		return tk
	}
	enroll, _ := json.Marshal(map[string]string{"code": strings.ToLower(code), "label": "tablet 4"})
	status, body := anon.do("POST", "/v1/devices/enroll", enroll, nil)
	if status != 200 {
		t.Fatalf("enrol = %d %s", status, body)
	}
	first := decode(body)
	if first.Unit != "KEN-3" || !strings.HasPrefix(first.DeviceID, "dev-") {
		t.Fatalf("enrolled as %+v", first)
	}
	if status, body := anon.do("POST", "/v1/devices/enroll", enroll, nil); status != 401 {
		t.Fatalf("a second use of the code = %d %s, want 401", status, body)
	}

	dev := &client{t: t, base: base, spec: spec, token: first.AccessToken}
	pushBody := func(n int) []byte {
		return []byte(`{"changes":[{"change_id":"d` + string(rune('0'+n)) + `","collection":"corridors","id":"rn1","vv":{"` + first.DeviceID + `":` +
			string(rune('0'+n)) + `},"hlc":"1764300000000-` + string(rune('0'+n)) + `-` + first.DeviceID + `","fields":{"status":"open"}}]}`)
	}
	if status, body := dev.do("POST", "/v1/sync/push", pushBody(1), nil); status != 200 {
		t.Fatalf("push with the enrolled device's token = %d %s", status, body)
	}

	// A refresh token is not an access token, and the reverse.
	asBearer := &client{t: t, base: base, spec: spec, token: first.RefreshToken}
	if status, _ := asBearer.do("GET", "/v1/sync/pull", nil, nil); status != 401 {
		t.Fatalf("a refresh token as bearer = %d, want 401", status)
	}
	wrong, _ := json.Marshal(map[string]string{"refresh_token": first.AccessToken})
	if status, _ := anon.do("POST", "/v1/auth/refresh", wrong, nil); status != 401 {
		t.Fatalf("an access token as refresh token = %d, want 401", status)
	}

	refresh := func(tok string) (int, []byte) {
		b, _ := json.Marshal(map[string]string{"refresh_token": tok})
		return anon.do("POST", "/v1/auth/refresh", b, nil)
	}
	status, body = refresh(first.RefreshToken)
	if status != 200 {
		t.Fatalf("refresh = %d %s", status, body)
	}
	second := decode(body)
	if second.DeviceID != first.DeviceID || second.RefreshToken == first.RefreshToken {
		t.Fatalf("refresh returned %+v", second)
	}
	// The same token again at once, as after a response lost on a cut
	// connection: the same successor, not a revoked family.
	status, body = refresh(first.RefreshToken)
	if status != 200 || decode(body).RefreshToken != second.RefreshToken {
		t.Fatalf("a retried refresh = %d, want the same successor back: %s", status, body)
	}
	// Once the successor is spent, the first token again is a copy in
	// someone else's hands: the family dies, the newest token included.
	status, body = refresh(second.RefreshToken)
	if status != 200 {
		t.Fatalf("refresh with the successor = %d %s", status, body)
	}
	third := decode(body)
	if status, body := refresh(first.RefreshToken); status != 401 || !bytes.Contains(body, []byte("already used")) {
		t.Fatalf("replayed refresh token = %d %s, want 401", status, body)
	}
	if status, _ := refresh(third.RefreshToken); status != 401 {
		t.Fatalf("the family's newest token after a replay = %d, want 401", status)
	}

	// Revocation by a supervisor of another contingent: not found; by an
	// administrator: done, and the device's token fails within a second.
	other, err := runCLI(t, env, "token", "-role", "supervisor", "-sub", "sup-jam", "-contingent", "JAM")
	if err != nil {
		t.Fatal(err)
	}
	jam := &client{t: t, base: base, spec: spec, token: strings.TrimSpace(other)}
	if status, _ := jam.do("POST", "/v1/devices/"+first.DeviceID+"/revoke", nil, nil); status != 404 {
		t.Fatalf("a JAM supervisor revoking a KEN device = %d, want 404", status)
	}
	adminTok, err := runCLI(t, env, "token", "-role", "admin", "-sub", "admin-1")
	if err != nil {
		t.Fatal(err)
	}
	admin := &client{t: t, base: base, spec: spec, token: strings.TrimSpace(adminTok)}
	if status, body := admin.do("POST", "/v1/devices/"+first.DeviceID+"/revoke", nil, nil); status != 200 {
		t.Fatalf("revoke = %d %s", status, body)
	}
	deadline := time.Now().Add(time.Second)
	for {
		status, _ := dev.do("POST", "/v1/sync/push", pushBody(2), nil)
		if status == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a revoked device still pushes after 1 s (status %d)", status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// What it sends now is held aside for review, not merged.
	late := []byte(`{"changes":[{"change_id":"late-1","collection":"corridors","id":"rn1","vv":{"` + first.DeviceID +
		`":3},"hlc":"1764300000000-3-` + first.DeviceID + `","fields":{"status":"closed"}}]}`)
	if status, _ := dev.do("POST", "/v1/sync/push", late, nil); status != 401 {
		t.Fatalf("push by the revoked device = %d, want 401", status)
	}
	// What it synced stays, unchanged by what it sent after.
	status, body = admin.do("GET", "/v1/sync/pull", nil, nil)
	if status != 200 || !bytes.Contains(body, []byte(`"rn1"`)) || bytes.Contains(body, []byte(`"closed"`)) {
		t.Fatalf("the revoked device's data = %d %s", status, body)
	}
	s, err := store.Open(t.Context(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var held []struct {
		ChangeID string
		Code     string
		Body     string
	}
	if err := s.DB().Raw(`SELECT change_id, code, body FROM rejections WHERE subject = ? AND code = 'device_revoked'`, first.DeviceID).Scan(&held).Error; err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range held {
		found = found || h.ChangeID == "late-1" && strings.Contains(h.Body, `"closed"`)
	}
	if !found {
		t.Fatalf("the revoked device's late change was not held for review: %+v", held)
	}
}

// A revocation made on one instance stops the device on another within a
// second: the revocation cache is the only delay.
func TestRevocationReachesEveryInstanceWithinASecond(t *testing.T) {
	db, env := preparedDB(t)
	code, err := runCLI(t, env, "device", "enroll-code", "-unit", "KEN-3", "-contingent", "KEN")
	if err != nil {
		t.Fatal(err)
	}
	adminTok, err := runCLI(t, env, "token", "-role", "admin", "-sub", "admin-1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = db
	spec := loadSpec(t)
	var bases []string
	for i := 0; i < 2; i++ {
		base, stop, done := startMain(t, cfg, &syncBuffer{})
		defer func() { stop(); <-done }()
		bases = append(bases, base)
	}
	enroll, _ := json.Marshal(map[string]string{"code": strings.TrimSpace(code)})
	status, body := (&client{t: t, base: bases[0], spec: spec}).do("POST", "/v1/devices/enroll", enroll, nil)
	if status != 200 {
		t.Fatalf("enrol = %d %s", status, body)
	}
	var tk struct {
		DeviceID    string `json:"device_id"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tk); err != nil {
		t.Fatal(err)
	}
	onB := &client{t: t, base: bases[1], spec: spec, token: tk.AccessToken}
	if status, _ := onB.do("GET", "/v1/sync/pull", nil, nil); status != 200 {
		t.Fatalf("pull on instance B before revocation = %d", status)
	}
	admin := &client{t: t, base: bases[0], spec: spec, token: strings.TrimSpace(adminTok)}
	if status, body := admin.do("POST", "/v1/devices/"+tk.DeviceID+"/revoke", nil, nil); status != 200 {
		t.Fatalf("revoke on instance A = %d %s", status, body)
	}
	revokedAt := time.Now()
	for {
		status, _ := onB.do("GET", "/v1/sync/pull", nil, nil)
		if status == 401 {
			break
		}
		if time.Since(revokedAt) > time.Second {
			t.Fatalf("instance B still serves the revoked device after 1 s (status %d)", status)
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Logf("instance B refused the revoked device %v after the revocation on A", time.Since(revokedAt).Round(time.Millisecond))
}
