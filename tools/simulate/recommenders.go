package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
// so that the sidecar encodes them with the model's spec.
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
		Error string `json:"error"`
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
	return ids, nil
}
