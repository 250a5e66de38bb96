package event

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// generic decodes with the generic (hamba/avro) decoder.
func (c *Codec) generic(body []byte) (avroEvent, error) {
	var a avroEvent
	err := c.api.Unmarshal(c.schema, body, &a)
	return a, err
}

// decodeFast is decodeRaw with the result in the generic decoder's type.
func decodeFast(b []byte) (avroEvent, error) {
	var raw rawEvent
	err := decodeRaw(b, &raw)
	a := avroEvent{EventID: string(raw.eventID), ProductID: string(raw.productID), Reward: raw.reward,
		ContextVector: raw.context, Timestamp: raw.timestamp}
	if err == nil && a.ContextVector == nil {
		a.ContextVector = []float64{}
	}
	return a, err
}

// TestFastDecoder checks decodeRaw (through decodeFast) against the generic decoder
// (hamba/avro) and the encoder: valid bodies decode to the event and to what
// the generic decoder reads, also with trailing bytes and with arrays split
// into blocks; every strict prefix of a valid body is rejected (the generic
// decoder reads some of them without an error, with zeros and garbage past
// the end); on random single-byte mutations, whatever the fast decoder
// accepts the generic one reads the same way; 1,025 context values are
// rejected, 1,024 accepted, as the generic decoder's limit.
func TestFastDecoder(t *testing.T) {
	c, err := NewCodec(15)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 4))
	agree := func(what string, b []byte) bool {
		t.Helper()
		fa, ferr := decodeFast(b)
		if ferr != nil {
			return false
		}
		ga, gerr := c.generic(b)
		if gerr != nil || fmt.Sprint(fa) != fmt.Sprint(ga) {
			t.Fatalf("%s %x: fast %+v; generic %+v, %v", what, b, fa, ga, gerr)
		}
		return true
	}
	for i := 0; i < 200; i++ {
		x := make([]float64, rng.IntN(20))
		for j := range x {
			x[j] = rng.NormFloat64() * 1e3
		}
		ev := Event{EventID: fmt.Sprintf("e%d", i), ProductID: fmt.Sprintf("p%d", rng.IntN(1000)), Reward: float64(rng.IntN(2)),
			ContextVector: x, Timestamp: rng.Int64N(1 << 45)}
		wire, err := c.AppendAvro(nil, DefaultSchemaID, ev)
		if err != nil {
			t.Fatal(err)
		}
		b := wire[5:]
		got, err := decodeFast(b)
		if err != nil || got.EventID != ev.EventID || got.ProductID != ev.ProductID || float64(got.Reward) != ev.Reward ||
			fmt.Sprint(got.ContextVector) != fmt.Sprint(ev.ContextVector) || got.Timestamp != ev.Timestamp {
			t.Fatalf("event %d: decoded %+v, %v; want %+v", i, got, err, ev)
		}
		if !agree("valid", b) || !agree("trailing bytes", append(bytes.Clone(b), 1, 2, 3)) {
			t.Fatalf("event %d: rejected", i)
		}
		for n := 0; n < len(b); n++ {
			if _, err := decodeFast(b[:n]); err == nil {
				t.Fatalf("event %d: the %d-byte prefix of %d was accepted", i, n, len(b))
			}
			m := bytes.Clone(b)
			m[n] ^= byte(1 << rng.IntN(8))
			agree("mutated", m)
		}
	}
	// An array written as two blocks, the second with a byte-size header:
	// "e", "p", reward 1, [block of 1: 1.0], [block of -1, size 8: 2.0], end, ts 5.
	two := []byte{2, 'e', 2, 'p', 2, 2}
	two = append(two, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f)
	two = append(two, 1, 16, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 10)
	if !agree("two blocks", two) {
		t.Fatal("two blocks rejected")
	}
	for _, n := range []int{1024, 1025} {
		b := []byte{2, 'e', 2, 'p', 0}
		b = appendLong(b, int64(n))
		b = append(b, make([]byte, 8*n)...)
		b = append(b, 0, 2)
		if ok := agree(fmt.Sprintf("%d values", n), b); ok != (n <= 1024) {
			t.Errorf("%d context values: accepted %v", n, ok)
		}
	}
}

func appendLong(b []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		b = append(b, byte(u)|0x80)
		u >>= 7
	}
	return append(b, byte(u))
}
