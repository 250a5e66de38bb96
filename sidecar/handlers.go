package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redbandit/redbandit/model"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
)

// errBadRequest marks errors that are the client's mistake (400).
var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// handlerFunc is an endpoint that returns its status and body, or an error
// that statusOf maps to a status.
type handlerFunc func(w http.ResponseWriter, r *http.Request) (int, any, error)

// handle registers an endpoint with metrics, JSON replies and error mapping.
func (s *Server) handle(pattern, name string, h handlerFunc) {
	serving := name == "recommend" // the dashboard's serving panel
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status, body, err := h(w, r)
		if err != nil {
			status = statusOf(err)
			msg := err.Error()
			if status >= 500 {
				s.log.Warn("sidecar: request failed", "endpoint", name, "status", status, "err", err)
			}
			body = map[string]string{"error": msg}
		}
		writeJSON(w, status, body)
		code := strconv.Itoa(status)
		s.metrics.requests.WithLabelValues(name, code).Inc()
		took := time.Since(start)
		s.metrics.latency.WithLabelValues(name, code).Observe(took.Seconds())
		if serving {
			s.board.serving.record(start, took, status >= 500)
		}
	})
}

// statusOf maps an error to an HTTP status.
func statusOf(err error) int {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errBadRequest), errors.Is(err, store.ErrBadArg), errors.Is(err, spec.ErrBadAttributes):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrNoModel):
		return http.StatusNotFound
	case errors.Is(err, store.ErrBadModel):
		return http.StatusInternalServerError
	default:
		// Redis unreachable, timed out or failing: the service is unavailable,
		// and the client may retry.
		return http.StatusServiceUnavailable
	}
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if r, ok := body.(RecommendResponse); ok { // the hot path, without reflection
		b := appendRecommendResponse(make([]byte, 0, 512), r)
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		_, _ = w.Write(b)
		return
	}
	// Encode first: a body that cannot be encoded is a 500 with a message,
	// not a status already sent with an empty body.
	b, err := json.Marshal(body)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]string{"error": fmt.Sprintf("encode the answer: %v", err)})
	}
	b = append(b, '\n')
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decode reads a JSON body into v: unknown fields and trailing data are
// errors, and the body is limited to MaxBody bytes.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	return decodeJSON(r.Body, v)
}

// decodeRecommend is decode for a recommendation request, through
// fastRecommend when the body has the common form.
func (s *Server) decodeRecommend(w http.ResponseWriter, r *http.Request, req *recommendRequest) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return badRequest("malformed JSON body: %v", err)
	}
	if fastRecommend(body, req) {
		return nil
	}
	*req = recommendRequest{}
	return decodeJSON(bytes.NewReader(body), req)
}

// decodeJSON reads one JSON object into v: unknown fields, trailing data
// and malformed JSON are 400s; a body over the size limit is returned as
// the *http.MaxBytesError.
func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return badRequest("malformed JSON body: %v", err)
	}
	if dec.More() {
		return badRequest("malformed JSON body: data after the object")
	}
	return nil
}

// recommendRequest is the body of POST /v1/recommend.
type recommendRequest struct {
	Model      string          `json:"model"`
	Context    json.RawMessage `json:"context"`    // [x1, …, xd] or {"feature": value, …}
	Attributes map[string]any  `json:"attributes"` // raw attributes, encoded by the model's spec
	K          *int            `json:"k"`
	Alpha      *float64        `json:"alpha"`
	Candidates []string        `json:"candidates"`
	Exclude    []string        `json:"exclude"`
	EventID    string          `json:"event_id"` // the decision's id (default: a new one); a retry with the same id answers the same

	dense []float64 // Context parsed by fastRecommend; nil otherwise
}

// Item is one recommended product.
type Item struct {
	ID    string  `json:"id"`
	Score float64 `json:"score"`
}

// RecommendResponse is the reply of POST /v1/recommend.
type RecommendResponse struct {
	Model   string `json:"model"`
	Items   []Item `json:"items"`
	EventID string `json:"event_id"`
}

func (s *Server) recommend(w http.ResponseWriter, r *http.Request) (int, any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	model, eventID, q, items, err := s.score(ctx, w, r, true)
	if err != nil {
		return 0, nil, err
	}
	resp := RecommendResponse{Model: model, Items: make([]Item, len(items)), EventID: eventID}
	for i, it := range items {
		resp.Items[i] = Item{ID: it.ID, Score: it.Score}
	}
	if s.decisions != nil {
		s.logRecommend(resp.EventID, model, q, items)
	}
	return http.StatusOK, resp, nil
}

// score decodes a recommendation request and runs the scoring script once.
// It returns the request's event id, or a new one if it has none; if
// seeded, equal scores are ordered by a seed drawn from that id
// (store.Query.Seed), so a call retried with the same event id answers the
// same.
func (s *Server) score(ctx context.Context, w http.ResponseWriter, r *http.Request, seeded bool) (model, eventID string, q store.Query, items []store.Item, err error) {
	var req recommendRequest
	if err := s.decodeRecommend(w, r, &req); err != nil {
		return "", "", store.Query{}, nil, err
	}
	eventID = req.EventID
	if eventID == "" {
		eventID = newEventID()
	} else if err := checkEventID(eventID); err != nil {
		return "", "", store.Query{}, nil, err
	}
	var seed int64
	if seeded {
		seed = tieSeed(eventID)
	}
	model = req.Model
	if model == "" {
		model = s.cfg.Model
	}
	q = store.Query{K: s.cfg.K, Alpha: s.cfg.Alpha, Candidates: req.Candidates, Exclude: req.Exclude, Seed: seed}
	if req.K != nil {
		q.K = *req.K
	}
	if q.K < 1 || q.K > s.cfg.MaxK {
		return "", "", q, nil, badRequest("k must be in 1..%d, got %d", s.cfg.MaxK, q.K)
	}
	if req.Alpha != nil {
		q.Alpha = *req.Alpha
	}
	if !(q.Alpha >= 0) || math.IsInf(q.Alpha, 0) {
		return "", "", q, nil, badRequest("alpha must be a finite number >= 0")
	}
	x, err := s.context(ctx, model, req)
	if err != nil {
		return "", "", q, nil, err
	}
	q.Context = x
	if s.local != nil { // local scoring (local.go): the copy answers when it can
		if items, ok, err := s.local.recommend(model, q); ok {
			return model, eventID, q, items, err
		}
	}
	start := time.Now()
	if s.cfg.FCall {
		items, err = store.RecommendFCall(ctx, s.cfg.Redis, model, q)
	} else {
		items, err = store.Recommend(ctx, s.cfg.Redis, model, q)
	}
	s.metrics.redis.WithLabelValues("recommend").Observe(time.Since(start).Seconds())
	s.scored.served.WithLabelValues(ScoringRedis).Inc()
	if s.local != nil && err == nil {
		s.local.want(model) // it exists: copy it
	}
	return model, eventID, q, items, err
}

// ExplainedItem is a recommended product with the two parts of its score.
type ExplainedItem struct {
	ID     string  `json:"id"`
	Score  float64 `json:"score"`
	Mean   float64 `json:"mean"`   // xᵀθ, the estimated reward
	Bonus  float64 `json:"bonus"`  // α·√(xᵀA⁻¹x), the exploration bonus
	Events int64   `json:"events"` // events folded into the product's arm (0: a fresh arm)
}

// ExplainResponse is the reply of POST /v1/explain.
type ExplainResponse struct {
	Model   string          `json:"model"`
	Context []float64       `json:"context"`
	Items   []ExplainedItem `json:"items"`
	EventID string          `json:"event_id,omitempty"` // with ?log=true: the logged decision's
}

// explain answers like recommend, with each item's score split into its
// estimate and its exploration bonus, computed from the product's stored θ
// and A⁻¹ (one pipelined read of the k arm hashes after the script). With
// ?log=true and a decision log, the answer is logged as a decision (with
// means and bonuses) and carries its event id.
func (s *Server) explain(w http.ResponseWriter, r *http.Request) (int, any, error) {
	logIt := false
	if v := r.URL.Query().Get("log"); v != "" {
		var err error
		if logIt, err = strconv.ParseBool(v); err != nil {
			return 0, nil, badRequest("log must be true or false, got %q", v)
		}
		if logIt && s.decisions == nil {
			return 0, nil, badRequest("log=true needs the decision log (start the sidecar with --brokers and --decisions-topic)")
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	model, eventID, q, items, err := s.score(ctx, w, r, false)
	if err != nil {
		return 0, nil, err
	}
	arms, err := store.ReadParams(ctx, s.cfg.Redis, model, len(q.Context), itemIDs(items))
	if err != nil {
		return 0, nil, err
	}
	resp := ExplainResponse{Model: model, Context: q.Context, Items: make([]ExplainedItem, len(items))}
	for i, a := range arms {
		p := a.Params
		if !a.Stored { // a candidate the model has never seen: the prior arm
			info, err := s.modelInfo(ctx, model)
			if err != nil {
				return 0, nil, err
			}
			p = store.PriorParams(len(q.Context), info.meta.Lambda)
		}
		mean, quad := linucb.MeanVar(q.Context, p)
		resp.Items[i] = ExplainedItem{ID: items[i].ID, Score: items[i].Score, Mean: mean, Bonus: q.Alpha * math.Sqrt(quad), Events: a.Events}
	}
	if logIt {
		resp.EventID = eventID
		s.logExplain(resp.EventID, model, q, resp.Items)
	}
	return http.StatusOK, resp, nil
}

// itemIDs returns the products of items, in order.
func itemIDs(items []store.Item) []string {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	return ids
}

// context builds x from the request: a dense array (its length is checked by
// the script, so no metadata is read), named features (missing ones are 0)
// or raw attributes encoded by the model's spec.
func (s *Server) context(ctx context.Context, model string, req recommendRequest) ([]float64, error) {
	raw := bytes.TrimSpace(req.Context)
	switch {
	case len(raw) > 0 && req.Attributes != nil:
		return nil, badRequest("give either context or attributes, not both")
	case len(raw) == 0 && req.Attributes == nil:
		return nil, badRequest("missing context (an array of numbers or an object of named features) or attributes")
	case req.Attributes != nil:
		info, err := s.modelInfo(ctx, model)
		if err != nil {
			return nil, err
		}
		if info.spec == nil {
			return nil, badRequest("model %s has no feature spec: send context instead of attributes", model)
		}
		return info.spec.Encode(numbersToFloats(req.Attributes))
	case raw[0] == '[':
		if req.dense != nil {
			return req.dense, nil
		}
		if x, ok := denseContext(raw); ok {
			return x, nil
		}
		var nums []json.Number
		if err := json.Unmarshal(raw, &nums); err != nil {
			return nil, badRequest("context must be an array of numbers: %v", err)
		}
		x := make([]float64, len(nums))
		for i, n := range nums {
			f, err := n.Float64()
			if err != nil || math.IsInf(f, 0) {
				return nil, badRequest("context value %d (%s) is not a finite number", i+1, n)
			}
			x[i] = f
		}
		return x, nil
	case raw[0] == '{':
		var named map[string]json.Number
		if err := json.Unmarshal(raw, &named); err != nil {
			return nil, badRequest("context must be an object of feature names to numbers: %v", err)
		}
		info, err := s.modelInfo(ctx, model)
		if err != nil {
			return nil, err
		}
		x := make([]float64, info.meta.Dim)
		for name, n := range named {
			i, ok := info.index[name]
			if !ok {
				return nil, badRequest("unknown feature %q (model %s has %s)", name, model, strings.Join(info.meta.Features, ", "))
			}
			f, err := n.Float64()
			if err != nil || math.IsInf(f, 0) {
				return nil, badRequest("feature %q (%s) is not a finite number", name, n)
			}
			x[i] = f
		}
		return x, nil
	default:
		return nil, badRequest("context must be an array of numbers or an object of named features")
	}
}

// numbersToFloats turns the json.Numbers of decoded attributes into float64.
func numbersToFloats(attrs map[string]any) map[string]any {
	out := make(map[string]any, len(attrs))
	for k, v := range attrs {
		if n, ok := v.(json.Number); ok {
			if f, err := n.Float64(); err == nil {
				v = f
			}
		}
		out[k] = v
	}
	return out
}

// ModelResponse is the reply of GET /v1/models/{model}.
type ModelResponse struct {
	Model     string          `json:"model"`
	Format    int             `json:"format"`
	Dim       int             `json:"dimension"`
	Features  []string        `json:"features"`
	Groups    []model.Group   `json:"groups"`
	Spec      json.RawMessage `json:"spec,omitempty"`
	Lambda    float64         `json:"lambda"`
	Products  int             `json:"products"`
	Events    int64           `json:"events"`
	Invalid   int64           `json:"dead_letters"` // events the trainers dead-lettered
	UpdatedMS int64           `json:"updated_ms"`
	Updated   string          `json:"updated"`
}

func (s *Server) model(w http.ResponseWriter, r *http.Request) (int, any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	name := r.PathValue("model")
	m, err := store.ReadMeta(ctx, s.cfg.Redis, name)
	if err != nil {
		return 0, nil, err
	}
	s.metrics.model(name, m)
	resp := ModelResponse{Model: name, Format: m.Format, Dim: m.Dim, Features: m.Features, Groups: m.Groups,
		Lambda: m.Lambda, Products: m.Arms, Events: m.Events, Invalid: m.Invalid, UpdatedMS: m.UpdatedMS,
		Updated: time.UnixMilli(m.UpdatedMS).UTC().Format(time.RFC3339Nano)}
	if m.Spec != "" {
		if !json.Valid([]byte(m.Spec)) {
			return 0, nil, fmt.Errorf("%w: %s has a spec that is not JSON", store.ErrBadModel, store.RootKey(name))
		}
		resp.Spec = json.RawMessage(m.Spec)
	}
	return http.StatusOK, resp, nil
}

func (s *Server) healthz(http.ResponseWriter, *http.Request) (int, any, error) {
	return http.StatusOK, map[string]string{"status": "ok"}, nil
}

// readyz checks that Redis answers and that the scoring script (EVALSHA) or
// function (FCALL_RO) is loaded (store.CheckLoaded: one call on a model
// that does not exist, no more permission than serving needs).
func (s *Server) readyz(_ http.ResponseWriter, r *http.Request) (int, any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	if err := store.CheckLoaded(ctx, s.cfg.Redis, s.cfg.FCall); err != nil {
		return http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": fmt.Sprintf("scoring script: %v", err)}, nil
	}
	if s.cfg.Producer != nil {
		if err := s.cfg.Producer.Ping(ctx); err != nil {
			return http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": fmt.Sprintf("kafka: %v", err)}, nil
		}
	}
	return http.StatusOK, map[string]string{"status": "ready"}, nil
}
