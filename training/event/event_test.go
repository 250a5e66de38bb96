package event

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/hamba/avro/v2"
)

func newCodec(t testing.TB, d int) *Codec {
	t.Helper()
	c, err := NewCodec(d)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAvroWireBytes checks the encoder against bytes written by hand from the
// Avro specification (zig-zag varints, little-endian doubles, array blocks)
// behind the Confluent header.
func TestAvroWireBytes(t *testing.T) {
	c := newCodec(t, 2)
	ev := Event{EventID: "e1", ProductID: "p", Reward: 1, ContextVector: []float64{0.5, -2}, Timestamp: 1000}
	want := []byte{0, 0, 0, 0, 7} // magic, schema id 7
	want = append(want, 4, 'e', '1', 2, 'p', 2)
	want = append(want, 4) // array block of 2 items
	want = binary.LittleEndian.AppendUint64(want, math.Float64bits(0.5))
	want = binary.LittleEndian.AppendUint64(want, math.Float64bits(-2))
	want = append(want, 0)          // end of array
	want = append(want, 0xd0, 0x0f) // zig-zag 1000 = 2000 = 0x7d0
	got, err := c.AppendAvro(nil, 7, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("avro bytes\n got %x\nwant %x", got, want)
	}
	back, err := c.Decode(want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, ev) {
		t.Fatalf("decoded %+v, want %+v", back, ev)
	}
	// The other array form of the spec: a negative count followed by the
	// block's size in bytes.
	sized := append(append([]byte{}, want[:11]...), 3, 32)
	sized = append(sized, want[12:]...)
	back, err = c.Decode(sized)
	if err != nil || !reflect.DeepEqual(back, ev) {
		t.Fatalf("decoded sized block %+v, %v; want %+v", back, err, ev)
	}
}

func TestJSONRoundTripAndDetection(t *testing.T) {
	c := newCodec(t, 3)
	ev := Event{EventID: "e9", ProductID: "p42", Reward: 0.25, ContextVector: []float64{1, 0, 1e-300}, Timestamp: 1764000000000}
	b, err := AppendJSON(nil, ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range [][]byte{b, append([]byte(" \n\t"), b...)} {
		got, err := c.Decode(rec)
		if err != nil {
			t.Fatalf("decode %q: %v", rec, err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Fatalf("decoded %+v, want %+v", got, ev)
		}
	}
	got, err := c.Decode([]byte(`{"event_id":"x","product_id":"p","reward":1,"context_vector":[1,2,3],"timestamp":5,"extra":true}`))
	if err != nil || got.Reward != 1 || got.Timestamp != 5 {
		t.Fatalf("integer reward: %+v, %v", got, err)
	}
}

func TestRejections(t *testing.T) {
	c := newCodec(t, 2)
	avro := func(ev Event) []byte {
		b, err := c.AppendAvro(nil, DefaultSchemaID, ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := Event{EventID: "e", ProductID: "p", Reward: 1, ContextVector: []float64{1, 2}, Timestamp: 1}
	with := func(f func(*Event)) Event { e := good; e.ContextVector = []float64{1, 2}; f(&e); return e }
	cases := []struct {
		name   string
		rec    []byte
		kind   error
		reason string
	}{
		{"empty", nil, ErrUndecodable, "undecodable"},
		{"garbage", []byte("hello"), ErrUndecodable, "undecodable"},
		{"short avro", []byte{0, 0, 0}, ErrUndecodable, "undecodable"},
		{"truncated avro", avro(good)[:12], ErrUndecodable, "undecodable"},
		{"bad json", []byte(`{"event_id":`), ErrUndecodable, "undecodable"},
		{"json missing reward", []byte(`{"event_id":"e","product_id":"p","context_vector":[1,2],"timestamp":1}`), ErrUndecodable, "undecodable"},
		{"json huge number", []byte(`{"event_id":"e","product_id":"p","reward":1,"context_vector":[1e999,2],"timestamp":1}`), ErrUndecodable, "undecodable"},
		{"avro dimension", avro(with(func(e *Event) { e.ContextVector = []float64{1, 2, 3} })), ErrDimension, "wrong-dimension"},
		{"json dimension", []byte(`{"event_id":"e","product_id":"p","reward":1,"context_vector":[1],"timestamp":1}`), ErrDimension, "wrong-dimension"},
		{"avro nan", avro(with(func(e *Event) { e.ContextVector[1] = math.NaN() })), ErrNonFinite, "non-finite"},
		{"avro inf", avro(with(func(e *Event) { e.ContextVector[0] = math.Inf(-1) })), ErrNonFinite, "non-finite"},
		{"avro beyond 1e100", avro(with(func(e *Event) { e.ContextVector[1] = -1e200 })), ErrNonFinite, "non-finite"},
		{"json beyond 1e100", []byte(`{"event_id":"e","product_id":"p","reward":1,"context_vector":[1e101,2],"timestamp":1}`), ErrNonFinite, "non-finite"},
		{"json reward", []byte(`{"event_id":"e","product_id":"p","reward":1.5,"context_vector":[1,2],"timestamp":1}`), ErrReward, "bad-reward"},
		{"json negative reward", []byte(`{"event_id":"e","product_id":"p","reward":-0.1,"context_vector":[1,2],"timestamp":1}`), ErrReward, "bad-reward"},
		{"avro product", avro(with(func(e *Event) { e.ProductID = "" })), ErrProductID, "empty-product-id"},
	}
	// An Avro int reward of 2 cannot come from AppendAvro: patch the byte.
	r2 := avro(good)
	r2[5+2+2] = 4 // after header, "e" (2 bytes), "p" (2 bytes): reward zig-zag 1 -> 2
	cases = append(cases, struct {
		name   string
		rec    []byte
		kind   error
		reason string
	}{"avro reward 2", r2, ErrReward, "bad-reward"})
	var v View
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sameAsView(t, c, &v, tc.rec)
			_, err := c.Decode(tc.rec)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err %v, want %v", err, tc.kind)
			}
			var e *Error
			if !errors.As(err, &e) || Reason(err) != tc.reason || e.Detail == "" {
				t.Fatalf("err %#v: reason %q, want %q with a detail", err, Reason(err), tc.reason)
			}
		})
	}
	if _, err := c.AppendAvro(nil, 1, with(func(e *Event) { e.Reward = 0.5 })); !errors.Is(err, ErrReward) {
		t.Fatalf("avro fractional reward: %v", err)
	}
}

// sameAsView requires DecodeView into v to give what Decode gives: the same
// error text, or the same product id, reward and context.
func sameAsView(t *testing.T, c *Codec, v *View, b []byte) {
	t.Helper()
	ev, err := c.Decode(b)
	verr := c.DecodeView(context.Background(), b, v)
	if fmt.Sprint(err) != fmt.Sprint(verr) {
		t.Fatalf("Decode: %v; DecodeView: %v", err, verr)
	}
	if err == nil && (string(v.ProductID) != ev.ProductID || v.Reward != ev.Reward ||
		fmt.Sprint(v.ContextVector) != fmt.Sprint(ev.ContextVector)) {
		t.Fatalf("Decode: %+v; DecodeView: %q %v %v", ev, v.ProductID, v.Reward, v.ContextVector)
	}
}

// TestDecodeViewAllocations requires the trainer's per-event decoding of an
// Avro record to allocate nothing once the View's buffer has grown.
func TestDecodeViewAllocations(t *testing.T) {
	c := newCodec(t, 15)
	rec, err := c.AppendAvro(nil, DefaultSchemaID, Event{EventID: "e-1", ProductID: "p-7", Reward: 1,
		ContextVector: make([]float64, 15), Timestamp: 1764000000000})
	if err != nil {
		t.Fatal(err)
	}
	var v View
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if err := c.DecodeView(ctx, rec, &v); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || string(v.ProductID) != "p-7" || len(v.ContextVector) != 15 {
		t.Fatalf("%v allocations per event; decoded %q with %d values", allocs, v.ProductID, len(v.ContextVector))
	}
	// v.ProductID aliases rec: decoding a JSON record next must not write
	// into it (the trainer may still be dead-lettering rec).
	before := bytes.Clone(rec)
	js := []byte(`{"event_id":"e","product_id":"q","reward":1,"context_vector":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"timestamp":1}`)
	if err := c.DecodeView(ctx, js, &v); err != nil || string(v.ProductID) != "q" || !bytes.Equal(rec, before) {
		t.Fatalf("json after avro: %v, %q; avro record %x, was %x", err, v.ProductID, rec, before)
	}
}

// FuzzDecode checks that no input panics the decoder and that every accepted
// event is valid and survives a re-encoding unchanged.
func FuzzDecode(f *testing.F) {
	c := newCodec(f, 3)
	ev := Event{EventID: "e1", ProductID: "p1", Reward: 1, ContextVector: []float64{0.5, 0, 1}, Timestamp: 1764000000000}
	a, _ := c.AppendAvro(nil, DefaultSchemaID, ev)
	j, _ := AppendJSON(nil, ev)
	f.Add(a)
	f.Add(j)
	f.Add([]byte(`{"event_id":"e","product_id":"p","reward":0.5,"context_vector":[1,2,3],"timestamp":0}`))
	f.Add([]byte(`  {}`))
	f.Add([]byte{0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0, 0, 0, 0, 1, 2, 'e', 2, 'p', 2, 0x81, 0x80, 0x80, 0x80, 0x08})
	f.Add([]byte{})
	var v View // reused, as the trainer does
	f.Fuzz(func(t *testing.T, b []byte) {
		sameAsView(t, c, &v, b)
		got, err := c.Decode(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		if err := c.Validate(got); err != nil {
			t.Fatalf("accepted an invalid event: %v", err)
		}
		j, err := AppendJSON(nil, got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := c.Decode(j)
		if err != nil || !reflect.DeepEqual(back, got) {
			t.Fatalf("json round trip: %+v, %v; want %+v", back, err, got)
		}
		if got.Reward == 0 || got.Reward == 1 {
			a, err := c.AppendAvro(nil, DefaultSchemaID, got)
			if err != nil {
				t.Fatal(err)
			}
			back, err := c.Decode(a)
			if err != nil || !reflect.DeepEqual(back, got) {
				t.Fatalf("avro round trip: %+v, %v; want %+v", back, err, got)
			}
		}
	})
}

// TestRegistryCodec reads records written with another writer schema (an
// extra field, another field order) through a registry codec, and checks
// unknown ids and registry failures.
func TestRegistryCodec(t *testing.T) {
	const writerSchema = `{"type":"record","name":"FeedbackEvent","namespace":"me.jaehyeon","fields":[
	  {"name":"product_id","type":"string"},
	  {"name":"source","type":"string"},
	  {"name":"event_id","type":"string"},
	  {"name":"context_vector","type":{"type":"array","items":"double"}},
	  {"name":"reward","type":"int"},
	  {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-millis"}}]}`
	down := errors.New("connection refused")
	var fetches int
	fetch := func(_ context.Context, id uint32) (string, error) {
		fetches++
		switch id {
		case 7:
			return writerSchema, nil
		case 8:
			return `{"type":"record","name":"Other","fields":[{"name":"x","type":"int"}]}`, nil
		case 9:
			return "", down
		}
		return "", fmt.Errorf("id %d: %w", id, ErrUnknownSchema)
	}
	c, err := NewRegistryCodec(2, fetch)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := avro.Parse(writerSchema)
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(ws, map[string]any{"product_id": "p9", "source": "web", "event_id": "e1",
		"context_vector": []float64{0.25, -1}, "reward": 1, "timestamp": int64(1764000000000)})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(id uint32) []byte { return append([]byte{0, 0, 0, 0, byte(id)}, body...) }
	want := Event{EventID: "e1", ProductID: "p9", Reward: 1, ContextVector: []float64{0.25, -1}, Timestamp: 1764000000000}
	for i := 0; i < 2; i++ {
		got, err := c.Decode(rec(7))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("decode with writer schema: %+v, %v", got, err)
		}
	}
	var v View
	sameAsView(t, c, &v, rec(7))
	if fetches != 1 {
		t.Errorf("%d fetches of schema 7, want 1 (cached)", fetches)
	}
	for _, id := range []uint32{5, 8} {
		if _, err := c.Decode(rec(id)); !errors.Is(err, ErrUndecodable) {
			t.Errorf("schema id %d: %v, want undecodable", id, err)
		}
	}
	_, err = c.Decode(rec(9))
	var e *Error
	if !errors.Is(err, ErrRegistry) || !errors.Is(err, down) || errors.As(err, &e) {
		t.Errorf("registry down: %v, want ErrRegistry and not an *Error", err)
	}
	// Without a registry, a body in another layout is undecodable or
	// misread, never silently accepted as the right event.
	if got, err := newCodec(t, 2).Decode(rec(7)); err == nil && reflect.DeepEqual(got, want) {
		t.Error("a plain codec decoded a foreign writer schema as if it were its own")
	}
}

// TestAppendRecord: 0/1 rewards go out as Avro, fractional ones as JSON, and
// both decode back to the event.
func TestAppendRecord(t *testing.T) {
	c, err := NewCodec(2)
	if err != nil {
		t.Fatal(err)
	}
	for _, reward := range []float64{0, 1, 0.25} {
		ev := Event{EventID: "e", ProductID: "p", Reward: reward, ContextVector: []float64{0.5, -1}, Timestamp: 1764000000000}
		b, err := c.AppendRecord(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		if isAvro := b[0] == Magic; isAvro != (reward != 0.25) {
			t.Errorf("reward %v encoded as %q", reward, b)
		}
		got, err := c.Decode(b)
		if err != nil || got.ProductID != ev.ProductID || got.Reward != ev.Reward || got.ContextVector[1] != -1 || got.Timestamp != ev.Timestamp {
			t.Errorf("reward %v: decoded %+v, %v", reward, got, err)
		}
	}
}
