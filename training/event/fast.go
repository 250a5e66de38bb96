package event

import (
	"encoding/binary"
	"errors"
	"math"
)

// errFast is any malformation found by decodeRaw; the caller reports it as
// undecodable, like the generic decoder's errors.
var errFast = errors.New("malformed avro body")

// rawEvent is an Avro body decoded in place: the ids alias the body and the
// context values are appended to context.
type rawEvent struct {
	eventID, productID []byte
	reward             int32
	context            []float64
	timestamp          int64
}

// decodeRaw decodes the Avro body of a record written with Schema — the
// common case, without a schema registry — several times faster than the
// generic decoder, allocating nothing unless e.context is too short. It
// accepts exactly what the generic decoder accepts with the codec's limits
// (strings up to maxString bytes, at most 1024 context values, trailing
// bytes ignored); TestFastDecoder holds it to that.
func decodeRaw(b []byte, e *rawEvent) error {
	r := fastReader{b: b}
	e.eventID = r.str()
	e.productID = r.str()
	e.reward = r.int32()
	for total := 0; r.err == nil; {
		n := r.long()
		if n == 0 || r.err != nil {
			break
		}
		if n < 0 {
			n = -n
			r.long() // the block's size in bytes
		}
		if n > 1024 || total+int(n) > 1024 {
			return errFast
		}
		if e.context == nil {
			e.context = make([]float64, 0, n)
		}
		e.context = r.doubles(e.context, int(n))
		total += int(n)
	}
	e.timestamp = r.long()
	return r.err
}

// fastReader reads Avro primitives from b, at i; the first error sticks.
// It moves an index rather than re-slicing b, so reading writes no pointer
// (re-slicing a field through a pointer costs a write barrier per byte
// while the garbage collector marks).
type fastReader struct {
	b   []byte
	i   int
	err error
}

// varint reads an unsigned varint of at most max bytes.
func (r *fastReader) varint(max int) uint64 {
	if r.err != nil {
		return 0
	}
	b, i := r.b, r.i
	if i < len(b) && b[i] < 0x80 { // one byte: lengths, rewards, counts
		r.i = i + 1
		return uint64(b[i])
	}
	var u uint64
	for k := 0; k < max; k++ {
		if i >= len(b) {
			r.err = errFast
			return 0
		}
		c := b[i]
		i++
		u |= uint64(c&0x7f) << (7 * k)
		if c < 0x80 {
			r.i = i
			return u
		}
	}
	r.err = errFast
	return 0
}

// long reads a zig-zag varint of at most 10 bytes.
func (r *fastReader) long() int64 {
	u := r.varint(10)
	return int64(u>>1) ^ -int64(u&1)
}

// int32 reads a zig-zag varint of at most 5 bytes (bits past 32 dropped, as
// the generic decoder does).
func (r *fastReader) int32() int32 {
	u := uint32(r.varint(5))
	return int32(u>>1) ^ -int32(u&1)
}

// str reads a string's bytes; the slice aliases the body.
func (r *fastReader) str() []byte {
	n := r.long()
	if r.err != nil {
		return nil
	}
	if n < 0 || n > maxString || n > int64(len(r.b)-r.i) {
		r.err = errFast
		return nil
	}
	s := r.b[r.i : r.i+int(n) : r.i+int(n)]
	r.i += int(n)
	return s
}

// doubles appends n doubles to x.
func (r *fastReader) doubles(x []float64, n int) []float64 {
	if r.err != nil {
		return x
	}
	if n > (len(r.b)-r.i)/8 {
		r.err = errFast
		return x
	}
	b := r.b[r.i : r.i+8*n]
	r.i += 8 * n
	for len(b) >= 8 {
		x = append(x, math.Float64frombits(binary.LittleEndian.Uint64(b)))
		b = b[8:]
	}
	return x
}
