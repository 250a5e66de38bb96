package trainer

import (
	"context"
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/store"
)

// BenchmarkProcess measures the per-event path of the poll loop — decode,
// validate, fold into the product's A and b — without Kafka or Redis
// (d = 15, 200 products, Avro).
func BenchmarkProcess(b *testing.B) {
	const d = 15
	codec := newCodec(b, d)
	evs := genEvents(1, 4096, d, 200)
	recs := make([]*kgo.Record, len(evs))
	for i, ev := range evs {
		recs[i] = avroRecord(b, codec, ev)
		recs[i].Topic = testTopic
	}
	m := &member{cfg: Config{Topic: testTopic, MaxDirty: 1 << 30}, log: slog.New(slog.DiscardHandler),
		meta: store.Meta{Dim: d, Lambda: 1}, codec: codec, parts: map[int32]*partition{}}
	st, _ := newPartition("")
	m.parts[0] = st
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := recs[i%len(recs)]
		r.Offset = int64(i)
		m.process(ctx, r)
	}
	if st.events != int64(b.N) {
		b.Fatalf("folded %d of %d events", st.events, b.N)
	}
}
