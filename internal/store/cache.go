package store

import (
	"sync"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/merge"
)

// recordCache keeps decoded records by key and feed position. Every write
// moves a record to a new feed position (a fresh sequence number, on either
// engine), so a cached record whose position equals the row's is the row's
// state: the push path skips decoding hot records (a shared patrol log, a
// corridor every device reports on). Records are immutable once decoded
// (the engine never changes a record in place), so sharing one is safe. The
// cache is per process; other instances' writes change the position and
// miss it.
type recordCache struct {
	mu  sync.Mutex
	max int
	m   map[domain.Key]cachedRecord
}

type cachedRecord struct {
	at  domain.Cursor
	rec *merge.Record
}

func newRecordCache(max int) *recordCache {
	return &recordCache{max: max, m: make(map[domain.Key]cachedRecord, max)}
}

// get returns the cached record of key at position at, or nil.
func (c *recordCache) get(key domain.Key, at domain.Cursor) *merge.Record {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok && e.at == at {
		return e.rec
	}
	return nil
}

// put remembers rec as key's state at position at.
func (c *recordCache) put(key domain.Key, at domain.Cursor, rec *merge.Record) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		// Drop about a tenth, arbitrary ones (map order): cheap, and a
		// hot record is cached again on its next read.
		n := c.max / 10
		for k := range c.m {
			delete(c.m, k)
			if n--; n <= 0 {
				break
			}
		}
	}
	c.m[key] = cachedRecord{at: at, rec: rec}
}
