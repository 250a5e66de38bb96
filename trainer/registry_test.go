package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/event"
)

// TestTrainerSchemaRegistry reads Avro records written with another writer
// schema (an extra field, fields reordered), fetched from a schema registry
// by id; a record with an id the registry does not know is dead-lettered.
func TestTrainerSchemaRegistry(t *testing.T) {
	const d = 3
	const writerSchema = `{"type":"record","name":"FeedbackEvent","namespace":"me.jaehyeon","fields":[
	  {"name":"product_id","type":"string"},{"name":"source","type":"string"},{"name":"event_id","type":"string"},
	  {"name":"context_vector","type":{"type":"array","items":"double"}},{"name":"reward","type":"int"},
	  {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-millis"}}]}`
	var lookups atomic.Int64
	registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lookups.Add(1)
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		if r.URL.Path != "/schemas/ids/42" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error_code":40403,"message":"Schema not found"}`))
			return
		}
		b, _ := json.Marshal(map[string]string{"schema": writerSchema})
		_, _ = w.Write(b)
	}))
	defer registry.Close()
	e := newEnv(t, 2)
	want := newRefModel(d)
	e.createModel(d, nil, want)
	ws, err := avro.Parse(writerSchema)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for _, ev := range genEvents(13, 500, d, 8) {
		body, err := avro.Marshal(ws, map[string]any{"product_id": ev.ProductID, "source": "web", "event_id": ev.EventID,
			"context_vector": ev.ContextVector, "reward": int(ev.Reward), "timestamp": ev.Timestamp})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Key: []byte(ev.ProductID), Value: append([]byte{0, 0, 0, 0, 42}, body...)})
		want.add(ev.ProductID, ev.ContextVector, ev.Reward)
	}
	recs = append(recs, &kgo.Record{Key: []byte("p1"), Value: append([]byte{0, 0, 0, 0, 43}, recs[0].Value[5:]...)})
	e.produce(recs...)
	var r runner
	r.t = t
	cfg := e.config()
	cfg.SchemaRegistry = registry.URL
	var invalid atomic.Int64
	cfg.OnFlush = func(s FlushStats) { invalid.Add(s.Invalid) }
	stop := r.start(cfg)
	e.waitCaughtUp(30 * time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.check(want)
	if invalid.Load() != 1 {
		t.Errorf("%d dead letters, want 1 (the unknown schema id)", invalid.Load())
	}
	if lookups.Load() > 4 {
		t.Errorf("%d registry lookups for 2 schema ids: the schemas are not cached", lookups.Load())
	}
}

// TestTrainerRegistryDown stops the trainer when the schema registry fails,
// without moving the stored offset past the record it could not read.
func TestTrainerRegistryDown(t *testing.T) {
	const d = 2
	registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error_code":50001,"message":"backend down"}`))
	}))
	defer registry.Close()
	e := newEnv(t, 1)
	want := newRefModel(d)
	e.createModel(d, nil, want)
	codec, _ := event.NewCodec(d)
	evs := genEvents(14, 30, d, 3)
	var recs []*kgo.Record
	for i, ev := range evs {
		if i < 10 { // JSON needs no registry: these are folded
			j, _ := event.AppendJSON(nil, ev)
			recs = append(recs, &kgo.Record{Key: []byte(ev.ProductID), Value: j})
			want.add(ev.ProductID, ev.ContextVector, ev.Reward)
		} else {
			recs = append(recs, avroRecord(t, codec, ev))
		}
	}
	e.produce(recs...)
	cfg := e.config()
	cfg.SchemaRegistry = registry.URL
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Run(ctx, cfg); !errors.Is(err, event.ErrRegistry) {
		t.Fatalf("Run: %v, want ErrRegistry", err)
	}
	e.check(want)
	if v, _ := e.redis.Do(ctx, e.redis.B().Hget().Key(store.RootKey(testModel)).Field(store.OffsetField(e.topic, 0)).Build()).ToString(); v != "10" {
		t.Fatalf("stored offset %q, want 10 (the first Avro record)", v)
	}
}
