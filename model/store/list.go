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
// It needs SCAN on rb:* keys. SCAN sees one server's keys: in a cluster
// every node is scanned (c.Nodes(); replicas hold their primary's keys, so
// names repeat, and are listed once).
func ListModels(ctx context.Context, c rueidis.Client) ([]string, error) {
	var names []string
	nodes := c.Nodes()
	if c.Mode() != rueidis.ClientModeCluster {
		nodes = map[string]rueidis.Client{"": c} // one server (or copies of it)
	}
	for addr, n := range nodes {
		var err error
		if names, err = scanModels(ctx, n, names); err != nil {
			if addr != "" {
				err = fmt.Errorf("%s: %w", addr, err)
			}
			return nil, err
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// scanModels appends the model names of the server c to names.
func scanModels(ctx context.Context, c rueidis.Client, names []string) ([]string, error) {
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
			return names, nil
		}
	}
}
