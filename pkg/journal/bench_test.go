package journal

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/secauto/secauto/pkg/fsys"
)

// BenchmarkAppend measures durable appends of ~1.5 KB jobs by 1, 16 and 64
// concurrent writers; with more writers group commit shares each fsync.
func BenchmarkAppend(b *testing.B) {
	value := []byte(`{"id":"x","pad":"` + strings.Repeat("v", 1500) + `"}`)
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			path := b.TempDir() + "/jobs.journal"
			w, err := OpenWriter(fsys.OS, path, 0, Options{Preallocate: 16 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N/writers + 1
			for g := range writers {
				wg.Go(func() {
					for i := range per {
						c := Change{{Kind: PutJob, Key: fmt.Sprintf("job-%d-%d", g, i), Value: value}}
						if err := w.Append(c); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
