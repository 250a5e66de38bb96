package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/redbandit/redbandit/training/event"
)

// Kafka helpers: the schema-registry fetcher and franz-go's logger.

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

// kgoLogger passes franz-go's log lines to slog; franz-go's info level is
// chatty, so it is logged at debug.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case l.log.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelInfo
	case l.log.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	default:
		return kgo.LogLevelError
	}
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	}
	l.log.Log(context.Background(), lv, "kafka: "+msg, keyvals...)
}
