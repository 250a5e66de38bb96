package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/store"
)

// Lean clients (Config.Client = ClientLean) write each request and read its
// reply on the client's own goroutine over one connection, with RESP or
// HTTP/1.1 written by hand, as redis-benchmark and wrk do: the latency they
// measure is the server's and the network's, with little of a client
// library's (rueidis and net/http hand every call to writer and reader
// goroutines, tens of microseconds per call on a small machine).

// leanConn is the connection of one lean client, dialled on first use and
// dropped after any I/O error (its state is then unknown).
type leanConn struct {
	dial func(ctx context.Context) (net.Conn, *bufio.Reader, error)
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

// ready dials if needed and sets the connection's deadline from ctx; until
// stop is called, cancelling ctx interrupts the connection's I/O.
func (c *leanConn) ready(ctx context.Context) (stop func() bool, err error) {
	if c.conn == nil {
		conn, r, err := c.dial(ctx)
		if err != nil {
			return nil, err
		}
		c.conn, c.r, c.w = conn, r, bufio.NewWriterSize(conn, 32<<10)
	}
	dl, _ := ctx.Deadline() // the zero time: none
	if err := c.conn.SetDeadline(dl); err != nil {
		return nil, c.fail(err)
	}
	conn := c.conn
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) }), nil
}

// fail drops the connection if err is not nil, and returns err.
func (c *leanConn) fail(err error) error {
	if err != nil && c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
	return err
}

// Close closes the connection, if any.
func (c *leanConn) Close() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// exchange writes the commands in buf and reads one reply per entry of
// errs: an error reply is that entry's error, any other goes through
// reply(i, v); an I/O error fails the entries left and drops the
// connection.
func (c *leanConn) exchange(ctx context.Context, buf []byte, errs []error, reply func(i int, v any) error) {
	stop, err := c.ready(ctx)
	if err == nil {
		defer stop()
		_, err = c.w.Write(buf)
	}
	if err == nil {
		err = c.w.Flush()
	}
	if err != nil {
		fill(errs, c.fail(err))
		return
	}
	for i := range errs {
		v, err := readRESP(c.r)
		var re *RedisError
		switch {
		case errors.As(err, &re):
			errs[i] = err
		case err != nil:
			fill(errs[i:], c.fail(err))
			return
		default:
			errs[i] = reply(i, v)
		}
	}
}

// RedisError is an error reply of Redis read by a lean client; its kind in
// the report is its first word (NOMODEL, BADARG, NOSCRIPT, ERR, …).
type RedisError struct{ Msg string }

func (e *RedisError) Error() string { return e.Msg }

// leanRedisDialer returns the dial function of lean Redis clients for a
// redis:// or rediss:// URL: TCP (or TLS), then AUTH and SELECT as the URL
// asks.
func leanRedisDialer(redisURL string) (func(ctx context.Context) (net.Conn, *bufio.Reader, error), error) {
	if !strings.HasPrefix(redisURL, "redis://") && !strings.HasPrefix(redisURL, "rediss://") {
		return nil, fmt.Errorf("%w: lean clients need a redis:// or rediss:// URL, not %q", ErrBadConfig, redisURL)
	}
	opt, err := rueidis.ParseURL(redisURL)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	return func(ctx context.Context) (net.Conn, *bufio.Reader, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", opt.InitAddress[0])
		if err != nil {
			return nil, nil, err
		}
		if opt.TLSConfig != nil {
			tc := tls.Client(conn, opt.TLSConfig)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, nil, err
			}
			conn = tc
		}
		r := bufio.NewReaderSize(conn, 32<<10)
		var hello [][]string
		switch {
		case opt.Username != "":
			hello = append(hello, []string{"AUTH", opt.Username, opt.Password})
		case opt.Password != "":
			hello = append(hello, []string{"AUTH", opt.Password})
		}
		if opt.SelectDB != 0 {
			hello = append(hello, []string{"SELECT", strconv.Itoa(opt.SelectDB)})
		}
		for _, cmd := range hello {
			if _, err := conn.Write(appendCommand(nil, cmd...)); err != nil {
				conn.Close()
				return nil, nil, err
			}
			if _, err := readRESP(r); err != nil {
				conn.Close()
				return nil, nil, fmt.Errorf("%s: %w", cmd[0], err)
			}
		}
		return conn, r, nil
	}, nil
}

// appendCommand appends a RESP array of bulk strings to b.
func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

// errBadRESP reports a reply that is not well-formed RESP.
var errBadRESP = errors.New("malformed RESP reply")

// readRESP reads one RESP2 reply: a simple string (string), an integer
// (int64), a bulk string (string, or nil), an array ([]any) or an error
// reply (returned as a *RedisError).
func readRESP(r *bufio.Reader) (any, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, errBadRESP
	}
	kind, body := line[0], string(line[1:len(line)-2])
	switch kind {
	case '+':
		return body, nil
	case '-':
		return nil, &RedisError{Msg: body}
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, errBadRESP
		}
		if n == -1 {
			return nil, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, errBadRESP
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readRESP(r); err != nil {
				var re *RedisError
				if errors.As(err, &re) {
					err = errBadRESP // an error inside an array: not from our scripts
				}
				return nil, err
			}
		}
		return out, nil
	}
	return nil, errBadRESP
}

// leanScriptTarget is scriptTarget for a lean client: the batch's
// EVALSHA_RO (or FCALL_RO) commands written at once, then their replies
// read in order.
type leanScriptTarget struct {
	leanConn
	fcall bool
	root  string
	k     int
	alpha float64
	ch    *checker
	buf   []byte
}

func (t *leanScriptTarget) do(ctx context.Context, _ rueidis.Client, batch []*request, errs []error) {
	t.buf = t.buf[:0]
	for _, r := range batch {
		args := store.Query{K: t.k, Alpha: t.alpha, Context: r.x, Candidates: r.names}.Args()
		head := []string{"EVALSHA_RO", lua.RecommendSHA(), "1", t.root}
		if t.fcall {
			head[0], head[1] = "FCALL_RO", lua.RecommendFunction
		}
		t.buf = appendCommand(t.buf, append(head, args...)...)
	}
	t.exchange(ctx, t.buf, errs, func(i int, v any) error {
		items, err := itemsOf(v)
		if err != nil {
			return err
		}
		return t.ch.check(batch[i], items)
	})
}

// itemsOf converts a scoring script's reply (id, score, id, score, …).
func itemsOf(v any) ([]store.Item, error) {
	vals, ok := v.([]any)
	if !ok || len(vals)%2 != 0 {
		return nil, wrong(KindBadReply, "reply %v is not id/score pairs", v)
	}
	items := make([]store.Item, len(vals)/2)
	for i := range items {
		id, ok1 := vals[2*i].(string)
		s, ok2 := vals[2*i+1].(string)
		score, err := strconv.ParseFloat(s, 64)
		if !ok1 || !ok2 || err != nil {
			return nil, wrong(KindBadReply, "pair %d: %v, %v", i, vals[2*i], vals[2*i+1])
		}
		items[i] = store.Item{ID: id, Score: score}
	}
	return items, nil
}

// leanPingTarget is pingTarget for a lean client.
type leanPingTarget struct {
	leanConn
	buf []byte
}

func (t *leanPingTarget) do(ctx context.Context, _ rueidis.Client, batch []*request, errs []error) {
	t.buf = t.buf[:0]
	for range batch {
		t.buf = append(t.buf, "*1\r\n$4\r\nPING\r\n"...)
	}
	t.exchange(ctx, t.buf, errs, func(_ int, v any) error {
		if v != "PONG" {
			return wrong(KindBadReply, "PING replied %v", v)
		}
		return nil
	})
}

// leanHTTP is the HTTP/1.1 connection of a lean client to the sidecar:
// keep-alive, bodies framed by Content-Length only (the sidecar's small
// replies always are).
type leanHTTP struct {
	leanConn
	host string
	buf  []byte
	body []byte
}

func newLeanHTTP(sidecarURL string) *leanHTTP {
	u, err := url.Parse(sidecarURL)
	host := sidecarURL
	if err == nil && u.Host != "" {
		host = u.Host
	}
	h := &leanHTTP{host: host}
	h.dial = func(ctx context.Context) (net.Conn, *bufio.Reader, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			return nil, nil, err
		}
		return conn, bufio.NewReaderSize(conn, 32<<10), nil
	}
	return h
}

// errLeanHTTP reports a reply the lean HTTP client cannot read.
var errLeanHTTP = errors.New("unreadable HTTP reply")

// roundTrip sends method path with body (nil: none) and returns the status
// and the reply's body, valid until the next call.
func (h *leanHTTP) roundTrip(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	stop, err := h.ready(ctx)
	if err != nil {
		return 0, nil, err
	}
	defer stop()
	h.buf = append(h.buf[:0], method...)
	h.buf = append(h.buf, ' ')
	h.buf = append(h.buf, path...)
	h.buf = append(h.buf, " HTTP/1.1\r\nHost: "...)
	h.buf = append(h.buf, h.host...)
	h.buf = append(h.buf, "\r\n"...)
	if body != nil {
		h.buf = append(h.buf, "Content-Type: application/json\r\nContent-Length: "...)
		h.buf = strconv.AppendInt(h.buf, int64(len(body)), 10)
		h.buf = append(h.buf, "\r\n"...)
	}
	h.buf = append(h.buf, "\r\n"...)
	h.buf = append(h.buf, body...)
	if _, err := h.w.Write(h.buf); err != nil {
		return 0, nil, h.fail(err)
	}
	if err := h.w.Flush(); err != nil {
		return 0, nil, h.fail(err)
	}
	line, err := h.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, h.fail(err)
	}
	proto, rest, _ := strings.Cut(strings.TrimSpace(string(line)), " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil {
		return 0, nil, h.fail(fmt.Errorf("%w: status line %q", errLeanHTTP, line))
	}
	length, closing := -1, false
	for {
		line, err := h.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, h.fail(err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		name, value, _ := strings.Cut(string(line), ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			if length, err = strconv.Atoi(value); err != nil || length < 0 {
				return 0, nil, h.fail(fmt.Errorf("%w: Content-Length %q", errLeanHTTP, value))
			}
		case "connection":
			closing = strings.EqualFold(value, "close")
		case "transfer-encoding":
			return 0, nil, h.fail(fmt.Errorf("%w: Transfer-Encoding %s (only Content-Length framing is read)", errLeanHTTP, value))
		}
	}
	if length < 0 {
		return 0, nil, h.fail(fmt.Errorf("%w: no Content-Length", errLeanHTTP))
	}
	if cap(h.body) < length {
		h.body = make([]byte, length)
	}
	h.body = h.body[:length]
	if _, err := io.ReadFull(h.r, h.body); err != nil {
		return 0, nil, h.fail(err)
	}
	if closing {
		_ = h.Close()
	}
	return status, h.body, nil
}

// leanHTTPTarget is httpTarget for a lean client.
type leanHTTPTarget struct {
	*leanHTTP
	model string
	k     int
	alpha float64
	ch    *checker
	enc   bytes.Buffer
}

func (t *leanHTTPTarget) do(ctx context.Context, _ rueidis.Client, batch []*request, errs []error) {
	for i, r := range batch {
		errs[i] = t.one(ctx, r)
	}
}

func (t *leanHTTPTarget) one(ctx context.Context, r *request) error {
	if err := encodeRequest(&t.enc, t.model, t.k, t.alpha, r); err != nil {
		return err
	}
	status, body, err := t.roundTrip(ctx, "POST", "/v1/recommend", t.enc.Bytes())
	if err != nil {
		return err
	}
	var reply httpReply
	err = json.Unmarshal(body, &reply)
	return t.ch.checkHTTP(r, status, &reply, err)
}

// leanHTTPPingTarget is httpPingTarget for a lean client.
type leanHTTPPingTarget struct{ *leanHTTP }

func (t leanHTTPPingTarget) do(ctx context.Context, _ rueidis.Client, batch []*request, errs []error) {
	for i := range batch {
		status, _, err := t.roundTrip(ctx, "GET", "/healthz", nil)
		if err == nil && status != 200 {
			err = &HTTPError{Status: status, Msg: "healthz"}
		}
		errs[i] = err
	}
}

// fill sets every entry of errs to err.
func fill(errs []error, err error) {
	for i := range errs {
		errs[i] = err
	}
}

// closeTarget closes a target's connection if it has one of its own.
func closeTarget(t target) {
	if c, ok := t.(io.Closer); ok {
		_ = c.Close()
	}
}
