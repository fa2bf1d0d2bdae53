package api_test

import (
	"bytes"
	"compress/gzip"
	"testing"

	"github.com/fieldsync/fieldsync/internal/api"
	"github.com/fieldsync/fieldsync/internal/domain"
)

// BenchmarkGzipBomb shows the memory a gzip bomb costs the server: 16 MiB of
// zeros (16 KiB on the wire) against a 1 MiB limit. B/op stays near the
// limit, not the inflated size, because the body is inflated through a
// bounded reader.
func BenchmarkGzipBomb(b *testing.B) {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(make([]byte, 16<<20))
	_ = w.Close()
	bomb := buf.Bytes()
	b.ReportAllocs()
	b.SetBytes(int64(len(bomb)))
	for b.Loop() {
		_, err := api.ParsePush("gzip", bomb, 1<<20, 500)
		if domain.ErrorCode(err) != domain.CodeBodyTooLarge {
			b.Fatalf("err = %v, want body_too_large", err)
		}
	}
}
