package migrations_test

import (
	"io/fs"
	"regexp"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/migrations"
)

var name = regexp.MustCompile(`^(\d{5})_[a-z0-9_]+\.sql$`)

// Both dialects must carry the same migration numbers, or a database could
// be "current" on one engine and behind on the other.
func TestDialectsHoldTheSameMigrations(t *testing.T) {
	var sets [][]string
	for _, d := range migrations.Dialects {
		fsys, err := migrations.FS(d)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := fs.ReadDir(fsys, ".")
		if err != nil {
			t.Fatal(err)
		}
		var nums []string
		for _, e := range entries {
			m := name.FindStringSubmatch(e.Name())
			if m == nil {
				t.Fatalf("%s/%s: migration files are named NNNNN_name.sql", d, e.Name())
			}
			nums = append(nums, m[1])
		}
		if len(nums) == 0 {
			t.Fatalf("%s holds no migrations", d)
		}
		sets = append(sets, nums)
	}
	for i := 1; i < len(sets); i++ {
		if !slices.Equal(sets[0], sets[i]) {
			t.Fatalf("%s has migrations %v, %s has %v", migrations.Dialects[0], sets[0], migrations.Dialects[i], sets[i])
		}
	}
}
