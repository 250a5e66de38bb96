package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/rueidis"
)

// ListModels returns the names of the models stored in Redis, sorted: the
// root keys rb:{M} that SCAN finds (arm keys, rb:{M}:arm:P, are not roots).
// It needs SCAN on rb:* keys.
func ListModels(ctx context.Context, c rueidis.Client) ([]string, error) {
	var names []string
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(RootKey("*")).Count(1000).Type("hash").Build()).AsScanEntry()
		if err != nil {
			return nil, fmt.Errorf("scan models: %w", err)
		}
		for _, k := range e.Elements {
			name, ok := strings.CutPrefix(k, "rb:{")
			if name, ok = strings.CutSuffix(name, "}"); ok && !strings.Contains(name, "}:arm:") {
				names = append(names, name)
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}
