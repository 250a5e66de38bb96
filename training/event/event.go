// Package event defines the feedback event the trainer learns from and its
// two encodings on Kafka.
//
// An event says that product ProductID was shown in context ContextVector
// (d numbers, d being the model's dimension) and earned Reward (0 or 1, or
// a fraction in [0, 1]):
//
//	event_id        string
//	product_id      string, non-empty
//	reward          int 0/1 (Avro); a number in [0, 1] (JSON)
//	context_vector  array of d finite doubles
//	timestamp       long, Unix milliseconds
//
// # Encodings
//
// Avro, in the Confluent wire format: a magic byte 0, the writer schema's id
// as a 4-byte big-endian integer, then the Avro binary body of a record in
// Schema (namespace me.jaehyeon, name FeedbackEvent) — the layout the
// reference article's producer writes. The schema id is not interpreted:
// the body is read with Schema whatever the id (no schema registry yet).
// Avro carries the reward as an int, so only rewards 0 and 1 can be encoded.
//
// JSON: one object with the same field names, e.g.
//
//	{"event_id":"e1","product_id":"p7","reward":1,"context_vector":[0.5,1,0],"timestamp":1764000000000}
//
// All five fields are required; unknown fields are ignored.
//
// # Detection
//
// Decode looks at each record on its own: if its first byte that is not
// JSON white space (space, tab, CR, LF) is '{', the record is JSON;
// otherwise, if its first byte is the magic byte 0, it is Avro; anything
// else is undecodable. The two cannot be confused: a JSON text never
// starts with a zero byte, and an Avro record always does.
//
// # Validation
//
// Decode also validates the event against the model's dimension. Every
// failure is an *Error wrapping one of the sentinel errors below, whose
// Reason is a short stable code ("undecodable", "wrong-dimension",
// "non-finite", "bad-reward", "empty-product-id") suited to a dead-letter
// header.
package event

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"unicode/utf8"

	"github.com/hamba/avro/v2"

	"github.com/redbandit/redbandit/model/linucb"
)

// Magic is the first byte of a record in the Confluent wire format.
const Magic byte = 0

// DefaultSchemaID is the schema id EncodeAvro callers use when no schema
// registry assigned one.
const DefaultSchemaID uint32 = 1

// MaxDim bounds the context vector length the decoder accepts before it
// reports a wrong dimension; longer arrays are undecodable (it equals
// store.MaxDim and keeps a corrupt length prefix from allocating).
const MaxDim = 64

// maxString bounds the length of the id strings the Avro decoder allocates.
const maxString = 64 << 10

// Schema is the Avro schema of a FeedbackEvent.
const Schema = `{
  "type": "record",
  "name": "FeedbackEvent",
  "namespace": "me.jaehyeon",
  "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "product_id", "type": "string"},
    {"name": "reward", "type": "int"},
    {"name": "context_vector", "type": {"type": "array", "items": "double"}},
    {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}}
  ]
}`

// Sentinel errors wrapped by the *Error Decode returns, for errors.Is.
var (
	// ErrUndecodable: the record is neither a valid JSON event nor a valid
	// Avro event in the Confluent wire format.
	ErrUndecodable = errors.New("undecodable")
	// ErrDimension: the context vector's length is not the model's d.
	ErrDimension = errors.New("wrong-dimension")
	// ErrNonFinite: a context value is NaN or infinite.
	ErrNonFinite = errors.New("non-finite")
	// ErrReward: the reward is not a number in [0, 1] (or, for Avro
	// encoding, not 0 or 1).
	ErrReward = errors.New("bad-reward")
	// ErrProductID: the product id is empty.
	ErrProductID = errors.New("empty-product-id")

	// ErrUnknownSchema is returned (wrapped) by a SchemaFetcher for a
	// schema id the registry does not know; the record is then
	// undecodable.
	ErrUnknownSchema = errors.New("event: unknown schema id")
	// ErrRegistry wraps any other failure to get a writer schema: the
	// record may be fine, so it is not an *Error and callers should retry
	// rather than dead-letter it.
	ErrRegistry = errors.New("event: schema registry")
)

// SchemaFetcher returns the Avro writer schema (JSON text) registered
// under id, or an error wrapping ErrUnknownSchema if there is none.
type SchemaFetcher func(ctx context.Context, id uint32) (string, error)

// Error is a rejected event: Kind is one of the sentinel errors and Detail
// says what exactly is wrong.
type Error struct {
	Kind   error
	Detail string
}

func (e *Error) Error() string { return "event: " + e.Kind.Error() + ": " + e.Detail }

// Unwrap returns Kind.
func (e *Error) Unwrap() error { return e.Kind }

// Reason returns the short code of the sentinel (e.g. "wrong-dimension").
func (e *Error) Reason() string { return e.Kind.Error() }

// Reason returns the short reason code of an error returned by Decode, or
// "undecodable" for any other error.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason()
	}
	return ErrUndecodable.Error()
}

func reject(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// Event is one feedback event.
type Event struct {
	EventID       string    `json:"event_id"`
	ProductID     string    `json:"product_id"`
	Reward        float64   `json:"reward"`
	ContextVector []float64 `json:"context_vector"`
	Timestamp     int64     `json:"timestamp"` // Unix milliseconds
}

// avroEvent is Event as the Avro schema types it.
type avroEvent struct {
	EventID       string    `avro:"event_id"`
	ProductID     string    `avro:"product_id"`
	Reward        int32     `avro:"reward"`
	ContextVector []float64 `avro:"context_vector"`
	Timestamp     int64     `avro:"timestamp"`
}

// jsonEvent has pointer fields to tell a missing field from a zero one.
type jsonEvent struct {
	EventID       *string    `json:"event_id"`
	ProductID     *string    `json:"product_id"`
	Reward        *float64   `json:"reward"`
	ContextVector *[]float64 `json:"context_vector"`
	Timestamp     *int64     `json:"timestamp"`
}

// Codec encodes and decodes events. It is safe for concurrent use.
type Codec struct {
	dim    int
	schema avro.Schema
	api    avro.API
	fetch  SchemaFetcher // nil: the schema id is ignored

	mu      sync.Mutex
	writers map[uint32]writer // resolved writer schemas by id
}

type writer struct {
	schema avro.Schema // resolved against Schema
	err    error       // an undecodable-schema error, cached too
}

// NewRegistryCodec returns a codec for dimension dim that reads Avro bodies
// with the writer schema fetch returns for their schema id, resolved against
// Schema.
func NewRegistryCodec(dim int, fetch SchemaFetcher) (*Codec, error) {
	c, err := NewCodec(dim)
	if err != nil {
		return nil, err
	}
	c.fetch = fetch
	c.writers = map[uint32]writer{}
	return c, nil
}

// NewCodec returns a codec for a model of dimension dim (1..MaxDim).
func NewCodec(dim int) (*Codec, error) {
	if dim < 1 || dim > MaxDim {
		return nil, fmt.Errorf("event: dimension %d outside 1..%d", dim, MaxDim)
	}
	schema, err := avro.ParseWithCache(Schema, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("event: parse avro schema: %w", err)
	}
	// Arrays are written as one block prefixed by its item count only, as
	// the Java and Python Avro writers do; readers accept both forms.
	api := avro.Config{DisableBlockSizeHeader: true, MaxByteSliceSize: maxString, MaxSliceAllocSize: 1024}.Freeze()
	return &Codec{dim: dim, schema: schema, api: api}, nil
}

// Dim returns the dimension the codec validates against.
func (c *Codec) Dim() int { return c.dim }

// Decode is DecodeContext with context.Background().
func (c *Codec) Decode(b []byte) (Event, error) { return c.DecodeContext(context.Background(), b) }

// DecodeContext decodes one record, JSON or Avro (see the package
// documentation for the detection rule), and validates it. A rejected
// record is an *Error; the only other errors wrap ErrRegistry (a registry
// codec could not get the writer schema: retry later).
func (c *Codec) DecodeContext(ctx context.Context, b []byte) (Event, error) {
	var ev Event
	var err error
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		ev, err = decodeJSON(trimmed)
	case len(b) > 0 && b[0] == Magic:
		ev, err = c.decodeAvro(ctx, b)
	case len(b) == 0:
		err = reject(ErrUndecodable, "empty record")
	default:
		err = reject(ErrUndecodable, "first byte 0x%02x is neither '{' (JSON) nor the Avro magic byte 0", b[0])
	}
	if err != nil {
		return Event{}, err
	}
	if err := c.Validate(ev); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// Validate checks ev against the codec's dimension: a non-empty product id,
// d finite context values and a reward in [0, 1]. Errors are *Error.
func (c *Codec) Validate(ev Event) error {
	return c.check(len(ev.ProductID), ev.ContextVector, ev.Reward)
}

// check is Validate on an event's parts.
func (c *Codec) check(productIDLen int, x []float64, reward float64) error {
	switch {
	case productIDLen == 0:
		return reject(ErrProductID, "product_id is empty")
	case len(x) != c.dim:
		return reject(ErrDimension, "context_vector has %d values, the model has dimension %d", len(x), c.dim)
	case math.IsNaN(reward) || reward < 0 || reward > 1:
		return reject(ErrReward, "reward %v is outside [0, 1]", reward)
	}
	for i, v := range x {
		if math.Float64bits(v)&(0x7ff<<52) == 0x7ff<<52 { // ±Inf or NaN
			return reject(ErrNonFinite, "context_vector[%d] is %v", i, v)
		}
		if math.Abs(v) > linucb.MaxAbsContext {
			return reject(ErrNonFinite, "context_vector[%d] is %v, beyond ±%g: a model's sums of its products would overflow", i, v, linucb.MaxAbsContext)
		}
	}
	return nil
}

// View is an event decoded for folding into a model: ProductID aliases the
// record given to DecodeView and ContextVector reuses the View's buffer, so
// both stay valid only until the next DecodeView into the same View (or a
// change to the record). The event id and timestamp are checked but not
// kept.
type View struct {
	ProductID     []byte
	Reward        float64
	ContextVector []float64
}

// DecodeView is DecodeContext for callers that only fold the event: the
// same detection, validation and errors, without allocating for Avro
// records read with the codec's own schema (a codec without a schema
// registry), which is the trainer's per-event path.
func (c *Codec) DecodeView(ctx context.Context, b []byte, v *View) error {
	if c.fetch != nil || len(b) == 0 || b[0] != Magic {
		ev, err := c.DecodeContext(ctx, b)
		if err != nil {
			return err
		}
		v.ProductID = []byte(ev.ProductID) // not into v.ProductID: it may alias an earlier record
		v.ContextVector = append(v.ContextVector[:0], ev.ContextVector...)
		v.Reward = ev.Reward
		return nil
	}
	raw := rawEvent{context: v.ContextVector[:0]}
	err := c.decodeOwn(b, &raw)
	v.ProductID, v.Reward, v.ContextVector = raw.productID, float64(raw.reward), raw.context
	if err != nil {
		return err
	}
	return c.check(len(raw.productID), raw.context, v.Reward)
}

func decodeJSON(b []byte) (Event, error) {
	var j jsonEvent
	if err := json.Unmarshal(b, &j); err != nil {
		return Event{}, reject(ErrUndecodable, "json: %v", err)
	}
	switch {
	case j.EventID == nil:
		return Event{}, reject(ErrUndecodable, "json: missing event_id")
	case j.ProductID == nil:
		return Event{}, reject(ErrUndecodable, "json: missing product_id")
	case j.Reward == nil:
		return Event{}, reject(ErrUndecodable, "json: missing reward")
	case j.ContextVector == nil:
		return Event{}, reject(ErrUndecodable, "json: missing context_vector")
	case j.Timestamp == nil:
		return Event{}, reject(ErrUndecodable, "json: missing timestamp")
	}
	return Event{EventID: *j.EventID, ProductID: *j.ProductID, Reward: *j.Reward,
		ContextVector: *j.ContextVector, Timestamp: *j.Timestamp}, nil
}

func (c *Codec) decodeAvro(ctx context.Context, b []byte) (Event, error) {
	if c.fetch == nil {
		// Our own schema: the specialised decoder, which is faster and also
		// rejects truncated bodies that the generic one reads past the end.
		var raw rawEvent
		if err := c.decodeOwn(b, &raw); err != nil {
			return Event{}, err
		}
		x := raw.context
		if x == nil {
			x = []float64{}
		}
		return Event{EventID: string(raw.eventID), ProductID: string(raw.productID), Reward: float64(raw.reward),
			ContextVector: x, Timestamp: raw.timestamp}, nil
	}
	if len(b) < 5 {
		return Event{}, errShortAvro(b)
	}
	id := binary.BigEndian.Uint32(b[1:5])
	schema, err := c.writerSchema(ctx, id)
	if err != nil {
		return Event{}, err
	}
	var a avroEvent
	if err := c.api.Unmarshal(schema, b[5:], &a); err != nil {
		return Event{}, reject(ErrUndecodable, "avro (schema id %d): %v", id, err)
	}
	if err := checkAvro(utf8.ValidString(a.EventID) && utf8.ValidString(a.ProductID), a.Reward); err != nil {
		return Event{}, err
	}
	return Event{EventID: a.EventID, ProductID: a.ProductID, Reward: float64(a.Reward),
		ContextVector: a.ContextVector, Timestamp: a.Timestamp}, nil
}

// decodeOwn decodes a record in the Confluent wire format whose body is
// written with Schema, in place (see decodeRaw).
func (c *Codec) decodeOwn(b []byte, raw *rawEvent) error {
	if len(b) < 5 {
		return errShortAvro(b)
	}
	if err := decodeRaw(b[5:], raw); err != nil {
		return reject(ErrUndecodable, "avro (schema id %d): %v", binary.BigEndian.Uint32(b[1:5]), err)
	}
	return checkAvro(utf8.Valid(raw.eventID) && utf8.Valid(raw.productID), raw.reward)
}

func errShortAvro(b []byte) error {
	return reject(ErrUndecodable, "avro: %d bytes, shorter than the 5-byte wire header", len(b))
}

// checkAvro checks what the Avro schema's types allow and the event does
// not: ids must be UTF-8 and the int reward 0 or 1.
func checkAvro(validUTF8 bool, reward int32) error {
	if !validUTF8 {
		return reject(ErrUndecodable, "avro: event_id or product_id is not valid UTF-8")
	}
	if reward != 0 && reward != 1 {
		return reject(ErrReward, "reward %d is not 0 or 1", reward)
	}
	return nil
}

// writerSchema returns the writer schema with the given id resolved against
// Schema, fetching it on first use.
func (c *Codec) writerSchema(ctx context.Context, id uint32) (avro.Schema, error) {
	c.mu.Lock()
	w, ok := c.writers[id]
	c.mu.Unlock()
	if ok {
		return w.schema, w.err
	}
	text, err := c.fetch(ctx, id)
	switch {
	case errors.Is(err, ErrUnknownSchema):
		w.err = reject(ErrUndecodable, "avro schema id %d: %v", id, err)
	case err != nil:
		return nil, fmt.Errorf("%w: schema id %d: %w", ErrRegistry, id, err)
	default:
		ws, perr := avro.ParseWithCache(text, "", &avro.SchemaCache{})
		if perr == nil {
			w.schema, perr = avro.NewSchemaCompatibility().Resolve(c.schema, ws)
		}
		if perr != nil {
			w.err = reject(ErrUndecodable, "avro schema id %d cannot be read as %s: %v", id, "me.jaehyeon.FeedbackEvent", perr)
		}
	}
	c.mu.Lock()
	c.writers[id] = w
	c.mu.Unlock()
	return w.schema, w.err
}

// AppendRecord appends ev the way redbandit's producers write it: Avro in
// the Confluent wire format with DefaultSchemaID when the reward is 0 or 1,
// JSON otherwise (Avro carries the reward as an int). The trainer reads both.
func (c *Codec) AppendRecord(dst []byte, ev Event) ([]byte, error) {
	if ev.Reward == 0 || ev.Reward == 1 {
		return c.AppendAvro(dst, DefaultSchemaID, ev)
	}
	return AppendJSON(dst, ev)
}

// AppendAvro appends ev in the Confluent wire format with the given schema
// id to dst. The reward must be exactly 0 or 1 (Avro carries an int); any
// other reward fails with an error wrapping ErrReward. ev is not otherwise
// validated, so tests can encode bad events.
func (c *Codec) AppendAvro(dst []byte, schemaID uint32, ev Event) ([]byte, error) {
	if ev.Reward != 0 && ev.Reward != 1 {
		return nil, reject(ErrReward, "reward %v cannot be encoded as an Avro int (use JSON for fractional rewards)", ev.Reward)
	}
	body, err := c.api.Marshal(c.schema, avroEvent{EventID: ev.EventID, ProductID: ev.ProductID,
		Reward: int32(ev.Reward), ContextVector: ev.ContextVector, Timestamp: ev.Timestamp})
	if err != nil {
		return nil, fmt.Errorf("event: encode avro: %w", err)
	}
	dst = append(dst, Magic)
	dst = binary.BigEndian.AppendUint32(dst, schemaID)
	return append(dst, body...), nil
}

// AppendJSON appends ev as a JSON object to dst. A non-finite value cannot
// be written in JSON and fails with an error wrapping ErrNonFinite.
func AppendJSON(dst []byte, ev Event) ([]byte, error) {
	if ev.ContextVector == nil {
		ev.ContextVector = []float64{}
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("event: encode json: %w: %v", ErrNonFinite, err)
	}
	return append(dst, b...), nil
}
