package produce

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/training/csvlog"
	"github.com/redbandit/redbandit/training/event"
)

const csvLog = "event_id,f1,f2,product_id,response\n" +
	"e1,1,0,a,1\n" +
	"e2,0.5,x,b,0\n" + // bad row
	"e3,0,1,b,0\n"

func TestProduce(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	ctx := context.Background()

	if _, err := RunReader(ctx, strings.NewReader(csvLog), Config{Brokers: brokers, Topic: "t"}); !errors.Is(err, csvlog.ErrBadRow) {
		t.Fatalf("bad row: %v, want ErrBadRow", err)
	}
	start := time.Now()
	res, err := RunReader(ctx, strings.NewReader(csvLog), Config{Brokers: brokers, Topic: "u", SkipBad: true, Rate: 10,
		Now: func() time.Time { return time.UnixMilli(1234) }})
	if err != nil || res.Produced != 2 || res.Skipped != 1 {
		t.Fatalf("produce: %+v, %v", res, err)
	}
	if el := time.Since(start); el < 90*time.Millisecond { // 2 events at 10/s: the second waits 100ms
		t.Errorf("2 events at rate 10/s took %v", el)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("u"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	codec, _ := event.NewCodec(2)
	var got []event.Event
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(got) < 2 && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			ev, err := codec.Decode(r.Value)
			if err != nil || string(r.Key) != ev.ProductID {
				t.Fatalf("record %q key %q: %v", r.Value, r.Key, err)
			}
			got = append(got, ev)
		})
	}
	if len(got) != 2 {
		t.Fatalf("read %d events", len(got))
	}
	byID := map[string]event.Event{}
	for _, ev := range got {
		byID[ev.EventID] = ev
	}
	if e := byID["e3"]; e.ProductID != "b" || e.Reward != 0 || e.ContextVector[1] != 1 || e.Timestamp != 1234 {
		t.Errorf("e3 read back as %+v", e)
	}
}
