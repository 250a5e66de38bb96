package trainer

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/redbandit/redbandit/training/event"
)

// Kafka helpers: the schema-registry fetcher.

// registryFetcher returns a SchemaFetcher reading writer schemas from the
// schema registry at url.
func registryFetcher(url string) (event.SchemaFetcher, error) {
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		return nil, fmt.Errorf("schema registry client: %w", err)
	}
	return func(ctx context.Context, id uint32) (string, error) {
		s, err := cl.SchemaByID(ctx, int(id))
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return "", fmt.Errorf("%w: %v", event.ErrUnknownSchema, err)
		}
		if err != nil {
			return "", err
		}
		if s.Type != sr.TypeAvro {
			return "", fmt.Errorf("%w: schema %d is %s, not Avro", event.ErrUnknownSchema, id, s.Type)
		}
		return s.Schema, nil
	}, nil
}
