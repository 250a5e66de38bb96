package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

// Kinds of errors: of wrong answers (AnswerError.Kind), then of failed
// requests (see ErrorKind).
const (
	KindWrongCount  = "wrong-count"    // not min(k, products or candidates) items
	KindNotSorted   = "not-descending" // a score above the one before it, or NaN
	KindUnknownID   = "unknown-id"     // an id not in the catalogue or the candidate list
	KindDuplicateID = "duplicate-id"   // an id twice in one answer
	KindBadReply    = "bad-reply"      // a reply that is not id/score pairs
	KindWrongScore  = "wrong-score"    // a score off the Go reference (synthetic models only)
	KindTimeout     = "timeout"        // a request that hit a deadline
	KindConnection  = "connection"     // a network error
	KindOther       = "other"          // anything else
)

// AnswerError is a wrong answer; it wraps ErrWrongAnswer.
type AnswerError struct {
	Kind string // one of the Kind constants
	Msg  string
}

func (e *AnswerError) Error() string { return "wrong answer: " + e.Kind + ": " + e.Msg }

// Unwrap returns ErrWrongAnswer.
func (e *AnswerError) Unwrap() error { return ErrWrongAnswer }

func wrong(kind, format string, a ...any) error {
	return &AnswerError{Kind: kind, Msg: fmt.Sprintf(format, a...)}
}

// ErrorKind classifies an error of one request for the report: the Kind of
// an AnswerError, the code word of a Redis error reply (NOMODEL, BADARG,
// BADMODEL, NOSCRIPT, BUSY, ERR, …), KindTimeout, KindConnection or
// KindOther.
func ErrorKind(err error) string {
	var ae *AnswerError
	if errors.As(err, &ae) {
		return ae.Kind
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return fmt.Sprintf("HTTP %d", he.Status)
	}
	var le *RedisError
	if errors.As(err, &le) {
		code, _, _ := strings.Cut(le.Msg, " ")
		return code
	}
	if errors.Is(err, errBadRESP) || errors.Is(err, errLeanHTTP) {
		return KindBadReply
	}
	for sentinel, kind := range map[error]string{store.ErrNoModel: "NOMODEL", store.ErrBadArg: "BADARG", store.ErrBadModel: "BADMODEL"} {
		if errors.Is(err, sentinel) {
			return kind
		}
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		code, _, _ := strings.Cut(re.Error(), " ")
		if code != "" {
			return code
		}
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return KindTimeout
	case errors.As(err, &ne) || errors.Is(err, net.ErrClosed):
		return KindConnection
	}
	return KindOther
}

// request is one recommendation request of a client; its buffers are reused.
type request struct {
	x     []float64
	cands []int    // candidate arm indexes, nil for the whole catalogue
	names []string // their ids
}

// Allowed difference between a returned score s and the Go reference score
// r of the same product (linucb.Score): scoreRelTol·max(|s|, |r|) +
// scoreAbsTol, the absolute part for scores that cancel to near zero.
const (
	scoreRelTol = 1e-9
	scoreAbsTol = 1e-12
)

// checker checks answers against the catalogue.
type checker struct {
	cat   *Catalog
	k     int
	alpha float64
	mark  []uint64 // mark[i] == stamp: arm i allowed (candidates) or seen
	seen  []uint64
	now   uint64
}

func newChecker(cat *Catalog, k int, alpha float64) *checker {
	return &checker{cat: cat, k: k, alpha: alpha, mark: make([]uint64, len(cat.IDs)), seen: make([]uint64, len(cat.IDs))}
}

// check returns nil if items is a right answer to req: min(k, n) items
// where n is the number of products or candidates, scores non-increasing
// and not NaN, every id known (in the candidate list if there is one) and
// none twice, and, when the catalogue has the arms' parameters (a synthetic
// model), every score within the tolerance of linucb.Score. Otherwise it
// returns an AnswerError.
func (ch *checker) check(req *request, items []store.Item) error {
	ch.now++
	n := len(ch.cat.IDs)
	if req.cands != nil {
		n = len(req.cands)
		for _, a := range req.cands {
			ch.mark[a] = ch.now
		}
	}
	if want := min(ch.k, n); len(items) != want {
		return wrong(KindWrongCount, "%d items, want %d", len(items), want)
	}
	for i, it := range items {
		a, ok := ch.cat.index[it.ID]
		if !ok || (req.cands != nil && ch.mark[a] != ch.now) {
			return wrong(KindUnknownID, "item %d: product %q is not in the model or not a candidate of the request", i, it.ID)
		}
		if ch.seen[a] == ch.now {
			return wrong(KindDuplicateID, "item %d: product %q appears twice", i, it.ID)
		}
		ch.seen[a] = ch.now
		if math.IsNaN(it.Score) || (i > 0 && it.Score > items[i-1].Score) {
			return wrong(KindNotSorted, "item %d: score %v after %v", i, it.Score, items[max(0, i-1)].Score)
		}
		if ch.cat.Params != nil {
			want := linucb.Score(req.x, ch.cat.Params[a], ch.alpha)
			if math.Abs(it.Score-want) > scoreRelTol*math.Max(math.Abs(it.Score), math.Abs(want))+scoreAbsTol {
				return wrong(KindWrongScore, "item %d: product %q scored %v, reference %v", i, it.ID, it.Score, want)
			}
		}
	}
	return nil
}

// parseItems decodes a scoring script's reply: id, score, id, score, …
func parseItems(res rueidis.RedisResult) ([]store.Item, error) {
	if err := res.Error(); err != nil {
		return nil, store.ScriptError(err)
	}
	vals, err := res.AsStrSlice()
	if err != nil {
		return nil, wrong(KindBadReply, "%v", err)
	}
	if len(vals)%2 != 0 {
		return nil, wrong(KindBadReply, "odd reply of %d values", len(vals))
	}
	items := make([]store.Item, len(vals)/2)
	for i := range items {
		score, err := strconv.ParseFloat(vals[2*i+1], 64)
		if err != nil {
			return nil, wrong(KindBadReply, "score %q of %s", vals[2*i+1], vals[2*i])
		}
		items[i] = store.Item{ID: vals[2*i], Score: score}
	}
	return items, nil
}

// target sends one batch of requests in one round trip and stores, for
// each, nil (a checked right answer) or its error in errs. A target is used
// by one client goroutine at a time.
type target interface {
	do(ctx context.Context, c rueidis.Client, batch []*request, errs []error)
}

// newTarget returns the named target for one client. With redisDial (lean
// clients) the Redis targets and the HTTP ones use connections of their
// own; client-side always uses rueidis.
func newTarget(name string, cat *Catalog, k int, alpha float64, fetch []rueidis.Completed, sidecarURL string,
	redisDial func(context.Context) (net.Conn, *bufio.Reader, error)) target {
	ch := newChecker(cat, k, alpha)
	if redisDial != nil {
		switch name {
		case TargetHTTP, TargetHTTPLocal:
			return &leanHTTPTarget{leanHTTP: newLeanHTTP(sidecarURL), model: cat.Model, k: k, alpha: alpha, ch: ch}
		case TargetHTTPPing:
			return leanHTTPPingTarget{newLeanHTTP(sidecarURL)}
		case TargetRedis, TargetFCall:
			return &leanScriptTarget{leanConn: leanConn{dial: redisDial}, fcall: name == TargetFCall, root: store.RootKey(cat.Model), k: k, alpha: alpha, ch: ch}
		case TargetPing:
			return &leanPingTarget{leanConn: leanConn{dial: redisDial}}
		}
	}
	switch name {
	case TargetHTTP, TargetHTTPLocal:
		return &httpTarget{url: strings.TrimRight(sidecarURL, "/") + "/v1/recommend", model: cat.Model, k: k, alpha: alpha, ch: ch,
			client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}}
	case TargetRedis, TargetFCall:
		return &scriptTarget{fcall: name == TargetFCall, sha: lua.RecommendSHA(), root: store.RootKey(cat.Model), k: k, alpha: alpha, ch: ch}
	case TargetClientSide:
		return &clientTarget{cat: cat, k: k, alpha: alpha, fetch: fetch, ch: ch}
	case TargetPing:
		return pingTarget{}
	case TargetHTTPPing:
		return &httpPingTarget{url: strings.TrimRight(sidecarURL, "/") + "/healthz",
			client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}}
	}
	panic("loadtest: unknown target " + name) // Validate rejects it first
}

// scriptTarget sends EVALSHA_RO recommend.lua (the script is loaded before
// the run; a NOSCRIPT reply counts as an error) or FCALL_RO rb_recommend.
type scriptTarget struct {
	fcall bool
	sha   string // of recommend.lua
	root  string
	k     int
	alpha float64
	ch    *checker
	cmds  rueidis.Commands
}

func (t *scriptTarget) do(ctx context.Context, c rueidis.Client, batch []*request, errs []error) {
	t.cmds = t.cmds[:0]
	for _, r := range batch {
		args := store.Query{K: t.k, Alpha: t.alpha, Context: r.x, Candidates: r.names}.Args()
		if t.fcall {
			t.cmds = append(t.cmds, c.B().FcallRo().Function(lua.RecommendFunction).Numkeys(1).Key(t.root).Arg(args...).Build())
		} else {
			t.cmds = append(t.cmds, c.B().EvalshaRo().Sha1(t.sha).Numkeys(1).Key(t.root).Arg(args...).Build())
		}
	}
	for i, res := range c.DoMulti(ctx, t.cmds...) {
		items, err := parseItems(res)
		if err == nil {
			err = t.ch.check(batch[i], items)
		}
		errs[i] = err
	}
}

// pingTarget sends PING and expects PONG.
type pingTarget struct{}

func (pingTarget) do(ctx context.Context, c rueidis.Client, batch []*request, errs []error) {
	cmds := make(rueidis.Commands, len(batch))
	for i := range cmds {
		cmds[i] = c.B().Ping().Build()
	}
	for i, res := range c.DoMulti(ctx, cmds...) {
		s, err := res.ToString()
		if err == nil && s != "PONG" {
			err = wrong(KindBadReply, "PING replied %q", s)
		}
		errs[i] = err
	}
}

// clientTarget is the client-side baseline: one pipelined round trip of
// HMGET rb:{M}:arm:<id> theta ainv for every scored arm of every request of
// the batch, each arm scored in Go (linucb.Score), the top k kept with ties
// in catalogue (or candidate) order, as the script ranks them.
type clientTarget struct {
	cat   *Catalog
	k     int
	alpha float64
	fetch []rueidis.Completed // pinned, by arm index
	ch    *checker
	cmds  rueidis.Commands
	p     linucb.Params
	top   []store.Item
}

func (t *clientTarget) do(ctx context.Context, c rueidis.Client, batch []*request, errs []error) {
	t.cmds = t.cmds[:0]
	for _, r := range batch {
		if r.cands == nil {
			t.cmds = append(t.cmds, t.fetch...)
			continue
		}
		for _, a := range r.cands {
			t.cmds = append(t.cmds, t.fetch[a])
		}
	}
	res := c.DoMulti(ctx, t.cmds...)
	d := t.cat.Dim
	if t.p.Theta == nil {
		t.p = linucb.Params{Theta: make([]float64, d), AInv: make([]float64, d*d)}
	}
	for i, r := range batch {
		n := len(t.cat.IDs)
		if r.cands != nil {
			n = len(r.cands)
		}
		items, err := t.score(r, res[:n])
		res = res[n:]
		if err == nil {
			err = t.ch.check(r, items)
		}
		errs[i] = err
	}
}

func (t *clientTarget) score(r *request, res []rueidis.RedisResult) ([]store.Item, error) {
	t.top = t.top[:0]
	for j, rr := range res {
		a := j
		if r.cands != nil {
			a = r.cands[j]
		}
		stored, err := store.DecodeParams(rr, &t.p)
		if errors.Is(err, store.ErrBadModel) || err == nil && !stored {
			return nil, wrong(KindBadReply, "arm %s: theta or ainv missing or of the wrong size", t.cat.IDs[a])
		}
		if err != nil {
			return nil, fmt.Errorf("fetch arm %s: %w", t.cat.IDs[a], err)
		}
		t.top = offerTop(t.top, t.k, store.Item{ID: t.cat.IDs[a], Score: linucb.Score(r.x, t.p, t.alpha)})
	}
	return t.top, nil
}

// offerTop inserts it into top (best first, at most k) if it beats the
// last; equal scores keep their order of arrival.
func offerTop(top []store.Item, k int, it store.Item) []store.Item {
	m := len(top)
	if m == k {
		if !(it.Score > top[m-1].Score) {
			return top
		}
		m--
	} else {
		top = append(top, store.Item{})
	}
	for m > 0 && top[m-1].Score < it.Score {
		top[m] = top[m-1]
		m--
	}
	top[m] = it
	return top
}

// httpTarget posts each request to the sidecar's /v1/recommend (a dense
// context) on its own keep-alive connection.
type httpTarget struct {
	url    string
	model  string
	k      int
	alpha  float64
	ch     *checker
	client *http.Client
	buf    bytes.Buffer
}

// httpRequest and httpReply are the sidecar's request and reply bodies.
type httpRequest struct {
	Model      string    `json:"model"`
	Context    []float64 `json:"context"`
	K          int       `json:"k"`
	Alpha      float64   `json:"alpha"`
	Candidates []string  `json:"candidates,omitempty"`
}

type httpReply struct {
	Items []struct {
		ID    string  `json:"id"`
		Score float64 `json:"score"`
	} `json:"items"`
	Error string `json:"error"`
}

func (t *httpTarget) do(ctx context.Context, _ rueidis.Client, batch []*request, errs []error) {
	for i, r := range batch {
		errs[i] = t.one(ctx, r)
	}
}

func (t *httpTarget) one(ctx context.Context, r *request) error {
	if err := encodeRequest(&t.buf, t.model, t.k, t.alpha, r); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, &t.buf)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var reply httpReply
	err = json.NewDecoder(resp.Body).Decode(&reply)
	return t.ch.checkHTTP(r, resp.StatusCode, &reply, err)
}

// encodeRequest writes r's JSON body for POST /v1/recommend into buf.
func encodeRequest(buf *bytes.Buffer, model string, k int, alpha float64, r *request) error {
	buf.Reset()
	return json.NewEncoder(buf).Encode(httpRequest{Model: model, Context: r.x, K: k, Alpha: alpha, Candidates: r.names})
}

// checkHTTP checks the sidecar's reply to req: its status, its body
// (decoded into reply, with decoding error derr) and the items in it.
func (ch *checker) checkHTTP(req *request, status int, reply *httpReply, derr error) error {
	if derr != nil {
		return wrong(KindBadReply, "HTTP %d: %v", status, derr)
	}
	if status != http.StatusOK {
		return &HTTPError{Status: status, Msg: reply.Error}
	}
	items := make([]store.Item, len(reply.Items))
	for i, it := range reply.Items {
		items[i] = store.Item{ID: it.ID, Score: it.Score}
	}
	return ch.check(req, items)
}

// httpPingTarget sends GET /healthz to the sidecar: one round trip through
// the same HTTP client and server as the http target with nothing behind
// it, the floor of any HTTP hop (as ping is Redis's).
type httpPingTarget struct {
	url    string
	client *http.Client
}

func (t *httpPingTarget) do(ctx context.Context, _ rueidis.Client, batch []*request, errs []error) {
	for i := range batch {
		errs[i] = t.one(ctx)
	}
}

func (t *httpPingTarget) one(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &HTTPError{Status: resp.StatusCode, Msg: "healthz"}
	}
	return nil
}

// HTTPError is a non-200 answer of the sidecar; its kind in the report is
// "HTTP <status>".
type HTTPError struct {
	Status int
	Msg    string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Msg) }
