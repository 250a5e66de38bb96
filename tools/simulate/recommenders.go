package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/model/store"
)

// Redis recommends with one EVALSHA of the scoring script per visit.
type Redis struct {
	Client rueidis.Client
	Model  string
	Alpha  float64
}

// Recommend implements Recommender.
func (r *Redis) Recommend(ctx context.Context, v *Visit, k int) ([]string, error) {
	items, err := store.Recommend(ctx, r.Client, r.Model, store.Query{K: k, Alpha: r.Alpha, Context: v.X})
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	return ids, nil
}

// HTTP recommends through the sidecar, sending the visit's raw attributes
// so that the sidecar encodes them with the model's spec; it sets
// Visit.EventID to the sidecar's event id.
type HTTP struct {
	URL    string // the sidecar, e.g. http://127.0.0.1:8080
	Model  string
	Alpha  float64
	Client *http.Client // default http.DefaultClient
}

// Recommend implements Recommender.
func (h *HTTP) Recommend(ctx context.Context, v *Visit, k int) ([]string, error) {
	body, err := json.Marshal(map[string]any{"model": h.Model, "attributes": v.Attributes, "k": k, "alpha": h.Alpha})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(h.URL, "/")+"/v1/recommend", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var reply struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
		EventID string `json:"event_id"`
		Error   string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		return nil, fmt.Errorf("sidecar answered %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sidecar answered %d: %s", resp.StatusCode, reply.Error)
	}
	ids := make([]string, len(reply.Items))
	for i, it := range reply.Items {
		ids[i] = it.ID
	}
	v.EventID = reply.EventID
	return ids, nil
}

// Rewards is the Sink of FeedbackReward: it sends only the clicked
// product's reward, by event id, to the sidecar's POST /v1/feedback — the
// way a shop reports a click — and nothing for a visit without a click.
// The sidecar logs the reward on the decision log next to the decision;
// the joiner emits the feedback events. Each Send waits for the sidecar's
// answer (202: Kafka has the reward).
type Rewards struct {
	URL    string // the sidecar, e.g. http://127.0.0.1:8080
	Model  string
	Client *http.Client // default http.DefaultClient

	sent int
}

// Send implements Sink.
func (r *Rewards) Send(ctx context.Context, fb Feedback) error {
	if fb.Clicked < 0 {
		return nil
	}
	if fb.EventID == "" {
		return ErrNoEventID
	}
	body, err := json.Marshal(map[string]any{"model": r.Model, "event_id": fb.EventID, "product_id": fb.Slate[fb.Clicked], "reward": 1})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(r.URL, "/")+"/v1/feedback", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	c := r.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("reward %s: sidecar answered %d: %s", fb.EventID, resp.StatusCode, bytes.TrimSpace(msg))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	r.sent++
	return nil
}

// Sent returns the rewards the sidecar accepted.
func (r *Rewards) Sent() int { return r.sent }
